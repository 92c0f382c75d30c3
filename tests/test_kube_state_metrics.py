"""kube-state-metrics for real: the pinned release, with prod's generated arguments and RBAC, against
the real API server holding prod (tests/kube_cluster.py), and prod's generated alert rules evaluated
by the pinned Prometheus on what it scrapes from it.

kube-state-metrics runs with exactly the arguments of the rendered container, except where it must
run here: its two listeners (--host/--port, --telemetry-host/--telemetry-port, the flags
tests/command_lines.py rewrites for every command line) on 127.0.0.1 at free ports, and
--kubeconfig (kube-state-metrics v2.18.0 pkg/options/options.go), because in a Pod its in-cluster
config is the mounted ServiceAccount token: the kubeconfig holds a TokenRequest token of our
kube-state-metrics ServiceAccount and the cluster's CA, so our RBAC is what it runs with. A list or
watch it is refused ("forbidden" in its log, an error in its own kube_state_metrics_list_total)
fails the test.

No kubelet and no scheduler run: this module does their part, as test_kube_discovery.py does, and
makes the state the Kubernetes alerts are about. prod's pods run Ready (a healthy stack), and a
namespace of its own holds healthy and broken workloads side by side: Pods that stay unready, a
container in CrashLoopBackOff after an OOM kill whose restart count rises, a StatefulSet short of
replicas (its second Pod fits no node), a Job that failed and one that completed, a PVC bound to a
volume, one pending (no provisioner serves its class) and one of a class that binds on first use
that no Pod names (Pending by design), a DaemonSet on every node and one on the test Node only;
and a second Node whose kubelet is gone (Ready Unknown; the DaemonSet Pods bound to it are never
started, so every DaemonSet on it, prod's too, is short). prod's own claims stay
Pending as well: nothing here provisions a volume. Every Pod IP is in 127.0.0.0/8. How the
stand-in kubelet runs a Pod is a label of its template (RUN_LABEL).

Why a real Prometheus scraping kube-state-metrics, not promtool over exported samples: the series
the rules read carry the labels the generated scrape job gives them (honor_labels, none of its own
Pod's namespace/pod/node, the environment), and only Prometheus running that job against the
API server makes them, while a promtool input would have to rebuild them by hand. The alerts' `for:`
durations are removed in the copy of the rule files it loads (every expression stays as rendered,
which the test checks): the durations themselves are proven by the promtool unit tests of
rules/tests/, over synthetic series; what is proven here is the expressions on real output.

What is checked:
- every kube_* name the generated rules and the rendered dashboards read has samples in
  kube-state-metrics' /metrics, and every name metrics/exporters.yaml promises too, with its type;
- its /metrics has no family outside its generated --metric-allowlist, and the allowlist and
  --resources are no wider than what the rules, dashboards and runbooks read (that part needs no
  cluster);
- every label each selector of them names, groups by or matches on (and the labels an alert's
  annotations and a panel's legend print) is on the series Prometheus stored, and every selector
  (Grafana variables aside) selects series of the state made here;
- every dashboard panel that reads only kube-state-metrics has data;
- the alerts that read kube_* series fire exactly for the faults made, and for nothing healthy. An
  alert is known by the labels its annotations print (namespace and pod, container, deployment,
  statefulset, daemonset, persistentvolumeclaim, job_name, node): those are the fault's. None
  carries a label of the kube-state-metrics Pod: such a label would make each alert a new series
  (its `for:` restarting) whenever that Pod is replaced, and tie a Deployment's alert to the node
  the exporter runs on.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import yaml

from components.metrics.exporters import KUBE_STATE_RESOURCES
from scripts import dashboard_query_benchmark as bench
from tests import promql_names as pn
from tests.command_lines import DEFAULTS, LISTEN_HOST_FLAGS, LISTEN_PORT_FLAGS
from tests.ports import free_port
from tests.conftest import ROOT, require_tool
from tests.kube_cluster import (MANAGER, KubeCluster, ensure_node, kube_cluster, kube_prod,  # noqa: F401
                                list_items, object_path, token_kubeconfig)
from tests.test_kube_discovery import loopback_config
from tests.test_kube_rbac import container_args

TOOL = "kube-state-metrics"
NAMESPACE = "ksm-state"
NODE, UNREADY_NODE = "test-node", "test-node-gone"
RUN_LABEL = "football-monitoring.test/run"  # how the stand-in kubelet runs the template's Pods
SCRAPE = "2s"  # the scrape must fit in it on a busy machine: a failed scrape marks every series stale
SETTLE_WAIT = 60  # seconds for the controllers to reach the state made here
KSM_WAIT = 30
ALERT_WAIT = 60
NOW = "2026-01-01T00:00:00Z"

# The faults on objects, each with the alert it must raise, by the labels its annotations name.
# The faults of Pods follow from how the stand-in kubelet runs them (POD_ALERTS).
OBJECT_ALERTS = [
    ("KubeDeploymentReplicasMismatch", {"namespace": NAMESPACE, "deployment": "never-ready"}),
    ("KubeDeploymentReplicasMismatch", {"namespace": NAMESPACE, "deployment": "crash-loop"}),
    ("KubeStatefulSetReplicasMismatch", {"namespace": NAMESPACE, "statefulset": "short"}),
    ("KubeJobFailed", {"namespace": NAMESPACE, "job_name": "fails"}),
    ("KubeNodeNotReady", {"node": UNREADY_NODE}),
    ("KubePersistentVolumeClaimPending", {"namespace": NAMESPACE, "persistentvolumeclaim": "pending"}),
    # Its Pod on the Node whose kubelet is gone never starts.
    ("KubeDaemonSetPodsUnavailable", {"namespace": NAMESPACE, "daemonset": "every-node"}),
]
# Run mode -> the alerts each Pod (each container, where the alert names one) so run must raise.
POD_ALERTS = {
    "ready": [], "succeeded": [], "failed": [],
    "unready": ["KubePodNotReady"],
    "crash-loop": ["KubePodNotReady", "KubePodCrashLooping", "KubeContainerOOMKilled"],
    "unschedulable": ["KubePodNotReady"],
    "node-gone": ["KubePodNotReady"],
}


# --------------------------------------------------------------------------- the state

def pod_template(run: str, name: str) -> dict:
    labels = {"app.kubernetes.io/name": name, RUN_LABEL: run}
    container = {"name": "app", "image": "example.invalid/app:1",
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}}
    spec = {"containers": [container]}
    if run in ("succeeded", "failed"):
        spec["restartPolicy"] = "Never"
    return {"metadata": {"labels": labels}, "spec": spec}


def workload(kind: str, name: str, run: str, replicas: int = 1, node_selector: dict | None = None) -> dict:
    meta = {"name": name, "namespace": NAMESPACE}
    template = pod_template(run, name)
    selector = {"matchLabels": {"app.kubernetes.io/name": name}}
    if kind == "Deployment":
        spec = {"replicas": replicas, "selector": selector, "template": template}
    elif kind == "DaemonSet":  # on every node, tainted or not, as node-exporter and Filebeat
        template["spec"]["tolerations"] = [{"operator": "Exists"}]
        if node_selector:
            template["spec"]["nodeSelector"] = node_selector
        spec = {"selector": selector, "template": template}
    elif kind == "StatefulSet":
        spec = {"replicas": replicas, "selector": selector, "serviceName": name, "template": template}
    else:  # Job: one Pod, not retried
        spec = {"backoffLimit": 0, "template": template}
    api_version = "batch/v1" if kind == "Job" else "apps/v1"
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}


def state_objects() -> list[dict]:
    meta = {"namespace": NAMESPACE}
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        workload("Deployment", "steady", "ready", 2),
        workload("Deployment", "never-ready", "unready", 2),
        workload("Deployment", "crash-loop", "crash-loop"),
        workload("StatefulSet", "steady-set", "ready", 2),
        # The first replica runs; the next fits no node (see run_mode), so the set stays short.
        workload("StatefulSet", "short", "ready-first", 3),
        workload("DaemonSet", "every-node", "ready"),
        # Only the Node whose kubelet runs: all its Pods available.
        workload("DaemonSet", "kubelet-node", "ready", node_selector={"kubernetes.io/hostname": NODE}),
        workload("Job", "completes", "succeeded"),
        workload("Job", "fails", "failed"),
        # A class whose provisioner nobody runs: its claim stays Pending.
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ksm-state-unprovisioned"},
         "provisioner": "example.org/nobody", "volumeBindingMode": "Immediate"},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ksm-state-volume"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "ksm-state-manual",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/nonexistent/ksm-state"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {**meta, "name": "bound"},
         "spec": {**claim, "storageClassName": "ksm-state-manual"}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {**meta, "name": "pending"},
         "spec": {**claim, "storageClassName": "ksm-state-unprovisioned"}},
        # A class that binds a claim once a Pod uses it: its claim no Pod names is Pending by design.
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ksm-state-on-first-use"},
         "provisioner": "example.org/nobody", "volumeBindingMode": "WaitForFirstConsumer"},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {**meta, "name": "unused"},
         "spec": {**claim, "storageClassName": "ksm-state-on-first-use"}},
    ]


def add_gone_node(cluster: KubeCluster) -> None:
    """A Node whose kubelet stopped reporting: Ready Unknown, as the node lifecycle controller
    leaves it (the taint admission put on it stays: no kubelet ever cleared it)."""
    labels = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": UNREADY_NODE}
    if not cluster.exists(f"/api/v1/nodes/{UNREADY_NODE}"):
        cluster.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                  "metadata": {"name": UNREADY_NODE, "labels": labels}})
    cluster.request("PATCH", f"/api/v1/nodes/{UNREADY_NODE}/status", {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.2"}, {"type": "Hostname", "address": UNREADY_NODE}],
        "conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                        "message": "Kubelet stopped posting node status.",
                        "lastHeartbeatTime": NOW, "lastTransitionTime": NOW}],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}, "application/merge-patch+json")


# --------------------------------------------------------------------------- the stand-in kubelet

def run_mode(pod: dict) -> str:
    labels = pod["metadata"].get("labels", {})
    if target_node(pod) == UNREADY_NODE:
        return "node-gone"
    mode = labels.get(RUN_LABEL, "ready")
    if mode == "ready-first":
        return "ready" if labels.get("apps.kubernetes.io/pod-index") == "0" else "unschedulable"
    return mode


def target_node(pod: dict) -> str:
    """The Node a scheduler would bind the Pod to: a DaemonSet Pod's own (its node affinity), else
    the test Node."""
    if pod["spec"].get("nodeName"):
        return pod["spec"]["nodeName"]
    affinity = pod["spec"].get("affinity", {}).get("nodeAffinity", {})
    for term in affinity.get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", []):
        for field_ in term.get("matchFields", []):
            if field_["key"] == "metadata.name":
                return field_["values"][0]
    return NODE


def conditions(**states: bool) -> list[dict]:
    return [{"type": kind, "status": "True" if ok else "False", "lastTransitionTime": NOW}
            for kind, ok in states.items()]


def pod_status(pod: dict, mode: str, ip: str, restarts: int = 3) -> dict:
    """The status a kubelet reports for a Pod run so."""
    containers = pod["spec"]["containers"]

    def status(c: dict, ready: bool, state: dict, last: dict | None = None, count: int = 0) -> dict:
        out = {"name": c["name"], "image": c["image"], "imageID": "", "containerID": f"containerd://{c['name']}",
               "ready": ready, "started": "running" in state, "restartCount": count, "state": state}
        if last:
            out["lastState"] = last
        return out

    running = {"running": {"startedAt": NOW}}
    base = {"hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": NOW}
    if mode == "ready":
        return {**base, "phase": "Running",
                "conditions": conditions(PodScheduled=True, Initialized=True, ContainersReady=True, Ready=True),
                "containerStatuses": [status(c, True, running) for c in containers]}
    if mode == "unready":  # running, its readiness probe failing
        return {**base, "phase": "Running",
                "conditions": conditions(PodScheduled=True, Initialized=True, ContainersReady=False, Ready=False),
                "containerStatuses": [status(c, False, running) for c in containers]}
    if mode == "crash-loop":  # killed for its memory limit, restarted, killed again, backing off
        waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}
        killed = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": NOW, "finishedAt": NOW}}
        return {**base, "phase": "Running",
                "conditions": conditions(PodScheduled=True, Initialized=True, ContainersReady=False, Ready=False),
                "containerStatuses": [status(c, False, waiting, killed, restarts) for c in containers]}
    if mode in ("succeeded", "failed"):
        code, reason = (0, "Completed") if mode == "succeeded" else (1, "Error")
        done = {"terminated": {"exitCode": code, "reason": reason, "startedAt": NOW, "finishedAt": NOW}}
        return {**base, "phase": mode.capitalize(),
                "conditions": conditions(PodScheduled=True, Initialized=True, ContainersReady=False, Ready=False),
                "containerStatuses": [status(c, False, done) for c in containers]}
    raise ValueError(mode)


class Kubelet:
    """Binds each Pod and reports its status once, by its run mode; IPs in 127.1.0.0/16, apart from
    those test_kube_discovery.py hands out (a Pod that has one keeps it)."""

    def __init__(self, cluster: KubeCluster):
        self.cluster = cluster
        self.done: dict[str, str] = {}  # uid -> run mode
        self.ips = (f"127.1.{n // 250}.{n % 250 + 1}" for n in range(60_000))

    def run(self, pod: dict) -> None:
        meta, mode = pod["metadata"], run_mode(pod)
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if mode == "unschedulable":
            self.cluster.request("PATCH", path + "/status", {"status": {"conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": NOW,
                 "message": "0/2 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint."}]}},
                "application/strategic-merge-patch+json")
        else:
            if not pod["spec"].get("nodeName"):
                self.cluster.request("POST", path + "/binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": target_node(pod)}})
            if mode != "node-gone":  # nothing ever starts it
                ip = "127.0.0.1" if pod["spec"].get("hostNetwork") else pod["status"].get("podIP") or next(self.ips)
                self.cluster.request("PATCH", path + "/status", {"status": pod_status(pod, mode, ip)},
                                     "application/strategic-merge-patch+json")
        self.done[meta["uid"]] = mode

    def restart(self, pod: dict, restarts: int) -> None:
        """The crash-looping container tried once more."""
        meta = pod["metadata"]
        status = pod_status(pod, "crash-loop", pod["status"]["podIP"], restarts)
        self.cluster.request("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                             {"status": {"containerStatuses": status["containerStatuses"]}},
                             "application/strategic-merge-patch+json")


def settled_problems(cluster: KubeCluster, namespaces: list[str], kubelet: Kubelet) -> list[str]:
    """What the controllers have not reached yet of the state the Pods' run modes make."""
    problems = []
    nodes = [n["metadata"].get("labels", {}) for n in cluster.get("/api/v1/nodes")["items"]]
    pods = {p["metadata"]["uid"]: p for ns in namespaces for p in list_items(cluster, "v1", "Pod", ns)}
    problems += [f"pod {p['metadata']['name']} not run yet" for uid, p in pods.items() if uid not in kubelet.done]
    for ns in namespaces:
        for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            for obj in list_items(cluster, "batch/v1" if kind == "Job" else "apps/v1", kind, ns):
                name, status = f"{kind}/{ns}/{obj['metadata']['name']}", obj.get("status", {})
                if kind != "Job" and status.get("observedGeneration") != obj["metadata"]["generation"]:
                    problems.append(f"{name}: generation not observed")
                    continue
                labels = obj["spec"]["template"].get("metadata", {}).get("labels", {})
                healthy = run_mode({"metadata": {"labels": labels}, "spec": {}}) == "ready"
                if kind == "Deployment":
                    want = obj["spec"]["replicas"]
                    if status.get("updatedReplicas") != want or (healthy and status.get("availableReplicas") != want):
                        problems.append(f"{name}: {status}")
                elif kind == "StatefulSet" and healthy and status.get("readyReplicas") != obj["spec"]["replicas"]:
                    problems.append(f"{name}: {status}")
                elif kind == "DaemonSet":
                    wanted = obj["spec"]["template"]["spec"].get("nodeSelector", {}).items()
                    if status.get("desiredNumberScheduled") != sum(wanted <= labels.items() for labels in nodes):
                        problems.append(f"{name}: {status}")
                elif kind == "Job":
                    terminal = {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}
                    want = {"succeeded": "Complete", "failed": "Failed"}.get(
                        obj["spec"]["template"].get("metadata", {}).get("labels", {}).get(RUN_LABEL))
                    if want and want not in terminal:
                        problems.append(f"{name}: {status}")
    # Only the claim of the volume made here binds: no provisioner runs, and no class is the default,
    # so prod's claims stay Pending as this module's others do.
    for claim in (c for ns in namespaces for c in list_items(cluster, "v1", "PersistentVolumeClaim", ns)):
        want = "Bound" if claim["spec"].get("storageClassName") == "ksm-state-manual" else "Pending"
        if claim.get("status", {}).get("phase") != want:
            problems.append(f"pvc {claim['metadata']['namespace']}/{claim['metadata']['name']}: {claim.get('status')}")
    return problems


