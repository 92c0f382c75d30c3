"""Every rendered Kubernetes object, applied for real: a real kube-apiserver (tests/kube_cluster.py)
admits each one by server-side apply, with PodSecurity enforced, and the controller manager turns
the workloads into Pods that admission judges too.

Schemas (kubernetes-validate) and pod-security-check judge objects one by one; only the API server
runs admission, defaulting, cross-field validation, and the controllers that create Pods. Each
stack is applied on its own (prod and prod with every part on share names), checked, and removed
when a later one shares its names.

Every check runs on the pinned Kubernetes release and on the previous minor release (the range the
README states as supported), each on a control plane of its own.
"""

from __future__ import annotations

import time

import pytest

from tests.kube_cluster import (MANAGER, RELEASES, WORKLOAD_KINDS, ApiError, KubeCluster, apply_order,  # noqa: F401
                                ensure_node, expected_pods, failed_creates, key, kube_cluster, object_path,
                                release_version, remove, running, wait_for_pods)

# prod last: it stays applied for the RBAC and discovery tests (tests/kube_cluster.py, kube_prod).
STACKS = ("dev", "prod-every-part", "prod")
# Kinds the render may contain that this API server cannot serve (a CRD it does not have), with why.
# Empty: every rendered kind is built in; the test below keeps this exact.
NOT_ADMITTED: dict[str, str] = {}


def pod_template(obj: dict) -> dict:
    return obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else obj["spec"]["template"]


def job_from_cronjob(cronjob: dict) -> dict:
    """What `kubectl create job --from=cronjob/...` makes: the CronJob's Pods are otherwise created
    only on its schedule."""
    meta = cronjob["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{meta['name']}-manual", "namespace": meta["namespace"],
                         "labels": dict(cronjob["spec"]["jobTemplate"].get("metadata", {}).get("labels", {}))},
            "spec": cronjob["spec"]["jobTemplate"]["spec"]}


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


@pytest.fixture(scope="module", params=sorted(RELEASES, key=lambda r: r == "pinned"))
def release_cluster(request) -> KubeCluster:
    """The session's control plane for the pinned release (prod stays applied on it for the RBAC
    and discovery tests, so it comes last), one of its own for the previous minor release."""
    if request.param == "pinned":
        yield request.getfixturevalue("kube_cluster")
        return
    with running(request.param) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def outcomes(release_cluster, every_stack) -> dict[str, Outcome]:
    cluster = release_cluster
    ensure_node(cluster)
    for stack in [s for s in STACKS if s in cluster.applied]:
        remove(cluster, cluster.applied.pop(stack))
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
        cluster.applied[stack] = objects
        # Only what a later stack would collide with is removed (a namespace takes ~15 s to go).
        later = {key(o) for other in STACKS[STACKS.index(stack) + 1:] for o in every_stack[other].kubernetes_objects()}
        if later & {key(o) for o in objects}:
            remove(cluster, cluster.applied.pop(stack))
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
    # Refusals by the oldest supported release's policy; warnings and audit by the latest.
    from components.platform.kubernetes import POD_SECURITY_ENFORCE_VERSION
    versions = {ns: {mode: obj["metadata"]["labels"].get(f"pod-security.kubernetes.io/{mode}-version")
                     for mode in ("enforce", "warn", "audit")}
                for ns, obj in outcomes[stack].namespaces.items()}
    assert versions == dict.fromkeys(versions, {"enforce": POD_SECURITY_ENFORCE_VERSION, "warn": None, "audit": None})


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


def test_the_api_server_is_the_release(release_cluster):
    assert release_cluster.version == release_version(release_cluster.release)


def test_every_rendered_kind_is_served(outcomes, release_cluster):
    """The kinds the API server cannot admit are exactly NOT_ADMITTED: a CRD-backed kind entering
    the render must be listed with its reason (or its CRD installed), and a stale entry fails."""
    rendered = {(o["apiVersion"], o["kind"]) for outcome in outcomes.values() for o in outcome.objects}
    unserved = set()
    for api_version, kind in rendered:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        status, body = release_cluster.request("GET", base, expect=(200, 404))
        if status == 404 or kind not in {r["kind"] for r in body["resources"]}:
            unserved.add(kind)
    assert unserved == set(NOT_ADMITTED)



def test_the_checks_can_fail(release_cluster, outcomes):
    """The same helpers see a rejection, a PodSecurity warning, a Pod the controller could not
    create, and an object that is written on every apply, in a namespace of their own."""
    cluster = release_cluster
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
