"""Discovery for real: the pinned Prometheus runs prod's generated prometheus.yml against the real
API server holding prod, as Prometheus' own ServiceAccount (a TokenRequest token) with the
cluster's CA, and its target list (active and dropped) is read back.

The config is rewritten only where it must be to run here: the API server's address, the token
and CA paths (in a Pod they are the mounted ServiceAccount files), no rules or Alertmanagers, and a
one-hour scrape interval so that nothing is scraped during the test. The jobs without Kubernetes
discovery (blackbox probes of in-cluster names) are left out: they discover nothing here.

No kubelet runs: this module does a scheduler's and a kubelet's part for the Pods the controller
manager made (binds them to the test Node, reports them Running and Ready with addresses in
127.0.0.0/8), so every target Prometheus could reach is on this machine. An application stand-in
(a Deployment with an annotated sidecar pod and an annotated Service) gives the annotation-driven
jobs something to find, as the application's namespace does in a cluster. The jobs that discover
EndpointSlices find nothing here (see unfindable).
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections import Counter

import pytest
import yaml

from tests import discovery_run
from tests.kube_cluster import MANAGER, apply_stack, kube_cluster, kube_prod, list_items  # noqa: F401

WAIT = 60  # seconds for the targets to settle on a busy machine
APP_NAMESPACE = "football-prediction-stand-in"
SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SA_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


def app_objects() -> list[dict]:
    labels = {"app.kubernetes.io/name": "football-prediction-api"}
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}
    meta = {"name": "football-prediction-api", "namespace": APP_NAMESPACE, "labels": labels}
    containers = [{"name": "api", "image": "example.invalid/api:1", "ports": [{"name": "http", "containerPort": 8000}]},
                  {"name": "proxy", "image": "example.invalid/proxy:1",
                   "ports": [{"name": "admin", "containerPort": 9901}, {"name": "proxy", "containerPort": 15001}]}]
    # Another team's annotated pod named like one of the stack's own jobs: its job must not take it.
    impostor = {"app.kubernetes.io/name": "kube-state-metrics", "app.kubernetes.io/instance": "other-team"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other-team-kube-state-metrics",
                                                                     "namespace": APP_NAMESPACE, "labels": impostor},
         "spec": {"replicas": 1, "selector": {"matchLabels": impostor},
                  "template": {"metadata": {"labels": impostor, "annotations": {**annotations, "prometheus.io/port": "8080"}},
                               "spec": {"containers": [{"name": "kube-state-metrics", "image": "example.invalid/ksm:1",
                                                        "ports": [{"name": "http-metrics", "containerPort": 8080}]}]}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 2, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels, "annotations": annotations},
                         "spec": {"containers": containers}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {**meta, "annotations": annotations},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]}},
    ]


def run_pods(cluster, namespaces: list[str]) -> list[dict]:
    """Binds each Pod to the test Node and reports it Running and Ready, as a scheduler and a
    kubelet would; a host-network Pod has the Node's address, every other one its own in 127/8."""
    pods = [p for ns in namespaces for p in list_items(cluster, "v1", "Pod", ns)]
    for i, pod in enumerate(sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))):
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if not pod["spec"].get("nodeName"):
            cluster.request("POST", path + "/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "test-node"}})
        # A Pod another test already reported keeps its address (a kubelet never changes it).
        ip = ("127.0.0.1" if pod["spec"].get("hostNetwork")
              else pod.get("status", {}).get("podIP") or f"127.0.{i // 250 + 1}.{i % 250 + 1}")
        now = "2026-01-01T00:00:00Z"
        conditions = [{"type": t, "status": "True", "lastTransitionTime": now}
                      for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        cluster.request("PATCH", path + "/status", {"status": {
            "phase": "Running", "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now, "conditions": conditions}},
            "application/strategic-merge-patch+json")
    return [p for ns in namespaces for p in list_items(cluster, "v1", "Pod", ns)]


def loopback_config(prometheus_yml: str, api_url: str, token_file: str, ca_file: str) -> tuple[dict, list[str]]:
    config = yaml.safe_load(prometheus_yml)
    jobs = []
    for job in config["scrape_configs"]:
        if not job.get("kubernetes_sd_configs"):
            continue
        job = json.loads(json.dumps(job).replace(SA_TOKEN, token_file).replace(SA_CA, ca_file))
        job.pop("scrape_interval", None)
        job["kubernetes_sd_configs"] = [{**sd, "api_server": api_url, "authorization": {"credentials_file": token_file},
                                         "tls_config": {"ca_file": ca_file}} for sd in job["kubernetes_sd_configs"]]
        jobs.append(job)
    config = {"global": {**config["global"], "scrape_interval": "1h"}, "scrape_configs": jobs}
    return config, [j["job_name"] for j in jobs]


def unfindable(config: dict) -> list[str]:
    """The jobs that discover EndpointSlices: the API server refuses an EndpointSlice with a loopback
    address (pkg/apis/discovery/validation), and every address here is one, so the endpointslice
    controller can publish none. Their RBAC is proven in test_kube_rbac.py; their targets are not."""
    return [j["job_name"] for j in config["scrape_configs"]
            if any(sd["role"] == "endpointslice" for sd in j["kubernetes_sd_configs"])]


@pytest.fixture(scope="module")
def discovery(kube_cluster, kube_prod, prod, tmp_path_factory):
    cluster = kube_cluster
    root = tmp_path_factory.mktemp("kube-discovery")
    apply_stack(cluster, "app-stand-in", app_objects())
    namespaces = [o["metadata"]["name"] for o in kube_prod if o["kind"] == "Namespace"] + [APP_NAMESPACE]
    pods = run_pods(cluster, namespaces)
    [account] = [o["metadata"] for o in kube_prod if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "prometheus"]
    (root / "token").write_text(cluster.service_account_token(account["namespace"], account["name"]))
    text = prod.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    config, jobs = loopback_config(text, cluster.url, str(root / "token"), str(cluster.ca_file))
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    started = time.monotonic()
    data = discovery_run.discovered(root / "prometheus.yml", root, set(jobs) - set(unfindable(config)), WAIT, stable_rounds=4)
    live = {(p["metadata"]["namespace"], p["metadata"]["name"]): p
            for p in [p for ns in namespaces for p in list_items(cluster, "v1", "Pod", ns)]}
    return {"config": config, "jobs": jobs, "active": data["activeTargets"], "dropped": data["droppedTargets"],
            "pods": live, "seconds": time.monotonic() - started, "set_running": len(pods)}


def address(target: dict) -> str:
    """host:port Prometheus would scrape (the targets API keeps no __ labels after relabelling)."""
    return target["scrapeUrl"].split("/")[2]


def active(discovery, job: str) -> list[dict]:
    return [t for t in discovery["active"] if t["scrapePool"] == job]


def job_config(discovery, job: str) -> dict:
    [config] = [j for j in discovery["config"]["scrape_configs"] if j["job_name"] == job]
    return config


def test_every_job_finds_targets(discovery):
    assert sorted(j for j in discovery["jobs"] if not active(discovery, j)) == sorted(unfindable(discovery["config"]))
    assert discovery["dropped"], "the pod jobs keep a few of many discovered ports: some are dropped"


def test_only_loopback_addresses_are_targets(discovery):
    assert discovery["active"]
    for target in discovery["active"]:
        assert ipaddress.ip_address(address(target).rsplit(":", 1)[0]).is_loopback, target["scrapeUrl"]


def pod_of(target: dict) -> tuple[str, str]:
    return target["discoveredLabels"]["__meta_kubernetes_namespace"], target["discoveredLabels"]["__meta_kubernetes_pod_name"]


def test_one_target_per_pod_per_job_with_the_pods_labels(discovery):
    """Each pod once per job, labelled with its namespace, pod and node; a job that honours its
    exporter's labels (kube-state-metrics, which speaks for other objects) carries none of them, so
    they never land on the series of the objects it reports."""
    honoured = 0
    for job in discovery["jobs"]:
        config = job_config(discovery, job)
        pod_targets = [t for t in active(discovery, job) if "__meta_kubernetes_pod_name" in t["discoveredLabels"]]
        per_pod = Counter(pod_of(t) for t in pod_targets)
        assert {p: n for p, n in per_pod.items() if n > 1} == {}, job
        for target in pod_targets:
            pod = discovery["pods"][pod_of(target)]
            assert target["discoveredLabels"]["__meta_kubernetes_pod_ip"] == pod["status"]["podIP"]
            if config.get("honor_labels"):
                honoured += 1
                assert not {"namespace", "pod", "node"} & set(target["labels"]), (job, target["labels"])
                continue
            assert (target["labels"]["namespace"], target["labels"]["pod"]) == pod_of(target), job
            if "node" in target["labels"] or any(r.get("target_label") == "node" for r in config["relabel_configs"]):
                assert target["labels"]["node"] == pod["spec"]["nodeName"] == "test-node", job
    assert honoured, "kube-state-metrics' job honours its labels and has a target"


def keeps(job: dict, source: str) -> str | None:
    for rule in job["relabel_configs"]:
        if rule.get("action") == "keep" and rule.get("source_labels") == [source]:
            return rule["regex"]
    return None


def test_component_jobs_find_exactly_their_pods(discovery):
    """A component's job targets each of its pods that has the named port, and no other pod."""
    checked = 0
    for job in discovery["jobs"]:
        config = job_config(discovery, job)
        name_regex = keeps(config, "__meta_kubernetes_pod_label_app_kubernetes_io_name")
        port_regex = keeps(config, "__meta_kubernetes_pod_container_port_name")
        if name_regex is None or port_regex is None:
            continue
        namespaces = {ns for sd in config["kubernetes_sd_configs"] for ns in sd["namespaces"]["names"]}
        expected = {key for key, pod in discovery["pods"].items()
                    if key[0] in namespaces
                    and re.fullmatch(name_regex, pod["metadata"]["labels"].get("app.kubernetes.io/name", ""))
                    and any(re.fullmatch(port_regex, p.get("name", "")) for c in pod["spec"]["containers"]
                            for p in c.get("ports", []))}
        found = {pod_of(t) for t in active(discovery, job)}
        assert found == expected and expected, job
        checked += 1
    assert checked >= 10


def test_annotated_pods_are_scraped_once_at_the_annotated_port(discovery):
    targets = active(discovery, "kubernetes-pods")
    annotated = {key: pod for key, pod in discovery["pods"].items()
                 if pod["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"}
    assert {k[0] for k in annotated} == {APP_NAMESPACE}
    reserved = {j for j in discovery["jobs"] if j not in ("kubernetes-pods", "kubernetes-services")}
    impostors = {k for k, p in annotated.items() if p["metadata"]["labels"].get("app.kubernetes.io/name") in reserved}
    assert impostors, "the stand-in app namespace holds a pod named like one of the stack's jobs"
    expected = sorted((k[0], k[1], f"{p['status']['podIP']}:{p['metadata']['annotations']['prometheus.io/port']}")
                      for k, p in annotated.items() if k not in impostors)
    found = sorted((t["labels"]["namespace"], t["labels"]["pod"], address(t)) for t in targets)
    assert found == expected
    assert {t["labels"]["job"] for t in targets} == {"football-prediction-api"}
    # No job of the stack's own names takes a target from another scrape pool.
    for target in discovery["active"]:
        if target["labels"]["job"] in reserved:
            assert target["scrapePool"] == target["labels"]["job"], target["labels"]


def test_node_jobs(discovery):
    node_jobs = [j for j in discovery["jobs"]
                 if {sd["role"] for sd in job_config(discovery, j)["kubernetes_sd_configs"]} == {"node"}]
    assert len(node_jobs) >= 2
    for job in discovery["jobs"]:
        roles = {sd["role"] for sd in job_config(discovery, job)["kubernetes_sd_configs"]}
        if roles == {"node"}:
            assert [(t["labels"]["node"], address(t)) for t in active(discovery, job)] == [
                ("test-node", "127.0.0.1:10250")], job