def settle(cluster: KubeCluster, namespaces: list[str], kubelet: Kubelet) -> float:
    """Runs every Pod the controllers make (a StatefulSet makes the next once the last is Ready)
    until the workloads' statuses show the state, and hold it for a few rounds; seconds taken."""
    started = time.monotonic()
    deadline, stable, last = started + SETTLE_WAIT, 0, None
    while True:
        for ns in namespaces:
            for pod in list_items(cluster, "v1", "Pod", ns):
                if pod["metadata"]["uid"] not in kubelet.done:
                    kubelet.run(pod)
        problems = settled_problems(cluster, namespaces, kubelet)
        snapshot = sorted(kubelet.done.items())
        stable = stable + 1 if not problems and snapshot == last else 0
        last = snapshot
        if stable >= 3:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            pytest.fail(f"the state was not reached within {SETTLE_WAIT} s: {problems}")
        time.sleep(0.5)


# --------------------------------------------------------------------------- kube-state-metrics

def ksm_command(args: list[str], ports: dict[str, int], kubeconfig: Path) -> tuple[list[str], list[str]]:
    """(argv, what was changed): the rendered arguments, the listeners on 127.0.0.1 at the given
    ports (a listener the arguments leave at its default is added), and the kubeconfig."""
    out, changes, present = [], [], set()
    for arg in args:
        flag, _, value = arg.partition("=")
        present.add(flag)
        if flag in ("--kubeconfig", "--apiserver"):
            raise AssertionError(f"the rendered arguments name the API server ({arg}): in a Pod it is the "
                                 "in-cluster config")
        if flag in LISTEN_PORT_FLAGS[TOOL]:
            out.append(f"{flag}={ports[flag]}")
        elif flag in LISTEN_HOST_FLAGS[TOOL]:
            out.append(f"{flag}=127.0.0.1")
        else:
            out.append(arg)
            continue
        changes.append(f"{arg} -> {out[-1]}")
    for flag, default in DEFAULTS[TOOL].items():
        if flag not in present:
            out.append(f"{flag}={ports[flag]}" if flag in ports else f"{flag}=127.0.0.1")
            changes.append(f"{flag} (default {default}) -> {out[-1]}")
    out.append(f"--kubeconfig={kubeconfig}")
    changes.append(f"+ --kubeconfig={kubeconfig.name} (ServiceAccount token, cluster CA)")
    return out, changes


