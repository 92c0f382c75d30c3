"""Hardened defaults hold for every container of every stack; exceptions are the listed ones."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from components.platform.workload import HOST_ACCESS

# Schemas older than the supported releases (README: those the admission tests run), so that no
# field newer than this release enters the objects unnoticed.
SCHEMA_VERSION = "1.32.0"
EXACT_IMAGE = re.compile(r"^[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+(:v?\d+\.\d+\.\d+[A-Za-z0-9.-]*|@sha256:[a-f0-9]{64})$")
HOST_ACCESS_WORKLOADS = {"node-exporter", "filebeat"}
ROOT_WORKLOADS = {"filebeat"}  # HOST_ACCESS["log-collection"]: uid 0, still without capabilities


def pod_specs(result):
    for obj in result.kubernetes_objects():
        if obj["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
            yield obj, obj["spec"]["template"]["spec"]


def test_every_object_validates_against_kubernetes_schemas(runs):
    for stack, result in runs.items():
        objects = result.kubernetes_objects()
        assert len(objects) > 30
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{stack}: {obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_schema_validation_catches_a_broken_object(prod):
    broken = prod.one("StatefulSet", "prometheus")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, SCHEMA_VERSION, strict=True)


def test_every_container_is_hardened(runs):
    for result in runs.values():
        for obj, pod in pod_specs(result):
            name = obj["metadata"]["name"]
            if name in ROOT_WORKLOADS:
                assert pod["securityContext"]["runAsUser"] == 0 and pod["securityContext"]["runAsNonRoot"] is False
            else:
                assert pod["securityContext"]["runAsNonRoot"] is True
                assert isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for c in pod["containers"]:
                where = f"{name}/{c['name']}"
                assert EXACT_IMAGE.match(c["image"]), f"{where}: image {c['image']} is not an exact version"
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"] == {"drop": ["ALL"]}, where
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
                assert "privileged" not in sc, where
                res = c["resources"]
                assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"], where
                assert "livenessProbe" in c and "readinessProbe" in c, where
            labels = obj["spec"]["template"]["metadata"]["labels"]
            for key in ("name", "instance", "component", "part-of", "managed-by", "version"):
                assert labels[f"app.kubernetes.io/{key}"], f"{name}: label app.kubernetes.io/{key}"


def test_host_access_only_where_listed(runs):
    # container-metrics and docker-log-collection are for a Docker host (tests/test_docker_platform.py).
    assert set(HOST_ACCESS) == {"node-metrics", "container-metrics", "log-collection", "docker-log-collection"}
    assert all(a.reason for a in HOST_ACCESS.values())
    for result in runs.values():
        for obj, pod in pod_specs(result):
            uses_host = pod.get("hostNetwork") or pod.get("hostPID") or any("hostPath" in v for v in pod["volumes"])
            assert bool(uses_host) == (obj["metadata"]["name"] in HOST_ACCESS_WORKLOADS), obj["metadata"]["name"]


def test_stateful_pods_start_slowly_without_being_killed(prod):
    # WAL replay after a crash can take minutes; the startup probe allows 10.
    container = prod.one("StatefulSet", "prometheus")["spec"]["template"]["spec"]["containers"][0]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "web"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "web"}


def test_the_alerting_path_is_not_first_to_be_evicted_in_prod(prod):
    """The kubelet evicts, under node memory pressure, the pods using more memory than they request
    first, whatever their priority (pkg/kubelet/eviction/helpers.go: exceedMemoryRequests, then
    priority): Prometheus and Alertmanager request as much memory as their limit in prod."""
    checked = 0
    for name in ("prometheus", "alertmanager"):
        sts = prod.one("StatefulSet", name)
        [main] = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == name]
        resources = main["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"], (name, resources)
        checked += 1
    assert checked == 2
