"""Typed, validated settings for one stack.

Every per-environment knob is declared once in ``SCHEMA`` with its default and
its parser. ``load_settings`` reads the stack's configuration, rejects unknown
keys and bad values with one message that lists every problem (key, value,
what is allowed), and only then returns a frozen ``Settings`` object. Nothing
is declared in Pulumi before this has succeeded, so bad input can never leave
a half-applied stack.

Secrets (receiver URLs, database DSNs) are never parsed into plain values:
they stay ``pulumi.Output`` objects marked secret.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import pulumi

from components.settings.images import DEFAULT_IMAGES

PROJECT = "football-monitoring"



class SettingsError(pulumi.RunError):
    """Raised before any resource exists; Pulumi prints it without a traceback."""


class _Invalid(Exception):
    def __init__(self, allowed: str):
        super().__init__(allowed)
        self.allowed = allowed


# ---------------------------------------------------------------------------
# Value parsers: each takes the raw value and returns the typed value, or
# raises _Invalid with a description of what is allowed.

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration string such as ``1d12h`` or ``30s``."""
    match = _DURATION_RE.match(text)
    if not text or not match:
        raise ValueError(text)
    return sum(int(g) * unit for g, unit in zip(match.groups(), _DURATION_UNITS) if g)


def _duration(minimum: float = 1, maximum: float = 10 * 365 * 86400) -> Callable[[Any], str]:
    allowed = "a Prometheus duration such as 30s, 5m, 36h or 15d"

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(allowed)
        try:
            seconds = duration_seconds(value)
        except ValueError:
            raise _Invalid(allowed) from None
        if not minimum <= seconds <= maximum:
            raise _Invalid(f"{allowed}, between {_human_seconds(minimum)} and {_human_seconds(maximum)}")
        return value

    return parse


def _human_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"


_PROM_SIZE_RE = re.compile(r"^(\d+)(B|KB|MB|GB|TB|PB)$")
_PROM_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}


def prometheus_size_bytes(text: str) -> int:
    match = _PROM_SIZE_RE.match(text)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * _PROM_SIZE_UNITS[match.group(2)]


def _prometheus_size(value: Any) -> str:
    allowed = "a size in Prometheus units such as 500MB, 40GB or 2TB (B, KB, MB, GB, TB, PB)"
    if not isinstance(value, str) or not _PROM_SIZE_RE.match(value) or prometheus_size_bytes(value) == 0:
        raise _Invalid(allowed)
    return value


_QUANTITY_RE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_QUANTITY_UNITS = {
    None: 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
}


