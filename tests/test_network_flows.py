"""The NetworkPolicies let through every flow the generated configs need, and nothing else inside the
stack's namespace, as a real NetworkPolicy analyzer (cyclonus) reads them.

The flows are derived from the rendered objects (tests/network_flows.py: Prometheus' own discovery
and relabelling for the scrape targets, the addresses in every workload's config); the analyzer
is checked first on examples of the Kubernetes documentation, so that we know we ask it right.
"""

from __future__ import annotations

import copy

import pytest

from tests import network_flows as nf
from tests.test_pod_discovery import prometheus_configs
from tools import offline
from tests.conftest import require_tool


def documented(name: str, spec: dict, namespace: str = "default") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def pod(namespace: str, labels: dict, ip: str = "127.0.50.1", ports=(("p", 6379, "TCP"),)) -> nf.Peer:
    return nf.Peer(nf.Pod(f"Pod/{ip}", ip, namespace, tuple(sorted(labels.items())), ip, False, tuple(ports), {}))


class DocCluster(nf.Cluster):
    def __init__(self, namespaces: dict):
        super().__init__([{"kind": "Namespace", "metadata": {"name": n, "labels": labels}}
                          for n, labels in namespaces.items()])


def test_cyclonus_answers_as_the_kubernetes_documentation_says():
    """Examples of https://kubernetes.io/docs/concepts/services-networking/network-policies/."""
    cyclonus = require_tool("cyclonus")
    cluster = DocCluster({"default": {}, "myproject": {"project": "myproject"}, "other": {}})
    # "test-network-policy": role=db accepts 6379 from role=frontend pods of its namespace and from
    # every pod of namespaces labelled project=myproject, and sends only to 10.0.0.0/24:5978.
    policy = documented("test-network-policy", {
        "podSelector": {"matchLabels": {"role": "db"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                              {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                              {"podSelector": {"matchLabels": {"role": "frontend"}}}],
                     "ports": [{"protocol": "TCP", "port": 6379}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}],
    })
    db = pod("default", {"role": "db"})
    flows = [
        nf.Flow(pod("default", {"role": "frontend"}, "127.0.50.2"), db, 6379),  # allowed
        nf.Flow(pod("default", {"role": "frontend"}, "127.0.50.2"), db, 6380),  # another port
        nf.Flow(pod("myproject", {"any": "pod"}, "127.0.50.3"), db, 6379),  # the namespace selector
        nf.Flow(pod("other", {"role": "frontend"}, "127.0.50.4"), db, 6379),  # frontend, but elsewhere
        nf.Flow(db, nf.Peer(ip="10.0.0.7"), 5978),  # egress to the block
        nf.Flow(db, nf.Peer(ip="10.0.1.7"), 5978),  # outside the block
    ]
    assert nf.analyze(cyclonus, cluster, [policy], flows) == [
        (True, True), (False, True), (True, True), (False, True), (True, True), (True, False)]
    # "default-deny-ingress": every pod of the namespace is isolated for ingress, egress stays open.
    deny = documented("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
    assert nf.analyze(cyclonus, cluster, [deny], [nf.Flow(pod("default", {"a": "b"}, "127.0.50.5"), db, 80)]) == [
        (False, True)]
    # One element with namespaceSelector and podSelector is AND; two elements are OR.
    client = pod("other", {"role": "client"}, "127.0.50.6")
    both = documented("and", {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"],
                              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"user": "alice"}},
                                                     "podSelector": {"matchLabels": {"role": "client"}}}]}]})
    either = documented("or", {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"],
                               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"user": "alice"}}},
                                                     {"podSelector": {"matchLabels": {"role": "client"}}}]}]})
    assert nf.analyze(cyclonus, cluster, [both], [nf.Flow(client, db, 6379)]) == [(False, True)]
    same_namespace_client = pod("default", {"role": "client"}, "127.0.50.7")
    assert nf.analyze(cyclonus, cluster, [either], [nf.Flow(same_namespace_client, db, 6379)]) == [(True, True)]


