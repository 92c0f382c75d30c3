"""Every rendered Kubernetes object, applied for real: a real kube-apiserver (tests/kube_cluster.py)
admits each one by server-side apply, with PodSecurity enforced, and the controller manager turns
the workloads into Pods that admission judges too.

Schemas (kubernetes-validate) and pod-security-check judge objects one by one; only the API server
runs admission, defaulting, cross-field validation, and the controllers that create Pods. Each
stack is applied on its own (prod and prod with every part on share names), checked, and removed.
"""

from __future__ import annotations

import time

import pytest

from tests.kube_cluster import ApiError, KubeCluster, collection_path, kube_cluster, object_path  # noqa: F401

MANAGER = "football-monitoring"
STACKS = ("dev", "prod", "prod-every-part")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
CONTROLLER_TIMEOUT = 60  # seconds the controllers may take to create the Pods of one stack
# Kinds the render may contain that this API server cannot serve (a CRD it does not have), with why.
# Empty: every rendered kind is built in; the test below keeps this exact.
NOT_ADMITTED: dict[str, str] = {}


def apply_order(obj: dict) -> tuple:
    """Namespaces first, then what Pods refer to (PriorityClass, ServiceAccounts, ConfigMaps, Secrets,
    RBAC), workloads last: admission of a Pod looks its ServiceAccount and PriorityClass up."""
    kind = obj["kind"]
    rank = 0 if kind == "Namespace" else 2 if kind in WORKLOAD_KINDS else 1
    return rank, kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def key(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '-')}/{meta['name']}"


def pod_template(obj: dict) -> dict:
    return obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else obj["spec"]["template"]


def ensure_node(cluster: KubeCluster) -> None:
    """One schedulable Ready Node with a loopback address, so the DaemonSet controller has a node
    to create Pods for (no kubelet runs; nothing ever reaches the address)."""
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "test-node", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                                         "kubernetes.io/hostname": "test-node",
                                                         "topology.kubernetes.io/zone": "test-zone"}}}
    if not cluster.exists("/api/v1/nodes/test-node"):
        cluster.request("POST", "/api/v1/nodes", node)
    # Admission taints a new Node not-ready until a kubelet reports; this stands in for the kubelet.
    cluster.request("PATCH", "/api/v1/nodes/test-node", {"spec": {"taints": None}},
                    "application/merge-patch+json")
    status = {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "test-node"}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
    cluster.request("PATCH", "/api/v1/nodes/test-node/status", status, "application/merge-patch+json")


def list_items(cluster: KubeCluster, api_version: str, kind: str, namespace: str) -> list[dict]:
    return cluster.get(collection_path(api_version, kind, namespace))["items"]


def owned_pods(cluster: KubeCluster, namespaces: list[str]) -> dict[str, list[dict]]:
    """Pods by namespace."""
    return {ns: list_items(cluster, "v1", "Pod", ns) for ns in namespaces}


def failed_creates(cluster: KubeCluster, namespaces: list[str]) -> list[str]:
    return [f"{e['involvedObject']['kind']}/{ns}/{e['involvedObject']['name']}: {e['message']}"
            for ns in namespaces for e in list_items(cluster, "v1", "Event", ns)
            if e.get("reason") in ("FailedCreate", "FailedCreatePodFailed") or "forbidden" in e.get("message", "")]


def expected_pods(cluster: KubeCluster, obj: dict) -> int:
    """How many Pods the controller makes of a workload here (no kubelet: nothing becomes ready)."""
    kind, spec = obj["kind"], obj["spec"]
    if kind == "DaemonSet":
        return 1  # the one Node
    if kind == "StatefulSet":
        # OrderedReady creates the next Pod only when the previous one is Ready: here, the first only.
        replicas = spec.get("replicas", 1)
        return replicas if spec.get("podManagementPolicy") == "Parallel" else min(replicas, 1)
    if kind == "Job":
        return min(spec.get("parallelism", 1), spec.get("completions") or spec.get("parallelism", 1))
    return spec.get("replicas", 1)  # Deployment


def controlled_by(pod: dict, uids: set[str]) -> bool:
    return any(ref.get("uid") in uids for ref in pod["metadata"].get("ownerReferences", []))


