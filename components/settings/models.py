"""The settings of a stack: one model per section of ``Pulumi.<stack>.yaml``.

Each knob is declared once, as a field with its type, its default and its description; the loader,
docs/settings.md, the JSON Schema of the stack files and the declarations in Pulumi.yaml all come
from these models. Fields are snake_case in Python and camelCase in the stack file (their alias).

Where the rest of the program reads a setting under another name than the file's (a section's
resources as ``settings.logging.logstash``, a toggle as a plain bool), ``view`` gives that name and
the section itself is the field with the ``_settings`` suffix.

Rules across fields are each section's ``broken_rules``; they run once the section's own fields are
valid, and name keys relative to the section with ``HERE``, which the loader replaces by the
section's path (a validator does not know where its section sits in the file).
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, create_model,
                      model_validator)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from components.settings.images import DEFAULT_IMAGES
from components.settings.secrets import Secrets
from components.settings.types import (
    Choice, CpuQuantity, Duration, ElasticsearchCron, Email, Flag, Host, HostPort, HttpUrl, ImageReference,
    IPv4Address, MemoryQuantity, OptionalCpuQuantity, OptionalDnsLabel, OptionalEmail, OptionalEndpoint,
    OptionalHostname, OptionalHostPort, OptionalHttpUrl, OptionalText, Percentage, Port, PrometheusSize, SlackChannel,
    StorageQuantity, WholeNumber, DnsLabel, cpu_millicores, duration_seconds, invalid, listed, mapping,
    prometheus_size_bytes, quantity_bytes, setting)

PROJECT = "football-monitoring"
HERE = "<section>."
BROKEN_RULES = "broken_rules"
SKIP_RULES = "skip_rules"  # validation context flag: fields only, for the secrets check after a broken rule


def view(path: str) -> property:
    """A read-only name for a setting that the file keeps elsewhere in the section, e.g.
    ``logstash_replicas = view("logstash_settings.replicas")``: the name the rest of the program reads."""

    def get(section: "Section") -> Any:
        value: Any = section
        for name in path.split("."):
            value = getattr(value, name)
        return value

    return property(get, doc=f"the setting at {path}")


class Section(BaseModel):
    """A part of the stack configuration: every key known, nothing changed once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)

    @model_validator(mode="before")
    @classmethod
    def _absent_is_empty(cls, data: Any) -> Any:
        # `football-monitoring:ingress:` with nothing under it reads as null: all defaults.
        return {} if data is None else data

    @model_validator(mode="after")
    def _check_rules(self, info: ValidationInfo) -> "Section":
        if info.context and info.context.get(SKIP_RULES):
            return self
        problems = self.broken_rules()
        if problems:
            raise PydanticCustomError(BROKEN_RULES, "{problems}", {"problems": tuple(problems)})
        return self

    def broken_rules(self) -> list[str]:
        """One message per broken rule, keys written as f"{HERE}key"."""
        return []


# --------------------------------------------------------------------------- resources

class ResourceRequests(Section):
    cpu: CpuQuantity
    memory: MemoryQuantity


class ResourceLimits(Section):
    cpu: OptionalCpuQuantity = None
    memory: MemoryQuantity


_FLAT_RESOURCES = ("cpu_request", "memory_request", "cpu_limit", "memory_limit")


class Resources(Section):
    """CPU and memory of one container: what the scheduler reserves, and the most it may use."""

    requests: ResourceRequests
    limits: ResourceLimits

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        # Written in code, a container's resources read best flat:
        # Resources(cpu_request="10m", memory_request="32Mi", cpu_limit=None, memory_limit="64Mi").
        if isinstance(data, dict) and set(data) & set(_FLAT_RESOURCES):
            rest = {k: v for k, v in data.items() if k not in _FLAT_RESOURCES}
            return {**rest, "requests": {"cpu": data.get("cpu_request"), "memory": data.get("memory_request")},
                    "limits": {"cpu": data.get("cpu_limit"), "memory": data.get("memory_limit")}}
        return data

    cpu_request = view("requests.cpu")
    memory_request = view("requests.memory")
    cpu_limit = view("limits.cpu")
    memory_limit = view("limits.memory")

    def to_kubernetes(self) -> dict:
        limits = {"memory": self.memory_limit}
        if self.cpu_limit:
            limits["cpu"] = self.cpu_limit
        return {"requests": {"cpu": self.cpu_request, "memory": self.memory_request}, "limits": limits}

    def broken_rules(self) -> list[str]:
        problems = []
        if quantity_bytes(self.memory_request) > quantity_bytes(self.memory_limit):
            problems.append(f"{HERE}requests.memory = {self.memory_request!r} is not valid: "
                            f"expected at most {HERE}limits.memory ({self.memory_limit})")
        if self.cpu_limit and cpu_millicores(self.cpu_request) > cpu_millicores(self.cpu_limit):
            problems.append(f"{HERE}requests.cpu = {self.cpu_request!r} is not valid: "
                            f"expected at most {HERE}limits.cpu ({self.cpu_limit})")
        return problems


