"""PodSecurity admission, as the admission controller's own code judges the rendered workloads
(scripts/pod-security-check over k8s.io/pod-security-admission): the stack's namespace enforces
"restricted" and every workload in it passes; only the host-access workloads live in the
privileged node namespace, and each of them needs it."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest

from components.platform.workload import HOST_ACCESS
from tests.conftest import require_tool

POD_KINDS = ("Namespace", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def judge(objects: list[dict]) -> list[dict]:
    proc = subprocess.run([require_tool("pod-security-check")], input=json.dumps(objects),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def pod_spec(obj: dict) -> dict:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]


def rendered(result) -> list[dict]:
    """Copies: the mutations below must not reach the session's shared renders."""
    return copy.deepcopy([o for o in result.kubernetes_objects() if o["kind"] in POD_KINDS])


@pytest.fixture(scope="module")
def verdicts(runs) -> dict:
    return {stack: (result, judge(rendered(result))) for stack, result in runs.items()}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stack_namespace_is_restricted_and_its_workloads_pass(verdicts, stack):
    result, found = verdicts[stack]
    namespace = result.outputs["namespace"]
    mine = [v for v in found if v["namespace"] == namespace]
    assert len(mine) > 10
    for v in mine:
        assert [v[mode]["level"] for mode in ("enforce", "warn", "audit")] == ["restricted"] * 3, v
        assert all(v[mode]["allowed"] for mode in ("enforce", "warn", "audit")), v


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_only_host_access_workloads_are_privileged(verdicts, stack):
    result, found = verdicts[stack]
    node_namespace = result.outputs["nodeNamespace"]
    assert node_namespace != result.outputs["namespace"]
    there = {v["name"]: v for v in found if v["namespace"] == node_namespace}
    host_access = {o["metadata"]["name"] for o in result.kubernetes_objects() if o["kind"] in POD_KINDS[1:]
                   and (pod_spec(o).get("hostNetwork") or any("hostPath" in v for v in pod_spec(o).get("volumes", [])))}
    assert set(there) == host_access == {"node-exporter", "filebeat"}
    for v in there.values():
        assert v["enforce"] == {**v["enforce"], "level": "privileged", "allowed": True}
        # Minimal: nothing there could run in the restricted namespace.
        assert judge([{"kind": "Namespace", "metadata": {"name": node_namespace, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted"}}},
            result.one("DaemonSet", v["name"])])[0]["enforce"]["allowed"] is False
    assert len(HOST_ACCESS) >= len(there)


def test_a_host_path_in_the_stack_namespace_is_refused(prod):
    """Mutation: Prometheus given a hostPath volume, and the namespace label set back to
    privileged: the first is refused, the second is seen."""
    objects = rendered(prod)
    prometheus = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "prometheus")
    prometheus["spec"]["template"]["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    verdict = next(v for v in judge(objects) if v["name"] == "prometheus")
    assert verdict["enforce"]["allowed"] is False
    assert any("hostPath" in reason for reason in verdict["enforce"]["reasons"])
    relaxed = rendered(prod)
    for o in relaxed:
        if o["kind"] == "Namespace" and o["metadata"]["name"] == prod.outputs["namespace"]:
            o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
    assert {v["enforce"]["level"] for v in judge(relaxed) if v["namespace"] == prod.outputs["namespace"]} == {
        "privileged"}


def test_node_namespace_setting(runs):
    from tests.conftest import run_on_kubernetes
    from components.settings import SettingsError

    assert runs["prod"].outputs["nodeNamespace"] == "monitoring-node"
    named = run_on_kubernetes("dev", {"nodeNamespace": "fm-nodes"})
    assert named.one("DaemonSet", "filebeat")["metadata"]["namespace"] == "fm-nodes"
    with pytest.raises(SettingsError, match="nodeNamespace = 'monitoring-dev' is not valid"):
        run_on_kubernetes("dev", {"nodeNamespace": "monitoring-dev"})