def wait_for_pods(cluster: KubeCluster, workloads: list[dict], namespaces: list[str]) -> dict[str, int]:
    """Workload key -> Pods created, once every workload has its expected count or FailedCreate
    events appear (or the bounded wait ends)."""
    deadline = time.monotonic() + CONTROLLER_TIMEOUT
    while True:
        pods = [p for ps in owned_pods(cluster, namespaces).values() for p in ps]
        replica_sets = [rs for ns in namespaces for rs in list_items(cluster, "apps/v1", "ReplicaSet", ns)]
        counts = {}
        for obj in workloads:
            live = cluster.get(object_path(obj))
            owners = {live["metadata"]["uid"]}
            owners |= {rs["metadata"]["uid"] for rs in replica_sets if controlled_by(rs, owners)}
            counts[key(obj)] = sum(controlled_by(p, owners) for p in pods)
        done = all(counts[key(o)] >= expected_pods(cluster, o) for o in workloads)
        if done or failed_creates(cluster, namespaces) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def job_from_cronjob(cronjob: dict) -> dict:
    """What `kubectl create job --from=cronjob/...` makes: the CronJob's Pods are otherwise created
    only on its schedule."""
    meta = cronjob["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{meta['name']}-manual", "namespace": meta["namespace"],
                         "labels": dict(cronjob["spec"]["jobTemplate"].get("metadata", {}).get("labels", {}))},
            "spec": cronjob["spec"]["jobTemplate"]["spec"]}


def remove(cluster: KubeCluster, objects: list[dict]) -> None:
    """Deletes a stack's namespaces (their contents with them) and cluster-scoped objects, and waits,
    bounded, until the namespaces are gone."""
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    for obj in objects:
        if "namespace" not in obj["metadata"]:
            cluster.request("DELETE", object_path(obj), expect=(200, 202, 404))
    deadline = time.monotonic() + 120
    while any(cluster.exists(object_path(ns)) for ns in namespaces):
        if time.monotonic() > deadline:
            pytest.fail("namespaces not deleted within 120 s: "
                        + ", ".join(n["metadata"]["name"] for n in namespaces if cluster.exists(object_path(n))))
        time.sleep(0.5)


def changed_by_applying_again(cluster: KubeCluster, objects: list[dict], rounds: int = 3) -> dict[str, tuple]:
    """Key -> (resourceVersion before, after) of each object that a repeated apply writes.

    An apply that changes nothing leaves the resourceVersion as it was. A controller may still be
    writing a status (its Pods stay Pending, so it settles at once) between the read and the apply:
    an object that moved is tried again, and only one that moves in every round is reported."""
    changed: dict[str, tuple] = {}
    for _ in range(rounds):
        changed = {}
        for obj in objects:
            before = cluster.get(object_path(obj))["metadata"]["resourceVersion"]
            after = cluster.apply(obj, MANAGER)["metadata"]["resourceVersion"]
            if after != before:
                changed[key(obj)] = (before, after)
        objects = [o for o in objects if key(o) in changed]
        if not objects:
            break
    return changed


class Outcome:
    def __init__(self, stack: str, objects: list[dict]):
        self.stack, self.objects = stack, objects
        self.rejected: dict[str, str] = {}
        self.warnings: list[str] = []
        self.namespaces: dict[str, dict] = {}
        self.pods: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.failed_creates: list[str] = []
        self.changed_on_reapply: dict[str, tuple[str, str]] = {}
        self.seconds = 0.0


@pytest.fixture(scope="module")
def outcomes(kube_cluster, every_stack) -> dict[str, Outcome]:
    cluster = kube_cluster
    ensure_node(cluster)
    results = {}
    for stack in STACKS:
        started = time.monotonic()
        objects = sorted(every_stack[stack].kubernetes_objects(), key=apply_order)
        outcome = results[stack] = Outcome(stack, objects)
        before = len(cluster.warnings)
        for obj in objects:
            try:
                cluster.apply(obj, MANAGER)
            except ApiError as error:
                outcome.rejected[key(obj)] = error.body
        namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
        manual = [job_from_cronjob(o) for o in objects if o["kind"] == "CronJob"]
        for job in manual:
            try:
                cluster.apply(job, MANAGER + "-manual")
            except ApiError as error:
                outcome.rejected[key(job)] = error.body
        outcome.warnings = cluster.warnings[before:]
        outcome.namespaces = {ns: cluster.get(f"/api/v1/namespaces/{ns}") for ns in namespaces
                              if cluster.exists(f"/api/v1/namespaces/{ns}")}
        workloads = [o for o in objects + manual if o["kind"] in WORKLOAD_KINDS and o["kind"] != "CronJob"
                     and key(o) not in outcome.rejected]
        outcome.expected = {key(o): expected_pods(cluster, o) for o in workloads}
        outcome.pods = wait_for_pods(cluster, workloads, namespaces)
        outcome.failed_creates = failed_creates(cluster, namespaces)
        outcome.changed_on_reapply = changed_by_applying_again(
            cluster, [o for o in objects if key(o) not in outcome.rejected])
        outcome.seconds = time.monotonic() - started
        # Only what a later stack would collide with is removed (a namespace takes ~15 s to go).
        later = {key(o) for other in STACKS[STACKS.index(stack) + 1:] for o in every_stack[other].kubernetes_objects()}
        if later & {key(o) for o in objects}:
            remove(cluster, objects)
    return results


