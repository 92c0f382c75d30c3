"""Start the Go programs the stack deploys with exactly the command lines it generates.

For every container whose image is a program the tests build (scripts/install-test-tools.sh),
``pods()`` turns the offline run into ``Pod``s: the container's arguments and environment as
Kubernetes or Docker would hand them over, and its mounts (ConfigMap/Secret files, uploads,
empty directories, host paths). ``prepare()`` materialises the mounts under a throwaway root and
changes only what running on this machine needs:

- paths under a mount point into the same path under the root (arguments, environment, files);
- every address a program listens on (flags, and the listeners of the config file named on the
  command line) to 127.0.0.1 on a free port, and a listen flag the command line leaves at a
  wildcard default is added with such an address;
- every address a program connects to (peers, databases, Elasticsearch, the Kubernetes API, the
  sibling container's reload URL) to 127.0.0.1: the pod's own rewritten port for a loopback
  address of a sibling, a stand-in server for Elasticsearch and the Kubernetes API, else a port
  nobody listens on;
- placeholder PEMs of the offline run into one real throwaway certificate and key, so that TLS
  settings are loaded for real instead of failing on the placeholder.

Every other argument stays as generated. ``run_together()`` starts a batch of programs (``batches()``:
two at a time at most), and ``verdict()`` decides: a flag or config error in the output fails; a program still
running after START_WAIT seconds (and, where the program logs one, after its "config loaded"
line) passes, as does a one-shot program that exits 0 or fails the way its expectation says.
A running program must also serve the path of every HTTP probe the platform makes against it
(Kubernetes httpGet probes, the URL of a Docker healthcheck), on the port the probe names: a 404
there restarts the container forever (liveness) or keeps it out of its Service (readiness).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Callable, Iterable, Optional

import yaml

from components.settings.images import DEFAULT_IMAGES
from tests.loopback_http import LoopbackServer
from tests.ports import free_port

# Image key -> the built program its image runs (its entrypoint).
BUILT = {
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
    "nodeExporter": "node_exporter",
    "kubeStateMetrics": "kube-state-metrics",
    "blackboxExporter": "blackbox_exporter",
    "postgresExporter": "postgres_exporter",
    "redisExporter": "redis_exporter",
    "configReloader": "prometheus-config-reloader",
    "elasticsearchExporter": "elasticsearch_exporter",
    "jaeger": "jaeger",
    "jaegerIndexCleaner": "es-index-cleaner",
    "otelCollector": "otelcol",
    "thanos": "thanos",
}
# Programs of this repository that containers run, by the last part of their image's repository: the
# demo workload (components/demo.py builds its image on a Docker host, demo.image names it elsewhere)
# is started here as its image starts it, `python -m demo` with the container's arguments.
# The service level report (components/report/job.py) likewise, `python -m components.report`.
OWN_PROGRAMS = {"football-monitoring-demo": "demo", "football-monitoring-report": "report"}
OWN_ENTRYPOINTS = {"demo": ["-m", "demo"], "report": ["-m", "components.report"]}

# Image key -> why its command line is not started here.
NOT_COVERED = {
    "grafana": "not built: Grafana is AGPL-licensed, and the tests build no Grafana",
    "dingtalkRelay": "not built: prometheus-webhook-dingtalk is not among the tools the tests build",
    "cadvisor": "not built: cAdvisor is not among the tools the tests build (needs cgroups/Docker to start)",
    "elasticsearch": "not a Go program: Elasticsearch (Java, Elastic License)",
    "kibana": "not a Go program: Kibana (Node.js, Elastic License)",
    "logstash": "not a Go program: Logstash (JRuby, Elastic License)",
    "filebeat": "not built: the Filebeat image is Elastic-licensed; the tests build no Beats",
    "logstashExporter": "not built: logstash-exporter is not among the tools the tests build",
    "beatExporter": "not built: beat-exporter is not among the tools the tests build",
    "curl": "not a Go program: the curl image runs a shell script",
}

# Image key -> {the path of each HTTP probe the stack points at it: where the pinned release serves
# it}. These programs are not started here, so each path is held against the upstream source.
SERVED_PATHS = {
    "grafana": {"/api/health": "grafana/grafana v12.4 pkg/api/http_server.go: apiHealthHandler answers "
                               "GET/HEAD /api/health"},
    "kibana": {"/login": "elastic/kibana 8.19 security plugin server/routes/views/login.ts: httpResources "
                         "path '/login', authentication optional (an anonymous GET gets the login page)"},
    "logstash": {"/": "elastic/logstash 8.19 logstash-core/lib/logstash/api/modules/root.rb: get \"/\" "
                      "(node info on the monitoring API)"},
    "filebeat": {"/": "elastic/beats 8.19 libbeat/api/routes.go: NewWithDefaultRoutes registers \"/\" "
                      "(the beat's info) on the HTTP endpoint"},
    "beatExporter": {"/": "trustpilot/beat-exporter 0.4.0 main.go: http.HandleFunc(\"/\", IndexHandler(...))"},
    "logstashExporter": {"/healthcheck": "kuskoman/logstash-exporter v1.9.1 server/server.go: "
                                         "mux.HandleFunc(\"/healthcheck\", ...); there is no /health (its README "
                                         "said so until kuskoman/logstash-exporter#452)"},
    "dingtalkRelay": {"/-/healthy": "timonwong/prometheus-webhook-dingtalk v2.1.0 web/web.go: "
                                    "router.Get(\"/-/healthy\")",
                      "/-/ready": "timonwong/prometheus-webhook-dingtalk v2.1.0 web/web.go: router.Get(\"/-/ready\")"},
    "cadvisor": {"/healthz": "google/cadvisor v0.60.3 cmd/internal/http/handlers.go: healthz.RegisterHandler, "
                             "healthz/healthz.go: \"/healthz\""},
}

# (image key, path) of the served paths whose answer asks another process: a liveness probe there
# restarts a healthy container whenever that process is slow or down (readiness may use them).
ASKS_ANOTHER_PROCESS = {
    ("logstashExporter", "/healthcheck"): "kuskoman/logstash-exporter v1.9.1 server/healthcheck.go: GETs "
                                          "LOGSTASH_URL and answers 500 unless Logstash answers 200",
}

# Warnings a program prints at every start in its image too, which are not a rejected command line.
BENIGN = {
    # --config.file defaults to postgres_exporter.yml in the working directory, an optional file
    # (auth modules) that the image does not ship either: the exporter warns and goes on.
    "postgres_exporter": re.compile(r'msg="Error loading config" err="error opening config file '
                                    r'\\"postgres_exporter.yml\\": open postgres_exporter.yml: no such file'),
}

START_WAIT = 3.0  # seconds a long-running program must stay up
READY_WAIT = 25.0  # upper bound for its "config loaded" line on a busy machine
ONE_SHOT_WAIT = 60.0
STOP_WAIT = 10.0

# What a program prints when it rejects its command line (kingpin, Go's flag, cobra/pflag) or its
# config file; matched case-insensitively.
FLAG_ERRORS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"error: unknown (long|short) flag", r"error: required (flag|argument)", r"error: expected (argument|command)",
    r"error: unexpected ", r": error: .*try --help", r"flag provided but not defined",
    r"\bunknown (shorthand )?flag\b", r'invalid argument ".*" for ".*" flag', r"error parsing (command ?line|flags)",
    r"wrong number of arguments", r"could not parse NUM_OF_DAYS",
))
CONFIG_ERRORS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"error loading config", r"couldn't load configuration", r"loading configuration file failed",
    r"failed to get config", r"cannot unmarshal", r"invalid configuration", r"error loading tls config",
    r"failed to load tls config", r"failed to parse cert", r"failed to load CA",
))

# The line a long-running program logs once its config file is loaded (parsed and applied):
# without it, "still running" could mean "still loading".
READY_LINES = {
    "prometheus": "Completed loading of configuration file",
    # Alertmanager loads its file before it listens and logs nothing for that first load.
    "alertmanager": "Listening on",
    "blackbox_exporter": "Loaded config file",
    "otelcol": "Everything is ready",
    "jaeger": "Everything is ready",
    "demo": "demo listening on",
    # The report on a Docker host: its schedule parsed, it waits for the first time.
    "report": "next report at",
}

# Flags whose value is an address the program listens on ("port" ones take only a port).
LISTEN_FLAGS = {"--web.listen-address", "--cluster.listen-address", "--listen-address",
                "--http-address", "--grpc-address"}  # the last two: Thanos' components
LISTEN_PORT_FLAGS = {"kube-state-metrics": {"--port", "--telemetry-port"}}
LISTEN_HOST_FLAGS = {"kube-state-metrics": {"--host", "--telemetry-host"}}
# Flags whose address the program only announces, never dials or binds: kept as generated.
ADVERTISED_FLAGS = {"--web.external-url", "--cluster.advertise-address"}
# Listen and connect flags a command line may leave out, with the program's default (the pinned
# releases' --help): added so that the default wildcard or 127.0.0.1:9090 becomes this pod's own.
DEFAULTS = {
    "prometheus": {"--web.listen-address": "0.0.0.0:9090"},
    "alertmanager": {"--web.listen-address": ":9093", "--cluster.listen-address": "0.0.0.0:9094"},
    "node_exporter": {"--web.listen-address": ":9100"},
    "blackbox_exporter": {"--web.listen-address": ":9115"},
    "postgres_exporter": {"--web.listen-address": ":9187"},
    "redis_exporter": {"--web.listen-address": "0.0.0.0:9121"},
    "elasticsearch_exporter": {"--web.listen-address": ":9114"},
    "kube-state-metrics": {"--host": "::", "--port": "8080", "--telemetry-host": "::", "--telemetry-port": "8081"},
    # --runtimeinfo-url is read only with --reload-method=signal; pinned here all the same, so that a
    # change of method cannot make the reloader poll whatever listens on this machine's 9090.
    "prometheus-config-reloader": {"--reload-url": "http://127.0.0.1:9090/-/reload",
                                   "--runtimeinfo-url": "http://127.0.0.1:9090/api/v1/status/runtimeinfo"},
}
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
PLACEHOLDER_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\n(?:placeholder-[^\n]*|generated-secret-placeholder)\n"
                             r"-----END \1-----\n?")

_HOST = r"(?:\[[0-9a-fA-F:]*\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
URL = re.compile(rf"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<user>[^@/\s]*@)?(?P<host>{_HOST})(?::(?P<port>\d+))?"
                 r"(?P<rest>[/?#].*)?$")
HOST_PORT = re.compile(rf"^(?P<host>{_HOST}|0\.0\.0\.0|)?:(?P<port>\d+)$")
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}
ENV_POD_IP = re.compile(r"\$\{(?:env:)?POD_IP\}")


_ANY_URL = re.compile(rf"[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?(?P<host>{_HOST})")
_ANY_HOST_PORT = re.compile(rf"(?<![\w.:/@-])(?P<host>{_HOST}):\d+\b")


def _plausible_host(host: str) -> bool:
    """A host name or IP, not the hour of a "09:00" or a number."""
    return (host in WILDCARD_HOSTS or host.startswith("[") or bool(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", host))
            or (bool(re.search(r"[A-Za-z]", host)) and not host.startswith("-")))


def is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host in ("[::1]", "::1")


# --------------------------------------------------------------------------- what the stack runs

@dataclass
class Volume:
    """What a mount point holds: files (name -> content), an empty directory, or a host path."""
    files: dict[str, str] = field(default_factory=dict)
    host_path: Optional[str] = None
    read_only: bool = False


@dataclass(frozen=True)
class Probe:
    """An HTTP check the platform makes against the container: a Kubernetes httpGet probe or the
    URL a Docker healthcheck fetches."""
    kind: str  # livenessProbe, readinessProbe, startupProbe or healthcheck
    port: int
    path: str
    scheme: str = "HTTP"


@dataclass
class Container:
    where: str  # e.g. "prod StatefulSet/prometheus container config-reloader"
    name: str
    image: str
    tool: Optional[str]  # None: not covered (see NOT_COVERED)
    command: Optional[list[str]]
    args: list[str]
    env: dict[str, str]
    mounts: dict[str, Volume]  # container path -> volume
    one_shot: bool = False
    # For a one-shot program that cannot succeed here: the output that shows it got past its
    # command line (e.g. a connection refused by the loopback stand-in).
    expect_failure: Optional[str] = None
    probes: list[Probe] = field(default_factory=list)


@dataclass
class Pod:
    """Containers that share one network namespace (a pod; a Docker container and its sidecars)."""
    where: str
    pod_name: str
    pod_ip: str
    containers: list[Container]

    def fingerprint(self) -> str:
        data = [(c.tool, c.command, c.args, sorted(c.env.items()),
                 sorted((p, v.files, v.host_path, v.read_only) for p, v in c.mounts.items()),
                 c.one_shot, c.expect_failure, c.probes) for c in self.containers]
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def image_key(image: str) -> Optional[str]:
    repository = image.rsplit(":", 1)[0]
    for key, pinned in DEFAULT_IMAGES.items():
        if pinned.rsplit(":", 1)[0] == repository:
            return key
    return None


def tool_of(where: str, image: str) -> Optional[str]:
    """The built program an image runs, None for an image listed in NOT_COVERED; anything else
    (an image nobody classified, or a built one at another tag than the tools) is an error."""
    own = OWN_PROGRAMS.get(image.rsplit(":", 1)[0].rsplit("/", 1)[-1])
    if own:
        return own
    key = image_key(image)
    if key is None:
        raise LookupError(f"{where}: image {image} is neither built for the tests (BUILT) nor listed in NOT_COVERED")
    if key in NOT_COVERED:
        return None
    if image != DEFAULT_IMAGES[key]:
        raise LookupError(f"{where}: runs {image}, the tools are built at {DEFAULT_IMAGES[key]}")
    return BUILT[key]


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def _data_of(obj: dict) -> dict[str, str]:
    files = dict(obj.get("stringData") or {}) if obj["kind"] == "Secret" else {}
    for key, value in (obj.get("data") or {}).items():
        files[key] = base64.b64decode(value).decode() if obj["kind"] == "Secret" else value
    for key, value in (obj.get("binaryData") or {}).items():
        files[key] = base64.b64decode(value).decode(errors="replace")
    return files


def _source_files(result, where: str, source: dict, kind: str, name: str) -> dict[str, str]:
    found = result.find(kind, name)
    if not found:
        if source.get("optional"):
            return {}
        raise LookupError(f"{where}: {kind} {name} is not declared by the stack")
    files = _data_of(found[0])
    if source.get("items"):
        files = {item["path"]: files[item["key"]] for item in source["items"]}
    return files


def _volume(result, where: str, spec: dict, claims: set[str], name: str, namespace: str) -> Volume:
    if name in claims:
        return Volume()
    volume = next((v for v in spec.get("volumes", []) if v["name"] == name), None)
    if volume is None:
        raise LookupError(f"{where}: volume {name} is mounted but not declared")
    if "configMap" in volume:
        return Volume(_source_files(result, where, volume["configMap"], "ConfigMap", volume["configMap"]["name"]))
    if "secret" in volume:
        return Volume(_source_files(result, where, volume["secret"], "Secret", volume["secret"]["secretName"]))
    if "projected" in volume:
        files: dict[str, str] = {}
        for source in volume["projected"]["sources"]:
            if "configMap" in source:
                files.update(_source_files(result, where, source["configMap"], "ConfigMap", source["configMap"]["name"]))
            elif "secret" in source:
                files.update(_source_files(result, where, source["secret"], "Secret", source["secret"]["name"]))
            elif "serviceAccountToken" in source:
                files[source["serviceAccountToken"]["path"]] = "placeholder-service-account-token"
            elif "downwardAPI" in source:
                for item in source["downwardAPI"]["items"]:
                    files[item["path"]] = namespace if "namespace" in json.dumps(item) else "placeholder"
        return Volume(files)
    if "emptyDir" in volume or "persistentVolumeClaim" in volume or "ephemeral" in volume:
        return Volume()
    if "hostPath" in volume:
        return Volume(host_path=volume["hostPath"]["path"])
    raise LookupError(f"{where}: volume {name} has a kind this check does not materialise: {sorted(volume)}")


def _field(path: str, pod_name: str, pod_ip: str, namespace: str) -> str:
    return {"metadata.name": pod_name, "metadata.namespace": namespace, "status.podIP": pod_ip,
            "status.hostIP": "127.0.0.1", "spec.nodeName": "node-0",
            "spec.serviceAccountName": "default"}.get(path, f"placeholder-{path}")


def _env(result, where: str, c: dict, pod_name: str, pod_ip: str, namespace: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        prefix = source.get("prefix", "")
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        env.update({prefix + k: v for k, v in _source_files(result, where, ref, kind, ref["name"]).items()})
    for item in c.get("env", []):
        if "value" in item or "valueFrom" not in item:
            env[item["name"]] = _expand(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[item["name"]] = _field(source["fieldRef"]["fieldPath"], pod_name, pod_ip, namespace)
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
            files = _source_files(result, where, ref, kind, ref["name"])
            if ref["key"] in files:
                env[item["name"]] = files[ref["key"]]
            elif not ref.get("optional"):
                raise LookupError(f"{where}: {kind} {ref['name']} has no key {ref['key']} for ${item['name']}")
        elif "resourceFieldRef" in source:
            env[item["name"]] = "1"
        else:
            raise LookupError(f"{where}: env {item['name']} comes from {sorted(source)}")
    return env


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values: defined variables only, $$ escapes."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")
# The URL a Docker healthcheck command fetches from the container itself (wget or curl).
HEALTHCHECK_URL = re.compile(r"^(?P<scheme>https?)://(?:127\.0\.0\.1|localhost):(?P<port>\d+)(?P<path>/[^\s]*)?$")


def kubernetes_probes(where: str, c: dict) -> list[Probe]:
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
    probes = []
    for kind in PROBE_KINDS:
        get = (c.get(kind) or {}).get("httpGet")
        if not get:
            continue
        port = get["port"]
        if isinstance(port, str):
            if port not in ports:
                raise LookupError(f"{where}: {kind} names port {port!r}, which the container does not declare")
            port = ports[port]
        probes.append(Probe(kind, int(port), get.get("path", "/"), get.get("scheme", "HTTP")))
    return probes


def docker_probes(healthcheck: Optional[dict]) -> list[Probe]:
    urls = [m for a in (healthcheck or {}).get("tests") or [] if (m := HEALTHCHECK_URL.match(a))]
    return [Probe("healthcheck", int(m.group("port")), m.group("path") or "/", m.group("scheme").upper())
            for m in urls]


def kubernetes_pods(result, label: str) -> tuple[list[Pod], list[Container]]:
    """(pods with a built program, containers not covered) of a Kubernetes run."""
    pods, skipped = [], []
    ips = iter(f"127.0.{n // 250}.{n % 250 + 2}" for n in range(10_000))
    for obj in result.kubernetes_objects():
        if obj["kind"] not in WORKLOADS:
            continue
        meta = obj["metadata"]
        template = (obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"])["template"]
        spec = template["spec"]
        namespace = meta.get("namespace", "default")
        pod_name = f"{meta['name']}-0"
        pod_ip = next(ips)
        claims = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        one_shot = obj["kind"] in ("Job", "CronJob")
        init, main = [], []
        for section, bucket in (("initContainers", init), ("containers", main)):
            for c in spec.get(section, []):
                where = f"{label} {obj['kind']}/{meta['name']} {section[:-1]} {c['name']}"
                env = _env(result, where, c, pod_name, pod_ip, namespace)
                mounts = {}
                for m in c.get("volumeMounts", []):
                    volume = _volume(result, where, spec, claims, m["name"], namespace)
                    if m.get("subPath"):
                        if volume.host_path or m["subPath"] not in volume.files:
                            raise LookupError(f"{where}: subPath {m['subPath']} of {m['name']} is not a file")
                        volume = Volume({"": volume.files[m["subPath"]]})
                    mounts[m["mountPath"]] = replace(volume, read_only=bool(m.get("readOnly")))
                if spec.get("automountServiceAccountToken", True) and SERVICE_ACCOUNT_DIR not in mounts:
                    mounts[SERVICE_ACCOUNT_DIR] = Volume({"token": "placeholder-service-account-token",
                                                          "ca.crt": placeholder_certificate("kubernetes-ca"),
                                                          "namespace": namespace}, read_only=True)
                container = Container(
                    where=where, name=c["name"], image=c["image"], tool=tool_of(where, c["image"]),
                    command=[_expand(a, env) for a in c["command"]] if c.get("command") else None,
                    args=[_expand(a, env) for a in c.get("args") or []], env=env, mounts=mounts,
                    one_shot=one_shot or section == "initContainers", probes=kubernetes_probes(where, c))
                (bucket if container.tool else skipped).append(container)
        # Init containers run to completion before the pod's containers start: each is its own step.
        for c in init:
            pods.append(Pod(c.where, pod_name, pod_ip, [c]))
        if main:
            pods.append(Pod(f"{label} {obj['kind']}/{meta['name']}", pod_name, pod_ip, main))
    return pods, skipped


def docker_pods(result, label: str) -> tuple[list[Pod], list[Container]]:
    """(pods with a built program, containers not covered) of a Docker run: a container and the
    sidecars in its network namespace form one pod."""
    images = {r.name.removesuffix("-image"): r.inputs["name"] for r in result.resources
              if r.type == "docker:index/remoteImage:RemoteImage"}
    # Images the program builds from the repository: the container names the built image itself.
    built = {r.inputs["imageName"] for r in result.resources if r.type == "docker:index/image:Image"}
    images.update({r.name: r.inputs["image"] for r in result.containers() if r.inputs.get("image") in built})
    ids = {f"container:{r.name}-id": r.name for r in result.containers()}  # offline.mock_id
    groups: dict[str, list[Container]] = {}
    skipped = []
    for r in result.containers():
        i = r.inputs
        where = f"{label} docker container {r.name}"
        if r.name not in images:
            raise LookupError(f"{where}: no image resource {r.name}-image")
        env = dict(e.split("=", 1) for e in i.get("envs") or [])
        mounts: dict[str, Volume] = {}
        for v in i.get("volumes") or []:
            mounts[v["containerPath"]] = Volume(read_only=bool(v.get("readOnly")))
        for path in i.get("tmpfs") or {}:
            mounts[path] = Volume()
        for m in i.get("mounts") or []:
            mounts[m["target"]] = Volume(host_path=m["source"] if m["type"] == "bind" else None,
                                         read_only=bool(m.get("readOnly")))
        for upload in i.get("uploads") or []:
            directory = max((p for p in mounts if upload["file"].startswith(p.rstrip("/") + "/")), key=len,
                            default=None)
            if directory is None:
                raise LookupError(f"{where}: upload {upload['file']} lies in no volume")
            mounts[directory].files[upload["file"][len(directory.rstrip("/")) + 1:]] = upload["content"]
        container = Container(
            where=where, name=r.name, image=images[r.name], tool=tool_of(where, images[r.name]),
            command=list(i["entrypoints"]) if i.get("entrypoints") else None, args=list(i.get("command") or []),
            env=env, mounts=mounts, one_shot=i.get("restart") == "on-failure",
            probes=docker_probes(i.get("healthcheck")))
        if not container.tool:
            skipped.append(container)
            continue
        owner = ids.get(i.get("networkMode", ""), r.name)
        groups.setdefault(owner, []).append(container)
    ips = iter(f"127.1.{n // 250}.{n % 250 + 2}" for n in range(10_000))
    pods = [Pod(f"{label} docker {owner}", f"fm-{result.stack}-{owner}", next(ips), containers)
            for owner, containers in sorted(groups.items())]
    return pods, skipped


def pods(result, label: str) -> tuple[list[Pod], list[Container]]:
    pods_, skipped = (docker_pods if result.containers() else kubernetes_pods)(result, label)
    for pod in pods_:
        for c in pod.containers:
            if c.tool == "es-index-cleaner":
                # A one-shot that needs Elasticsearch: pointed at a closed loopback port, it must
                # fail dialling that port, i.e. after its arguments were accepted.
                c.expect_failure = "dial tcp {closed}: connect: connection refused"
            if c.tool == "report" and c.one_shot:
                # The CronJob's run, pointed at a closed port: its arguments taken, it finds Prometheus gone.
                c.expect_failure = "Prometheus at http://{closed} is unreachable"
    return pods_, skipped


# --------------------------------------------------------------------------- stand-ins

def placeholder_certificate(name: str) -> str:
    return f"-----BEGIN CERTIFICATE-----\nplaceholder-{name}\n-----END CERTIFICATE-----\n"


@dataclass
class Credentials:
    """One throwaway certificate (for 127.0.0.1, its own CA) and its key."""
    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, openssl: str) -> "Credentials":
        cert, key = directory / "test.crt", directory / "test.key"
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                        "-subj", "/CN=football-monitoring-test", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:TRUE"],
                       check=True, capture_output=True, timeout=60)
        return cls(cert, key)

    def swap_placeholders(self, content: str) -> str:
        def real(match: re.Match) -> str:
            if match.group(1) == "CERTIFICATE":
                return self.cert.read_text()
            if match.group(1).endswith("PRIVATE KEY"):
                return self.key.read_text()
            return match.group(0)
        return PLACEHOLDER_PEM.sub(real, content)


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, dict] = {}
    headers_always: dict[str, str] = {}

    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))  # type: ignore[attr-defined]
        payload = self.routes.get(self.path.split("?")[0], {"acknowledged": True})
        data = json.dumps(payload).encode()
        self.send_response(200)
        for key, value in {"Content-Type": "application/json", **self.headers_always}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's names)
        self._answer(True)

    def do_HEAD(self):  # noqa: N802
        self._answer(False)

    do_PUT = do_POST = do_DELETE = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


class StandIn:
    """A loopback HTTP(S) server answering a few fixed JSON routes (200 {"acknowledged": true}
    for anything else): enough for a client's start-up checks, nothing more."""

    def __init__(self, routes: dict[str, dict], headers: Optional[dict[str, str]] = None,
                 credentials: Optional[Credentials] = None):
        handler = type("Handler", (_Handler,), {"routes": routes, "headers_always": headers or {}})
        self.loopback = LoopbackServer(handler, tls=(credentials.cert, credentials.key) if credentials else None)
        self.server, self.scheme = self.loopback.server, self.loopback.scheme
        self.server.requests = []  # type: ignore[attr-defined]

    @property
    def address(self) -> str:
        return self.loopback.address

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.server.requests  # type: ignore[attr-defined]

    def close(self) -> None:
        self.loopback.close()
        self.loopback.thread.join(timeout=5)