@dataclass
class Ksm:
    argv: list[str]
    changes: list[str]
    port: int
    telemetry_port: int
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([require_tool(TOOL), *self.argv], stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def get(self, port: int) -> str:
        if self.process.poll() is not None:
            pytest.fail(f"kube-state-metrics exited with {self.process.returncode}:\n{self.log_tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.read().decode()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def forbidden(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if "forbidden" in line.lower()]


def make_ksm(args: list[str], kubeconfig: Path, log: Path) -> Ksm:
    ports = {"--port": free_port(), "--telemetry-port": free_port()}
    argv, changes = ksm_command(args, ports, kubeconfig)
    return Ksm(argv, changes, ports["--port"], ports["--telemetry-port"], log)


@dataclass
class Exposition:
    samples: list[tuple[str, dict[str, str], float]]
    types: dict[str, str]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}

    def of(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(labels, value) for n, labels, value in self.samples if n == name]


def parse_exposition(text: str) -> Exposition:
    from prometheus_client.parser import text_string_to_metric_families

    samples, types = [], {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        samples += [(s.name, dict(s.labels), s.value) for s in family.samples]
    return Exposition(samples, types)


def list_outcomes(ksm: Ksm) -> dict[str, set[str]]:
    """result -> the resources (Go types) kube-state-metrics listed with that result, from its own
    kube_state_metrics_list_total (pkg/watch/watch.go)."""
    out: dict[str, set[str]] = {}
    for labels, value in parse_exposition(ksm.get(ksm.telemetry_port)).of("kube_state_metrics_list_total"):
        if value > 0:
            out.setdefault(labels["result"], set()).add(labels["resource"])
    return out


def allowlist_names(args: list[str]) -> set[str]:
    """The metric names of the rendered --metric-allowlist. kube-state-metrics takes its entries as
    regexes matched anywhere in a family's name (pkg/allowdenylist/allowdenylist.go): each is
    generated anchored, ^name$, so that it admits that one family (kube_pod_status_ready alone
    would admit kube_pod_status_ready_time too)."""
    [value] = [a.split("=", 1)[1] for a in args if a.startswith("--metric-allowlist=")]
    entries = value.split(",")
    assert [e for e in entries if not re.fullmatch(r"\^[a-zA-Z_:][a-zA-Z0-9_:]*\$", e)] == [], entries
    return {e[1:-1] for e in entries}


# --------------------------------------------------------------------------- the generated queries

@dataclass
class Query:
    where: str
    expr: str
    printed: set[str] = field(default_factory=set)  # labels its annotations or legend print


def alert_printed_labels(rule: dict) -> set[str]:
    text = " ".join(str(v) for v in (rule.get("annotations") or {}).values())
    return set(re.findall(r"\$labels\.(\w+)", text)) - set(rule.get("labels") or {})


def rendered_rules(prod) -> dict[str, str]:
    return dict(prod.one("ConfigMap", "prometheus-rules")["data"])


def rules_of(rule_files: dict[str, str]) -> list[dict]:
    return [{**rule, "_file": name} for name, text in sorted(rule_files.items())
            for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def dashboard_queries(prod) -> list[Query]:
    out = []
    for cm in prod.find("ConfigMap"):
        if not cm["metadata"]["name"].startswith("grafana-dashboards-"):
            continue
        for file, text in cm["data"].items():
            dashboard = json.loads(text)
            for panel in pn.iter_panels(dashboard):
                for target in panel.get("targets") or []:
                    if target.get("expr"):
                        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat") or ""))
                        out.append(Query(f"{file} panel {panel.get('title')!r} {target.get('refId')}",
                                         target["expr"], legend))
            for var in (dashboard.get("templating") or {}).get("list") or []:
                query = var.get("query")
                query = query.get("query") if isinstance(query, dict) else query
                if var.get("type") == "query" and isinstance(query, str):
                    expr = pn.variable_query_expr(query)
                    label = re.match(r"^\s*label_values\s*\(.*,\s*(\w+)\s*\)\s*$", query, re.S)
                    if expr:
                        out.append(Query(f"{file} variable {var.get('name')}", expr,
                                         {label.group(1)} if label else set()))
    return out


def generated_queries(prod) -> list[Query]:
    rules = [Query(f"{r['_file']} {r.get('alert') or r.get('record')}", r["expr"],
                   alert_printed_labels(r) if "alert" in r else set())
             for r in rules_of(rendered_rules(prod))]
    return rules + dashboard_queries(prod)


def label_requirements(expr: str, printed: set[str] = frozenset()) -> list[tuple[pn.Selector, set[str]]]:
    """Each vector selector of the expression with the labels its series must carry: those it
    matches on, and those the enclosing aggregations group by, the binary operations match on and
    copy (group_left/right), and the result must print, as far as they reach the selector."""
    found: list[tuple[pn.Selector, set[str]]] = []

    def visit(node, required: set[str]) -> None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            [selector] = pn.selectors(node.prettify())
            found.append((selector, required | {n for n, _, _ in selector.matchers} - {"__name__"}))
        elif kind == "MatrixSelector":
            visit(node.vector_selector, required)
        elif kind == "AggregateExpr":
            modifier = node.modifier
            if modifier is None:
                inner = set()  # sum(x): no label survives
            elif str(modifier.type).endswith("By"):
                inner = set(modifier.labels)
            else:  # without: what survives is the rest
                inner = required - set(modifier.labels)
            visit(node.expr, inner)
            if node.param is not None:
                visit(node.param, set())
        elif kind == "BinaryExpr":
            modifier = node.modifier
            matching = modifier.matching if modifier else None
            on = set(matching.labels) if matching and str(matching.type).endswith("Include") else set()
            ignoring = set(matching.labels) if matching and str(matching.type).endswith("Exclude") else set()
            group = set(modifier.group_labels or []) if modifier else set()
            card = str(modifier.card) if modifier else ""
            if str(node.op) in ("and", "unless"):  # the result is the left side's series
                lhs, rhs = required | on, on or (required - ignoring)
            elif on:  # one-to-one keeps the matched labels only; a group_* side keeps its own
                lhs = on | (required if "ManyToOne" in card else set())
                rhs = on | (required if "OneToMany" in card else set())
            else:
                lhs = rhs = required - ignoring
            if "ManyToOne" in card:
                lhs, rhs = lhs - group, rhs | group
            elif "OneToMany" in card:
                lhs, rhs = lhs | group, rhs - group
            visit(node.lhs, lhs)
            visit(node.rhs, rhs)
        elif kind == "Call":
            if node.func.name in ("label_replace", "label_join"):
                raise ValueError(f"{node.func.name} makes labels: label_requirements does not follow it yet")
            for arg in node.args:
                visit(arg, set() if node.func.name in ("vector", "scalar") else required)
        elif kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
            visit(node.expr, required)

    visit(pn.parse(expr), set(printed))
    return found


def ksm_selectors(queries: list[Query]) -> list[tuple[Query, pn.Selector, set[str]]]:
    return [(q, s, labels) for q in queries for s, labels in label_requirements(q.expr, q.printed)
            if s.name and s.name.startswith("kube_")]


def selector_text(selector: pn.Selector) -> str:
    """The selector as PromQL, without the matchers on Grafana variables (their values are the
    dashboard's choice)."""
    parts = [f'__name__="{selector.name}"'] + [
        f"{label}{op}{json.dumps(value)}" for label, op, value in selector.matchers
        if label != "__name__" and not value.startswith("VAR_")]
    return "{" + ", ".join(parts) + "}"


def ksm_alerts(rule_files: dict[str, str]) -> dict[str, dict]:
    """The alerts that read kube-state-metrics' series."""
    return {r["alert"]: r for r in rules_of(rule_files)
            if "alert" in r and any(n.startswith("kube_") for n in pn.metric_names(r["expr"]))}


def without_for(rule_files: dict[str, str]) -> dict[str, str]:
    """The rule files with no `for:` (and no group interval): every alert fires on its first true
    evaluation, every expression as rendered."""
    out = {}
    for name, text in rule_files.items():
        document = yaml.safe_load(text)
        for group in document["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                rule.pop("for", None)
        out[name] = yaml.safe_dump(document, sort_keys=False)
    assert [r["expr"] for r in rules_of(out)] == [r["expr"] for r in rules_of(rule_files)]
    return out


# --------------------------------------------------------------------------- the run

@dataclass
class World:
    cluster: KubeCluster
    prod: object
    ksm: Ksm
    prometheus: bench.Prometheus
    kubelet: Kubelet
    resources: list[str]
    exposition: Exposition | None = None
    firing: list[dict] = field(default_factory=list)
    expected: Counter = field(default_factory=Counter)
    timings: dict[str, float] = field(default_factory=dict)

    def series(self, name: str) -> list[dict]:
        data = self.prometheus.get("/api/v1/series", {"match[]": name, "start": time.time() - 600})
        assert data["status"] == "success", data
        return data["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.prometheus.post("/api/v1/query", {"query": expr})
        assert data["status"] == "success", (expr, data)
        return data["data"]["result"]


def identity(alert: str, labels: dict, rules: dict[str, dict]) -> tuple:
    keys = alert_printed_labels(rules[alert]) - {"environment"}
    return alert, tuple(sorted((k, labels.get(k, "")) for k in keys))


def prod_object_alerts(world: World, namespaces: list[str]) -> list[tuple[str, dict]]:
    """The faults this cluster makes of prod's own objects: each of its claims stays Pending (see
    settled_problems; none is of a class that waits for its first consumer), and each of its
    DaemonSets with a Pod the stand-in kubelet does not run Ready (on the Node whose kubelet is gone)
    is short of it."""
    out = []
    for ns in (n for n in namespaces if n != NAMESPACE):
        out += [("KubePersistentVolumeClaimPending", {"namespace": ns, "persistentvolumeclaim": c["metadata"]["name"]})
                for c in list_items(world.cluster, "v1", "PersistentVolumeClaim", ns)]
        short = {ref["name"] for p in list_items(world.cluster, "v1", "Pod", ns)
                 if world.kubelet.done[p["metadata"]["uid"]] != "ready"
                 for ref in p["metadata"].get("ownerReferences", []) if ref["kind"] == "DaemonSet"}
        out += [("KubeDaemonSetPodsUnavailable", {"namespace": ns, "daemonset": name}) for name in sorted(short)]
    return out


def expected_alerts(world: World, rules: dict[str, dict], namespaces: list[str]) -> Counter:
    faults = OBJECT_ALERTS + prod_object_alerts(world, namespaces)
    expected = Counter(identity(a, labels, rules) for a, labels in faults)
    for ns in namespaces:
        for pod in list_items(world.cluster, "v1", "Pod", ns):
            for alert in POD_ALERTS[world.kubelet.done[pod["metadata"]["uid"]]]:
                per_container = "container" in alert_printed_labels(rules[alert])
                for c in pod["spec"]["containers"] if per_container else [{}]:
                    labels = {"namespace": ns, "pod": pod["metadata"]["name"], "container": c.get("name", "")}
                    expected[identity(alert, labels, rules)] += 1
    return expected


def firing_alerts(world: World, names: set[str], namespaces: list[str]) -> list[dict]:
    """The firing alerts of these names about prod's namespaces, this module's, and cluster-wide
    objects (a Node's alert has no namespace: the scrape job gives kube-state-metrics' series none of
    its own Pod's labels): other tests' namespaces hold their own broken objects."""
    data = world.prometheus.get("/api/v1/alerts", {})
    return [a for a in data["data"]["alerts"] if a["state"] == "firing" and a["labels"]["alertname"] in names
            and a["labels"].get("namespace", NAMESPACE) in namespaces]


@pytest.fixture(scope="module")
def world(kube_cluster, kube_prod, prod, tmp_path_factory):
    cluster, root = kube_cluster, tmp_path_factory.mktemp("kube-state-metrics")
    timings: dict[str, float] = {}
    started = time.monotonic()
    objects = state_objects()
    args = container_args(kube_prod, TOOL, TOOL)
    [resources] = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--resources=")]
    [account] = [o["metadata"] for o in kube_prod if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == TOOL]
    kubeconfig = token_kubeconfig(cluster, root / "kubeconfig",
                                  cluster.service_account_token(account["namespace"], account["name"]))
    ksm = make_ksm(args, kubeconfig, root / "kube-state-metrics.log")

    prometheus_yml = prod.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    [prom_account] = [o["metadata"] for o in kube_prod
                      if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "prometheus"]
    (root / "token").write_text(cluster.service_account_token(prom_account["namespace"], prom_account["name"]))
    config, _ = loopback_config(prometheus_yml, cluster.url, str(root / "token"), str(cluster.ca_file))
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == TOOL]
    # Where the target is reached: kube-state-metrics' listener here instead of the Pod's IP; every
    # label the generated relabelling gives the target stays.
    job["relabel_configs"].append({"target_label": "__address__", "replacement": f"127.0.0.1:{ksm.port}"})
    rules_dir = root / "rules"
    rules_dir.mkdir()
    for name, text in without_for(rendered_rules(prod)).items():
        (rules_dir / name).write_text(text)
    prometheus = bench.Prometheus(require_tool("prometheus"), root / "tsdb", root, [])
    prometheus.config.write_text(yaml.safe_dump({
        "global": {**config["global"], "scrape_interval": SCRAPE, "scrape_timeout": SCRAPE,
                   "evaluation_interval": "1s"},
        "rule_files": [str(rules_dir / "*.yaml")], "scrape_configs": [job]}))

    kubelet = Kubelet(cluster)
    world = World(cluster, prod, ksm, prometheus, kubelet, resources, timings=timings)
    namespaces = [o["metadata"]["name"] for o in kube_prod if o["kind"] == "Namespace"] + [NAMESPACE]
    try:
        ensure_node(cluster)
        add_gone_node(cluster)
        for obj in objects:
            cluster.apply(obj, MANAGER + "-ksm")
        ksm.start()
        timings["apply"] = time.monotonic() - started
        timings["settle"] = settle(cluster, namespaces, kubelet)
        # kube-state-metrics has caught up once it reports the last of the state: the failed Job.
        deadline = time.monotonic() + KSM_WAIT
        while True:
            try:
                exposition = parse_exposition(ksm.get(ksm.port))
                if any(l.get("job_name") == "fails" and l.get("condition") == "true" and v == 1
                       for l, v in exposition.of("kube_job_failed")):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"kube-state-metrics did not report the state in {KSM_WAIT} s:\n{ksm.log_tail()}")
            time.sleep(0.5)
        mark = time.monotonic()
        prometheus.start()
        rules = ksm_alerts(rendered_rules(prod))
        crash_pods = [p for p in list_items(cluster, "v1", "Pod", NAMESPACE) if run_mode(p) == "crash-loop"]
        # The restart counter rises once Prometheus has a sample of it: an increase to see.
        deadline = time.monotonic() + KSM_WAIT
        while not world.query('kube_pod_container_status_restarts_total{namespace="%s", pod=~"crash-loop-.*"}'
                              % NAMESPACE):
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus scraped no restart counter in {KSM_WAIT} s:\n{prometheus.log_tail()}")
            time.sleep(0.5)
        for pod in crash_pods:
            kubelet.restart(pod, 4)
        world.expected = expected_alerts(world, rules, namespaces)
        deadline, stable, last = time.monotonic() + ALERT_WAIT, 0, None
        while True:
            firing = firing_alerts(world, set(rules), namespaces)
            got = Counter(identity(a["labels"]["alertname"], a["labels"], rules) for a in firing)
            stable = stable + 1 if got == world.expected and got == last else 0
            last = got
            if stable >= 3:
                break
            if time.monotonic() > deadline:
                break  # the tests show what differs
            time.sleep(1)
        world.firing = firing
        timings["alerts"] = time.monotonic() - mark
        world.exposition = parse_exposition(ksm.get(ksm.port))
        timings["total"] = time.monotonic() - started
        yield world
    finally:
        prometheus.stop()
        ksm.stop()
        clean_up(cluster, objects)


def clean_up(cluster: KubeCluster, objects: list[dict]) -> None:
    """Removes the namespace and Nodes of this module. Its Pods are bound to Nodes without a
    kubelet, which would never confirm their deletion: they go at once (grace period 0)."""
    gone_now = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
    doomed = [p for p in cluster.get("/api/v1/pods")["items"]
              if p["metadata"]["namespace"] == NAMESPACE or p["spec"].get("nodeName") == UNREADY_NODE]
    cluster.request("DELETE", f"/api/v1/nodes/{UNREADY_NODE}", expect=(200, 202, 404))
    for pod in doomed:
        meta = pod["metadata"]
        cluster.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", gone_now,
                        expect=(200, 202, 404))
    for obj in objects:
        if "namespace" not in obj["metadata"]:
            cluster.request("DELETE", object_path(obj), expect=(200, 202, 404))


# --------------------------------------------------------------------------- the tests

def test_it_runs_with_the_rendered_arguments_and_our_rbac(world):
    """Every resource of --resources listed, none refused: our RBAC is enough for what it is told to watch."""
    assert world.ksm.forbidden() == [], world.ksm.log_tail()
    outcomes = list_outcomes(world.ksm)
    assert set(outcomes) == {"success"}, outcomes
    assert len(outcomes["success"]) == len(world.resources) >= 5, (outcomes, world.resources)
    rendered = container_args(world.prod.kubernetes_objects(), TOOL, TOOL)
    listeners = LISTEN_PORT_FLAGS[TOOL] | LISTEN_HOST_FLAGS[TOOL]
    assert [a for a in rendered if a.split("=", 1)[0] not in listeners and a not in world.ksm.argv] == []
    assert {a.split("=", 1)[0] for a in world.ksm.argv if a not in rendered} <= listeners | {"--kubeconfig"}


def runbook_names() -> set[str]:
    """The kube_* names the runbooks tell the on-call to query."""
    return {n for page in (ROOT / "docs" / "runbooks").glob("*.md") for n in re.findall(r"\bkube_\w+", page.read_text())}


def scope_problems(args: list[str], queries: list[Query], runbooks: set[str]) -> dict[str, list[str]]:
    """What kube-state-metrics watches or exports beyond what is read, and what is read that it does not."""
    [resources] = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--resources=")]
    allowed = allowlist_names(args)
    read = {s.name for _, s, _ in ksm_selectors(queries)}

    def resource(name: str) -> str | None:
        return next((r for r in resources if r in KUBE_STATE_RESOURCES and name.startswith(KUBE_STATE_RESOURCES[r][1])),
                    None)

    return {
        "read, not allowed": sorted(read - allowed),
        "in a runbook, not allowed": sorted(runbooks - allowed),
        "allowed, read by nothing": sorted(allowed - read - runbooks),
        "of no watched resource": sorted(n for n in allowed | read | runbooks if resource(n) is None),
        "watched, nothing of it read": sorted(r for r in resources if r not in {resource(n) for n in read | runbooks}),
    }


def test_it_watches_and_exports_exactly_what_is_read(prod):
    """Every resource of --resources has a metric a rule, dashboard or runbook reads, and
    --metric-allowlist admits those names and no other, each made by a watched resource: the
    cluster-wide list/watch (its RBAC is built from --resources) and the series are no wider than
    what is used. No cluster here; test_it_exposes_only_the_families_its_allowlist_names checks the
    real output."""
    args = container_args(prod.kubernetes_objects(), TOOL, TOOL)
    problems = scope_problems(args, generated_queries(prod), runbook_names())
    assert len(allowlist_names(args)) >= 15
    assert problems == {k: [] for k in problems}


def test_every_name_the_rules_and_dashboards_read_is_exposed(world):
    used = {s.name for _, s, _ in ksm_selectors(generated_queries(world.prod))}
    assert len(used) >= 15, used
    assert sorted(used - world.exposition.names()) == []


def test_every_name_metrics_exporters_yaml_promises_is_exposed_with_its_type(world):
    promised = yaml.safe_load((ROOT / "metrics" / "exporters.yaml").read_text())["exporters"][TOOL]["metrics"]
    # A counter's family is its name without _total.
    types = {name: world.exposition.types.get(name.removesuffix("_total")) for name in promised}
    assert len(promised) >= 20
    assert {"not exposed": sorted(set(promised) - world.exposition.names()),
            "other type": {n: (t, types[n]) for n, t in promised.items() if types[n] != t}} \
        == {"not exposed": [], "other type": {}}


def families(text: str) -> set[str]:
    """The metric families of an exposition, as kube-state-metrics names them (a counter's with _total)."""
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def test_it_exposes_only_the_families_its_allowlist_names(world):
    """--metric-allowlist keeps the metrics port to what is read; kube-state-metrics' own
    kube_state_metrics_* metrics are on the telemetry port (pkg/app/server.go: ksmMetricsRegistry),
    which the allowlist does not filter and Prometheus does not scrape."""
    text = world.ksm.get(world.ksm.port)
    exposed, telemetry = families(text), families(world.ksm.get(world.ksm.telemetry_port))
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    print(f"kube-state-metrics: {len(exposed)} families, {series} series on the metrics port; "
          f"{len(telemetry)} families on the telemetry port")
    allowed = allowlist_names(container_args(world.prod.kubernetes_objects(), TOOL, TOOL))
    assert {"outside the allowlist": sorted(exposed - allowed), "allowed, not exposed": sorted(allowed - exposed)} \
        == {"outside the allowlist": [], "allowed, not exposed": []}
    assert "kube_state_metrics_list_total" in telemetry and not {f for f in exposed if f.startswith("kube_state_metrics_")}
    # Each watched resource's store makes families of its own prefix: the table of prefixes is the release's.
    assert [r for r in world.resources if not any(f.startswith(KUBE_STATE_RESOURCES[r][1]) for f in exposed)] == []


def test_every_label_the_queries_use_is_on_the_series(world):
    missing = []
    labels_of: dict[str, set[str]] = {}
    for query, selector, required in ksm_selectors(generated_queries(world.prod)):
        if selector.name not in labels_of:
            labels_of[selector.name] = {k for series in world.series(selector.name) for k in series}
        if required - labels_of[selector.name]:
            missing.append(f"{query.where}: {selector.name} has no {sorted(required - labels_of[selector.name])}")
    assert labels_of and missing == []


def test_every_selector_selects_series_of_this_state(world):
    empty = sorted({f"{q.where}: {selector_text(s)}" for q, s, _ in ksm_selectors(generated_queries(world.prod))
                    if not world.query(selector_text(s))})
    assert empty == []


def test_every_panel_on_kube_state_metrics_alone_has_data(world):
    tr = bench.TimeRange("1h", 3600, int(time.time()))
    results = []
    for cm in world.prod.find("ConfigMap"):
        if not cm["metadata"]["name"].startswith("grafana-dashboards-"):
            continue
        for file, text in cm["data"].items():
            path = world.prometheus.work / file
            path.write_text(text)
            targets = [t for t in bench.dashboard_targets(path)
                       if (names := pn.metric_names(t.expr)) and all(n.startswith("kube_") for n in names)]
            if targets:
                values = bench.resolve_variables(world.prometheus, path, tr, "prod", [])
                # Instant queries at the end of the range: this Prometheus holds a minute at most.
                results += [bench.run_query(world.prometheus, replace(t, instant=True), tr, values, 1) for t in targets]
    assert len(results) >= 10
    assert [f"{r.target.where}: {r.error or r.query}" for r in results if r.error or r.empty] == []


def test_no_alert_carries_the_labels_of_kube_state_metrics_own_pod(world):
    """An object's alert carries the object's labels alone; a Pod's alert the Pod's."""
    object_alerts = dict((name, labels) for name, labels in OBJECT_ALERTS)
    pods = [p for p in world.cluster.get("/api/v1/pods")["items"] if p["metadata"]["name"].startswith(TOOL + "-")]
    ksm_pods = {p["metadata"]["name"] for p in pods}
    # Where it is reached (its Pod's address, or this module's listener): no label may name it.
    addresses = {p["status"]["podIP"] for p in pods if p.get("status", {}).get("podIP")} | {f"127.0.0.1:{world.ksm.port}"}
    assert ksm_pods and world.firing
    checked = 0
    for alert in world.firing:
        labels = alert["labels"]
        assert labels.get("pod") not in ksm_pods, labels
        assert not [v for v in labels.values() if any(a in v for a in addresses)], labels
        if labels["alertname"] in object_alerts:
            checked += 1
            expected = set(object_alerts[labels["alertname"]])
            assert not ({"namespace", "pod", "node"} - expected) & set(labels), labels
    assert checked >= len(OBJECT_ALERTS)


def test_the_alerts_fire_for_the_faults_and_nothing_else(world):
    rules = ksm_alerts(rendered_rules(world.prod))
    got = Counter(identity(a["labels"]["alertname"], a["labels"], rules) for a in world.firing)
    assert {"missing": sorted((world.expected - got).elements()), "unexpected": sorted((got - world.expected).elements())} \
        == {"missing": [], "unexpected": []}
    # What the notification prints is there: every label its annotations name, the environment too.
    assert [(a["labels"]["alertname"], sorted(k for k in alert_printed_labels(rules[a["labels"]["alertname"]])
                                              if not a["labels"].get(k)))
            for a in world.firing if any(not a["labels"].get(k) for k in alert_printed_labels(
                rules[a["labels"]["alertname"]]))] == []
    assert {a["labels"].get("environment") for a in world.firing} == {"prod"}


def test_the_faults_name_what_the_alerts_print(world):
    """The labels each fault is expected with are those its alert's annotations print."""
    rules = ksm_alerts(rendered_rules(world.prod))
    assert {alert: sorted(labels) for alert, labels in OBJECT_ALERTS} == {
        alert: sorted(alert_printed_labels(rules[alert]) - {"environment"}) for alert, _ in OBJECT_ALERTS}


def test_every_alert_on_kube_state_metrics_is_proven(world):
    """A new alert on kube_* series needs a fault here that raises it."""
    rules = ksm_alerts(rendered_rules(world.prod))
    assert len(rules) >= 5
    assert set(rules) == {alert for alert, _ in world.expected}


def test_a_refused_watch_is_seen(world, tmp_path):
    """The same arguments with the token of a ServiceAccount bound to nothing: every list is
    refused, and both signs the first test reads say so."""
    cluster = world.cluster
    cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody", "namespace": NAMESPACE}},
                  MANAGER + "-ksm")
    kubeconfig = token_kubeconfig(cluster, tmp_path / "kubeconfig", cluster.service_account_token(NAMESPACE, "nobody"))
    args = container_args(world.prod.kubernetes_objects(), TOOL, TOOL)
    ksm = make_ksm(args, kubeconfig, tmp_path / "ksm.log")
    ksm.start()
    try:
        deadline = time.monotonic() + KSM_WAIT
        while True:
            try:
                outcomes = list_outcomes(ksm)
            except OSError:
                outcomes = {}
            if len(outcomes.get("error", ())) == len(world.resources) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert "success" not in outcomes and len(outcomes.get("error", ())) == len(world.resources), outcomes
        assert ksm.forbidden(), ksm.log_tail()
    finally:
        ksm.stop()


def test_timings(world):
    """Bounded and reported: the module's own part, after the shared cluster and prod are up."""
    assert world.timings["total"] < 120, world.timings
    print(world.timings)

