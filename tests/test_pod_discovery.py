"""Pod discovery by the real Prometheus, over every generated stack: one target per pod and job.

Prometheus's pod discovery makes a target of every port of every container. Whether a pod with a
sidecar ends up scraped once or once per port depends on the relabelling and on the scrape pool
keeping one of equal targets: that is the real program's business, so the built Prometheus runs
every pod-discovered job of each stack's prometheus.yml (discovery pointed at a loopback stand-in
of the Kubernetes API; everything else as generated) and its target list is read back. The pods it
discovers are each stack's own rendered pod templates, plus application pods annotated for
scraping: with a sidecar, with an init container, and one with a port-less sidecar.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from tests import discovery_run
from tests.loopback_http import Handler, LoopbackServer
from tests.test_pod_inputs import template_of, workloads

WAIT = 30.0  # seconds for the targets to appear on a busy machine


def app_pod(name: str, namespace: str, containers: list[dict], annotations: dict, init: list[dict] = ()) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
                         "labels": {"app.kubernetes.io/name": name.rsplit("-", 1)[0]}, "annotations": annotations},
            "spec": {"containers": containers, "initContainers": list(init), "nodeName": "node-a"}}


def application_pods(namespace: str) -> list[dict]:
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}
    api = {"name": "api", "image": "football-prediction-api:1", "ports": [{"name": "http", "containerPort": 8000}]}
    proxy = {"name": "proxy", "image": "envoy:1", "ports": [{"name": "admin", "containerPort": 9901},
                                                             {"name": "proxy", "containerPort": 15001}]}
    return [
        app_pod("football-prediction-api-a", namespace, [api, proxy], scrape),
        app_pod("football-prediction-worker-a", namespace,
                [{"name": "worker", "image": "worker:1", "ports": [{"name": "metrics", "containerPort": 8000}]},
                 {"name": "log-tail", "image": "busybox:1"}],
                scrape, init=[{"name": "migrate", "image": "migrate:1", "ports": [{"containerPort": 8000}]}]),
    ]


def stack_pods(result, namespace: str) -> list[dict]:
    """The stack's own pods, one per workload, as the API server would list them."""
    pods = []
    for obj in workloads(result):
        if obj["kind"] in ("CronJob", "Job"):
            continue
        template = template_of(obj)
        pods.append({"metadata": {"name": f"{obj['metadata']['name']}-0", "namespace": namespace,
                                  "uid": f"uid-{namespace}-{obj['metadata']['name']}",
                                  "labels": template["metadata"]["labels"],
                                  "annotations": {k: v for k, v in (template["metadata"].get("annotations") or {}).items()
                                                  if isinstance(v, str)}},
                     "spec": {**template["spec"], "nodeName": "node-a"}})
    return pods


class KubernetesStandIn:
    """Lists and watches pods as the API server does (plain list+watch, and client-go's streaming
    watch-list with its initial-events-end bookmark), from a fixed set; nothing else."""

    def __init__(self, pods: list[dict]):
        for i, pod in enumerate(pods):
            pod.update({"apiVersion": "v1", "kind": "Pod"})
            pod["metadata"]["resourceVersion"] = "1"
            pod["status"] = {"phase": "Running", "podIP": f"127.0.{i // 250 + 1}.{i % 250 + 1}",
                             "conditions": [{"type": "Ready", "status": "True"}]}
        self.pods, self.stopping, self.requests = pods, threading.Event(), []
        stand_in = self

        class Api(Handler):
            def do_GET(self):  # noqa: N802 (http.server's names)
                url = urlparse(self.path)
                query = parse_qs(url.query)
                stand_in.requests.append(self.path)
                parts = url.path.strip("/").split("/")
                if parts[:2] != ["api", "v1"] or parts[-1] != "pods":
                    self.send_error(404)
                    return
                namespace = parts[3] if len(parts) == 5 else None
                items = [p for p in stand_in.pods if namespace in (None, p["metadata"]["namespace"])]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if query.get("watch", [""])[0] not in ("true", "1"):
                    self.wfile.write(json.dumps({"apiVersion": "v1", "kind": "PodList",
                                                 "metadata": {"resourceVersion": "1"}, "items": items}).encode())
                    return
                if query.get("sendInitialEvents", [""])[0] == "true":
                    for pod in items:
                        self.wfile.write(json.dumps({"type": "ADDED", "object": pod}).encode() + b"\n")
                    self.wfile.write(json.dumps({"type": "BOOKMARK", "object": {
                        "apiVersion": "v1", "kind": "Pod", "metadata": {
                            "resourceVersion": "1", "annotations": {"k8s.io/initial-events-end": "true"}}}}).encode() + b"\n")
                self.wfile.flush()
                stand_in.stopping.wait(WAIT * 2)  # a watch stays open; nothing changes

        self.server = LoopbackServer(Api)

    @property
    def url(self) -> str:
        return self.server.url

    def close(self):
        self.stopping.set()
        self.server.close()