def quantity_bytes(text: str) -> float:
    match = _QUANTITY_RE.match(text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _QUANTITY_UNITS[match.group(2)]


def _storage(value: Any) -> str:
    allowed = "a Kubernetes storage quantity with a unit, such as 512Mi, 20Gi or 1Ti"
    if not isinstance(value, str):
        raise _Invalid(allowed)
    match = _QUANTITY_RE.match(value)
    if not match or match.group(2) is None or quantity_bytes(value) < 2**20:
        raise _Invalid(allowed)
    return value


def _memory(value: Any) -> str:
    allowed = "a Kubernetes memory quantity such as 64Mi, 512Mi or 2Gi"
    if not isinstance(value, str):
        raise _Invalid(allowed)
    match = _QUANTITY_RE.match(value)
    if not match or match.group(2) is None or quantity_bytes(value) < 4 * 2**20:
        raise _Invalid(allowed)
    return value


_CPU_RE = re.compile(r"^(?:[1-9]\d*m|\d+(?:\.\d{1,3})?)$")


def cpu_millicores(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def _cpu(value: Any) -> str:
    allowed = "a Kubernetes CPU quantity such as 50m, 500m or 2"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _CPU_RE.match(value) or cpu_millicores(value) <= 0:
        raise _Invalid(allowed)
    return value


def _integer(minimum: int, maximum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        allowed = f"a whole number from {minimum} to {maximum}"
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise _Invalid(allowed)
        return value

    return parse


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Invalid("true or false")


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise _Invalid("one of " + ", ".join(choices))
        return value

    return parse


_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _dns_label(value: Any) -> str:
    if not isinstance(value, str) or not _DNS_LABEL_RE.match(value):
        raise _Invalid("a DNS label: lower-case letters, digits and '-', at most 63 characters, "
                       "starting and ending with a letter or digit")
    return value


_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")


def _optional_hostname(value: Any) -> Optional[str]:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _HOSTNAME_RE.match(value):
        raise _Invalid("a lower-case DNS host name such as grafana.example.org, or empty")
    return value


_ES_CRON_RE = re.compile(r"^[0-9*?/,LW#A-Za-z-]+( [0-9*?/,LW#A-Za-z-]+){5,6}$")


def _es_cron(value: Any) -> str:
    if not isinstance(value, str) or not _ES_CRON_RE.match(value.strip()):
        raise _Invalid("an Elasticsearch cron expression with seconds first, such as '0 30 1 * * ?' (01:30 every day)")
    return value.strip()


_ENDPOINT_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:\d{1,5})?$")


def _optional_endpoint(value: Any) -> Optional[str]:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _ENDPOINT_RE.match(value):
        raise _Invalid("a host or host:port of an S3-compatible service, such as minio.storage.svc:9000, or empty (AWS S3)")
    return value


def _optional_text(value: Any) -> Optional[str]:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise _Invalid("a string")
    return value


_IMAGE_RE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _image(value: Any) -> str:
    allowed = ("an image reference with registry, repository and an exact version tag or digest, "
               "such as quay.io/prometheus/prometheus:v3.5.0 (not 'latest')")
    if not isinstance(value, str):
        raise _Invalid(allowed)
    match = _IMAGE_RE.match(value)
    if not match or not (match.group("tag") or match.group("digest")) or match.group("tag") in ("latest", "main", "master"):
        raise _Invalid(allowed)
    if "." not in value.split("/")[0] and ":" not in value.split("/")[0]:
        raise _Invalid(allowed)
    return value


TEAMS = ("platform", "backend", "data", "security")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SLACK_CHANNEL_RE = re.compile(r"^[#@][a-z0-9._-]{1,80}$")


def _teams(value: Any) -> dict:
    allowed = ("an object of teams (" + ", ".join(TEAMS) + ") each with optional slackChannel "
               "(#channel) and email (address)")
    if not isinstance(value, dict) or set(value) - set(TEAMS):
        raise _Invalid(allowed)
    result = {}
    for team in TEAMS:
        contact = value.get(team) or {}
        if not isinstance(contact, dict) or set(contact) - {"slackChannel", "email"}:
            raise _Invalid(allowed)
        channel, email = contact.get("slackChannel"), contact.get("email")
        if channel is not None and (not isinstance(channel, str) or not _SLACK_CHANNEL_RE.match(channel)):
            raise _Invalid(allowed)
        if email is not None and (not isinstance(email, str) or not _EMAIL_RE.match(email)):
            raise _Invalid(allowed)
        result[team] = TeamContact(slack_channel=channel, email=email)
    return result


def _optional_email(value: Any) -> Optional[str]:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _EMAIL_RE.match(value):
        raise _Invalid("an e-mail address, or empty")
    return value


def _optional_hostport(value: Any) -> Optional[str]:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _HOSTPORT_RE.match(value):
        raise _Invalid("host:port such as smtp.example.org:587, or empty")
    return value


def _ipv4(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", value) \
            or any(int(part) > 255 for part in value.split(".")):
        raise _Invalid("an IPv4 address such as 127.0.0.1 (0.0.0.0 publishes on every interface)")
    return value


def _port_or_zero(value: Any) -> int:
    return _integer(0, 65535)(value)


def _percentage(value: Any) -> float:
    allowed = "a percentage above 0 and at most 100, such as 100, 10 or 0.5"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _Invalid(allowed) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise _Invalid(allowed)
    return value


def _static_targets(value: Any) -> tuple:
    allowed = "a list of {job, target} objects, job a DNS label, target host:port"
    if value in (None, ""):
        return ()
    if not isinstance(value, list):
        raise _Invalid(allowed)
    result = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"job", "target"}:
            raise _Invalid(allowed)
        if not isinstance(item["job"], str) or not _DNS_LABEL_RE.match(item["job"]):
            raise _Invalid(allowed)
        if not isinstance(item["target"], str) or not _HOSTPORT_RE.match(item["target"]):
            raise _Invalid(allowed)
        result.append(StaticTarget(job=item["job"], target=item["target"]))
    return tuple(result)


def _timings(group_wait: str, group_interval: str, repeat_interval: str, what: str) -> dict:
    return {
        "groupWait": Field(_duration(0, 3600), group_wait, f"how long Alertmanager gathers {what} alerts before the first notification"),
        "groupInterval": Field(_duration(1, 6 * 3600), group_interval, f"how often a changed {what} group is notified again"),
        "repeatInterval": Field(_duration(1, 7 * 86400), repeat_interval, f"how often a still-firing {what} group is repeated"),
    }


_URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[^\s]*)?$")
_HOSTPORT_RE = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$")


# ---------------------------------------------------------------------------
# Schema: nested mapping of setting name -> Field, or a nested section.


@dataclass(frozen=True)
class Field:
    parse: Callable[[Any], Any]
    default: Any
    doc: str


def _resources(cpu: str, memory: str, cpu_limit: Optional[str], memory_limit: str, what: str) -> dict:
    return {
        "requests": {
            "cpu": Field(_cpu, cpu, f"CPU request of {what}"),
            "memory": Field(_memory, memory, f"memory request of {what}"),
        },
        "limits": {
            # A CPU limit throttles scrapes and rule evaluation under bursts, so the
            # default leaves CPU unlimited and bounds only memory.
            "cpu": Field(lambda v: None if v in (None, "") else _cpu(v), cpu_limit,
                         f"CPU limit of {what} (empty: no CPU limit)"),
            "memory": Field(_memory, memory_limit, f"memory limit of {what}"),
        },
    }


def _probe_list(kind: str) -> Callable[[Any], tuple]:
    """Probe targets: a list of {name, target} objects."""

    if kind == "http":
        check, example = _URL_RE.match, "http://football-prediction-api.app.svc:8000/health"
    elif kind == "tcp":
        check, example = _HOSTPORT_RE.match, "postgres.app.svc:5432"
    else:
        check, example = _HOST_RE.match, "postgres.app.svc"
    allowed = f"a list of {{name, target}} objects, name a DNS label, target like {example}"

    def parse(value: Any) -> tuple:
        if value in (None, ""):
            return ()
        if not isinstance(value, list):
            raise _Invalid(allowed)
        seen = set()
        result = []
        for item in value:
            if not isinstance(item, dict) or set(item) != {"name", "target"}:
                raise _Invalid(allowed)
            name, target = item["name"], item["target"]
            if not isinstance(name, str) or not _DNS_LABEL_RE.match(name) or name in seen:
                raise _Invalid(allowed + " (names unique)")
            if not isinstance(target, str) or not check(target):
                raise _Invalid(allowed)
            seen.add(name)
            result.append(ProbeTarget(name=name, target=target))
        return tuple(result)

    return parse


SCHEMA: dict = {
    "environment": Field(_dns_label, None, "environment label on every series and alert (default: the stack name)"),
    "platform": Field(_choice("kubernetes", "docker"), "kubernetes",
                      "where the stack runs: a Kubernetes cluster, or a single Docker host"),
    "namespace": Field(_dns_label, "monitoring", "Kubernetes namespace the stack creates and deploys into"),
    "kubeContext": Field(_optional_text, None, "kubeconfig context to deploy to (empty: the current context)"),
    "storageClass": Field(_optional_text, None, "StorageClass of every volume (empty: the cluster default)"),
    "protectData": Field(_boolean, False,
                         "protect stateful resources from deletion and replacement (true in prod)"),
    "ingress": {
        "className": Field(_optional_text, None, "IngressClass of the UI ingresses"),
        "tlsSecretName": Field(_optional_text, None, "TLS Secret used by the UI ingresses (empty: plain HTTP)"),
        "clusterIssuer": Field(_optional_text, None, "cert-manager ClusterIssuer that issues tlsSecretName"),
        "grafanaHost": Field(_optional_hostname, None, "public host of Grafana (empty: no ingress)"),
        "prometheusHost": Field(_optional_hostname, None, "public host of Prometheus (empty: no ingress)"),
        "alertmanagerHost": Field(_optional_hostname, None, "public host of Alertmanager (empty: no ingress)"),
        "jaegerHost": Field(_optional_hostname, None, "public host of the Jaeger UI (empty: no ingress; needs authUrl)"),
        "controllerNamespace": Field(_dns_label, "ingress-nginx",
                                     "namespace of the ingress controller (network policies let it reach the UIs)"),
        "authUrl": Field(_optional_text, None, "external authentication URL (nginx auth-url, e.g. an oauth2-proxy "
                         "/oauth2/auth) required in front of Prometheus and Alertmanager, which have no login"),
        "authSignin": Field(_optional_text, None, "where unauthenticated users are sent (nginx auth-signin)"),
    },
    "prometheus": {
        "replicas": Field(_integer(1, 4), 1, "Prometheus replicas; 2 runs an HA pair scraping the same targets"),
        "retention": Field(_duration(3600, 5 * 365 * 86400), "15d", "how long samples are kept"),
        "retentionSize": Field(_prometheus_size, "8GB",
                               "size cap of the TSDB; must fit in 85% of storageSize"),
        "storageSize": Field(_storage, "10Gi", "size of each Prometheus volume"),
        "scrapeInterval": Field(_duration(1, 300), "30s", "default scrape interval"),
        "scrapeTimeout": Field(_duration(1, 300), "10s", "default scrape timeout (at most scrapeInterval)"),
        "evaluationInterval": Field(_duration(1, 300), "30s", "rule evaluation interval"),
        "kubeletInsecureSkipVerify": Field(
            _boolean, False,
            "skip TLS verification of kubelet serving certificates (only for clusters whose kubelet "
            "certificates are not signed by the cluster CA, such as kind)"),
        "resources": _resources("250m", "1Gi", None, "2Gi", "each Prometheus"),
    },
    "alertmanager": {
        "replicas": Field(_integer(1, 5), 1, "Alertmanager replicas; more than 1 forms one gossip cluster"),
        "retention": Field(_duration(3600, 365 * 86400), "120h", "how long silences and the notification log are kept"),
        "storageSize": Field(_storage, "1Gi", "size of each Alertmanager volume"),
        "resources": _resources("25m", "64Mi", None, "256Mi", "each Alertmanager"),
    },
    "grafana": {
        "adminUser": Field(_dns_label, "admin", "name of Grafana's admin user (its password is generated)"),
        "storageSize": Field(_storage, "2Gi", "size of Grafana's volume"),
        "resources": _resources("50m", "128Mi", None, "512Mi", "Grafana"),
    },
    "exporters": {
        "nodeExporter": {"resources": _resources("20m", "32Mi", None, "128Mi", "node-exporter")},
        "kubeStateMetrics": {"resources": _resources("20m", "64Mi", None, "256Mi", "kube-state-metrics")},
        "blackbox": {"resources": _resources("10m", "32Mi", None, "128Mi", "blackbox-exporter")},
        "postgres": {
            "enabled": Field(_boolean, True, "deploy postgres-exporter (needs the postgresDsn secret)"),
            "resources": _resources("10m", "32Mi", None, "128Mi", "postgres-exporter"),
        },
        "redis": {
            "enabled": Field(_boolean, True, "deploy redis-exporter (needs the redisUrl secret)"),
            "resources": _resources("10m", "32Mi", None, "128Mi", "redis-exporter"),
        },
    },
    "probes": {
        "http": Field(_probe_list("http"), [
            {"name": "api-health", "target": "http://football-prediction-api.football-prediction.svc:8000/health"},
        ], "HTTP targets probed with the http_2xx module"),
        "tcp": Field(_probe_list("tcp"), [
            {"name": "postgres", "target": "postgres.football-prediction.svc:5432"},
            {"name": "redis", "target": "redis.football-prediction.svc:6379"},
        ], "host:port targets probed with the tcp_connect module"),
        "icmp": Field(_probe_list("icmp"), [], "hosts probed with the icmp module"),
    },
    "docker": {
        "host": Field(_optional_text, None, "Docker daemon to deploy to, e.g. unix:///var/run/docker.sock or "
                      "ssh://user@host (empty: DOCKER_HOST or the local daemon)"),
        "bindAddress": Field(_ipv4, "127.0.0.1", "host address published UI ports listen on"),
        "grafanaPort": Field(_port_or_zero, 3000, "host port of Grafana (0: not published)"),
        "prometheusPort": Field(_port_or_zero, 9090, "host port of Prometheus (0: not published)"),
        "alertmanagerPort": Field(_port_or_zero, 9093, "host port of Alertmanager (0: not published)"),
        "jaegerPort": Field(_port_or_zero, 16686, "host port of the Jaeger UI when tracing is enabled (0: not published)"),
        "kibanaPort": Field(_port_or_zero, 5601, "host port of Kibana when logging is enabled (0: not published)"),
        "elasticsearchPort": Field(_port_or_zero, 9200,
                                   "host port of Elasticsearch's HTTPS API when logging is enabled, for "
                                   "tools.verify and operators (TLS and a password; 0: not published)"),
    },
    "staticTargets": Field(_static_targets, [], "extra scrape targets by address: a list of {job, target} "
                           "(host:port), e.g. the FootballPrediction API on a Docker host"),
    "alerting": {
        "quiet": Field(_boolean, False,
                       "only critical alerts reach people; warnings and info go to the default webhook alone (dev)"),
        "teams": Field(_teams, {}, "where each team hears about its alerts: {platform: {slackChannel, email}, ...}"),
        "slack": {"enabled": Field(_boolean, False, "notify teams' Slack channels (needs the slackApiUrl secret)")},
        "email": {
            "enabled": Field(_boolean, False, "notify teams by e-mail (needs smarthost and from)"),
            "smarthost": Field(_optional_hostport, None, "SMTP server host:port"),
            "from": Field(_optional_email, None, "sender address"),
            "username": Field(_optional_text, None, "SMTP user (its password is the smtpPassword secret)"),
            "requireTls": Field(_boolean, True, "require STARTTLS to the SMTP server"),
        },
        "dingtalk": {"enabled": Field(_boolean, False,
                                      "notify critical alerts to DingTalk through a relay (needs dingtalkWebhookUrl)")},
        "heartbeat": {"enabled": Field(_boolean, False,
                                       "send the always-firing Watchdog to an external dead man's switch (heartbeatUrl)")},
        "escalation": {"enabled": Field(_boolean, False,
                                        "also send every critical alert to an on-call paging webhook (escalationWebhookUrl)")},
        "critical": _timings("30s", "5m", "1h", "critical"),
        "warning": _timings("1m", "10m", "6h", "warning"),
        "info": _timings("5m", "30m", "24h", "info"),
    },
    "tracing": {
        "enabled": Field(_boolean, False, "deploy tracing: Jaeger v2 receiving OpenTelemetry (OTLP) spans, "
                         "a Jaeger datasource in Grafana (see docs/tracing.md)"),
        "storage": Field(_choice("memory", "badger", "elasticsearch"), "badger",
                         "where spans are kept: memory or badger (one all-in-one Jaeger), or elasticsearch "
                         "(the logging stack's; collectors and query scale separately)"),
        "retentionDays": Field(_integer(1, 90), 3, "days spans are kept (Badger TTL; Elasticsearch daily indices "
                               "older than this are deleted every night)"),
        "memoryMaxTraces": Field(_integer(1000, 1000000), 50000, "traces the memory store holds before dropping the oldest"),
        "storageSize": Field(_storage, "5Gi", "size of the Badger volume"),
        "indexPrefix": Field(_dns_label, "jaeger", "prefix of Jaeger's Elasticsearch indices"),
        "indexShards": Field(_integer(1, 20), 1, "primary shards of each daily Jaeger index"),
        "indexReplicas": Field(_integer(0, 3), 1, "replica shards of each daily Jaeger index"),
        "collector": {
            "replicas": Field(_integer(1, 10), 1, "Jaeger collectors behind the OTLP Service (more than 1 needs "
                              "storage elasticsearch)"),
            "resources": _resources("100m", "256Mi", None, "1Gi", "each Jaeger collector (or the all-in-one Jaeger)"),
        },
        "query": {"resources": _resources("50m", "128Mi", None, "512Mi", "Jaeger query (storage elasticsearch)")},
        "gateway": {
            "enabled": Field(_boolean, False, "put an OpenTelemetry Collector gateway (memory limiter, sampling, "
                             "batching) in front of Jaeger; Kubernetes only"),
            "replicas": Field(_integer(1, 10), 1, "gateway replicas (1 with tail sampling: a trace must reach one replica)"),
            "resources": _resources("100m", "256Mi", None, "1Gi", "each gateway"),
        },
        "sampling": {
            "mode": Field(_choice("probabilistic", "tail"), "probabilistic",
                          "probabilistic (by trace id) or tail (after the trace: every error and slow trace kept, "
                          "plus percentage of the rest)"),
            "percentage": Field(_percentage, 100, "share of traces kept, in percent (below 100 needs the gateway)"),
            "slowTraceThreshold": Field(_duration(0.001, 600), "2s", "tail sampling keeps every trace slower than this"),
        },
    },
    "logging": {
        "enabled": Field(_boolean, True,
                         "deploy the logging stack (Elasticsearch, Logstash, Kibana, Filebeat) on either platform; "
                         "its memory limits add up to about 3.6 GiB with the dev sizes"),
        "retentionDays": Field(_integer(1, 3650), 7,
                               "days a log index is kept after it rolled over (the lifecycle policy's delete phase)"),
        "elasticsearch": {
            "nodes": Field(_integer(1, 9), 1,
                           "Elasticsearch nodes, each master-eligible and data; 1 runs discovery.type single-node, "
                           "3 or more a cluster that survives the loss of one node (2 is refused)"),
            "storageSize": Field(_storage, "10Gi", "size of each Elasticsearch data volume"),
            "heapPercent": Field(_integer(25, 75), 50,
                                 "JVM heap as a share of the memory limit, in percent (Elastic: about half; the rest "
                                 "is filesystem cache)"),
            "resources": _resources("500m", "2Gi", None, "2Gi", "each Elasticsearch node"),
        },
        "logstash": {
            "replicas": Field(_integer(1, 5), 1, "Logstash replicas, each with its own persistent queue volume"),
            "storageSize": Field(_storage, "5Gi", "size of each Logstash persistent-queue volume (the queue may "
                                 "use 80% of it)"),
            "resources": _resources("250m", "1Gi", None, "1536Mi", "each Logstash"),
        },
        "kibana": {
            "host": Field(_optional_hostname, None, "public host of Kibana (empty: no ingress)"),
            "resources": _resources("100m", "1Gi", None, "1Gi", "Kibana"),
        },
        "filebeat": {"resources": _resources("50m", "128Mi", None, "384Mi", "each Filebeat (one per node)")},
        "exporters": {"resources": _resources("10m", "32Mi", None, "128Mi",
                                              "each logging metrics exporter (Elasticsearch, Logstash, Filebeat)")},
        "snapshot": {
            "enabled": Field(_boolean, False, "back up the log data streams with a snapshot lifecycle policy"),
            "type": Field(_choice("s3", "fs"), "s3",
                          "snapshot repository: s3 (AWS S3 or an S3-compatible service; needs the "
                          "loggingSnapshotAccessKey and loggingSnapshotSecretKey secrets) or fs (a shared "
                          "ReadWriteMany volume, claimName)"),
            "bucket": Field(_optional_text, None, "S3 bucket of the repository (type s3)"),
            "endpoint": Field(_optional_endpoint, None,
                              "host[:port] of an S3-compatible service (type s3; empty: AWS S3), reached over HTTPS"),
            "basePath": Field(_optional_text, "football-logs", "path inside the bucket (type s3)"),
            "claimName": Field(_optional_text, None,
                               "type fs: on Kubernetes an existing ReadWriteMany PersistentVolumeClaim mounted on every "
                               "node; on a Docker host the name of the volume the stack creates for the repository"),
            "schedule": Field(_es_cron, "0 30 1 * * ?", "when snapshots are taken (Elasticsearch cron, UTC)"),
            "retentionDays": Field(_integer(1, 3650), 30, "days a snapshot is kept (at least 5 are always kept)"),
        },
    },
    "images": {name: Field(_image, image, f"{name} image") for name, image in DEFAULT_IMAGES.items()},
}


def logging_enabled(values: dict) -> bool:
    return bool(values["logging"]["enabled"])


def _s3_snapshots(values: dict) -> bool:
    snapshot = values["logging"]["snapshot"]
    return logging_enabled(values) and snapshot["enabled"] and snapshot["type"] == "s3"



@dataclass(frozen=True)
class SecretSetting:
    doc: str
    placeholder: str  # a valid, obviously fake value for offline renders
    required_when: Callable[[dict], bool] = lambda values: True
    optional: bool = False  # read when set, never demanded


SECRETS: dict[str, SecretSetting] = {
    "alertmanagerWebhookUrl": SecretSetting(
        "URL of the webhook receiver that Alertmanager's default route notifies",
        "https://secret.invalid/alertmanagerWebhookUrl"),
    "postgresDsn": SecretSetting(
        "PostgreSQL connection string for postgres-exporter, e.g. "
        "postgresql://monitor:PASSWORD@postgres.app.svc:5432/football?sslmode=require",
        "postgresql://monitor:secret-placeholder@postgres.invalid:5432/postgres?sslmode=disable",
        lambda values: values["exporters"]["postgres"]["enabled"]),
    "redisUrl": SecretSetting(
        "Redis URL for redis-exporter, e.g. redis://:PASSWORD@redis.app.svc:6379",
        "redis://:secret-placeholder@redis.invalid:6379",
        lambda values: values["exporters"]["redis"]["enabled"]),
    "slackApiUrl": SecretSetting(
        "Slack incoming-webhook URL (mounted as a file, read through api_url_file)",
        "https://secret.invalid/slackApiUrl",
        lambda values: values["alerting"]["slack"]["enabled"]),
    "smtpPassword": SecretSetting(
        "password of alerting.email.username (mounted as a file, read through auth_password_file)",
        "smtp-password-placeholder",
        lambda values: values["alerting"]["email"]["enabled"] and bool(values["alerting"]["email"]["username"])),
    "dingtalkWebhookUrl": SecretSetting(
        "DingTalk robot URL with its access_token, held by the DingTalk relay",
        "https://secret.invalid/dingtalkWebhookUrl?access_token=placeholder",
        lambda values: values["alerting"]["dingtalk"]["enabled"]),
    "dingtalkSecret": SecretSetting(
        "DingTalk robot signing secret (when the robot has signing on)",
        "SECplaceholder",
        lambda values: values["alerting"]["dingtalk"]["enabled"], optional=True),
    "heartbeatUrl": SecretSetting(
        "dead man's switch URL that expects the Watchdog every few minutes",
        "https://secret.invalid/heartbeatUrl",
        lambda values: values["alerting"]["heartbeat"]["enabled"]),
    "escalationWebhookUrl": SecretSetting(
        "on-call paging webhook that receives every critical alert",
        "https://secret.invalid/escalationWebhookUrl",
        lambda values: values["alerting"]["escalation"]["enabled"]),
    "loggingSnapshotAccessKey": SecretSetting(
        "access key of the S3 snapshot repository (logging.snapshot.type s3), kept in the Elasticsearch keystore",
        "snapshot-access-key-placeholder", _s3_snapshots),
    "loggingSnapshotSecretKey": SecretSetting(
        "secret key of the S3 snapshot repository (logging.snapshot.type s3), kept in the Elasticsearch keystore",
        "snapshot-secret-key-placeholder", _s3_snapshots),
}


# ---------------------------------------------------------------------------
# Typed result.


@dataclass(frozen=True)
class StaticTarget:
    job: str
    target: str


@dataclass(frozen=True)
class DockerSettings:
    host: Optional[str]
    bind_address: str
    ports: Mapping[str, int]  # published host port per UI, 0 = not published

    def url(self, name: str, scheme: str = "http") -> Optional[str]:
        port = self.ports.get(name)
        if not port:
            return None
        host = "localhost" if self.bind_address in ("127.0.0.1", "0.0.0.0") else self.bind_address
        return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class TeamContact:
    slack_channel: Optional[str]
    email: Optional[str]


@dataclass(frozen=True)
class Timings:
    group_wait: str
    group_interval: str
    repeat_interval: str


@dataclass(frozen=True)
class EmailSettings:
    enabled: bool
    smarthost: Optional[str]
    sender: Optional[str]
    username: Optional[str]
    require_tls: bool


@dataclass(frozen=True)
class AlertingSettings:
    quiet: bool
    teams: Mapping[str, TeamContact]
    slack: bool
    email: EmailSettings
    dingtalk: bool
    heartbeat: bool
    escalation: bool
    timings: Mapping[str, Timings]  # by severity


@dataclass(frozen=True)
class ProbeTarget:
    name: str
    target: str


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: Optional[str]
    memory_limit: str

    @staticmethod
    def of(raw: Mapping) -> "Resources":
        return Resources(raw["requests"]["cpu"], raw["requests"]["memory"],
                         raw["limits"]["cpu"], raw["limits"]["memory"])

    def to_kubernetes(self) -> dict:
        limits = {"memory": self.memory_limit}
        if self.cpu_limit:
            limits["cpu"] = self.cpu_limit
        return {"requests": {"cpu": self.cpu_request, "memory": self.memory_request}, "limits": limits}


@dataclass(frozen=True)
class IngressSettings:
    class_name: Optional[str]
    tls_secret_name: Optional[str]
    cluster_issuer: Optional[str]
    hosts: Mapping[str, Optional[str]]  # component name -> host
    controller_namespace: str = "ingress-nginx"
    auth_url: Optional[str] = None
    auth_signin: Optional[str] = None

    def url(self, component: str) -> Optional[str]:
        host = self.hosts.get(component)
        if not host:
            return None
        return f"{'https' if self.tls_secret_name else 'http'}://{host}"


@dataclass(frozen=True)
class PrometheusSettings:
    replicas: int
    retention: str
    retention_size: str
    storage_size: str
    scrape_interval: str
    scrape_timeout: str
    evaluation_interval: str
    kubelet_insecure_skip_verify: bool
    resources: Resources


@dataclass(frozen=True)
class AlertmanagerSettings:
    replicas: int
    retention: str
    storage_size: str
    resources: Resources


@dataclass(frozen=True)
class GrafanaSettings:
    admin_user: str
    storage_size: str
    resources: Resources


@dataclass(frozen=True)
class ExporterSettings:
    node_exporter: Resources
    kube_state_metrics: Resources
    blackbox: Resources
    postgres_enabled: bool
    postgres: Resources
    redis_enabled: bool
    redis: Resources


@dataclass(frozen=True)
class ProbeSettings:
    http: tuple
    tcp: tuple
    icmp: tuple


@dataclass(frozen=True)
class SnapshotSettings:
    enabled: bool
    type: str  # "s3" or "fs"
    bucket: Optional[str]
    endpoint: Optional[str]
    base_path: Optional[str]
    claim_name: Optional[str]
    schedule: str
    retention_days: int


@dataclass(frozen=True)
class LoggingSettings:
    enabled: bool
    retention_days: int
    nodes: int
    storage_size: str
    heap_percent: int
    elasticsearch: Resources
    logstash_replicas: int
    logstash_storage_size: str
    logstash: Resources
    kibana_host: Optional[str]
    kibana: Resources
    filebeat: Resources
    exporters: Resources
    snapshot: SnapshotSettings


@dataclass(frozen=True)
class Secrets:
    """Secret settings; values are secret Outputs, None where not needed."""
    alertmanager_webhook_url: pulumi.Output
    postgres_dsn: Optional[pulumi.Output] = None
    redis_url: Optional[pulumi.Output] = None
    slack_api_url: Optional[pulumi.Output] = None
    smtp_password: Optional[pulumi.Output] = None
    dingtalk_webhook_url: Optional[pulumi.Output] = None
    dingtalk_secret: Optional[pulumi.Output] = None
    heartbeat_url: Optional[pulumi.Output] = None
    escalation_webhook_url: Optional[pulumi.Output] = None
    logging_snapshot_access_key: Optional[pulumi.Output] = None
    logging_snapshot_secret_key: Optional[pulumi.Output] = None


@dataclass(frozen=True)
class TracingSettings:
    enabled: bool
    storage: str  # memory | badger | elasticsearch
    retention_days: int
    memory_max_traces: int
    storage_size: str
    index_prefix: str
    index_shards: int
    index_replicas: int
    collector_replicas: int
    collector: Resources
    query: Resources
    gateway_enabled: bool
    gateway_replicas: int
    gateway: Resources
    sampling_mode: str  # probabilistic | tail
    sampling_percentage: float
    slow_trace_threshold: str


@dataclass(frozen=True)
class Settings:
    stack: str
    environment: str
    platform: str
    namespace: str
    kube_context: Optional[str]
    storage_class: Optional[str]
    protect_data: bool
    ingress: IngressSettings
    prometheus: PrometheusSettings
    alertmanager: AlertmanagerSettings
    grafana: GrafanaSettings
    exporters: ExporterSettings
    probes: ProbeSettings
    static_targets: tuple
    docker: DockerSettings
    alerting: AlertingSettings
    images: Mapping[str, str]
    secrets: Secrets = field(repr=False)
    tracing: Optional[TracingSettings] = None
    logging: Optional[LoggingSettings] = None


# ---------------------------------------------------------------------------
# Loading.


def _all_keys(schema: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for name, spec in schema.items():
        path = f"{prefix}{name}"
        keys.append(path)
        if isinstance(spec, dict):
            keys.extend(_all_keys(spec, path + "."))
    return keys


def _fmt(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _resolve(schema: Mapping, raw: Any, path: str, errors: list[str], known: list[str]) -> dict:
    """Apply defaults and parsers to ``raw`` (a dict or None) following ``schema``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{PROJECT}:{path} = {_fmt(raw)} is not valid: expected an object with keys "
                      + ", ".join(schema))
        raw = {}
    result = {}
    for name in raw:
        if name not in schema:
            full = f"{path}.{name}" if path else name
            hint = difflib.get_close_matches(full, known, n=1)
            errors.append(f"{PROJECT}:{full} is not a known setting"
                          + (f"; did you mean {hint[0]}?" if hint else "")
                          + " (see docs/settings.md)")
    for name, spec in schema.items():
        full = f"{path}.{name}" if path else name
        if isinstance(spec, dict):
            result[name] = _resolve(spec, raw.get(name), full, errors, known)
            continue
        value = raw.get(name, spec.default)
        try:
            result[name] = spec.parse(value) if value is not None or spec.default is not None else None
        except _Invalid as exc:
            errors.append(f"{PROJECT}:{full} = {_fmt(value)} is not valid: expected {exc.allowed}")
            result[name] = None
    return result


def _raw_config() -> dict[str, Any]:
    """Every configuration value of this project, as the engine (or a test) supplied it."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {key[len(PROJECT) + 1:]: value for key, value in merged.items() if key.startswith(PROJECT + ":")}


def _secret_keys() -> set[str]:
    from pulumi.runtime import config as runtime_config

    keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    return {key[len(PROJECT) + 1:] for key in keys if key.startswith(PROJECT + ":")}


def _decode(value: Any) -> Any:
    """Config values arrive as strings; objects and lists arrive JSON-encoded."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _cross_checks(values: dict, errors: list[str]) -> None:
    prom = values["prometheus"]
    if prom["retentionSize"] and prom["storageSize"]:
        cap = 0.85 * quantity_bytes(prom["storageSize"])
        if prometheus_size_bytes(prom["retentionSize"]) > cap:
            errors.append(
                f"{PROJECT}:prometheus.retentionSize = {prom['retentionSize']!r} is not valid: expected at most "
                f"85% of prometheus.storageSize ({prom['storageSize']}, so at most {int(cap // 2**30)}GB) so "
                f"that size-based retention acts before the volume fills")
    if prom["scrapeTimeout"] and prom["scrapeInterval"]:
        if duration_seconds(prom["scrapeTimeout"]) > duration_seconds(prom["scrapeInterval"]):
            errors.append(f"{PROJECT}:prometheus.scrapeTimeout = {prom['scrapeTimeout']!r} is not valid: "
                          f"expected at most prometheus.scrapeInterval ({prom['scrapeInterval']})")
    ingress = values["ingress"]
    if values["platform"] == "docker":
        for section in ("prometheus", "alertmanager"):
            if values[section]["replicas"] != 1:
                errors.append(f"{PROJECT}:{section}.replicas = {values[section]['replicas']} is not valid on platform "
                              "docker: expected 1 (replicas on one host share its fate; HA needs Kubernetes)")
    email = values["alerting"]["email"]
    if email["enabled"]:
        for key in ("smarthost", "from"):
            if not email[key]:
                errors.append(f"{PROJECT}:alerting.email.{key} is not set: expected a value when "
                              "alerting.email.enabled is true")
    teams = values["alerting"]["teams"] or {}
    for channel, attr in (("slack", "slack_channel"), ("email", "email")):
        if values["alerting"][channel]["enabled"] and not any(getattr(t, attr) for t in teams.values()):
            errors.append(f"{PROJECT}:alerting.teams = {{}} is not valid: expected at least one team with "
                          f"{'slackChannel' if channel == 'slack' else 'email'} when alerting.{channel}.enabled is true")
    for ui in ("prometheus", "alertmanager", "jaeger"):
        if ingress[f"{ui}Host"] and not ingress["authUrl"]:
            errors.append(f"{PROJECT}:ingress.{ui}Host = {ingress[f'{ui}Host']!r} is not valid without "
                          f"ingress.authUrl: {ui} has no login of its own, so it is exposed only behind an "
                          "authenticating proxy (e.g. oauth2-proxy); use kubectl port-forward otherwise")
    if ingress["clusterIssuer"] and not ingress["tlsSecretName"]:
        errors.append(f"{PROJECT}:ingress.clusterIssuer = {ingress['clusterIssuer']!r} is not valid: "
                      "expected only together with ingress.tlsSecretName, the Secret it issues")
    for section, spec in (("prometheus", values["prometheus"]), ("alertmanager", values["alertmanager"]),
                          ("grafana", values["grafana"])):
        res = spec["resources"]
        _check_request_within_limit(f"{section}.resources", res, errors)
    for name, spec in values["exporters"].items():
        _check_request_within_limit(f"exporters.{name}.resources", spec["resources"], errors)
    _tracing_checks(values, errors)
    _logging_checks(values, errors)


def _tracing_checks(values: dict, errors: list[str]) -> None:
    tracing = values["tracing"]
    if not tracing["enabled"]:
        return
    storage, platform = tracing["storage"], values["platform"]
    if storage == "elasticsearch":
        if not isinstance(values.get("logging"), dict):
            errors.append(f"{PROJECT}:tracing.storage = 'elasticsearch' needs the logging stack's Elasticsearch, "
                          "which this project does not deploy yet: expected memory or badger")
        elif not logging_enabled(values):
            errors.append(f"{PROJECT}:tracing.storage = 'elasticsearch' needs the logging stack's Elasticsearch: "
                          "expected logging.enabled = true, or tracing.storage memory or badger")
        if platform == "docker":
            errors.append(f"{PROJECT}:tracing.storage = 'elasticsearch' is not valid on platform docker: expected "
                          "memory or badger (the nightly index cleanup is a Kubernetes CronJob)")
    elif tracing["collector"]["replicas"] != 1:
        errors.append(f"{PROJECT}:tracing.collector.replicas = {tracing['collector']['replicas']} is not valid with "
                      f"tracing.storage {storage!r}: expected 1 (memory and Badger live inside one Jaeger process; "
                      "scale collectors with storage elasticsearch)")
    gateway, sampling = tracing["gateway"], tracing["sampling"]
    if gateway["enabled"] and platform == "docker":
        errors.append(f"{PROJECT}:tracing.gateway.enabled = true is not valid on platform docker: expected false "
                      "(on one host the all-in-one Jaeger receives OTLP itself)")
    if sampling["percentage"] is not None and sampling["percentage"] < 100 and not gateway["enabled"]:
        errors.append(f"{PROJECT}:tracing.sampling.percentage = {sampling['percentage']} is not valid without "
                      "tracing.gateway.enabled: expected 100 (the sampler runs in the OpenTelemetry Collector gateway)")
    if sampling["mode"] == "tail" and gateway["enabled"] and gateway["replicas"] != 1:
        errors.append(f"{PROJECT}:tracing.gateway.replicas = {gateway['replicas']} is not valid with "
                      "tracing.sampling.mode 'tail': expected 1 (tail sampling decides on whole traces, and the "
                      "spans of one trace would be spread over the replicas)")
    for path, res in (("tracing.collector.resources", tracing["collector"]["resources"]),
                      ("tracing.query.resources", tracing["query"]["resources"]),
                      ("tracing.gateway.resources", gateway["resources"])):
        _check_request_within_limit(path, res, errors)


def _logging_checks(values: dict, errors: list[str]) -> None:
    logging = values["logging"]
    if not logging_enabled(values):
        return
    nodes = logging["elasticsearch"]["nodes"]
    if values["platform"] == "docker":
        # One host: more nodes or replicas would share its disk and its fate, for triple the memory.
        if nodes != 1:
            errors.append(f"{PROJECT}:logging.elasticsearch.nodes = {nodes} is not valid on platform docker: expected 1 "
                          "(nodes on one host share its fate; a cluster needs Kubernetes)")
        if logging["logstash"]["replicas"] != 1:
            errors.append(f"{PROJECT}:logging.logstash.replicas = {logging['logstash']['replicas']} is not valid on "
                          "platform docker: expected 1")
        if logging["kibana"]["host"]:
            errors.append(f"{PROJECT}:logging.kibana.host = {logging['kibana']['host']!r} is not valid on platform "
                          "docker: expected empty (a Docker host publishes Kibana on docker.bindAddress and "
                          "docker.kibanaPort; there is no ingress)")
    elif nodes == 2:
        errors.append(f"{PROJECT}:logging.elasticsearch.nodes = 2 is not valid: expected 1 (a single node) or 3 or "
                      "more (two master-eligible nodes cannot elect a master once either is gone)")
    limit = logging["elasticsearch"]["resources"]["limits"]["memory"]
    if limit and quantity_bytes(limit) < 2**30:
        errors.append(f"{PROJECT}:logging.elasticsearch.resources.limits.memory = {limit!r} is not valid: expected at "
                      "least 1Gi (the JVM heap takes logging.elasticsearch.heapPercent of it)")
    snapshot = logging["snapshot"]
    if snapshot["enabled"] and snapshot["type"] == "s3" and not snapshot["bucket"]:
        errors.append(f"{PROJECT}:logging.snapshot.bucket is not set: expected a bucket when logging.snapshot.enabled "
                      "is true and logging.snapshot.type is s3")
    if snapshot["enabled"] and snapshot["type"] == "fs" and not snapshot["claimName"]:
        errors.append(f"{PROJECT}:logging.snapshot.claimName is not set: expected an existing ReadWriteMany "
                      "PersistentVolumeClaim when logging.snapshot.type is fs (every node must see the repository)")
    for name in ("elasticsearch", "logstash", "kibana", "filebeat", "exporters"):
        _check_request_within_limit(f"logging.{name}.resources", logging[name]["resources"], errors)


def _check_request_within_limit(path: str, res: dict, errors: list[str]) -> None:
    req, lim = res["requests"], res["limits"]
    if req["memory"] and lim["memory"] and quantity_bytes(req["memory"]) > quantity_bytes(lim["memory"]):
        errors.append(f"{PROJECT}:{path}.requests.memory = {req['memory']!r} is not valid: "
                      f"expected at most {path}.limits.memory ({lim['memory']})")
    if req["cpu"] and lim["cpu"] and cpu_millicores(req["cpu"]) > cpu_millicores(lim["cpu"]):
        errors.append(f"{PROJECT}:{path}.requests.cpu = {req['cpu']!r} is not valid: "
                      f"expected at most {path}.limits.cpu ({lim['cpu']})")


def load_settings(stack: Optional[str] = None) -> Settings:
    """Read, validate and type the configuration of the current (or given) stack."""
    stack = stack or pulumi.get_stack()
    raw = {key: _decode(value) for key, value in _raw_config().items()}
    secret_keys = _secret_keys()
    errors: list[str] = []
    known = _all_keys(SCHEMA) + list(SECRETS)

    plain = {key: value for key, value in raw.items() if key not in SECRETS}
    values = _resolve(SCHEMA, plain, "", errors, known)
    if values["environment"] is None and "environment" not in plain:
        try:
            values["environment"] = _dns_label(stack)
        except _Invalid as exc:
            errors.append(f"{PROJECT}:environment is not set and the stack name {stack!r} cannot stand in "
                          f"for it: expected {exc.allowed}")

    for key, spec in SECRETS.items():
        if key in raw and key not in secret_keys:
            errors.append(f"{PROJECT}:{key} is set in plain text: it is a secret, set it with "
                          f"`pulumi config set --secret {PROJECT}:{key} <value>`")
    if not errors:
        _cross_checks(values, errors)
        for key, spec in SECRETS.items():
            if spec.required_when(values) and not spec.optional and key not in raw:
                errors.append(f"{PROJECT}:{key} is not set: expected a secret ({spec.doc}); set it with "
                              f"`pulumi config set --secret {PROJECT}:{key} <value>`")

    if errors:
        raise SettingsError("invalid settings for stack {!r}:\n  - {}".format(stack, "\n  - ".join(errors)))

    config = pulumi.Config(PROJECT)

    def secret(key: str) -> Optional[pulumi.Output]:
        if not SECRETS[key].required_when(values) or key not in raw:
            return None
        return config.require_secret(key)

    return _typed(stack, values, Secrets(**{_snake(key): secret(key) for key in SECRETS}))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _typed(stack: str, v: dict, secrets: Secrets) -> Settings:
    prom, am, graf, exp, ing = v["prometheus"], v["alertmanager"], v["grafana"], v["exporters"], v["ingress"]
    al = v["alerting"]
    return Settings(
        stack=stack,
        environment=v["environment"],
        platform=v["platform"],
        namespace=v["namespace"],
        kube_context=v["kubeContext"],
        storage_class=v["storageClass"],
        protect_data=v["protectData"],
        ingress=IngressSettings(
            class_name=ing["className"], tls_secret_name=ing["tlsSecretName"],
            cluster_issuer=ing["clusterIssuer"],
            hosts={"grafana": ing["grafanaHost"], "prometheus": ing["prometheusHost"],
                   "alertmanager": ing["alertmanagerHost"], "jaeger": ing["jaegerHost"],
                   "kibana": v["logging"]["kibana"]["host"]},
            controller_namespace=ing["controllerNamespace"], auth_url=ing["authUrl"], auth_signin=ing["authSignin"]),
        prometheus=PrometheusSettings(
            replicas=prom["replicas"], retention=prom["retention"], retention_size=prom["retentionSize"],
            storage_size=prom["storageSize"], scrape_interval=prom["scrapeInterval"],
            scrape_timeout=prom["scrapeTimeout"], evaluation_interval=prom["evaluationInterval"],
            kubelet_insecure_skip_verify=prom["kubeletInsecureSkipVerify"],
            resources=Resources.of(prom["resources"])),
        alertmanager=AlertmanagerSettings(
            replicas=am["replicas"], retention=am["retention"], storage_size=am["storageSize"],
            resources=Resources.of(am["resources"])),
        grafana=GrafanaSettings(admin_user=graf["adminUser"], storage_size=graf["storageSize"],
                                resources=Resources.of(graf["resources"])),
        exporters=ExporterSettings(
            node_exporter=Resources.of(exp["nodeExporter"]["resources"]),
            kube_state_metrics=Resources.of(exp["kubeStateMetrics"]["resources"]),
            blackbox=Resources.of(exp["blackbox"]["resources"]),
            postgres_enabled=exp["postgres"]["enabled"], postgres=Resources.of(exp["postgres"]["resources"]),
            redis_enabled=exp["redis"]["enabled"], redis=Resources.of(exp["redis"]["resources"])),
        probes=ProbeSettings(http=v["probes"]["http"], tcp=v["probes"]["tcp"], icmp=v["probes"]["icmp"]),
        static_targets=v["staticTargets"],
        docker=DockerSettings(host=v["docker"]["host"], bind_address=v["docker"]["bindAddress"],
                              ports={"grafana": v["docker"]["grafanaPort"],
                                     "prometheus": v["docker"]["prometheusPort"],
                                     "alertmanager": v["docker"]["alertmanagerPort"],
                                     "jaeger": v["docker"]["jaegerPort"],
                                     "kibana": v["docker"]["kibanaPort"],
                                     "elasticsearch": v["docker"]["elasticsearchPort"]}),
        alerting=AlertingSettings(
            quiet=al["quiet"], teams=al["teams"], slack=al["slack"]["enabled"],
            email=EmailSettings(enabled=al["email"]["enabled"], smarthost=al["email"]["smarthost"],
                                sender=al["email"]["from"], username=al["email"]["username"],
                                require_tls=al["email"]["requireTls"]),
            dingtalk=al["dingtalk"]["enabled"], heartbeat=al["heartbeat"]["enabled"],
            escalation=al["escalation"]["enabled"],
            timings={sev: Timings(al[sev]["groupWait"], al[sev]["groupInterval"], al[sev]["repeatInterval"])
                     for sev in ("critical", "warning", "info")}),
        images=dict(v["images"]),
        secrets=secrets,
        tracing=_typed_tracing(v["tracing"]),
        logging=_typed_logging(v),
    )


def _typed_logging(v: dict) -> LoggingSettings:
    lg, es, snap = v["logging"], v["logging"]["elasticsearch"], v["logging"]["snapshot"]
    return LoggingSettings(
        enabled=logging_enabled(v), retention_days=lg["retentionDays"],
        nodes=es["nodes"], storage_size=es["storageSize"], heap_percent=es["heapPercent"],
        elasticsearch=Resources.of(es["resources"]),
        logstash_replicas=lg["logstash"]["replicas"], logstash_storage_size=lg["logstash"]["storageSize"],
        logstash=Resources.of(lg["logstash"]["resources"]),
        kibana_host=lg["kibana"]["host"], kibana=Resources.of(lg["kibana"]["resources"]),
        filebeat=Resources.of(lg["filebeat"]["resources"]), exporters=Resources.of(lg["exporters"]["resources"]),
        snapshot=SnapshotSettings(
            enabled=snap["enabled"], type=snap["type"], bucket=snap["bucket"], endpoint=snap["endpoint"],
            base_path=snap["basePath"], claim_name=snap["claimName"], schedule=snap["schedule"],
            retention_days=snap["retentionDays"]))


def _typed_tracing(tr: dict) -> TracingSettings:
    return TracingSettings(
        enabled=tr["enabled"], storage=tr["storage"], retention_days=tr["retentionDays"],
        memory_max_traces=tr["memoryMaxTraces"], storage_size=tr["storageSize"], index_prefix=tr["indexPrefix"],
        index_shards=tr["indexShards"], index_replicas=tr["indexReplicas"],
        collector_replicas=tr["collector"]["replicas"], collector=Resources.of(tr["collector"]["resources"]),
        query=Resources.of(tr["query"]["resources"]),
        gateway_enabled=tr["gateway"]["enabled"], gateway_replicas=tr["gateway"]["replicas"],
        gateway=Resources.of(tr["gateway"]["resources"]),
        sampling_mode=tr["sampling"]["mode"], sampling_percentage=tr["sampling"]["percentage"],
        slow_trace_threshold=tr["sampling"]["slowTraceThreshold"])


def reference() -> list[tuple[str, str, str]]:
    """(key, default, description) for every setting, for docs/settings.md."""
    rows: list[tuple[str, str, str]] = []

    def walk(schema: Mapping, prefix: str) -> None:
        for name, spec in schema.items():
            if isinstance(spec, dict):
                walk(spec, f"{prefix}{name}.")
            else:
                default = "" if spec.default is None else json.dumps(spec.default) if not isinstance(spec.default, str) else spec.default
                rows.append((prefix + name, default, spec.doc))

    walk(SCHEMA, "")
    for key, spec in SECRETS.items():
        rows.append((key, "(secret)", spec.doc))
    return rows