def component_resources(name: str, what: str, cpu: str, memory: str, memory_limit: str) -> Any:
    """The type of one component's resources field, with that component's defaults.

    A CPU limit throttles scrapes and rule evaluation under bursts, so the defaults leave CPU
    unlimited and bound only memory.
    """
    requests = create_model(
        f"{name}Requests", __base__=ResourceRequests, __module__=__name__,
        cpu=(CpuQuantity, Field(cpu, description=f"CPU request of {what}")),
        memory=(MemoryQuantity, Field(memory, description=f"memory request of {what}")))
    limits = create_model(
        f"{name}Limits", __base__=ResourceLimits, __module__=__name__,
        cpu=(OptionalCpuQuantity, Field(None, description=f"CPU limit of {what} (empty: no CPU limit)")),
        memory=(MemoryQuantity, Field(memory_limit, description=f"memory limit of {what}")))
    model = create_model(
        f"{name}Resources", __base__=Resources, __module__=__name__,
        requests=(requests, Field(default_factory=requests)), limits=(limits, Field(default_factory=limits)))
    return Annotated[model, Field(default_factory=model, description=f"CPU and memory of {what}")]


def resources_only(name: str, what: str, cpu: str, memory: str, memory_limit: str) -> Any:
    """The type of a section that holds nothing but one component's resources."""
    model = create_model(f"{name}Settings", __base__=Section, __module__=__name__,
                         resources=component_resources(name, what, cpu, memory, memory_limit))
    return Annotated[model, Field(default_factory=model, description=what)]


def toggle(name: str, description: str) -> Any:
    """The type of a section that only turns something on."""
    model = create_model(f"{name}Settings", __base__=Section, __module__=__name__,
                         enabled=(Flag, Field(False, description=description)))
    return Annotated[model, Field(default_factory=model, description=description)]


# --------------------------------------------------------------------------- ingress

class IngressSettings(Section):
    """The UIs behind the cluster's ingress controller."""

    class_name: OptionalText = Field(None, description="IngressClass of the UI ingresses")
    tls_secret_name: OptionalText = Field(None, description=(
        "TLS Secret used by the UI ingresses (empty: plain HTTP); with clusterIssuer, the prefix of one Secret "
        "per UI, <tlsSecretName>-<ui>"))
    cluster_issuer: OptionalText = Field(None, description=(
        "cert-manager ClusterIssuer that issues each UI's Secret (<tlsSecretName>-grafana, -kibana, ...)"))
    grafana_host: OptionalHostname = Field(None, description="public host of Grafana (empty: no ingress)")
    prometheus_host: OptionalHostname = Field(None, description="public host of Prometheus (empty: no ingress)")
    alertmanager_host: OptionalHostname = Field(None, description="public host of Alertmanager (empty: no ingress)")
    jaeger_host: OptionalHostname = Field(
        None, description="public host of the Jaeger UI (empty: no ingress; needs authUrl)")
    controller_namespace: DnsLabel = Field(
        "ingress-nginx", description="namespace of the ingress controller (network policies let it reach the UIs)")
    auth_url: OptionalText = Field(None, description=(
        "external authentication URL (nginx auth-url, e.g. an oauth2-proxy /oauth2/auth) required in front of "
        "Prometheus and Alertmanager, which have no login"))
    auth_signin: OptionalText = Field(None, description="where unauthenticated users are sent (nginx auth-signin)")

    # Kibana's host is set with the rest of Kibana (logging.kibana.host); the stack hands it over here
    # so that one ingress serves every UI.
    _kibana_host: Optional[str] = PrivateAttr(None)

    @property
    def hosts(self) -> Mapping[str, Optional[str]]:
        return {"grafana": self.grafana_host, "prometheus": self.prometheus_host,
                "alertmanager": self.alertmanager_host, "jaeger": self.jaeger_host, "kibana": self._kibana_host}

    def url(self, component: str) -> Optional[str]:
        host = self.hosts.get(component)
        if not host:
            return None
        return f"{'https' if self.tls_secret_name else 'http'}://{host}"

    def broken_rules(self) -> list[str]:
        problems = []
        for ui in ("prometheus", "alertmanager", "jaeger"):
            host = getattr(self, f"{ui}_host")
            if host and not self.auth_url:
                problems.append(f"{HERE}{ui}Host = {host!r} is not valid without {HERE}authUrl: {ui} has no login "
                                "of its own, so it is exposed only behind an authenticating proxy (e.g. "
                                "oauth2-proxy); use kubectl port-forward otherwise")
        if self.cluster_issuer and not self.tls_secret_name:
            problems.append(f"{HERE}clusterIssuer = {self.cluster_issuer!r} is not valid: expected only together "
                            f"with {HERE}tlsSecretName, the Secret it issues")
        return problems


# --------------------------------------------------------------------------- metrics

PrometheusResources = component_resources("Prometheus", "each Prometheus", "250m", "1Gi", "2Gi")