class Verdicts:
    def __init__(self, result, cyclonus: str, promtool: str):
        self.result = result
        self.cyclonus = cyclonus
        self.objects = result.kubernetes_objects()
        self.cluster = nf.Cluster(self.objects)
        self.policies = [o for o in self.objects if o["kind"] == "NetworkPolicy"]
        self.namespaces = sorted(self.cluster.namespaces)
        # Every scrape shard's (prometheus.shards): the policies let each Prometheus pod scrape what any one scrapes.
        shards = prometheus_configs(result)
        prometheus_yml = shards[0]
        # The ingress controller's namespace is a setting; the rendered Ingresses are its only clients.
        controller = next((p["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                           for o in self.policies if o["metadata"]["name"] == "grafana"
                           for p in o["spec"]["ingress"] if "matchLabels" in p["from"][0].get("namespaceSelector", {})),
                          "no-ingress")
        self.needed = nf.needed_flows(self.cluster, prometheus_yml, promtool, controller) + [
            f for other in shards[1:] for f in nf.scrape_flows(self.cluster, other, promtool)
            if not (f.source.pod and f.source.pod == f.destination.pod)]
        self.unneeded = nf.unneeded_flows(self.cluster, self.needed, self.namespaces)
        answers = self.analyze(self.policies, self.needed + self.unneeded)
        self.needed_answers, self.unneeded_answers = answers[:len(self.needed)], answers[len(self.needed):]

    def analyze(self, policies, flows):
        return nf.analyze(self.cyclonus, self.cluster, policies, flows)


def blocked(flows, answers) -> list[str]:
    return sorted({f"{f.describe()}: " + " and ".join(
        w for w, ok in (("not let in at the destination", inside), ("not let out at the source", outside)) if not ok)
        for f, (inside, outside) in zip(flows, answers) if not (inside and outside)})


def let_through(flows, answers) -> list[str]:
    return sorted({f.describe() for f, (inside, outside) in zip(flows, answers) if inside and outside})


@pytest.fixture(scope="module")
def verdicts(runs) -> dict[str, Verdicts]:
    cyclonus, promtool = require_tool("cyclonus"), require_tool("promtool")
    # prod with two scrape shards: the shards, Thanos Ruler and what they reach.
    stacks = {**runs, "prod-sharded": offline.run("prod", {"prometheus": {"shards": 2}})}
    return {stack: Verdicts(result, cyclonus, promtool) for stack, result in stacks.items()}


@pytest.mark.parametrize("stack", ["dev", "prod", "prod-sharded"])
def test_every_flow_the_configs_need_is_allowed(verdicts, stack):
    v = verdicts[stack]
    jobs = {f.why for f in v.needed if f.why.startswith("scrape job")}
    # The derivation found the targets (not an empty set that passes by itself).
    assert {"scrape job config-reloader", "scrape job grafana", "scrape job alertmanager"} <= jobs, jobs
    if stack == "prod":
        # The gateway's gRPC targets (dns:/// of the collectors' headless Service, the routing tier's
        # resolver name) are found in its config like any address.
        gateway = {f.destination.pod.app for f in v.needed if f.source.pod and f.source.pod.app == "otel-gateway"
                   and f.destination.pod}
        assert {"jaeger-collector", "otel-gateway"} <= gateway, gateway
    if stack == "dev":  # the report posts to the webhook on dev's Kubernetes runs (tests/conftest.py)
        report = {(f.destination.label(), f.port) for f in v.needed if f.source.pod
                  and f.source.pod.app == "service-level-report"}
        assert {("monitoring-dev/prometheus", 9090), ("monitoring-dev/alertmanager", 9093),
                ("outside (127.0.200.1)", 443)} <= report, report
    if stack == "prod-sharded":
        rule = {(f.destination.label(), f.port) for f in v.needed if f.source.pod and f.source.pod.app == "thanos-rule"}
        # The Rulers' own Query, not Grafana's.
        assert {("monitoring/thanos-query-rule", 10902), ("monitoring/alertmanager", 9093)} <= rule, rule
        assert ("monitoring/thanos-query", 10902) not in rule, rule
    assert blocked(v.needed, v.needed_answers) == []


@pytest.mark.parametrize("stack", ["dev", "prod", "prod-sharded"])
def test_nothing_else_inside_the_namespace_is_allowed(verdicts, stack):
    v = verdicts[stack]
    assert len(v.unneeded) > 10 * len(v.cluster.pods), "the pod pairs were not enumerated"
    assert let_through(v.unneeded, v.unneeded_answers) == []


def test_a_missing_door_is_found(verdicts):
    """Mutation: the reloader's port taken out of the Prometheus and Alertmanager policies (the
    defect of issue 13): the reloaders' scrapes are then blocked at their pods."""
    v = verdicts["prod"]
    policies = copy.deepcopy(v.policies)
    for policy in policies:
        rules = policy["spec"].get("ingress", [])
        for rule in rules:
            rule["ports"] = [p for p in rule.get("ports", []) if p["port"] != 8080]
        # A rule left without ports would open every port: it goes.
        policy["spec"]["ingress"] = [rule for rule in rules if rule["ports"]]
    reloader = [f for f in v.needed if f.why == "scrape job config-reloader"]
    assert {f.destination.pod.app for f in reloader} == {"prometheus", "alertmanager"}
    assert all(inside is False and outside for inside, outside in v.analyze(policies, reloader))


def test_an_extra_door_is_found(verdicts):
    """Mutation: Grafana's policy opened to every pod of the namespace on every port."""
    v = verdicts["prod"]
    policies = copy.deepcopy(v.policies)
    grafana = next(p for p in policies if p["metadata"]["name"] == "grafana")
    grafana["spec"]["ingress"].append({"from": [{"podSelector": {}}]})
    to_grafana = [f for f in v.unneeded if f.destination.pod and f.destination.pod.app == "grafana"]
    assert let_through(to_grafana, v.analyze(policies, to_grafana))


def test_only_prometheus_may_reach_any_port_anywhere(runs):
    """Egress rules without ports and peers open everything; only Prometheus (targets in every
    namespace, on every node) has one. Alertmanager reaches its receivers' ports, the blackbox
    exporter its probes' ports."""
    for stack, result in runs.items():
        open_egress = {o["metadata"]["name"] for o in result.find("NetworkPolicy")
                       for rule in o["spec"].get("egress", []) if "ports" not in rule and "to" not in rule}
        assert open_egress == {"prometheus"}, stack


def test_receiver_ports_follow_the_receiver_settings():
    from tests.conftest import run_on_kubernetes
    from tools import offline

    config, secret_keys = offline.stack_config("prod")
    config["football-monitoring:alertmanagerWebhookUrl"] = "http://hooks.example.org:8443/alert"
    result = offline.run("prod", config=config, secret_keys=secret_keys)
    ports = {(p["port"], p["protocol"]) for rule in result.one("NetworkPolicy", "alertmanager")["spec"]["egress"]
             if "to" not in rule for p in rule["ports"]}
    # The webhook's own port, Slack's and the heartbeat's https, prod's smarthost (587).
    assert ports == {(8443, "TCP"), (443, "TCP"), (587, "TCP")}, ports
    blackbox = run_on_kubernetes("dev", {"probes": {"http": [{"name": "site", "target": "https://example.org/"}],
                                                    "tcp": [{"name": "db", "target": "db.example.org:5433"}]}})
    egress = blackbox.one("NetworkPolicy", "blackbox-exporter")["spec"]["egress"][1:]
    assert egress == [{"ports": [{"port": 443, "protocol": "TCP"}, {"port": 5433, "protocol": "TCP"}]}]


def test_a_job_looking_in_the_wrong_namespace_is_found(verdicts):
    """Mutation: node-exporter's job discovering in the stack's namespace instead of the node
    namespace its pods run in: Prometheus' discovery keeps no target, and the check says so."""
    v = verdicts["prod"]
    import yaml

    doc = yaml.safe_load(v.result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "node-exporter")
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [v.result.outputs["nodeNamespace"]]
    job["kubernetes_sd_configs"][0]["namespaces"]["names"] = [v.result.outputs["namespace"]]
    doc["scrape_configs"] = [job]
    with pytest.raises(AssertionError, match="scrape job node-exporter keeps no target"):
        nf.scrape_flows(v.cluster, yaml.safe_dump(doc), require_tool("promtool"))