@pytest.mark.parametrize("stack", STACKS)
def test_every_object_is_admitted(outcomes, stack):
    outcome = outcomes[stack]
    assert len(outcome.objects) > 100
    assert outcome.rejected == {}


@pytest.mark.parametrize("stack", STACKS)
def test_no_admission_warnings(outcomes, stack):
    assert outcomes[stack].warnings == []


@pytest.mark.parametrize("stack", STACKS)
def test_namespaces_enforce_pod_security_as_rendered(outcomes, every_stack, stack):
    outputs = every_stack[stack].outputs
    levels = {ns: {mode: obj["metadata"]["labels"].get(f"pod-security.kubernetes.io/{mode}")
                   for mode in ("enforce", "warn", "audit")}
              for ns, obj in outcomes[stack].namespaces.items()}
    assert levels == {outputs["namespace"]: dict.fromkeys(("enforce", "warn", "audit"), "restricted"),
                      outputs["nodeNamespace"]: dict.fromkeys(("enforce", "warn", "audit"), "privileged")}


@pytest.mark.parametrize("stack", STACKS)
def test_the_controllers_pods_are_admitted(outcomes, stack):
    outcome = outcomes[stack]
    assert outcome.failed_creates == []
    assert outcome.pods == outcome.expected
    kinds = {k.split("/")[0] for k in outcome.expected}
    assert {"Deployment", "StatefulSet", "DaemonSet", "Job"} <= kinds
    assert sum(outcome.pods.values()) >= len(outcome.expected)


@pytest.mark.parametrize("stack", STACKS)
def test_applying_again_changes_nothing(outcomes, stack):
    assert outcomes[stack].changed_on_reapply == {}


def test_every_rendered_kind_is_served(outcomes, kube_cluster):
    """The kinds the API server cannot admit are exactly NOT_ADMITTED: a CRD-backed kind entering
    the render must be listed with its reason (or its CRD installed), and a stale entry fails."""
    rendered = {(o["apiVersion"], o["kind"]) for outcome in outcomes.values() for o in outcome.objects}
    unserved = set()
    for api_version, kind in rendered:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        status, body = kube_cluster.request("GET", base, expect=(200, 404))
        if status == 404 or kind not in {r["kind"] for r in body["resources"]}:
            unserved.add(kind)
    assert unserved == set(NOT_ADMITTED)



def test_the_checks_can_fail(kube_cluster, outcomes):
    """The same helpers see a rejection, a PodSecurity warning, a Pod the controller could not
    create, and an object that is written on every apply, in a namespace of their own."""
    cluster = kube_cluster
    namespace = "admission-check"
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}},
                  MANAGER)
    before = len(cluster.warnings)
    meta = {"name": "unhardened", "namespace": namespace}
    selector = {"matchLabels": {"app": "unhardened"}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
        "selector": selector, "template": {"metadata": {"labels": selector["matchLabels"]},
                                           "spec": {"containers": [{"name": "c", "image": "example.invalid/c:1"}]}}}}
    cluster.apply(deployment, MANAGER)
    assert any("would violate PodSecurity" in w for w in cluster.warnings[before:]), cluster.warnings[before:]
    assert wait_for_pods(cluster, [deployment], [namespace]) == {key(deployment): 0}
    assert any("violates PodSecurity" in f for f in failed_creates(cluster, [namespace]))
    with pytest.raises(ApiError) as rejected:
        cluster.apply({**deployment, "spec": {**deployment["spec"], "selector": {"matchLabels": {"app": "other"}}}},
                      MANAGER)
    assert rejected.value.status == 422
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
              "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}}
    cluster.apply(policy, MANAGER)
    assert set(changed_by_applying_again(cluster, [policy, deployment])) == {key(policy)}
