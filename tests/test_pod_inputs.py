"""What pods read from ConfigMaps and Secrets, over every generated stack.

- A pod that reads an object only at start must roll when its content changes: its template
  carries a checksum of that object (a keyed hash for Secrets, never the value). The objects are
  found from the rendered pod templates (volumes, projected sources, env and envFrom references),
  not from the services' descriptions, so a reference the platform forgets is found too.
- Every ConfigMap and Secret fits what the API server and kubectl's client-side apply accept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

import pytest

from components.configs.alertmanager import CREDENTIALS_DIR
from components.configs.grafana import DASHBOARDS_DIR
from components.platform.kubernetes import CHECKSUM_PREFIX
from tests import command_lines
from tests.conftest import EVERY_PART
from tests.test_stack import SENTINELS
from tools import offline

# Mounts whose program notices a change by itself (without a config-reloader sidecar), with the
# upstream source that shows it, by (image, mount path).
READ_AGAIN_BY_THE_PROGRAM = {
    ("grafana", DASHBOARDS_DIR): (
        "grafana/grafana v12.4 pkg/services/provisioning/dashboards/file_reader.go: pollChanges walks the "
        "provider's path every updateIntervalSeconds and saves changed dashboards"),
    ("alertmanager", CREDENTIALS_DIR): (
        "prometheus/alertmanager v0.35.0 notify/webhook/webhook.go, notify/slack/slack.go, notify/email/email.go: "
        "url_file, api_url_file and auth_password_file are read with os.ReadFile in every Notify"),
}
# Kinds whose pods start anew for every run, so they read current content each time.
STARTS_EVERY_RUN = {"CronJob"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
# The key of the Secret checksums under the offline runner (a pulumi-random password there).
CHECKSUM_KEY = offline.GENERATED_SECRET


@dataclass(frozen=True)
class Input:
    kind: str  # ConfigMap or Secret
    name: str
    how: str  # where the pod reads it


def template_of(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def workloads(result) -> list[dict]:
    return [o for o in result.kubernetes_objects() if o["kind"] in WORKLOAD_KINDS]


def watched_by_a_reloader(pod: dict, volume: str) -> bool:
    """A config-reloader sidecar mounts this volume and watches the directory."""
    for container in pod["containers"]:
        if command_lines.image_key(container["image"]) != "configReloader":
            continue
        watched = {a.split("=", 1)[1] for a in container.get("args", []) if a.startswith("--watched-dir=")}
        if any(m["name"] == volume and m["mountPath"] in watched for m in container.get("volumeMounts", [])):
            return True
    return False


def start_only_inputs(obj: dict) -> list[Input]:
    """Every ConfigMap or Secret a pod of this workload reads only when a container starts."""
    pod = template_of(obj)["spec"]
    containers = pod["containers"] + pod.get("initContainers", [])
    sources: dict[str, list[tuple[str, str]]] = {}
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            sources[volume["name"]] = [("ConfigMap", volume["configMap"]["name"])]
        elif "secret" in volume:
            sources[volume["name"]] = [("Secret", volume["secret"]["secretName"])]
        elif "projected" in volume:
            sources[volume["name"]] = [("ConfigMap", s["configMap"]["name"]) if "configMap" in s
                                       else ("Secret", s["secret"]["name"])
                                       for s in volume["projected"]["sources"] if "configMap" in s or "secret" in s]
    found = []
    for container in containers:
        key = command_lines.image_key(container["image"])
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in sources or watched_by_a_reloader(pod, mount["name"]):
                continue
            if (key, mount["mountPath"]) in READ_AGAIN_BY_THE_PROGRAM:
                continue
            found += [Input(kind, name, f"{container['name']} mounts it at {mount['mountPath']}")
                      for kind, name in sources[mount["name"]]]
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if field in ref:
                    found.append(Input(kind, ref[field]["name"], f"{container['name']}'s ${env['name']}"))
        for env_from in container.get("envFrom", []):
            for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if field in env_from:
                    found.append(Input(kind, env_from[field]["name"], f"{container['name']}'s environment"))
    return list(dict.fromkeys(found))


def content_digest(obj: dict) -> str:
    """The checksum the pods must carry for this object: sha256 of a ConfigMap's data, an HMAC
    under the stack's checksum key of a Secret's data."""
    if obj["kind"] == "ConfigMap":
        return hashlib.sha256(json.dumps(obj.get("data") or {}, sort_keys=True).encode()).hexdigest()
    data = obj.get("stringData") or obj.get("data") or {}
    return hmac.new(CHECKSUM_KEY.encode(), json.dumps(data, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def missing_rollouts(result) -> list[str]:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in result.kubernetes_objects()}
    problems = []
    for obj in workloads(result):
        if obj["kind"] in STARTS_EVERY_RUN:
            continue
        annotations = template_of(obj)["metadata"].get("annotations") or {}
        where = f"{result.stack}: {obj['kind']} {obj['metadata']['name']}"
        for read in start_only_inputs(obj):
            target = objects.get((read.kind, read.name))
            if target is None:
                problems.append(f"{where}: {read.how}, {read.kind} {read.name}, which the stack does not make")
                continue
            value = annotations.get(f"{CHECKSUM_PREFIX}/{read.name}")
            if value is None:
                problems.append(f"{where}: {read.how} ({read.kind} {read.name}), read only at start, and no "
                                f"checksum of it rolls the pods")
            elif value != content_digest(target):
                problems.append(f"{where}: the checksum of {read.kind} {read.name} is not of its content")
    return problems


def test_every_input_read_only_at_start_rolls_the_pods(every_stack):
    for result in every_stack.values():
        assert not missing_rollouts(result), "\n".join(missing_rollouts(result))
    # The check sees the Secrets of the issue: relay config, Grafana's logs password, exporters' connection strings.
    prod = every_stack["prod"]
    seen = {(o["metadata"]["name"], i.name) for o in workloads(prod) for i in start_only_inputs(o)}
    assert {("dingtalk-relay", "dingtalk-relay-config"), ("grafana", "grafana-admin"),
            ("postgres-exporter", "postgres-exporter-env"), ("redis-exporter", "redis-exporter-env"),
            ("jaeger-collector", "elasticsearch-exporter-ca")} <= seen


def test_the_secret_checksums_are_secret(every_part):
    """A checksum of Secret content is itself a secret Output: state and previews mask it."""
    for resource in every_part.resources:
        if resource.type.startswith("kubernetes:") and resource.kind in WORKLOAD_KINDS:
            annotations = template_of(offline.kubernetes_object(resource))["metadata"].get("annotations") or {}
            if any(key.startswith(CHECKSUM_PREFIX) for key in annotations) and any(
                    read.kind == "Secret" for read in start_only_inputs(offline.kubernetes_object(resource))):
                assert "spec" in resource.secret_inputs, resource.name


@pytest.fixture(scope="module")
def every_part_new_secrets() -> offline.RunResult:
    """The same stack after every secret setting got a new value."""
    config, secret_keys = offline.stack_config("prod", EVERY_PART)
    for key, value in SENTINELS.items():
        config[f"football-monitoring:{key}"] = value
    return offline.run("prod", config=config, secret_keys=secret_keys)


def test_a_changed_secret_rolls_every_pod_that_reads_it_at_start(every_part, every_part_new_secrets):
    before = {(o["kind"], o["metadata"]["name"]): o for o in every_part.kubernetes_objects()}
    changed = {name for (kind, name), o in before.items() if kind == "Secret"
               and o != every_part_new_secrets.one("Secret", name)}
    assert {"dingtalk-relay-config", "postgres-exporter-env", "redis-exporter-env"} <= changed
    rolled = set()
    for obj in workloads(every_part):
        if obj["kind"] in STARTS_EVERY_RUN:
            continue
        reads = {i.name for i in start_only_inputs(obj) if i.kind == "Secret"} & changed
        if not reads:
            continue
        after = every_part_new_secrets.one(obj["kind"], obj["metadata"]["name"])
        assert template_of(after)["metadata"]["annotations"] != template_of(obj)["metadata"]["annotations"], \
            f"{obj['kind']} {obj['metadata']['name']} reads {sorted(reads)} at start and does not roll"
        rolled.add(obj["metadata"]["name"])
    assert {"dingtalk-relay", "postgres-exporter", "redis-exporter"} <= rolled


# --------------------------------------------------------------------------- object sizes

# The API server refuses a ConfigMap or Secret whose data exceeds 1 MiB (MaxSecretSize in
# k8s.io/kubernetes pkg/apis/core/validation; ConfigMaps share the bound). kubectl's client-side
# apply copies the whole object into its kubectl.kubernetes.io/last-applied-configuration annotation,
# and all annotations of an object are limited to 256 KiB together (TotalAnnotationSizeLimitB in
# k8s.io/apimachinery pkg/api/validation/objectmeta.go).
DATA_LIMIT = 1024 * 1024
ANNOTATIONS_LIMIT = 256 * 1024


def size_problems(result) -> list[str]:
    problems = []
    for obj in result.kubernetes_objects():
        if obj["kind"] not in ("ConfigMap", "Secret"):
            continue
        data = {**(obj.get("data") or {}), **(obj.get("stringData") or {}), **(obj.get("binaryData") or {})}
        data_bytes = sum(len(k.encode()) + len(str(v).encode()) for k, v in data.items())
        # What kubectl writes into the annotation: the manifest as compact JSON.
        applied = len(json.dumps(obj, separators=(",", ":")).encode())
        annotations = sum(len(k) + len(v) for k, v in (obj["metadata"].get("annotations") or {}).items())
        name = f"{result.stack}: {obj['kind']} {obj['metadata']['name']}"
        if data_bytes > DATA_LIMIT:
            problems.append(f"{name} holds {data_bytes} bytes, over the API server's {DATA_LIMIT}")
        if applied + annotations > ANNOTATIONS_LIMIT:
            problems.append(f"{name}: its last-applied-configuration would be {applied} bytes, over the "
                            f"{ANNOTATIONS_LIMIT} bytes all annotations of an object may hold")
    return problems


def test_every_configmap_and_secret_fits_client_side_apply(every_stack):
    for result in every_stack.values():
        assert not size_problems(result), "\n".join(size_problems(result))


def test_the_dashboards_reach_grafana_through_one_directory(every_stack):
    """One ConfigMap per dashboard, all projected into the directory the provider reads (the
    Thanos dashboard only where Thanos runs)."""
    from components import data
    for result in every_stack.values():
        expected = data.dashboards()
        if not result.find("Deployment", "thanos-query"):
            del expected[data.THANOS_DASHBOARD]
        grafana = result.one("StatefulSet", "grafana")["spec"]["template"]["spec"]
        mount = next(m for m in grafana["containers"][0]["volumeMounts"] if m["mountPath"] == DASHBOARDS_DIR)
        volume = next(v for v in grafana["volumes"] if v["name"] == mount["name"])
        files: dict[str, str] = {}
        for source in volume["projected"]["sources"]:
            part = result.one("ConfigMap", source["configMap"]["name"])["data"]
            assert not files.keys() & part.keys()
            files.update(part)
        assert files == expected, result.stack
