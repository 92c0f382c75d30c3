"""Network isolation, disruption budgets, scheduling priority and exposure on Kubernetes."""

from __future__ import annotations

import pytest

from tools import offline
from components.settings import SettingsError


def policy(result, name):
    return result.one("NetworkPolicy", name)["spec"]


def allowed_from(spec) -> set:
    peers = set()
    for rule in spec.get("ingress", []):
        for peer in rule.get("from", [{"anywhere": True}]):
            if "podSelector" in peer:
                peers.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
            elif "namespaceSelector" in peer:
                peers.add("ns:" + peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
            else:
                peers.add("anywhere")
    return peers


def test_namespace_denies_by_default(runs):
    for result in runs.values():
        denies = {o["metadata"]["namespace"]: o["spec"] for o in result.find("NetworkPolicy", "default-deny")}
        # The stack's namespace and the node namespace of the host-access workloads.
        assert set(denies) == {result.outputs["namespace"], result.outputs["nodeNamespace"]}
        assert all(deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} for deny in denies.values())


def test_only_the_flows_the_stack_needs(prod):
    # No ingress host in prod; Grafana reads Thanos Query, which reads the sidecars (thanos.enabled).
    assert allowed_from(policy(prod, "prometheus")) == {"thanos-query", "prometheus"}
    assert allowed_from(policy(prod, "thanos-query")) == {"grafana", "prometheus"}
    assert allowed_from(policy(prod, "thanos-store")) == {"thanos-query", "prometheus"}
    assert allowed_from(policy(prod, "thanos-compactor")) == {"prometheus"}
    assert allowed_from(policy(prod, "grafana")) == {"ns:ingress-nginx", "prometheus"}
    assert allowed_from(policy(prod, "alertmanager")) == {"prometheus", "grafana", "alertmanager"}
    for exporter in ("kube-state-metrics", "blackbox-exporter", "postgres-exporter", "redis-exporter"):
        assert allowed_from(policy(prod, exporter)) == {"prometheus"}, exporter
    assert allowed_from(policy(prod, "dingtalk-relay")) == {"alertmanager"}
    grafana_out = policy(prod, "grafana")["egress"]
    assert [r["ports"] for r in grafana_out[1:]] == [[{"port": 10902, "protocol": "TCP"}], [{"port": 9093, "protocol": "TCP"}],
                                                     [{"port": 16686, "protocol": "TCP"}],  # the traces datasource
                                                     [{"port": 9200, "protocol": "TCP"}]]  # the logs datasource
    postgres_out = policy(prod, "postgres-exporter")["egress"]
    assert postgres_out[1] == {"ports": [{"port": 5432, "protocol": "TCP"}]}
    # Every policy lets its pods resolve names, and nothing else implicitly.
    for obj in prod.find("NetworkPolicy"):
        if obj["metadata"]["name"] != "default-deny":
            assert obj["spec"]["egress"][0]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    # hostNetwork pods are outside network policy; none is pretended for node-exporter.
    assert not prod.find("NetworkPolicy", "node-exporter")


def test_every_pod_has_a_policy(runs):
    for result in runs.values():
        covered = {o["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
                   for o in result.find("NetworkPolicy")}
        for obj in result.kubernetes_objects():
            if obj["kind"] in ("Deployment", "StatefulSet"):
                assert obj["metadata"]["name"] in covered, obj["metadata"]["name"]


def test_disruption_budgets_for_replicated_components(dev, prod):
    budgets = {o["metadata"]["name"]: o["spec"] for o in prod.find("PodDisruptionBudget")}
    replicated = {o["metadata"]["name"]: o for o in prod.kubernetes_objects()
                  if o["kind"] in ("Deployment", "StatefulSet") and o["spec"]["replicas"] > 1}
    assert set(budgets) == set(replicated)
    assert {"prometheus", "alertmanager", "elasticsearch", "logstash", "jaeger-collector", "otel-gateway"} <= set(budgets)
    assert all(b["maxUnavailable"] == 1 and b["selector"] == replicated[name]["spec"]["selector"]
               for name, b in budgets.items())
    assert not dev.find("PodDisruptionBudget")  # one replica: a budget would only block node drains


def test_replicas_spread_over_nodes_and_zones(prod):
    for name in ("prometheus", "alertmanager"):
        pod = prod.one("StatefulSet", name)["spec"]["template"]["spec"]
        assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0][
            "podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"


# Work that can wait for room on a full node instead of evicting other pods: the UIs and the demo
# stand-in of the service (jobs wait whatever their name).
WAITING_APPS = {"kibana", "jaeger", "football-prediction-api", "football-prediction-worker"}


def pod_template(obj: dict) -> dict:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]


def test_priority_class_for_every_pod(runs):
    """Monitoring's own pods may evict lower-priority pods to be scheduled; UIs and jobs never do."""
    seen = set()
    for stack, result in runs.items():
        namespace = result.outputs["namespace"]
        classes = {o["metadata"]["name"]: o for o in result.kubernetes_objects() if o["kind"] == "PriorityClass"}
        assert {name: (c["value"], c["preemptionPolicy"]) for name, c in classes.items()} == {
            f"{namespace}-monitoring": (1000000, "PreemptLowerPriority"),
            f"{namespace}-monitoring-waiting": (1000000, "Never")}
        for obj in result.kubernetes_objects():
            if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
                continue
            app = obj["metadata"]["labels"]["app.kubernetes.io/name"]
            # "jaeger" is the query UI beside its collectors; alone (dev's all-in-one) it takes the spans too.
            all_in_one = app == "jaeger" and not any(o["metadata"]["name"] == "jaeger-collector"
                                                     for o in result.kubernetes_objects())
            waits = obj["kind"] in ("Job", "CronJob") or (app in WAITING_APPS and not all_in_one)
            expected = f"{namespace}-monitoring-waiting" if waits else f"{namespace}-monitoring"
            assert pod_template(obj)["priorityClassName"] == expected, (stack, obj["kind"], app)
            seen.add(waits)
    assert seen == {True, False}


def test_prometheus_and_alertmanager_exposed_only_behind_authentication():
    with pytest.raises(SettingsError) as info:
        offline.run("prod", {"ingress": {"prometheusHost": "prometheus.example.org"}})
    assert "football-monitoring:ingress.prometheusHost = 'prometheus.example.org' is not valid without ingress.authUrl" in str(info.value)
    result = offline.run("prod", {"ingress": {"prometheusHost": "prometheus.example.org",
                                              "grafanaHost": "grafana.example.org",
                                              "authUrl": "https://auth.example.org/oauth2/auth",
                                              "authSignin": "https://auth.example.org/oauth2/start"}})
    annotations = result.one("Ingress", "prometheus")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/auth-url"] == "https://auth.example.org/oauth2/auth"
    assert annotations["nginx.ingress.kubernetes.io/auth-signin"] == "https://auth.example.org/oauth2/start"
    assert "nginx.ingress.kubernetes.io/auth-url" not in result.one("Ingress", "grafana")["metadata"]["annotations"]
    assert allowed_from(policy(result, "prometheus")) == {"thanos-query", "prometheus", "ns:ingress-nginx"}