def elasticsearch_stand_in(credentials: Credentials) -> StandIn:
    info = {"name": "stand-in", "cluster_name": "stand-in", "cluster_uuid": "stand-in",
            "version": {"number": "8.19.21", "build_flavor": "default", "lucene_version": "9.12.2",
                        "minimum_wire_compatibility_version": "7.17.0",
                        "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "You Know, for Search"}
    # Elasticsearch's clients refuse a server without the product header.
    return StandIn({"/": info}, {"X-Elastic-Product": "Elasticsearch"}, credentials)


def kubernetes_stand_in() -> StandIn:
    version = {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}
    return StandIn({"/version": version})


class _EmptyBucket(BaseHTTPRequestHandler):
    """An S3 bucket with nothing in it: listings are empty, objects are missing, writes succeed."""

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        bucket = self.path.split("?")[0].strip("/").split("/")[0]
        if "list-type=2" in self.path:
            self._reply(200, (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns='
                              f'"http://s3.amazonaws.com/doc/2006-03-01/"><Name>{bucket}</Name><Prefix></Prefix>'
                              '<KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>'
                              '</ListBucketResult>').encode())
        else:
            self._reply(404, b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code></Error>')

    do_HEAD = do_GET  # noqa: N815

    def do_PUT(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply(200)

    def log_message(self, *args):
        pass


class BucketStandIn:
    """A loopback S3 endpoint (plain HTTP) for the Thanos components whose gRPC opens only after
    their first listing of the bucket (the store gateway)."""

    def __init__(self):
        self.loopback = LoopbackServer(_EmptyBucket)

    @property
    def address(self) -> str:
        return self.loopback.address

    def close(self) -> None:
        self.loopback.close()
        self.loopback.thread.join(timeout=5)


@dataclass
class Environment:
    """What every prepared pod can use: the throwaway credentials and the stand-in servers."""
    credentials: Credentials
    elasticsearch: StandIn
    kubernetes: StandIn
    bucket: Optional[BucketStandIn] = None


# --------------------------------------------------------------------------- rewriting

@dataclass
class Started:
    """One container ready to start: its argv, environment and what it was changed in."""
    container: Container
    argv: list[str]
    env: dict[str, str]
    root: Path
    listens: list[str] = field(default_factory=list)  # "127.0.0.1:port" it must be listening on
    changes: list[str] = field(default_factory=list)
    expect_failure: Optional[str] = None  # Container.expect_failure with this pod's addresses
    # (probe, URL here); the URL is None when the probe's port is none the program listens on.
    probes: list[tuple[Probe, Optional[str]]] = field(default_factory=list)


class Rewriter:
    """The changes of one pod: its mount points under one root, its listeners' ports."""

    def __init__(self, pod: Pod, root: Path, environment: Environment):
        self.pod, self.root, self.environment = pod, root, environment
        self.ports: dict[int, int] = {}  # the pod's port as generated -> its port here
        self.closed = free_port()  # dialled addresses with nothing behind them point here
        self.listens: dict[str, list[str]] = {}  # container -> "127.0.0.1:port" it listens on
        self.current = ""  # the container whose flags and config are being rewritten

    # paths
    def path_pattern(self, container: Container) -> Optional[re.Pattern]:
        points = sorted((p.rstrip("/") for p in container.mounts if p.rstrip("/")), key=len, reverse=True)
        if not points:
            return None
        return re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(p) for p in points) + r")(?=/|$|[^\w.\-])")

    def paths(self, text: str, pattern: Optional[re.Pattern]) -> str:
        return pattern.sub(lambda m: str(self.root) + m.group(1), text) if pattern else text

    # addresses
    def listen(self, port: int) -> str:
        if port not in self.ports:
            self.ports[port] = free_port(udp=True)  # Alertmanager's gossip port takes both
        address = f"127.0.0.1:{self.ports[port]}"
        if address not in self.listens.setdefault(self.current, []):
            self.listens[self.current].append(address)
        return address

    def dial(self, host: str, port: Optional[int], *, stand_ins: bool) -> str:
        """Where a connection to host:port goes here."""
        if is_loopback(host) and port in self.ports:
            return f"127.0.0.1:{self.ports[port]}"
        if stand_ins and port == 9200 and host.split(".")[0].startswith("elasticsearch"):
            return self.environment.elasticsearch.address
        return f"127.0.0.1:{self.closed}"

    def address(self, value: str, *, listening: bool, stand_ins: bool = True) -> Optional[str]:
        """value rewritten if it is an address (host:port, or a URL), else None."""
        value_ip = ENV_POD_IP.sub(self.pod.pod_ip, value)
        match = HOST_PORT.match(value_ip)
        if match and _plausible_host(match.group("host") or "") and int(match.group("port")) < 65536:
            host, port = match.group("host") or "", int(match.group("port"))
            if listening or host in WILDCARD_HOSTS or host == self.pod.pod_ip:
                return self.listen(port)
            return self.dial(host, port, stand_ins=stand_ins)
        match = URL.match(value_ip)
        if match and _plausible_host(match.group("host")):
            port = int(match.group("port")) if match.group("port") else None
            target = (self.listen(port or 80) if listening
                      else self.dial(match.group("host"), port, stand_ins=stand_ins))
            return f"{match.group('scheme')}://{match.group('user') or ''}{target}{match.group('rest') or ''}"
        return None

    # config files named on the command line
    def config(self, document, *, stand_ins: bool):
        """Listeners and dialled addresses of a YAML config, everything else as generated."""
        if isinstance(document, dict):
            out = {k: self.config(v, stand_ins=stand_ins) for k, v in document.items()}
            if out.get("host") in WILDCARD_HOSTS and isinstance(out.get("port"), int):
                out["host"], out["port"] = "127.0.0.1", int(self.listen(out["port"]).rsplit(":", 1)[1])
            return out
        if isinstance(document, list):
            return [self.config(v, stand_ins=stand_ins) for v in document]
        if isinstance(document, str):
            rewritten = self.address(document, listening=False, stand_ins=stand_ins)
            return document if rewritten is None else rewritten
        return document


def _split(arg: str) -> tuple[Optional[str], str]:
    if arg.startswith("-") and "=" in arg:
        flag, value = arg.split("=", 1)
        return "--" + flag.lstrip("-"), value
    return None, arg


def prepare(pod: Pod, root: Path, environment: Environment) -> list[Started]:
    """Materialise the pod's mounts under root and rewrite each container's command line."""
    rewriter = Rewriter(pod, root, environment)
    root.mkdir(parents=True, exist_ok=True)
    plans = []
    # Listen flags first (defaults included), so that a sibling's loopback URL finds the pod's new port.
    for c in pod.containers:
        args = list(c.args)
        changes = []
        present = {_split(a)[0] or ("--" + a.lstrip("-") if a.startswith("-") else "") for a in args}
        spaced = [a for a in args if "=" not in a and "--" + a.lstrip("-") in
                  LISTEN_FLAGS | LISTEN_PORT_FLAGS.get(c.tool, set()) | LISTEN_HOST_FLAGS.get(c.tool, set())]
        if spaced:
            raise ValueError(f"{c.where}: {spaced} take their value as the next argument; this check rewrites "
                             "listen addresses only in the --flag=value form the stack generates")
        for flag, default in DEFAULTS.get(c.tool, {}).items():
            if flag not in present:
                args.append(f"{flag}={default}")
                changes.append(f"added {flag}={default} (the default) to rewrite it")
        plans.append((c, args, changes))
    for c, args, changes in plans:
        rewriter.current = c.name
        for i, arg in enumerate(args):
            flag, value = _split(arg)
            if flag in LISTEN_FLAGS and value:
                args[i] = f"{flag}={rewriter.address(value, listening=True)}"
            elif flag in LISTEN_PORT_FLAGS.get(c.tool, ()):
                args[i] = f"{flag}={rewriter.listen(int(value)).rsplit(':', 1)[1]}"
            elif flag in LISTEN_HOST_FLAGS.get(c.tool, ()):
                args[i] = f"{flag}=127.0.0.1"
    started = []
    stand_ins = not any(c.expect_failure for c in pod.containers)
    for c, args, changes in plans:
        rewriter.current = c.name
        pattern = rewriter.path_pattern(c)
        for path, volume in c.mounts.items():
            target = root / path.lstrip("/")
            if volume.host_path and volume.read_only and volume.host_path.rstrip("/"):
                # Read-only host paths (node-exporter's /proc and /sys) are read where they are. The
                # host's root stays an empty directory: nothing that walks this throwaway tree (a
                # cleanup, a search) may lead into the machine's own files.
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists() and not target.is_symlink():
                    target.symlink_to(volume.host_path)
                continue
            target.mkdir(parents=True, exist_ok=True)
        for i, arg in enumerate(args):
            flag, value = _split(arg)
            if flag in LISTEN_FLAGS or flag in LISTEN_PORT_FLAGS.get(c.tool, ()) \
                    or flag in LISTEN_HOST_FLAGS.get(c.tool, ()) or flag in ADVERTISED_FLAGS:
                continue
            rewritten = rewriter.address(value, listening=False, stand_ins=stand_ins)
            new = (f"{arg[:len(arg) - len(value)]}{rewritten}" if rewritten is not None
                   else rewriter.paths(arg, pattern))
            if new != arg:
                args[i] = new
        env = {}
        for key, value in c.env.items():
            rewritten = rewriter.address(value, listening=False, stand_ins=stand_ins)
            env[key] = rewritten if rewritten is not None else rewriter.paths(value, pattern)
        config_paths = {_split(a)[1] for a in c.args} | set(c.args)
        for path, volume in c.mounts.items():
            for name, content in volume.files.items():
                container_path = f"{path.rstrip('/')}/{name}" if name else path
                target = root / container_path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                named = container_path in config_paths
                if target.exists() and not named:
                    continue  # a sibling mounting the same volume wrote it, maybe as its config
                text = rewriter.paths(environment.credentials.swap_placeholders(content), pattern)
                if named:
                    document = yaml.safe_load(text)
                    if isinstance(document, dict):
                        document = rewriter.config(document, stand_ins=stand_ins)
                        if c.tool == "thanos" and document.get("type") == "S3" and environment.bucket:
                            # The bucket's service is outside this machine: its endpoint becomes the
                            # loopback stand-in, over plain HTTP (the stand-in has no certificate).
                            document["config"].update(endpoint=environment.bucket.address, insecure=True)
                            changes.append(f"{container_path}: the S3 endpoint is the loopback stand-in bucket")
                        problems = unrewritten_in(document)
                        if problems:
                            raise ValueError(f"{c.where}: {container_path} names addresses this check does not "
                                             f"know how to keep on loopback: {problems}")
                        text = yaml.safe_dump(document, sort_keys=False)
                target.write_text(text)
        if c.tool == "kube-state-metrics" and not any(_split(a)[0] in ("--kubeconfig", "--apiserver") for a in args):
            # In a cluster the service account's in-cluster config (a fixed path) reaches the API;
            # here a kubeconfig names the stand-in API server.
            kubeconfig = root / "stand-in-kubeconfig.yaml"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
                "clusters": [{"name": "stand-in", "cluster": {"server": f"http://{environment.kubernetes.address}"}}],
                "users": [{"name": "stand-in", "user": {"token": "placeholder-service-account-token"}}],
                "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}]}))
            args.append(f"--kubeconfig={kubeconfig}")
            changes.append("added --kubeconfig for the stand-in API server (in a cluster: the service account)")
        tmp = root / "tmp"
        tmp.mkdir(exist_ok=True)
        process_env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "TMPDIR": str(tmp), **env}
        command = c.command
        if command:
            raise ValueError(f"{c.where}: a command ({shlex.join(command)}) replaces the image's entrypoint; "
                             "this check starts the entrypoint program with the container's args only")
        problems = unrewritten(args, env)
        if problems:
            raise ValueError(f"{c.where}: addresses this check does not know how to keep on loopback: {problems}")
        expect = c.expect_failure and c.expect_failure.format(closed=f"127.0.0.1:{rewriter.closed}")
        probes = [(probe, f"{probe.scheme.lower()}://127.0.0.1:{rewriter.ports[probe.port]}{probe.path}"
                   if probe.port in rewriter.ports else None) for probe in c.probes]
        started.append(Started(c, args, process_env, root, changes=changes, expect_failure=expect, probes=probes))
    for s in started:
        s.listens = rewriter.listens.get(s.container.name, [])
    return started


def _foreign(text: str) -> list[str]:
    """Addresses anywhere in text whose host is not loopback."""
    hosts = [m.group("host") for m in _ANY_URL.finditer(text)] + [m.group("host") for m in _ANY_HOST_PORT.finditer(text)]
    return [h for h in hosts if _plausible_host(h) and not is_loopback(h) and h not in WILDCARD_HOSTS]


def unrewritten(args: list[str], env: dict[str, str]) -> list[str]:
    """Arguments and environment values that still name a non-loopback address."""
    values = [a for a in args if _split(a)[0] not in ADVERTISED_FLAGS] + [f"${k}={v}" for k, v in env.items()]
    return [v for v in values if _foreign(_split(v)[1] if v.startswith("-") else v)]


def unrewritten_in(document) -> list[str]:
    if isinstance(document, dict):
        return [p for v in document.values() for p in unrewritten_in(v)]
    if isinstance(document, list):
        return [p for v in document for p in unrewritten_in(v)]
    return [document] if isinstance(document, str) and _foreign(document) else []


# --------------------------------------------------------------------------- running

@dataclass
class Outcome:
    started: Started
    returncode: Optional[int]  # None: still running when stopped
    output: str
    seconds: float
    listening: dict[str, bool] = field(default_factory=dict)
    probed: dict[str, str] = field(default_factory=dict)  # "kind GET path" -> the answer
    problem: Optional[str] = None

    @property
    def passed(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        state = "still running" if self.returncode is None else f"exited {self.returncode}"
        lines = [f"{self.started.container.where} ({self.started.container.tool}): {state} after {self.seconds:.1f}s",
                 f"  argv: {shlex.join(self.started.argv)}"]
        lines += [f"  changed: {change}" for change in self.started.changes]
        lines += [f"  probed: {key} -> {answer}" for key, answer in self.probed.items()]
        if self.problem:
            lines.append(f"  problem: {self.problem}")
            lines += ["  | " + line for line in self.output.strip().splitlines()[-15:]]
        return "\n".join(lines)


# Answers that show the path is not one the program serves (or not over HTTP at that port). Any
# other answer means the route exists: a 503 is the program's own verdict on its health here, on
# loopback with stand-ins, which is not what this check is about.
NOT_SERVED = (404, 405, 501)


def probe(url: str) -> str:
    """What a kubelet's httpGet (or a healthcheck's wget) gets: redirects followed, the final status."""
    request = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.33", "Accept": "*/*"})
    context = ssl._create_unverified_context() if url.startswith("https:") else None  # kubelet does not verify
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return str(answer.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except (OSError, http.client.HTTPException) as error:
        return f"no HTTP answer ({error})"


def probe_problems(started: Started, probed: dict[str, str]) -> list[str]:
    problems = []
    for p, url in started.probes:
        key = f"{p.kind} {p.scheme} GET :{p.port}{p.path}"
        if url is None:
            problems.append(f"{key}: the program listens on no port {p.port}")
        elif not probed.get(key, "").isdigit() or int(probed[key]) in NOT_SERVED:
            problems.append(f"{key}: {probed.get(key, 'not requested')}")
    return problems


def verdict(started: Started, returncode: Optional[int], output: str, listening: dict[str, bool],
            probed: Optional[dict[str, str]] = None) -> Optional[str]:
    """None when the program accepted its command line and config, else what went wrong."""
    benign = BENIGN.get(started.container.tool)
    lines = [line for line in output.splitlines() if not (benign and benign.search(line))]
    for kind, patterns in (("command line", FLAG_ERRORS), ("config", CONFIG_ERRORS)):
        for pattern in patterns:
            line = next((line.strip() for line in lines if pattern.search(line)), None)
            if line is not None:
                return f"{kind} rejected: {line[:500]}"
    c = started.container
    if c.one_shot:
        if returncode is None:
            return f"one-shot program still running after {ONE_SHOT_WAIT}s"
        if returncode == 0:
            return None
        if started.expect_failure and started.expect_failure in output:
            return None
        return f"exited {returncode}" + (f" without {started.expect_failure!r}" if started.expect_failure else "")
    if returncode is not None:
        return f"exited {returncode} within {START_WAIT}s"
    ready = READY_LINES.get(c.tool)
    if ready and ready not in output:
        return f"still running, but never logged {ready!r} (its config loaded) within {READY_WAIT}s"
    silent = [a for a, up in listening.items() if not up]
    if silent:
        return f"not listening on {', '.join(silent)}, which its command line or config names"
    unserved = probe_problems(started, probed or {})
    if unserved:
        return "a probe's path is not served: " + "; ".join(unserved)
    return None


_LOG_NUMBERS = itertools.count()


class _Process:
    def __init__(self, started: Started, binary: str, log: Path):
        self.started, self.log = started, log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen([binary, *started.argv], cwd=started.root, env=started.env,
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self.began = time.monotonic()
        self.ended: Optional[float] = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM to its own process group, SIGKILL after STOP_WAIT."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=STOP_WAIT)


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
        return True
    return False


def run_together(batch: list[Started], binary: Callable[[str], str], logs: Path) -> list[Outcome]:
    """Start the batch, wait (bounded) for each to settle, stop all of them whatever happens."""
    processes: list[_Process] = []
    try:
        for s in batch:
            program = own_program(s.container.tool) or binary(s.container.tool)
            processes.append(_Process(s, program, logs / f"{next(_LOG_NUMBERS)}-{s.container.name}.log"))
        began = time.monotonic()

        def settled(p: _Process) -> bool:
            elapsed = time.monotonic() - began
            if p.popen.poll() is not None:
                p.ended = p.ended or time.monotonic()
                return True
            if p.started.container.one_shot:
                return elapsed >= ONE_SHOT_WAIT
            if elapsed >= READY_WAIT:
                return True
            ready = READY_LINES.get(p.started.container.tool)
            # On a busy machine a program may need longer than START_WAIT to open its ports.
            return (elapsed >= START_WAIT and (not ready or ready in p.output())
                    and all(_listening(a) for a in p.started.listens))

        while not all(settled(p) for p in processes):
            time.sleep(0.2)
        outcomes = []
        for p in processes:
            returncode = p.popen.poll()
            listening = {a: _listening(a) for a in p.started.listens} if returncode is None else {}
            probed = {f"{pr.kind} {pr.scheme} GET :{pr.port}{pr.path}": probe(url)
                      for pr, url in p.started.probes if url and returncode is None}
            outcomes.append(Outcome(p.started, returncode, "", (p.ended or time.monotonic()) - p.began, listening,
                                    probed))
    finally:
        for p in processes:
            p.stop()
    for outcome, p in zip(outcomes, processes):
        outcome.output = p.output()
        outcome.problem = verdict(outcome.started, outcome.returncode, outcome.output, outcome.listening,
                                  outcome.probed)
    return outcomes


_LAUNCHERS: dict[str, str] = {}


def own_program(tool: Optional[str]) -> Optional[str]:
    """An executable that starts one of this repository's programs as its image does (None for a
    built tool): this interpreter, the repository on its path, and the container's arguments."""
    if tool not in OWN_ENTRYPOINTS:
        return None
    if tool not in _LAUNCHERS:
        import sys
        import tempfile

        root = Path(__file__).resolve().parent.parent
        path = Path(tempfile.mkdtemp(prefix=f"fm-{tool}-")) / tool
        path.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(root))} exec {shlex.quote(sys.executable)} "
                        f"{shlex.join(OWN_ENTRYPOINTS[tool])} \"$@\"\n")
        path.chmod(0o755)
        _LAUNCHERS[tool] = str(path)
    return _LAUNCHERS[tool]


def batches(pods: Iterable[list[Started]], at_once: int = 2) -> list[list[Started]]:
    """Pods in groups of at most ``at_once`` programs; a pod's containers always start together."""
    out: list[list[Started]] = []
    for pod in pods:
        if out and len(out[-1]) + len(pod) <= at_once:
            out[-1].extend(pod)
        else:
            out.append(list(pod))
    return out