class PrometheusSettings(Section):
    """Prometheus: how many, how long samples are kept, how often targets are scraped."""

    replicas: WholeNumber(1, 4) = Field(
        1, description="Prometheus replicas; 2 runs an HA pair scraping the same targets")
    retention: Duration(3600, 5 * 365 * 86400) = Field("15d", description="how long samples are kept")
    retention_size: PrometheusSize = Field("8GB", description="size cap of the TSDB; must fit in 85% of storageSize")
    storage_size: StorageQuantity = Field("10Gi", description="size of each Prometheus volume")
    scrape_interval: Duration(1, 300) = Field("30s", description="default scrape interval")
    scrape_timeout: Duration(1, 300) = Field("10s", description="default scrape timeout (at most scrapeInterval)")
    evaluation_interval: Duration(1, 300) = Field("30s", description="rule evaluation interval")
    kubelet_insecure_skip_verify: Flag = Field(False, description=(
        "skip TLS verification of kubelet serving certificates (only for clusters whose kubelet certificates are "
        "not signed by the cluster CA, such as kind)"))
    external_url: OptionalHttpUrl = Field(None, description=(
        "where people open Prometheus when ingress.prometheusHost is empty (a proxy or VPN address of your own): "
        "the links of alerts point there; empty: the cluster-internal address"))
    resources: PrometheusResources

    def broken_rules(self) -> list[str]:
        problems = []
        cap = 0.85 * quantity_bytes(self.storage_size)
        if prometheus_size_bytes(self.retention_size) > cap:
            problems.append(
                f"{HERE}retentionSize = {self.retention_size!r} is not valid: expected at most 85% of "
                f"{HERE}storageSize ({self.storage_size}, so at most {int(cap // 2**30)}GB) so that size-based "
                "retention acts before the volume fills")
        if duration_seconds(self.scrape_timeout) > duration_seconds(self.scrape_interval):
            problems.append(f"{HERE}scrapeTimeout = {self.scrape_timeout!r} is not valid: "
                            f"expected at most {HERE}scrapeInterval ({self.scrape_interval})")
        return problems


AlertmanagerResources = component_resources("Alertmanager", "each Alertmanager", "25m", "64Mi", "256Mi")


class AlertmanagerSettings(Section):
    """Alertmanager: how many (one gossip cluster), and how long silences are kept."""

    replicas: WholeNumber(1, 5) = Field(1, description="Alertmanager replicas; more than 1 forms one gossip cluster")
    retention: Duration(3600, 365 * 86400) = Field(
        "120h", description="how long silences and the notification log are kept")
    storage_size: StorageQuantity = Field("1Gi", description="size of each Alertmanager volume")
    external_url: OptionalHttpUrl = Field(None, description=(
        "where people open Alertmanager when ingress.alertmanagerHost is empty (a proxy or VPN address of your "
        "own): the links of Slack, e-mail and webhook notifications point there; empty: the cluster-internal "
        "address"))
    resources: AlertmanagerResources


GrafanaResources = component_resources("Grafana", "Grafana", "50m", "128Mi", "512Mi")


class GrafanaSettings(Section):
    """Grafana: its admin user and its volume."""

    admin_user: DnsLabel = Field("admin", description="name of Grafana's admin user (its password is generated)")
    storage_size: StorageQuantity = Field("2Gi", description="size of Grafana's volume")
    resources: GrafanaResources


PostgresExporterResources = component_resources("PostgresExporter", "postgres-exporter", "10m", "32Mi", "128Mi")


class PostgresExporterSettings(Section):
    enabled: Flag = Field(True, description="deploy postgres-exporter (needs the postgresDsn secret)")
    resources: PostgresExporterResources


RedisExporterResources = component_resources("RedisExporter", "redis-exporter", "10m", "32Mi", "128Mi")


class RedisExporterSettings(Section):
    enabled: Flag = Field(True, description="deploy redis-exporter (needs the redisUrl secret)")
    resources: RedisExporterResources


NodeExporterSettings = resources_only("NodeExporter", "node-exporter", "20m", "32Mi", "128Mi")
KubeStateMetricsSettings = resources_only("KubeStateMetrics", "kube-state-metrics", "20m", "64Mi", "256Mi")
BlackboxSettings = resources_only("Blackbox", "blackbox-exporter", "10m", "32Mi", "128Mi")


class ExporterSettings(Section):
    """The exporters beside Prometheus: node, kube-state-metrics, blackbox, PostgreSQL and Redis."""

    node_exporter_settings: NodeExporterSettings = Field(alias="nodeExporter")
    kube_state_metrics_settings: KubeStateMetricsSettings = Field(alias="kubeStateMetrics")
    blackbox_settings: BlackboxSettings = Field(alias="blackbox")
    postgres_settings: PostgresExporterSettings = Field(
        alias="postgres", default_factory=PostgresExporterSettings, description="postgres-exporter")
    redis_settings: RedisExporterSettings = Field(
        alias="redis", default_factory=RedisExporterSettings, description="redis-exporter")

    node_exporter = view("node_exporter_settings.resources")
    kube_state_metrics = view("kube_state_metrics_settings.resources")
    blackbox = view("blackbox_settings.resources")
    postgres_enabled = view("postgres_settings.enabled")
    postgres = view("postgres_settings.resources")
    redis_enabled = view("redis_settings.enabled")
    redis = view("redis_settings.resources")


# --------------------------------------------------------------------------- probes and targets