def prometheus_configs(result) -> list[str]:
    """prometheus.yml of each scrape shard, shard 0 (the only one without prometheus.shards) first."""
    configs = [result.one("ConfigMap", "prometheus-config")]
    configs += sorted((o for o in result.find("ConfigMap") if o["metadata"]["name"].startswith("prometheus-shard-")
                       and o["metadata"]["name"].endswith("-config")),
                      key=lambda o: int(o["metadata"]["name"].split("-")[2]))
    return [c["data"]["prometheus.yml"] for c in configs]


def pod_jobs(prometheus_yml: str, api_url: str, namespace: str, prefix: str) -> list[dict]:
    """The generated pod-discovered jobs, discovery pointed at the stand-in, names made unique."""
    jobs = []
    for job in yaml.safe_load(prometheus_yml)["scrape_configs"]:
        sd = job.get("kubernetes_sd_configs") or []
        if not sd or any(c["role"] != "pod" for c in sd):
            continue
        job = {**job, "job_name": f"{prefix}--{job['job_name']}"}
        configs = []
        for c in sd:
            c = {**c, "api_server": api_url}
            if "namespaces" in c:
                c["namespaces"] = {"names": [namespace]}
            configs.append(c)
        job["kubernetes_sd_configs"] = configs
        # In a cluster these read the pod's service account; the stand-in asks for nothing.
        for key in ("authorization", "tls_config"):
            job.pop(key, None)
        jobs.append(job)
    return jobs


@pytest.fixture(scope="module")
def discovered(every_stack, tmp_path_factory):
    """Prometheus's active targets (labels and discovered labels) by scrape pool, per stack."""
    root = tmp_path_factory.mktemp("pod-discovery")
    namespaces = {stack: f"ns-{i}" for i, stack in enumerate(every_stack)}
    pods = []
    for stack, result in every_stack.items():
        pods += stack_pods(result, namespaces[stack]) + application_pods(namespaces[stack])
    api = KubernetesStandIn(pods)
    jobs = []
    for stack, result in every_stack.items():
        # Every scrape shard's jobs (prometheus.shards): together they must scrape each pod once.
        for shard, text in enumerate(prometheus_configs(result)):
            jobs += pod_jobs(text, api.url, namespaces[stack], f"{stack}~{shard}")
    # No scrape is wanted, only the target list: the first scrape is an hour away.
    (root / "prometheus.yml").write_text(yaml.safe_dump(
        {"global": {"scrape_interval": "1h", "scrape_timeout": "10s"}, "scrape_configs": jobs}))
    try:
        # A shard's share of a hashed job (prometheus.shards) may be none of the few pods here.
        hashed = {j["job_name"] for j in jobs if any(r.get("action") == "hashmod" for r in j["relabel_configs"])}
        targets = discovery_run.discovered(root / "prometheus.yml", root, {j["job_name"] for j in jobs} - hashed,
                                           WAIT, optional_pools=frozenset(hashed))["activeTargets"]
    finally:
        api.close()
    by_stack: dict[str, dict[str, list]] = {stack: {} for stack in every_stack}
    for target in targets:
        stack, job = target["scrapePool"].split("--", 1)
        by_stack[stack.split("~")[0]].setdefault(job, []).append(target)
    return by_stack, namespaces


def test_every_pod_is_one_target_per_job(discovered, every_stack):
    by_stack, namespaces = discovered
    for stack, jobs in by_stack.items():
        for job, targets in jobs.items():
            per_pod = Counter((t["discoveredLabels"]["__meta_kubernetes_namespace"],
                               t["discoveredLabels"]["__meta_kubernetes_pod_name"]) for t in targets)
            doubled = {pod: n for pod, n in per_pod.items() if n > 1}
            assert not doubled, f"{stack}: job {job} scrapes these pods more than once: {doubled}"


def test_annotated_pods_with_sidecars_are_scraped_once_at_the_annotated_port(discovered, every_stack):
    by_stack, namespaces = discovered
    for stack, jobs in by_stack.items():
        namespace = namespaces[stack]
        # The application stand-ins, and the stack's own annotated pods (the demo's, as docs/instrumentation.md says).
        annotated = [p for p in stack_pods(every_stack[stack], namespace) + application_pods(namespace)
                     if p["metadata"]["annotations"].get("prometheus.io/scrape") == "true"]
        assert any(p["metadata"]["name"] == "football-prediction-api-a" for p in annotated)
        expected = sorted((p["metadata"]["name"], p["metadata"]["annotations"]["prometheus.io/port"]) for p in annotated)
        targets = [t for t in jobs["kubernetes-pods"] if t["labels"]["namespace"] == namespace]
        scraped = sorted((t["labels"]["pod"], t["scrapeUrl"].split("/")[2].split(":")[1]) for t in targets)
        assert scraped == expected, (stack, scraped)
        assert all("container" not in t["labels"] for t in targets)


def test_every_component_job_finds_its_pods(discovered, every_stack):
    """The check is not vacuous: each stack's own pod jobs found the stack's pods."""
    by_stack, namespaces = discovered
    for stack, jobs in by_stack.items():
        own = {job for job, targets in jobs.items() if any(t["labels"].get("namespace") == namespaces[stack]
                                                           for t in targets)}
        assert {"prometheus", "alertmanager", "grafana", "node-exporter", "kubernetes-pods"} <= own, (stack, own)