class ProbeTarget(Section):
    """One blackbox probe: a name for its series and what is probed."""

    name: DnsLabel = Field(description="name of the probe (a DNS label), unique in its list")
    target: str = Field(description="what is probed")


class HttpProbeTarget(ProbeTarget):
    target: HttpUrl = Field(description="URL probed with the http_2xx module")


class TcpProbeTarget(ProbeTarget):
    target: HostPort = Field(description="host:port probed with the tcp_connect module")


class IcmpProbeTarget(ProbeTarget):
    target: Host = Field(description="host probed with the icmp module")


def _unique_names(targets: tuple) -> tuple:
    names = [t.name for t in targets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise invalid("names unique within the list; " + ", ".join(repr(n) for n in repeated)
                      + " appears more than once")
    return targets


def probe_list(model: type[ProbeTarget], example: str) -> Any:
    allowed = f"a list of {{name, target}} objects, name a DNS label, target like {example}"
    return Annotated[tuple[model, ...], listed(allowed), AfterValidator(_unique_names)]


HttpProbes = probe_list(HttpProbeTarget, "http://football-prediction-api.app.svc:8000/health")
TcpProbes = probe_list(TcpProbeTarget, "postgres.app.svc:5432")
IcmpProbes = probe_list(IcmpProbeTarget, "postgres.app.svc")


class ProbeSettings(Section):
    """What the blackbox exporter probes, by protocol."""

    http: HttpProbes = Field(
        (HttpProbeTarget(name="api-health",
                         target="http://football-prediction-api.football-prediction.svc:8000/health"),),
        description="HTTP targets probed with the http_2xx module")
    tcp: TcpProbes = Field(
        (TcpProbeTarget(name="postgres", target="postgres.football-prediction.svc:5432"),
         TcpProbeTarget(name="redis", target="redis.football-prediction.svc:6379")),
        description="host:port targets probed with the tcp_connect module")
    icmp: IcmpProbes = Field((), description="hosts probed with the icmp module")


class StaticTarget(Section):
    """An extra scrape target by address."""

    job: DnsLabel = Field(description="job label of the target's series (a DNS label)")
    target: HostPort = Field(description="host:port that Prometheus scrapes")


StaticTargets = Annotated[tuple[StaticTarget, ...],
                          listed("a list of {job, target} objects, job a DNS label, target host:port")]


# --------------------------------------------------------------------------- a single Docker host

class DockerSettings(Section):
    """The Docker host of platform docker, and the host ports its UIs are published on."""

    host: OptionalText = Field(None, description=(
        "Docker daemon to deploy to, e.g. unix:///var/run/docker.sock or ssh://user@host (empty: DOCKER_HOST or "
        "the local daemon)"))
    bind_address: IPv4Address = Field("127.0.0.1", description="host address published UI ports listen on")
    grafana_port: Port = Field(3000, description="host port of Grafana (0: not published)")
    prometheus_port: Port = Field(9090, description="host port of Prometheus (0: not published)")
    alertmanager_port: Port = Field(9093, description="host port of Alertmanager (0: not published)")
    jaeger_port: Port = Field(
        16686, description="host port of the Jaeger UI when tracing is enabled (0: not published)")
    kibana_port: Port = Field(5601, description="host port of Kibana when logging is enabled (0: not published)")
    elasticsearch_port: Port = Field(9200, description=(
        "host port of Elasticsearch's HTTPS API when logging is enabled, for tools.verify and operators (TLS and "
        "a password; 0: not published)"))

    @property
    def ports(self) -> Mapping[str, int]:
        """Published host port per UI, 0 = not published."""
        return {"grafana": self.grafana_port, "prometheus": self.prometheus_port,
                "alertmanager": self.alertmanager_port, "jaeger": self.jaeger_port, "kibana": self.kibana_port,
                "elasticsearch": self.elasticsearch_port}

    def url(self, name: str, scheme: str = "http") -> Optional[str]:
        port = self.ports.get(name)
        if not port:
            return None
        host = "localhost" if self.bind_address in ("127.0.0.1", "0.0.0.0") else self.bind_address
        return f"{scheme}://{host}:{port}"


# --------------------------------------------------------------------------- alerting

TEAMS = ("platform", "backend", "data", "security")


def _team(value: Any) -> str:
    if value not in TEAMS:
        raise invalid("a team: one of " + ", ".join(TEAMS))
    return value


Team = setting(str, _team, {"enum": list(TEAMS)})


class TeamContact(Section):
    """Where one team hears about its alerts."""

    slack_channel: Optional[SlackChannel] = Field(None, description="Slack channel of the team (#channel)")
    email: Optional[Email] = Field(None, description="e-mail address of the team")


def _every_team(teams: dict) -> dict:
    return {team: teams.get(team) or TeamContact() for team in TEAMS}


Teams = Annotated[dict[Team, TeamContact],
                  mapping("an object of teams (" + ", ".join(TEAMS) + ") each with optional slackChannel "
                          "(#channel) and email (address)"),
                  AfterValidator(_every_team)]


class EmailSettings(Section):
    """E-mail notifications of critical alerts, through an SMTP smarthost."""

    enabled: Flag = Field(False, description="notify teams by e-mail (needs smarthost and from)")
    smarthost: OptionalHostPort = Field(None, description="SMTP server host:port")
    sender: OptionalEmail = Field(None, alias="from", description="sender address")
    username: OptionalText = Field(None, description="SMTP user (its password is the smtpPassword secret)")
    require_tls: Flag = Field(True, description="require STARTTLS to the SMTP server")

    def broken_rules(self) -> list[str]:
        if not self.enabled:
            return []
        return [f"{HERE}{key} is not set: expected a value when {HERE}enabled is true"
                for key, value in (("smarthost", self.smarthost), ("from", self.sender)) if not value]


class Timings(Section):
    """How Alertmanager groups and repeats the notifications of one severity."""

    group_wait: str
    group_interval: str
    repeat_interval: str


def severity_timings(severity: str, group_wait: str, group_interval: str, repeat_interval: str) -> Any:
    model = create_model(
        f"{severity.title()}Timings", __base__=Timings, __module__=__name__,
        group_wait=(Duration(0, 3600), Field(group_wait, description=(
            f"how long Alertmanager gathers {severity} alerts before the first notification"))),
        group_interval=(Duration(1, 6 * 3600), Field(group_interval, description=(
            f"how often a changed {severity} group is notified again"))),
        repeat_interval=(Duration(1, 7 * 86400), Field(repeat_interval, description=(
            f"how often a still-firing {severity} group is repeated"))))
    return Annotated[model, Field(default_factory=model, description=f"notification timings of {severity} alerts")]


SlackSettings = toggle("Slack", "notify teams' Slack channels (needs the slackApiUrl secret)")
DingtalkSettings = toggle("Dingtalk", "notify critical alerts to DingTalk through a relay (needs dingtalkWebhookUrl)")
HeartbeatSettings = toggle(
    "Heartbeat", "send the always-firing Watchdog to an external dead man's switch (heartbeatUrl)")
EscalationSettings = toggle(
    "Escalation", "also send every critical alert to an on-call paging webhook (escalationWebhookUrl)")
CriticalTimings = severity_timings("critical", "30s", "5m", "1h")
WarningTimings = severity_timings("warning", "1m", "10m", "6h")
InfoTimings = severity_timings("info", "5m", "30m", "24h")


class AlertingSettings(Section):
    """Who hears about alerts, through which channels, and how often."""

    quiet: Flag = Field(False, description=(
        "only critical alerts reach people; warnings and info go to the default webhook alone (dev)"))
    teams: Teams = Field({}, validate_default=True, json_schema_extra={"propertyNames": {"enum": list(TEAMS)}},
                         description="where each team hears about its alerts: {platform: {slackChannel, email}, ...}")
    slack_settings: SlackSettings = Field(alias="slack")
    email: EmailSettings = Field(default_factory=EmailSettings, description="e-mail notifications")
    dingtalk_settings: DingtalkSettings = Field(alias="dingtalk")
    heartbeat_settings: HeartbeatSettings = Field(alias="heartbeat")
    escalation_settings: EscalationSettings = Field(alias="escalation")
    critical: CriticalTimings
    warning: WarningTimings
    info: InfoTimings

    slack = view("slack_settings.enabled")
    dingtalk = view("dingtalk_settings.enabled")
    heartbeat = view("heartbeat_settings.enabled")
    escalation = view("escalation_settings.enabled")

    @property
    def timings(self) -> Mapping[str, Timings]:
        """By severity."""
        return {"critical": self.critical, "warning": self.warning, "info": self.info}

    def broken_rules(self) -> list[str]:
        problems = []
        for channel, key, attribute in (("slack", "slackChannel", "slack_channel"), ("email", "email", "email")):
            enabled = self.slack if channel == "slack" else self.email.enabled
            if enabled and not any(getattr(contact, attribute) for contact in self.teams.values()):
                problems.append(f"{HERE}teams = {{}} is not valid: expected at least one team with {key} when "
                                f"{HERE}{channel}.enabled is true")
        return problems


# --------------------------------------------------------------------------- tracing

CollectorResources = component_resources(
    "Collector", "each Jaeger collector (or the all-in-one Jaeger)", "100m", "256Mi", "1Gi")


class CollectorSettings(Section):
    replicas: WholeNumber(1, 10) = Field(1, description=(
        "Jaeger collectors behind the OTLP Service (more than 1 needs storage elasticsearch)"))
    resources: CollectorResources


GatewayResources = component_resources("Gateway", "each gateway", "100m", "256Mi", "1Gi")


class GatewaySettings(Section):
    enabled: Flag = Field(False, description=(
        "put an OpenTelemetry Collector gateway (memory limiter, sampling, batching) in front of Jaeger; "
        "Kubernetes only"))
    replicas: WholeNumber(1, 10) = Field(1, description=(
        "gateway replicas (1 with tail sampling: a trace must reach one replica)"))
    resources: GatewayResources


SamplingMode = Choice("probabilistic", "tail")


class SamplingSettings(Section):
    mode: SamplingMode = Field("probabilistic", description=(
        "probabilistic (by trace id) or tail (after the trace: every error and slow trace kept, plus percentage "
        "of the rest)"))
    percentage: Percentage = Field(100, description="share of traces kept, in percent (below 100 needs the gateway)")
    slow_trace_threshold: Duration(0.001, 600) = Field(
        "2s", description="tail sampling keeps every trace slower than this")


TracingStorage = Choice("memory", "badger", "elasticsearch")
QuerySettings = resources_only("Query", "Jaeger query (storage elasticsearch)", "50m", "128Mi", "512Mi")


class TracingSettings(Section):
    """Tracing: Jaeger v2 receiving OpenTelemetry (OTLP) spans, optionally behind a gateway."""

    enabled: Flag = Field(False, description=(
        "deploy tracing: Jaeger v2 receiving OpenTelemetry (OTLP) spans, a Jaeger datasource in Grafana "
        "(see docs/tracing.md)"))
    storage: TracingStorage = Field("badger", description=(
        "where spans are kept: memory or badger (one all-in-one Jaeger), or elasticsearch (the logging stack's; "
        "collectors and query scale separately)"))
    retention_days: WholeNumber(1, 90) = Field(3, description=(
        "days spans are kept (Badger TTL; Elasticsearch daily indices older than this are deleted every night)"))
    memory_max_traces: WholeNumber(1000, 1000000) = Field(
        50000, description="traces the memory store holds before dropping the oldest")
    storage_size: StorageQuantity = Field("5Gi", description="size of the Badger volume")
    index_prefix: DnsLabel = Field("jaeger", description="prefix of Jaeger's Elasticsearch indices")
    index_shards: WholeNumber(1, 20) = Field(1, description="primary shards of each daily Jaeger index")
    index_replicas: WholeNumber(0, 3) = Field(1, description="replica shards of each daily Jaeger index")
    collector_settings: CollectorSettings = Field(
        alias="collector", default_factory=CollectorSettings, description="the Jaeger collectors")
    query_settings: QuerySettings = Field(alias="query")
    gateway_settings: GatewaySettings = Field(
        alias="gateway", default_factory=GatewaySettings, description="the OpenTelemetry Collector gateway")
    sampling: SamplingSettings = Field(default_factory=SamplingSettings, description="which traces are kept")

    collector_replicas = view("collector_settings.replicas")
    collector = view("collector_settings.resources")
    query = view("query_settings.resources")
    gateway_enabled = view("gateway_settings.enabled")
    gateway_replicas = view("gateway_settings.replicas")
    gateway = view("gateway_settings.resources")
    sampling_mode = view("sampling.mode")
    sampling_percentage = view("sampling.percentage")
    slow_trace_threshold = view("sampling.slow_trace_threshold")

    def broken_rules(self) -> list[str]:
        if not self.enabled:
            return []
        problems = []
        if self.storage != "elasticsearch" and self.collector_replicas != 1:
            problems.append(f"{HERE}collector.replicas = {self.collector_replicas} is not valid with {HERE}storage "
                            f"{self.storage!r}: expected 1 (memory and Badger live inside one Jaeger process; "
                            "scale collectors with storage elasticsearch)")
        if self.sampling_percentage < 100 and not self.gateway_enabled:
            problems.append(f"{HERE}sampling.percentage = {self.sampling_percentage} is not valid without "
                            f"{HERE}gateway.enabled: expected 100 (the sampler runs in the OpenTelemetry Collector "
                            "gateway)")
        if self.sampling_mode == "tail" and self.gateway_enabled and self.gateway_replicas != 1:
            problems.append(f"{HERE}gateway.replicas = {self.gateway_replicas} is not valid with {HERE}sampling.mode "
                            "'tail': expected 1 (tail sampling decides on whole traces, and the spans of one trace "
                            "would be spread over the replicas)")
        return problems


# --------------------------------------------------------------------------- logging

ElasticsearchResources = component_resources("Elasticsearch", "each Elasticsearch node", "500m", "2Gi", "2Gi")


class ElasticsearchSettings(Section):
    nodes: WholeNumber(1, 9) = Field(1, description=(
        "Elasticsearch nodes, each master-eligible and data; 1 runs discovery.type single-node, 3 or more a cluster "
        "that survives the loss of one node (2 is refused)"))
    storage_size: StorageQuantity = Field("10Gi", description="size of each Elasticsearch data volume")
    heap_percent: WholeNumber(25, 75) = Field(50, description=(
        "JVM heap as a share of the memory limit, in percent (Elastic: about half; the rest is filesystem cache)"))
    resources: ElasticsearchResources


LogstashResources = component_resources("Logstash", "each Logstash", "250m", "1Gi", "1536Mi")


class LogstashSettings(Section):
    replicas: WholeNumber(1, 5) = Field(1, description="Logstash replicas, each with its own persistent queue volume")
    storage_size: StorageQuantity = Field("5Gi", description=(
        "size of each Logstash persistent-queue volume (the queue may use 80% of it)"))
    resources: LogstashResources


KibanaResources = component_resources("Kibana", "Kibana", "100m", "1Gi", "1Gi")


class KibanaSettings(Section):
    host: OptionalHostname = Field(None, description="public host of Kibana (empty: no ingress)")
    resources: KibanaResources


SnapshotType = Choice("s3", "fs")


class SnapshotSettings(Section):
    """Backups of the log data streams by a snapshot lifecycle policy."""

    enabled: Flag = Field(False, description="back up the log data streams with a snapshot lifecycle policy")
    type: SnapshotType = Field("s3", description=(
        "snapshot repository: s3 (AWS S3 or an S3-compatible service; needs the loggingSnapshotAccessKey and "
        "loggingSnapshotSecretKey secrets) or fs (a shared ReadWriteMany volume, claimName)"))
    bucket: OptionalText = Field(None, description="S3 bucket of the repository (type s3)")
    endpoint: OptionalEndpoint = Field(None, description=(
        "host[:port] of an S3-compatible service (type s3; empty: AWS S3), reached over HTTPS"))
    base_path: OptionalText = Field("football-logs", description="path inside the bucket (type s3)")
    claim_name: OptionalText = Field(None, description=(
        "type fs: on Kubernetes an existing ReadWriteMany PersistentVolumeClaim mounted on every node; on a Docker "
        "host the name of the volume the stack creates for the repository"))
    schedule: ElasticsearchCron = Field(
        "0 30 1 * * ?", description="when snapshots are taken (Elasticsearch cron, UTC)")
    retention_days: WholeNumber(1, 3650) = Field(30, description="days a snapshot is kept (at least 5 are always kept)")


FilebeatSettings = resources_only("Filebeat", "each Filebeat (one per node)", "50m", "128Mi", "384Mi")
LoggingExporterSettings = resources_only(
    "LoggingExporter", "each logging metrics exporter (Elasticsearch, Logstash, Filebeat)", "10m", "32Mi", "128Mi")


class LoggingSettings(Section):
    """The logging stack: Elasticsearch, Logstash, Kibana and Filebeat."""

    enabled: Flag = Field(True, description=(
        "deploy the logging stack (Elasticsearch, Logstash, Kibana, Filebeat) on either platform; its memory limits "
        "add up to about 3.6 GiB with the dev sizes"))
    retention_days: WholeNumber(1, 3650) = Field(7, description=(
        "days a log index is kept after it rolled over (the lifecycle policy's delete phase)"))
    elasticsearch_settings: ElasticsearchSettings = Field(
        alias="elasticsearch", default_factory=ElasticsearchSettings, description="the Elasticsearch nodes")
    logstash_settings: LogstashSettings = Field(
        alias="logstash", default_factory=LogstashSettings, description="the Logstash replicas")
    kibana_settings: KibanaSettings = Field(alias="kibana", default_factory=KibanaSettings, description="Kibana")
    filebeat_settings: FilebeatSettings = Field(alias="filebeat")
    exporter_settings: LoggingExporterSettings = Field(alias="exporters")
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings, description="snapshots of the logs")

    nodes = view("elasticsearch_settings.nodes")
    storage_size = view("elasticsearch_settings.storage_size")
    heap_percent = view("elasticsearch_settings.heap_percent")
    elasticsearch = view("elasticsearch_settings.resources")
    logstash_replicas = view("logstash_settings.replicas")
    logstash_storage_size = view("logstash_settings.storage_size")
    logstash = view("logstash_settings.resources")
    kibana_host = view("kibana_settings.host")
    kibana = view("kibana_settings.resources")
    filebeat = view("filebeat_settings.resources")
    exporters = view("exporter_settings.resources")

    def broken_rules(self) -> list[str]:
        if not self.enabled:
            return []
        problems = []
        limit = self.elasticsearch.memory_limit
        if quantity_bytes(limit) < 2**30:
            problems.append(f"{HERE}elasticsearch.resources.limits.memory = {limit!r} is not valid: expected at least "
                            f"1Gi (the JVM heap takes {HERE}elasticsearch.heapPercent of it)")
        snapshot = self.snapshot
        if snapshot.enabled and snapshot.type == "s3" and not snapshot.bucket:
            problems.append(f"{HERE}snapshot.bucket is not set: expected a bucket when {HERE}snapshot.enabled is true "
                            f"and {HERE}snapshot.type is s3")
        if snapshot.enabled and snapshot.type == "fs" and not snapshot.claim_name:
            problems.append(f"{HERE}snapshot.claimName is not set: expected an existing ReadWriteMany "
                            f"PersistentVolumeClaim when {HERE}snapshot.type is fs (every node must see the "
                            "repository)")
        return problems


# --------------------------------------------------------------------------- images

class ImageSettings(Section):
    """The image of each service; the defaults are the pins in components/settings/images.py."""

    def __getitem__(self, name: str) -> str:
        return getattr(self, name)


# One field per pinned image, named as in images.py (already camelCase, so its own alias).
Images = create_model(
    "Images", __base__=ImageSettings, __module__=__name__,
    **{name: (ImageReference, Field(image, alias=name, description=f"{name} image"))
       for name, image in DEFAULT_IMAGES.items()})


# --------------------------------------------------------------------------- the stack

Platform = Choice("kubernetes", "docker")


class StackConfig(Section):
    """Everything a stack file may set under football-monitoring: (secrets aside)."""

    environment: OptionalDnsLabel = Field(None, description=(
        "environment label on every series and alert (default: the stack name)"))
    platform: Platform = Field("kubernetes", description=(
        "where the stack runs: a Kubernetes cluster, or a single Docker host"))
    namespace: DnsLabel = Field("monitoring", description="Kubernetes namespace the stack creates and deploys into")
    kube_context: OptionalText = Field(None, description=(
        "kubeconfig context to deploy to (empty: the current context)"))
    storage_class: OptionalText = Field(None, description="StorageClass of every volume (empty: the cluster default)")
    protect_data: Flag = Field(False, description=(
        "protect stateful resources from deletion and replacement (true in prod)"))
    ingress: IngressSettings = Field(default_factory=IngressSettings, description=(
        "ingresses of the UIs (Kubernetes): class, TLS, public hosts, authentication"))
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings, description=(
        "Prometheus: replicas, retention, volume, scrape and evaluation intervals, resources"))
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings, description=(
        "Alertmanager: replicas, retention, volume, resources"))
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings, description=(
        "Grafana: admin user, volume, resources"))
    exporters: ExporterSettings = Field(default_factory=ExporterSettings, description=(
        "the exporters: which run, and their resources"))
    probes: ProbeSettings = Field(default_factory=ProbeSettings, description=(
        "blackbox probes: HTTP, TCP and ICMP targets"))
    docker: DockerSettings = Field(default_factory=DockerSettings, description=(
        "platform docker: the Docker daemon and the published host ports"))
    static_targets: StaticTargets = Field((), description=(
        "extra scrape targets by address: a list of {job, target} (host:port), e.g. the FootballPrediction API on "
        "a Docker host"))
    alerting: AlertingSettings = Field(default_factory=AlertingSettings, description=(
        "alert delivery: teams, channels (Slack, e-mail, DingTalk), heartbeat, escalation, timings"))
    tracing: TracingSettings = Field(default_factory=TracingSettings, description=(
        "tracing: Jaeger, its storage, the OpenTelemetry gateway and sampling"))
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description=(
        "the logging stack: Elasticsearch, Logstash, Kibana, Filebeat, snapshots"))
    images: Images = Field(default_factory=Images, description="the image of each service, pinned by version")

    def model_post_init(self, context: Any) -> None:
        self.ingress._kibana_host = self.logging.kibana_host

    def broken_rules(self) -> list[str]:
        problems = []
        docker = self.platform == "docker"
        if docker:
            for section in ("prometheus", "alertmanager"):
                replicas = getattr(self, section).replicas
                if replicas != 1:
                    problems.append(f"{section}.replicas = {replicas} is not valid on platform docker: expected 1 "
                                    "(replicas on one host share its fate; HA needs Kubernetes)")
        for section in ("prometheus", "alertmanager"):
            url, ingress = getattr(self, section).external_url, self.ingress.url(section)
            if url and ingress and not docker:
                problems.append(f"{section}.externalUrl = {url!r} is not valid with ingress.{section}Host: expected "
                                f"empty (the ingress, {ingress}, is where {section} is opened from outside)")
        tracing, logging = self.tracing, self.logging
        if tracing.enabled and tracing.storage == "elasticsearch":
            if not logging.enabled:
                problems.append("tracing.storage = 'elasticsearch' needs the logging stack's Elasticsearch: expected "
                                "logging.enabled = true, or tracing.storage memory or badger")
            if docker:
                problems.append("tracing.storage = 'elasticsearch' is not valid on platform docker: expected memory or "
                                "badger (the nightly index cleanup is a Kubernetes CronJob)")
        if tracing.enabled and tracing.gateway_enabled and docker:
            problems.append("tracing.gateway.enabled = true is not valid on platform docker: expected false (on one "
                            "host the all-in-one Jaeger receives OTLP itself)")
        if logging.enabled and docker:
            # One host: more nodes or replicas would share its disk and its fate, for triple the memory.
            if logging.nodes != 1:
                problems.append(f"logging.elasticsearch.nodes = {logging.nodes} is not valid on platform docker: "
                                "expected 1 (nodes on one host share its fate; a cluster needs Kubernetes)")
            if logging.logstash_replicas != 1:
                problems.append(f"logging.logstash.replicas = {logging.logstash_replicas} is not valid on platform "
                                "docker: expected 1")
            if logging.kibana_host:
                problems.append(f"logging.kibana.host = {logging.kibana_host!r} is not valid on platform docker: "
                                "expected empty (a Docker host publishes Kibana on docker.bindAddress and "
                                "docker.kibanaPort; there is no ingress)")
        elif logging.enabled and logging.nodes == 2:
            problems.append("logging.elasticsearch.nodes = 2 is not valid: expected 1 (a single node) or 3 or more "
                            "(two master-eligible nodes cannot elect a master once either is gone)")
        return problems


def logging_enabled(settings: StackConfig) -> bool:
    return settings.logging.enabled


class Settings(StackConfig):
    """A loaded stack: its configuration, its name, and its secrets as secret Outputs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    stack: str
    secrets: Secrets = Field(repr=False)
