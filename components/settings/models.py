"""The settings of a stack: one model per section of ``Pulumi.<stack>.yaml``.

Each knob is declared once, as a field with its type, its default and its description; the loader,
docs/settings.md, the JSON Schema of the stack files and the declarations in Pulumi.yaml all come
from these models. Fields are snake_case in Python and camelCase in the stack file (their alias).

Rules across fields are methods marked ``@rule``. They are not validators: pydantic skips a model's
validators once a field inside it fails, so one bad value would hide every rule above it. The loader
validates the fields, then asks the valid part of the tree for its ``broken_rules``; a rule that reads
a setting which failed is skipped, every other one is judged.
"""

from __future__ import annotations

import functools
import inspect
from types import MappingProxyType
from typing import Annotated, Any, Callable, Iterable, Iterator, Mapping, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, create_model, model_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from components import logstash_volume
from components.settings.images import DEFAULT_IMAGES
from components.settings.secrets import Secrets
from components.settings.types import (
    Choice, CpuQuantity, CronSchedule, DnsLabel, Duration, ElasticsearchCron, Email, Flag, Host, HostPort, HttpUrl,
    ImageReference, IPv4Address, OptionalImageReference, LabelName, MemoryQuantity, OptionalAuthUrl, OptionalCpuQuantity, OptionalDnsLabel, OptionalEmail,
    OptionalEndpoint, OptionalHostname, OptionalHostPort, OptionalHttpUrl, OptionalObjectName, OptionalText,
    Percentage, Port, PrometheusSize, SlackChannel, StorageQuantity, Unreadable, WholeNumber, cpu_millicores,
    collection, duration_seconds, prometheus_size_bytes, quantity_bytes)

PROJECT = "football-monitoring"


def rule(check: Optional[Callable] = None, *, each: tuple = ()) -> Any:
    """Marks a section's method as a rule across its settings. ``check(self, at)`` yields one message
    per broken rule and writes keys as f"{at}key", ``at`` being the section's place in the file
    (``"prometheus."``, or ``""`` for the stack). With ``each``, ``check(self, at, item)`` is judged
    once per item, so that a setting which failed for one item does not hide the others."""

    def mark(check: Callable) -> Callable:
        check.rule_items = each or (None,)  # type: ignore[attr-defined]
        return check

    return mark(check) if check is not None else mark


def knob(default: Any = PydanticUndefined, doc: Optional[str] = None, **extra: Any) -> Any:
    """A field's default and description; a section's class as the default stands for its defaults,
    and its docstring describes it (in the field as in the section's own schema)."""
    if isinstance(default, type):
        return Field(default_factory=default, description=" ".join(inspect.cleandoc(default.__doc__).split()),
                     **extra)
    return Field(default, description=doc, **extra)


class Section(BaseModel):
    """A part of the stack configuration: every key known, nothing changed once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)

    @model_validator(mode="before")
    @classmethod
    def _given(cls, data: Any) -> Any:
        return cls.given(data)

    @classmethod
    def given(cls, data: Any) -> Any:
        """``data`` as the fields read it. `football-monitoring:ingress:` with nothing under it reads as
        null: all defaults (the section holding it says so, because a null item of a list is a mistake,
        not an empty object). A component's resources are its defaults with the file's keys over them."""
        if not isinstance(data, dict):
            return data
        fields, given = fields_by_alias(cls), {}
        for key, value in data.items():
            field = fields.get(key)
            if field is not None and isinstance(field.default, Section):
                value = _over(field.default.model_dump(), value)
            elif field is not None and value is None and section_type(field.annotation):
                value = {}
            given[key] = value
        return given

    def __getattr__(self, name: str) -> Any:
        # Only a partly valid section (loading.valid_part) lacks a field: the one that failed.
        if name in type(self).model_fields:
            raise Unreadable(name)
        return super().__getattr__(name)

    def broken_rules(self, at: str = "") -> list[str]:
        """What the rules of this section and of the sections inside it find, the inner ones first;
        a rule that reads a setting which failed validation is skipped."""
        problems = []
        for name, field in type(self).model_fields.items():
            inner = self.__dict__.get(name)
            if isinstance(inner, Section):
                problems += inner.broken_rules(f"{at}{field.alias or name}.")
        for check in (v for cls in reversed(type(self).__mro__) for v in vars(cls).values()):
            for item in getattr(check, "rule_items", ()):
                try:
                    problems += check(self, at) if item is None else check(self, at, item)
                except Unreadable:
                    pass
        return problems


def fields_by_alias(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields by their key in the stack file."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def section_type(annotation: Any) -> Optional[type[Section]]:
    """The section a field holds, or None for a value."""
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None


def keys_of(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every key of ``model`` in the stack file's spelling with its field, each section before its keys."""
    for alias, field in fields_by_alias(model).items():
        yield prefix + alias, field
        inner = section_type(field.annotation)
        if inner is not None:
            yield from keys_of(inner, f"{prefix}{alias}.")


def _over(defaults: dict, given: Any) -> Any:
    """``given`` over ``defaults`` key by key, null as nothing given; anything but an object as given
    (to be refused)."""
    if given is None:
        return defaults
    if not isinstance(given, dict):
        return given
    return {**defaults, **{key: _over(defaults[key], value) if isinstance(defaults.get(key), dict) else value
                           for key, value in given.items()}}


# --------------------------------------------------------------------------- resources

class _EveryKeyDefaulted(Section):
    # The section holding a component's resources gives every key its default (``given``), so the
    # stack file needs none of them.
    model_config = ConfigDict(json_schema_extra=lambda schema: schema.pop("required", None))


class Requests(_EveryKeyDefaulted):
    """What the scheduler reserves for the container."""

    cpu: CpuQuantity = knob(doc="CPU request of the container")
    memory: MemoryQuantity = knob(doc="memory request of the container")


class Limits(_EveryKeyDefaulted):
    """The most the container may use."""

    cpu: OptionalCpuQuantity = knob(None, "CPU limit of the container (empty: no CPU limit)")
    memory: MemoryQuantity = knob(doc="memory limit of the container")


class Resources(_EveryKeyDefaulted):
    """CPU and memory of one container: what the scheduler reserves, and the most it may use."""

    requests: Requests
    limits: Limits

    @classmethod
    def of(cls, cpu_request: str, memory_request: str, memory_limit: str,
           cpu_limit: Optional[str] = None) -> "Resources":
        """A container's resources written in code, where they read best flat; refused (ValueError)
        as in the stack file when a value is bad or a request is above its limit."""
        resources = cls.model_validate({"requests": {"cpu": cpu_request, "memory": memory_request},
                                        "limits": {"cpu": cpu_limit, "memory": memory_limit}})
        problems = resources.broken_rules()
        if problems:
            raise ValueError("; ".join(problems))
        return resources

    def to_kubernetes(self) -> dict:
        limits = {"memory": self.limits.memory}
        if self.limits.cpu:
            limits["cpu"] = self.limits.cpu
        return {"requests": {"cpu": self.requests.cpu, "memory": self.requests.memory}, "limits": limits}

    @rule(each=(("memory", quantity_bytes), ("cpu", cpu_millicores)))
    def _request_within_limit(self, at: str, kind: tuple[str, Callable[[str], float]]) -> Iterable[str]:
        name, amount = kind
        request, limit = getattr(self.requests, name), getattr(self.limits, name)
        if limit and amount(request) > amount(limit):  # (no CPU limit: none to be within)
            yield f"{at}requests.{name} = {request!r} is not valid: expected at most {at}limits.{name} ({limit})"


RESOURCES_OF = "CPU and memory of "


def component_resources(what: str, cpu: str, memory: str, memory_limit: str) -> Any:
    """The field of one component's resources, with that component's defaults (``what``, such as "each
    Prometheus", stands for "the container" in the descriptions of its keys).

    A CPU limit throttles scrapes and rule evaluation under bursts, so the defaults leave CPU
    unlimited and bound only memory.
    """
    return knob(Resources.of(cpu, memory, memory_limit), RESOURCES_OF + what)


def small_section(name: str, description: str, base: type[Section] = Section, **fields: tuple) -> Any:
    """The type of a section declared where it is used, all defaults when the file leaves it out."""
    model = create_model(name, __base__=base, __module__=__name__, __doc__=description, **fields)
    return Annotated[model, knob(model)]


def resources_only(name: str, what: str, cpu: str, memory: str, memory_limit: str) -> Any:
    """A section that holds nothing but one component's resources."""
    return small_section(f"{name}Settings", what,
                         resources=(Resources, component_resources(what, cpu, memory, memory_limit)))


def toggle(name: str, description: str) -> Any:
    """A section that only turns something on."""
    return small_section(f"{name}Settings", description, enabled=(Flag, knob(False, description)))


# --------------------------------------------------------------------------- ingress

class IngressSettings(Section):
    """Ingresses of the UIs (Kubernetes): class, TLS, public hosts, authentication."""

    class_name: OptionalObjectName = knob(None, "IngressClass of the UI ingresses")
    tls_secret_name: OptionalObjectName = knob(None, (
        "TLS Secret used by the UI ingresses (empty: plain HTTP); with clusterIssuer, the prefix of one Secret per UI, "
        "<tlsSecretName>-<ui>"))
    cluster_issuer: OptionalObjectName = knob(
        None, "cert-manager ClusterIssuer that issues each UI's Secret (<tlsSecretName>-grafana, -kibana, ...)")
    grafana_host: OptionalHostname = knob(None, "public host of Grafana (empty: no ingress)")
    prometheus_host: OptionalHostname = knob(None, "public host of Prometheus (empty: no ingress)")
    alertmanager_host: OptionalHostname = knob(None, "public host of Alertmanager (empty: no ingress)")
    jaeger_host: OptionalHostname = knob(None, "public host of the Jaeger UI (empty: no ingress; needs authUrl)")
    controller_namespace: DnsLabel = knob(
        "ingress-nginx", "namespace of the ingress controller (network policies let it reach the UIs)")
    auth_url: OptionalAuthUrl = knob(None, (
        "external authentication URL (nginx auth-url, e.g. an oauth2-proxy /oauth2/auth) required in front of "
        "Prometheus and Alertmanager, which have no login"))
    auth_signin: OptionalText = knob(None, "where unauthenticated users are sent (nginx auth-signin)")

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

    @rule(each=("prometheus", "alertmanager", "jaeger"))
    def _logins_need_auth(self, at: str, ui: str) -> Iterable[str]:
        host = getattr(self, f"{ui}_host")
        if host and not self.auth_url:
            yield (f"{at}{ui}Host = {host!r} is not valid without {at}authUrl: {ui} has no login of its own, so it "
                   "is exposed only behind an authenticating proxy (e.g. oauth2-proxy); use kubectl port-forward "
                   "otherwise")

    @rule
    def _issuer_needs_tls_secret(self, at: str) -> Iterable[str]:
        if self.cluster_issuer and not self.tls_secret_name:
            yield (f"{at}clusterIssuer = {self.cluster_issuer!r} is not valid: expected only together with "
                   f"{at}tlsSecretName, the Secret it issues")


# --------------------------------------------------------------------------- metrics

# TargetDown (rules/meta-monitoring.yaml) fires when more than 10% of a job's targets are down: with
# at most 8 shards of 2 replicas, one whole shard is 2 of 16 Prometheus targets, 12.5%, and still shows.
MAX_SHARDS = 8


class PrometheusSettings(Section):
    """Prometheus: replicas, retention, volume, scrape and evaluation intervals, resources."""

    replicas: WholeNumber(1, 4) = knob(1, "Prometheus replicas; 2 runs an HA pair scraping the same targets")
    shards: WholeNumber(1, MAX_SHARDS) = knob(1, (
        "scrape shards: each is its own set of `replicas` scraping a share of the fleet's targets (hashmod of the "
        "address) and the rules run in Thanos Ruler; more than 1 needs thanos.enabled and platform kubernetes "
        "(docs/scaling.md)"))
    retention: Duration(3600, 5 * 365 * 86400) = knob("15d", "how long samples are kept")
    retention_size: PrometheusSize = knob("8GB", "size cap of the TSDB; must fit in 85% of storageSize")
    storage_size: StorageQuantity = knob("10Gi", "size of each Prometheus volume")
    scrape_interval: Duration(1, 300) = knob("30s", "default scrape interval")
    scrape_timeout: Duration(1, 300) = knob("10s", "default scrape timeout (at most scrapeInterval)")
    evaluation_interval: Duration(1, 300) = knob("30s", "rule evaluation interval")
    kubelet_insecure_skip_verify: Flag = knob(False, (
        "skip TLS verification of kubelet serving certificates (only for clusters whose kubelet certificates are not "
        "signed by the cluster CA, such as kind)"))
    external_url: OptionalHttpUrl = knob(None, (
        "where people open Prometheus when ingress.prometheusHost is empty (a proxy or VPN address of your own): the "
        "links of alerts point there; empty: the cluster-internal address"))
    resources: Resources = component_resources("each Prometheus", "250m", "1Gi", "2Gi")

    @rule
    def _retention_size_fits_volume(self, at: str) -> Iterable[str]:
        cap = 0.85 * quantity_bytes(self.storage_size)
        if prometheus_size_bytes(self.retention_size) > cap:
            most = f"{int(cap // 2**30)}GB" if cap >= 2**30 else f"{int(cap // 2**20)}MB"
            yield (f"{at}retentionSize = {self.retention_size!r} is not valid: expected at most 85% of "
                   f"{at}storageSize ({self.storage_size}, so at most {most}) so that size-based "
                   "retention acts before the volume fills")

    @rule
    def _timeout_within_interval(self, at: str) -> Iterable[str]:
        if duration_seconds(self.scrape_timeout) > duration_seconds(self.scrape_interval):
            yield (f"{at}scrapeTimeout = {self.scrape_timeout!r} is not valid: "
                   f"expected at most {at}scrapeInterval ({self.scrape_interval})")


class AlertmanagerSettings(Section):
    """Alertmanager: replicas (one gossip cluster), how long silences are kept, volume, resources."""

    replicas: WholeNumber(1, 5) = knob(1, "Alertmanager replicas; more than 1 forms one gossip cluster")
    # Alertmanager reads it as a flag (--data.retention, str2duration): no y.
    retention: Duration(3600, 365 * 86400, years=False) = knob(
        "120h", "how long silences and the notification log are kept")
    storage_size: StorageQuantity = knob("1Gi", "size of each Alertmanager volume")
    external_url: OptionalHttpUrl = knob(None, (
        "where people open Alertmanager when ingress.alertmanagerHost is empty (a proxy or VPN address of your own): "
        "the links of Slack, e-mail and webhook notifications point there; empty: the cluster-internal address"))
    resources: Resources = component_resources("each Alertmanager", "25m", "256Mi", "256Mi")


class GrafanaSettings(Section):
    """Grafana: admin user, volume, resources."""

    admin_user: DnsLabel = knob("admin", "name of Grafana's admin user (its password is generated)")
    storage_size: StorageQuantity = knob("2Gi", "size of Grafana's volume")
    resources: Resources = component_resources("Grafana", "50m", "128Mi", "512Mi")


def server_exporter(name: str, server: str, secret: str, port: int, port_note: str = "") -> Any:
    """The section of the exporter of one of the service's servers, which it reaches with ``secret``."""
    exporter = f"{name}-exporter"
    return small_section(
        f"{name.title()}ExporterSettings", exporter,
        enabled=(Flag, knob(True, f"deploy {exporter} (needs the {secret} secret)")),
        required=(Flag, knob(True, f"demand the {secret} secret; false: without it {exporter} is left out (dev, "
                                   f"which has no {server} of the service)")),
        server_port=(WholeNumber(1, 65535), knob(port, (
            f"port of the {server} server {secret} names{port_note}: the exporter's NetworkPolicy lets it reach this "
            "port only"))),
        resources=(Resources, component_resources(exporter, "10m", "32Mi", "128Mi")))


class ExporterSettings(Section):
    """The exporters beside Prometheus (node, kube-state-metrics, blackbox, PostgreSQL, Redis): which run, and
    their resources."""

    node_exporter: resources_only("NodeExporter", "node-exporter", "20m", "32Mi", "128Mi")
    kube_state_metrics: resources_only("KubeStateMetrics", "kube-state-metrics", "20m", "64Mi", "256Mi")
    blackbox: resources_only("Blackbox", "blackbox-exporter", "10m", "32Mi", "128Mi")
    postgres: server_exporter("postgres", "PostgreSQL", "postgresDsn", 5432, " (6432 for a PgBouncer)")
    redis: server_exporter("redis", "Redis", "redisUrl", 6379)


# --------------------------------------------------------------------------- probes and targets

class ProbeTarget(Section):
    """One blackbox probe: a name for its series and what is probed."""

    name: DnsLabel = knob(doc="name of the probe (a DNS label), unique in its list")
    target: str = knob(doc="what is probed")


def probes(protocol: str, target: Any, what: str, example: str) -> Any:
    """The type of a list of probes whose targets are ``target``, ``what`` says how they are probed."""
    model = create_model(f"{protocol}ProbeTarget", __base__=ProbeTarget, __module__=__name__,
                         __doc__=ProbeTarget.__doc__,
                         target=(target, knob(doc=what)))
    return Annotated[tuple[model, ...], collection(
        tuple, f"a list of {{name, target}} objects, name a DNS label, target like {example}")]


class ProbeSettings(Section):
    """Blackbox probes: HTTP, TCP and ICMP targets."""

    http: probes("Http", HttpUrl, "URL probed with the http_2xx module",
                 "http://football-prediction-api.app.svc:8000/health") = knob(
        ({"name": "api-health", "target": "http://football-prediction-api.football-prediction.svc:8000/health"},),
        "HTTP targets probed with the http_2xx module", validate_default=True)
    tcp: probes("Tcp", HostPort, "host:port probed with the tcp_connect module", "postgres.app.svc:5432") = knob(
        ({"name": "postgres", "target": "postgres.football-prediction.svc:5432"},
         {"name": "redis", "target": "redis.football-prediction.svc:6379"}),
        "host:port targets probed with the tcp_connect module", validate_default=True)
    icmp: probes("Icmp", Host, "host probed with the icmp module", "postgres.app.svc") = knob(
        (), "hosts probed with the icmp module")

    @rule(each=("http", "tcp", "icmp"))
    def _unique_names(self, at: str, protocol: str) -> Iterable[str]:
        first: dict[str, int] = {}
        for index, probe in enumerate(getattr(self, protocol)):
            if probe.name in first:
                yield (f"{at}{protocol}[{index}].name = {probe.name!r} is not valid: expected a name unique within "
                       f"{at}{protocol} ({at}{protocol}[{first[probe.name]}] has it)")
            first.setdefault(probe.name, index)


class StaticTarget(Section):
    """An extra scrape target by address."""

    job: DnsLabel = knob(doc="job label of the target's series (a DNS label)")
    target: HostPort = knob(doc="host:port that Prometheus scrapes")


StaticTargets = Annotated[tuple[StaticTarget, ...],
                          collection(tuple, "a list of {job, target} objects, job a DNS label, target host:port")]


# --------------------------------------------------------------------------- a single Docker host

class DockerSettings(Section):
    """Platform docker: the Docker daemon, and the host ports its UIs are published on."""

    host: OptionalText = knob(None, (
        "Docker daemon to deploy to, e.g. unix:///var/run/docker.sock or ssh://user@host (empty: DOCKER_HOST or the "
        "local daemon)"))
    bind_address: IPv4Address = knob("127.0.0.1", "host address published UI ports listen on")
    grafana_port: Port = knob(3000, "host port of Grafana (0: not published)")
    prometheus_port: Port = knob(9090, "host port of Prometheus (0: not published)")
    alertmanager_port: Port = knob(9093, "host port of Alertmanager (0: not published)")
    jaeger_port: Port = knob(16686, "host port of the Jaeger UI when tracing is enabled (0: not published)")
    kibana_port: Port = knob(5601, "host port of Kibana when logging is enabled (0: not published)")
    elasticsearch_port: Port = knob(9200, (
        "host port of Elasticsearch's HTTPS API when logging is enabled, for tools.verify and operators (TLS and a "
        "password; 0: not published)"))

    @property
    def ports(self) -> Mapping[str, int]:
        """Published host port per UI, 0 = not published."""
        return {"grafana": self.grafana_port, "prometheus": self.prometheus_port,
                "alertmanager": self.alertmanager_port, "jaeger": self.jaeger_port, "kibana": self.kibana_port,
                "elasticsearch": self.elasticsearch_port}

    @rule
    def _one_service_per_host_port(self, at: str) -> Iterable[str]:
        first: dict[int, str] = {}
        for name, port in self.ports.items():
            if port and port in first:
                yield (f"{at}{name}Port = {port} is not valid: expected another port than {at}{first[port]}Port's "
                       "(two services cannot publish one host port; Docker refuses the second mid-deploy)")
            first.setdefault(port, name)

    def url(self, name: str, scheme: str = "http") -> Optional[str]:
        port = self.ports.get(name)
        if not port:
            return None
        host = "localhost" if self.bind_address in ("127.0.0.1", "0.0.0.0") else self.bind_address
        return f"{scheme}://{host}:{port}"


# --------------------------------------------------------------------------- alerting

TEAMS = ("platform", "backend", "data", "security")


class TeamContact(Section):
    """Where one team hears about its alerts."""

    slack_channel: Optional[SlackChannel] = knob(None, "Slack channel of the team (#channel)")
    email: Optional[Email] = knob(None, "e-mail address of the team")


def _every_team(teams: Mapping[str, TeamContact]) -> Mapping[str, TeamContact]:
    # Read-only like the rest of the settings: a frozen model does not freeze a dict it holds.
    return MappingProxyType({team: teams.get(team) or TeamContact() for team in TEAMS})


Teams = Annotated[Mapping[Choice(*TEAMS, allowed="a team: one of "), TeamContact],
                  collection(dict, "an object of teams (" + ", ".join(TEAMS) + ") each with optional slackChannel "
                                   "(#channel) and email (address)"),
                  AfterValidator(_every_team)]


class EmailSettings(Section):
    """E-mail notifications of critical alerts, through an SMTP smarthost."""

    enabled: Flag = knob(False, "notify teams by e-mail (needs smarthost and from)")
    smarthost: OptionalHostPort = knob(None, "SMTP server host:port")
    sender: OptionalEmail = knob(None, "sender address", alias="from")
    username: OptionalText = knob(None, "SMTP user (its password is the smtpPassword secret)")
    require_tls: Flag = knob(True, "require STARTTLS to the SMTP server")

    @rule(each=("smarthost", "from"))
    def _set_when_enabled(self, at: str, key: str) -> Iterable[str]:
        if self.enabled and not getattr(self, "sender" if key == "from" else key):
            yield f"{at}{key} is not set: expected a value when {at}enabled is true"


class Timings(Section):
    """How Alertmanager groups and repeats the notifications of one severity."""

    group_wait: str
    group_interval: str
    repeat_interval: str


def severity_timings(severity: str, group_wait: str, group_interval: str, repeat_interval: str) -> Any:
    return small_section(
        f"{severity.title()}Timings", f"notification timings of {severity} alerts", Timings,
        group_wait=(Duration(0, 3600), knob(
            group_wait, f"how long Alertmanager gathers {severity} alerts before the first notification")),
        group_interval=(Duration(1, 6 * 3600), knob(
            group_interval, f"how often a changed {severity} group is notified again")),
        repeat_interval=(Duration(1, 7 * 86400), knob(
            repeat_interval, f"how often a still-firing {severity} group is repeated")))


class WebhookSettings(Section):
    """The default webhook receiver (alertmanagerWebhookUrl): every notification that no other receiver takes, and a copy of the rest."""

    required: Flag = knob(True, (
        "demand the alertmanagerWebhookUrl secret; false: without it the notifications are delivered nowhere and stay "
        "visible in Alertmanager's UI (dev)"))


class AlertingSettings(Section):
    """Alert delivery: teams, channels (Slack, e-mail, DingTalk), heartbeat, escalation, timings."""

    quiet: Flag = knob(
        False, "only critical alerts reach people; warnings and info go to the default webhook alone (dev)")
    teams: Teams = knob({}, "where each team hears about its alerts: {platform: {slackChannel, email}, ...}",
                        validate_default=True, json_schema_extra={"propertyNames": {"enum": list(TEAMS)}})
    webhook: WebhookSettings = knob(WebhookSettings)
    slack: toggle("Slack", "notify teams' Slack channels (needs the slackApiUrl secret)")
    email: EmailSettings = knob(EmailSettings)
    dingtalk: toggle("Dingtalk", "notify critical alerts to DingTalk through a relay (needs dingtalkWebhookUrl)")
    heartbeat: toggle("Heartbeat", "send the always-firing Watchdog to an external dead man's switch (heartbeatUrl)")
    escalation: toggle(
        "Escalation", "also send every critical alert to an on-call paging webhook (escalationWebhookUrl)")
    critical: severity_timings("critical", "30s", "5m", "1h")
    warning: severity_timings("warning", "1m", "10m", "6h")
    info: severity_timings("info", "5m", "30m", "24h")

    @property
    def timings(self) -> Mapping[str, Timings]:
        """By severity."""
        return {"critical": self.critical, "warning": self.warning, "info": self.info}

    @rule(each=(("slack", "slack_channel"), ("email", "email")))
    def _a_team_on_each_channel(self, at: str, channel: tuple[str, str]) -> Iterable[str]:
        section, contact_key = channel
        if getattr(self, section).enabled and not any(getattr(c, contact_key) for c in self.teams.values()):
            yield (f"{at}teams = {{}} is not valid: expected at least one team with {to_camel(contact_key)} when "
                   f"{at}{section}.enabled is true")


# --------------------------------------------------------------------------- tracing

class SloSettings(Section):
    """Service level objectives: the rules and alerts generated from slos/*.yaml (docs/slos.md)."""

    enabled: Flag = knob(True, (
        "deploy the SLOs of slos/: their recording rules (error ratios per window, budget) and burn-rate alerts (see "
        "docs/slos.md)"))


class CollectorSettings(Section):
    """The Jaeger collectors."""

    replicas: WholeNumber(1, 10) = knob(
        1, "Jaeger collectors behind the OTLP Service (more than 1 needs storage elasticsearch)")
    resources: Resources = component_resources(
        "each Jaeger collector (or the all-in-one Jaeger)", "100m", "256Mi", "1Gi")


class GatewaySettings(Section):
    """The OpenTelemetry Collector gateway."""

    enabled: Flag = knob(False, (
        "put an OpenTelemetry Collector gateway (memory limiter, sampling, batching) in front of Jaeger; Kubernetes "
        "only"))
    replicas: WholeNumber(1, 10) = knob(1, (
        "gateway replicas; with tail sampling and more than 1, each replica routes every trace by its id to one "
        "replica (the load_balancing exporter over a headless Service), which samples it whole"))
    resources: Resources = component_resources("each gateway", "100m", "256Mi", "1Gi")


class SamplingSettings(Section):
    """Which traces are kept."""

    mode: Choice("probabilistic", "tail") = knob("probabilistic", (
        "probabilistic (by trace id) or tail (after the trace: every error and slow trace kept, plus percentage of the "
        "rest)"))
    percentage: Percentage = knob(100, "share of traces kept, in percent (below 100 needs the gateway)")
    slow_trace_threshold: Duration(0.001, 600) = knob("2s", "tail sampling keeps every trace slower than this")


class TracingSettings(Section):
    """Tracing: Jaeger v2 receiving OpenTelemetry (OTLP) spans, its storage, the OpenTelemetry gateway and sampling."""

    enabled: Flag = knob(False, (
        "deploy tracing: Jaeger v2 receiving OpenTelemetry (OTLP) spans, a Jaeger datasource in Grafana (see "
        "docs/tracing.md)"))
    storage: Choice("memory", "badger", "elasticsearch") = knob("badger", (
        "where spans are kept: memory or badger (one all-in-one Jaeger), or elasticsearch (the logging stack's; "
        "collectors and query scale separately)"))
    retention_days: WholeNumber(1, 90) = knob(
        3, "days spans are kept (Badger TTL; Elasticsearch daily indices older than this are deleted every night)")
    memory_max_traces: WholeNumber(1000, 1000000) = knob(
        50000, "traces the memory store holds before dropping the oldest")
    storage_size: StorageQuantity = knob("5Gi", "size of the Badger volume")
    index_prefix: DnsLabel = knob("jaeger", "prefix of Jaeger's Elasticsearch indices")
    index_shards: WholeNumber(1, 20) = knob(1, "primary shards of each daily Jaeger index")
    index_replicas: WholeNumber(0, 3) = knob(1, "replica shards of each daily Jaeger index")
    collector: CollectorSettings = knob(CollectorSettings)
    query: resources_only("Query", "Jaeger query (storage elasticsearch)", "50m", "128Mi", "512Mi")
    gateway: GatewaySettings = knob(GatewaySettings)
    sampling: SamplingSettings = knob(SamplingSettings)

    @rule
    def _one_collector_in_process(self, at: str) -> Iterable[str]:
        if self.enabled and self.storage != "elasticsearch" and self.collector.replicas != 1:
            yield (f"{at}collector.replicas = {self.collector.replicas} is not valid with {at}storage "
                   f"{self.storage!r}: expected 1 (memory and Badger live inside one Jaeger process; scale "
                   "collectors with storage elasticsearch)")

    @rule
    def _sampling_needs_gateway(self, at: str) -> Iterable[str]:
        if self.enabled and self.sampling.percentage < 100 and not self.gateway.enabled:
            yield (f"{at}sampling.percentage = {self.sampling.percentage} is not valid without "
                   f"{at}gateway.enabled: expected 100 (the sampler runs in the OpenTelemetry Collector gateway)")


# --------------------------------------------------------------------------- logging

class ElasticsearchSettings(Section):
    """The Elasticsearch nodes."""

    nodes: WholeNumber(1, 9) = knob(1, (
        "Elasticsearch nodes, each master-eligible and data; 1 runs discovery.type single-node, 3 or more a cluster "
        "that survives the loss of one node (2 is refused)"))
    storage_size: StorageQuantity = knob("10Gi", "size of each Elasticsearch data volume")
    heap_percent: WholeNumber(25, 75) = knob(
        50, "JVM heap as a share of the memory limit, in percent (Elastic: about half; the rest is filesystem cache)")
    allow_mmap: Flag = knob(True, (
        "memory-map index files (node.store.allow_mmap), as Elastic advises for production: every node must have the "
        "kernel setting vm.max_map_count of at least 262144, which each node checks before it starts; false reads them "
        "through NIO instead (slower searches on large indices) where nodes cannot be set so"))
    resources: Resources = component_resources("each Elasticsearch node", "500m", "2Gi", "2Gi")


class LogstashSettings(Section):
    """The Logstash replicas."""

    replicas: WholeNumber(1, 5) = knob(1, "Logstash replicas, each with its own persistent queue volume")
    storage_size: StorageQuantity = knob("5Gi", (
        "size of each Logstash volume: the persistent queue and the dead letter queue are capped to fit it beside "
        "a heap dump and the filesystem's share (docs/logging.md)"))
    resources: Resources = component_resources("each Logstash", "250m", "1Gi", "1536Mi")


class KibanaSettings(Section):
    """Kibana."""

    host: OptionalHostname = knob(None, "public host of Kibana (empty: no ingress)")
    resources: Resources = component_resources("Kibana", "100m", "1Gi", "1Gi")


class SnapshotSettings(Section):
    """Backups of the log data streams by a snapshot lifecycle policy."""

    enabled: Flag = knob(False, "back up the log data streams with a snapshot lifecycle policy")
    type: Choice("s3", "fs") = knob("s3", (
        "snapshot repository: s3 (AWS S3 or an S3-compatible service; needs the loggingSnapshotAccessKey and "
        "loggingSnapshotSecretKey secrets) or fs (a shared ReadWriteMany volume, claimName)"))
    bucket: OptionalText = knob(None, "S3 bucket of the repository (type s3)")
    endpoint: OptionalEndpoint = knob(
        None, "host[:port] of an S3-compatible service (type s3; empty: AWS S3), reached over HTTPS")
    base_path: OptionalText = knob("football-logs", "path inside the bucket (type s3)")
    claim_name: OptionalObjectName = knob(None, (
        "type fs: on Kubernetes an existing ReadWriteMany PersistentVolumeClaim mounted on every node; on a Docker "
        "host the name of the volume the stack creates for the repository"))
    schedule: ElasticsearchCron = knob("0 30 1 * * ?", "when snapshots are taken (Elasticsearch cron, UTC)")
    retention_days: WholeNumber(1, 3650) = knob(30, "days a snapshot is kept (at least 5 are always kept)")


class LoggingSettings(Section):
    """The logging stack: Elasticsearch, Logstash, Kibana, Filebeat, snapshots."""

    enabled: Flag = knob(True, (
        "deploy the logging stack (Elasticsearch, Logstash, Kibana, Filebeat) on either platform; its memory limits "
        "add up to about 3.6 GiB with the dev sizes"))
    retention_days: WholeNumber(1, 3650) = knob(
        7, "days a log index is kept after it rolled over (the lifecycle policy's delete phase)")
    elasticsearch: ElasticsearchSettings = knob(ElasticsearchSettings)
    logstash: LogstashSettings = knob(LogstashSettings)
    kibana: KibanaSettings = knob(KibanaSettings)
    filebeat: resources_only("Filebeat", "each Filebeat (one per node)", "50m", "128Mi", "384Mi")
    exporters: resources_only(
        "LoggingExporter", "each logging metrics exporter (Elasticsearch, Logstash, Filebeat)", "10m", "32Mi", "128Mi")
    snapshot: SnapshotSettings = knob(SnapshotSettings)

    @rule
    def _heap_fits(self, at: str) -> Iterable[str]:
        limit = self.elasticsearch.resources.limits.memory
        if self.enabled and quantity_bytes(limit) < 2**30:
            yield (f"{at}elasticsearch.resources.limits.memory = {limit!r} is not valid: expected at least 1Gi "
                   f"(the JVM heap takes {at}elasticsearch.heapPercent of it)")

    @rule
    def _logstash_volume_holds_its_queues(self, at: str) -> Iterable[str]:
        storage, memory = self.logstash.storage_size, self.logstash.resources.limits.memory
        heap = logstash_volume.heap_mb(quantity_bytes(memory))
        smallest = logstash_volume.logstash_storage_minimum(heap)
        if self.enabled and quantity_bytes(storage) < smallest:
            yield (f"{at}logstash.storageSize = {storage!r} is not valid with {at}logstash.resources.limits.memory "
                   f"= {memory!r}: expected at least {smallest // 2**20}Mi (the persistent queue needs one 64 MiB "
                   f"page beside the dead letter queue, a heap dump of {heap} MiB and the filesystem's share)")

    @rule
    def _s3_snapshots_need_bucket(self, at: str) -> Iterable[str]:
        snapshot = self.snapshot
        if self.enabled and snapshot.enabled and snapshot.type == "s3" and not snapshot.bucket:
            yield (f"{at}snapshot.bucket is not set: expected a bucket when {at}snapshot.enabled is true and "
                   f"{at}snapshot.type is s3")

    @rule
    def _fs_snapshots_need_claim(self, at: str) -> Iterable[str]:
        snapshot = self.snapshot
        if self.enabled and snapshot.enabled and snapshot.type == "fs" and not snapshot.claim_name:
            yield (f"{at}snapshot.claimName is not set: expected an existing ReadWriteMany PersistentVolumeClaim "
                   f"when {at}snapshot.type is fs (every node must see the repository)")


# --------------------------------------------------------------------------- the demo workload

class DemoSettings(Section):
    """The demo workload: a FootballPrediction stand-in (demo/) that fills every dashboard, log view and trace view."""

    enabled: Flag = knob(False, (
        "run the demo workload: a stand-in API and Celery worker serving the metric contract with realistic traffic, "
        "the service's JSON logs and OTLP traces (on in dev; refused with protectData, where its made-up data would be "
        "kept beside the real service's)"))
    image: OptionalImageReference = knob(None, (
        "platform kubernetes: the demo's image in a registry the cluster pulls from (docker build -f demo/Dockerfile "
        ".); a Docker host builds it from this repository itself"))
    rps: WholeNumber(1, 50) = knob(5, "API requests per second the demo's traffic makes")


# --------------------------------------------------------------------------- the service level report

REPORT_APP = "service-level-report"  # the scheduled report's name: its peers let it in by this name


class ReportSettings(Section):
    """The service level report on a schedule (docs/report.md): when, which period, the webhook, its image."""

    enabled: Flag = knob(False, (
        "write the service level report (python -m components.report) on a schedule into a volume: a CronJob on "
        "Kubernetes, a container that waits for each time on a Docker host"))
    schedule: CronSchedule = knob(
        "0 6 * * 1", "when the report is written: a cron schedule of five fields, UTC (default Mondays 06:00)")
    period: Choice("day", "week") = knob("week", "the period each report covers, ending when it is written")
    post_to_webhook: Flag = knob(
        False, "post each report's summary to the default webhook (the alertmanagerWebhookUrl secret, then demanded)")
    image: OptionalImageReference = knob(None, (
        "platform kubernetes: the report's image in a registry the cluster pulls from (docker build -f "
        "components/report/Dockerfile .); a Docker host builds it from this repository itself"))
    storage_size: StorageQuantity = knob("1Gi", "size of the volume the reports are written to")


# --------------------------------------------------------------------------- images

class ImageSettings(Section):
    """The image of each service, pinned by version (the defaults are the pins in components/settings/images.py)."""

    def __getitem__(self, name: str) -> str:
        return getattr(self, name)


# One field per pinned image, named as in images.py (already camelCase, so its own alias).
Images = create_model(
    "Images", __base__=ImageSettings, __module__=__name__, __doc__=ImageSettings.__doc__,
    **{name: (ImageReference, knob(image, f"{name} image", alias=name))
       for name, image in DEFAULT_IMAGES.items()})


# --------------------------------------------------------------------------- the stack


# --------------------------------------------------------------------------- thanos

class ThanosObjstoreSettings(Section):
    """The bucket every Thanos component reads and the sidecars and compactor write."""

    type: Choice("s3", "filesystem") = knob("s3", (
        "s3 (AWS S3 or an S3-compatible service; needs the thanosObjstoreAccessKey and thanosObjstoreSecretKey "
        "secrets) or filesystem (a local directory: only for tests, every component must see the same one)"))
    bucket: OptionalText = knob(None, "the S3 bucket (type s3)")
    endpoint: OptionalEndpoint = knob(
        "s3.amazonaws.com", "host[:port] of the S3 service (type s3), reached over HTTPS unless insecure")
    region: OptionalText = knob(None, "S3 region of the bucket (type s3; empty: the service's default)")
    insecure: Flag = knob(False, "reach the S3 endpoint over plain HTTP (type s3; a test MinIO only)")
    directory: OptionalText = knob(None, "the bucket's directory (type filesystem)")

    @property
    def port(self) -> int:
        if self.endpoint and ":" in self.endpoint:
            return int(self.endpoint.rsplit(":", 1)[1])
        return 80 if self.insecure else 443


class ThanosSettings(Section):
    """Thanos over the Prometheus replicas: a deduplicated view of all of them, and their blocks kept in object
    storage, downsampled, for longer than the local disks hold (docs/scaling.md)."""

    enabled: Flag = knob(False, (
        "run a Thanos sidecar beside each Prometheus (uploading its blocks), Thanos Query (Grafana's datasource), "
        "the store gateway and the compactor; Kubernetes only"))
    objstore: ThanosObjstoreSettings = knob(ThanosObjstoreSettings)
    replica_label: LabelName = knob(
        "replica", "the external label that tells the Prometheus replicas apart; Thanos Query deduplicates along it")
    retention_raw: Duration(86400, 10 * 365 * 86400) = knob(
        "30d", "how long raw samples are kept in the bucket (the compactor deletes older blocks)")
    retention5m: Duration(86400, 10 * 365 * 86400) = knob(
        "180d", "how long the 5-minute downsampled blocks are kept", alias="retention5m")
    retention1h: Duration(86400, 10 * 365 * 86400) = knob(
        "2y", "how long the 1-hour downsampled blocks are kept", alias="retention1h")
    query_replicas: WholeNumber(1, 5) = knob(
        2, "replicas of Thanos Query (Grafana's, and with prometheus.shards above 1 the Rulers' own as well)")
    query_frontend: Flag = knob(
        False, "put the query frontend (splitting and retrying range queries) between Grafana and Thanos Query")
    store_storage_size: StorageQuantity = knob(
        "10Gi", "size of the store gateway's volume (index headers and its cache of the bucket)")
    compactor_storage_size: StorageQuantity = knob(
        "100Gi", ("size of the compactor's volume: it downloads every block it joins, up to two weeks of each "
                  "replica's blocks for the last level (and the 1-hour downsampling waits for that level), so about "
                  "twice what a Prometheus replica holds over two weeks"))
    sidecar_resources: Resources = component_resources("each Thanos sidecar (one per Prometheus)", "50m", "64Mi", "512Mi")
    query_resources: Resources = component_resources(
        "each Thanos Query replica (Grafana's, and the Rulers' own with scrape shards)", "100m", "256Mi", "2Gi")
    store_resources: Resources = component_resources("the Thanos store gateway", "100m", "512Mi", "2Gi")
    compactor_resources: Resources = component_resources("the Thanos compactor", "100m", "512Mi", "2Gi")
    query_frontend_resources: Resources = component_resources(
        "each Thanos query frontend replica", "50m", "128Mi", "1Gi")
    rule_replicas: WholeNumber(1, 3) = knob(2, (
        "Thanos Ruler replicas, each evaluating every rule through Thanos Query (only with prometheus.shards above 1)"))
    rule_storage_size: StorageQuantity = knob(
        "10Gi", "size of each Thanos Ruler volume (its recorded series and alert states, uploaded every 2 hours)")
    rule_resources: Resources = component_resources("each Thanos Ruler replica", "100m", "256Mi", "1Gi")

    @rule
    def _s3_needs_bucket(self, at: str) -> Iterable[str]:
        if self.enabled and self.objstore.type == "s3" and not self.objstore.bucket:
            yield (f"{at}objstore.bucket is not set: expected the bucket when {at}enabled is true and "
                   f"{at}objstore.type is s3")

    @rule
    def _filesystem_needs_directory(self, at: str) -> Iterable[str]:
        if self.enabled and self.objstore.type == "filesystem" and not self.objstore.directory:
            yield (f"{at}objstore.directory is not set: expected the bucket's directory when {at}objstore.type "
                   "is filesystem")

    @rule
    def _downsampled_outlive_raw(self, at: str) -> Iterable[str]:
        # The compactor downsamples from raw (5m) and from 5m (1h) blocks: a resolution deleted
        # before the one made from it makes the longer retention empty.
        raw, five, hour = (duration_seconds(v) for v in (self.retention_raw, self.retention5m, self.retention1h))
        if not raw <= five <= hour:
            yield (f"{at}retentionRaw, {at}retention5m and {at}retention1h = {self.retention_raw!r}, "
                   f"{self.retention5m!r}, {self.retention1h!r} are not valid: expected each at least the one "
                   "before (the coarser blocks are made from the finer ones)")

    @rule
    def _finer_blocks_live_until_downsampled(self, at: str) -> Iterable[str]:
        # The compactor downsamples a raw block to 5m once it spans 40 h, and a 5m block to 1h once
        # it spans 10 days (pkg/compact/downsample/downsample.go): the blocks reach those spans at
        # the 2-day and 14-day compaction levels, so the finer blocks must outlive those levels.
        for key, value, minimum, made in (("retentionRaw", self.retention_raw, 3, "5m"),
                                          ("retention5m", self.retention5m, 15, "1h")):
            if self.enabled and duration_seconds(value) < minimum * 86400:
                yield (f"{at}{key} = {value!r} is not valid: expected at least {minimum}d (the compactor makes the "
                       f"{made} blocks only from blocks compacted to {'2 days' if made == '5m' else '14 days'}, so "
                       f"shorter kept blocks are deleted before they are downsampled)")


# What one Docker host cannot run: place in the file (its attributes in code too) -> (whether its value
# is wrong there, what is expected instead and why).
_SINGLE_HOST: dict[str, tuple[Callable, str]] = {
    **{f"{section}.replicas": (lambda s, value: value != 1,
                               "1 (replicas on one host share its fate; HA needs Kubernetes)")
       for section in ("prometheus", "alertmanager")},
    "tracing.storage": (lambda s, value: s.tracing.enabled and value == "elasticsearch",
                        "memory or badger (the nightly index cleanup is a Kubernetes CronJob)"),
    "tracing.gateway.enabled": (lambda s, value: s.tracing.enabled and value,
                                "false (on one host the all-in-one Jaeger receives OTLP itself)"),
    # More Elasticsearch nodes or Logstash replicas would share the host's disk and its fate, for triple the memory.
    "logging.elasticsearch.nodes": (lambda s, value: s.logging.enabled and value != 1,
                                    "1 (nodes on one host share its fate; a cluster needs Kubernetes)"),
    "logging.logstash.replicas": (lambda s, value: s.logging.enabled and value != 1, "1"),
    "prometheus.shards": (lambda s, value: value != 1,
                          "1 (shards are merged by Thanos Query, which runs on Kubernetes only)"),
    "thanos.enabled": (lambda s, value: value,
                       "false (Thanos is for a Kubernetes HA pair: its sidecar shares each Prometheus pod's volume, "
                       "and one host's single Prometheus has no replica to deduplicate)"),
    "logging.kibana.host": (lambda s, value: s.logging.enabled and bool(value),
                            "empty (a Docker host publishes Kibana on docker.bindAddress and docker.kibanaPort; "
                            "there is no ingress)"),
}


class StackConfig(Section):
    """Everything a stack file may set under football-monitoring: (secrets aside)."""

    environment: OptionalDnsLabel = knob(None, "environment label on every series and alert (default: the stack name)")
    platform: Choice("kubernetes", "docker") = knob(
        "kubernetes", "where the stack runs: a Kubernetes cluster, or a single Docker host")
    namespace: DnsLabel = knob(
        "monitoring", "Kubernetes namespace the stack creates and deploys into (PodSecurity restricted)")
    node_namespace: OptionalDnsLabel = knob(None, (
        "Kubernetes namespace of the workloads that need host access, node-exporter and Filebeat (PodSecurity "
        "privileged, nothing else in it); empty: <namespace>-node"))
    kube_context: OptionalText = knob(None, "kubeconfig context to deploy to (empty: the current context)")
    storage_class: OptionalObjectName = knob(None, "StorageClass of every volume (empty: the cluster default)")
    protect_data: Flag = knob(False, "protect stateful resources from deletion and replacement (true in prod)")
    ingress: IngressSettings = knob(IngressSettings)
    prometheus: PrometheusSettings = knob(PrometheusSettings)
    alertmanager: AlertmanagerSettings = knob(AlertmanagerSettings)
    grafana: GrafanaSettings = knob(GrafanaSettings)
    exporters: ExporterSettings = knob(ExporterSettings)
    probes: ProbeSettings = knob(ProbeSettings)
    docker: DockerSettings = knob(DockerSettings)
    static_targets: StaticTargets = knob((), (
        "extra scrape targets by address: a list of {job, target} (host:port), e.g. the FootballPrediction API on a "
        "Docker host"))
    alerting: AlertingSettings = knob(AlertingSettings)
    slo: SloSettings = knob(SloSettings)
    tracing: TracingSettings = knob(TracingSettings)
    logging: LoggingSettings = knob(LoggingSettings)
    images: Images = knob(Images)
    demo: DemoSettings = knob(DemoSettings)
    report: ReportSettings = knob(ReportSettings)
    thanos: ThanosSettings = knob(ThanosSettings)

    def model_post_init(self, context: Any) -> None:
        self.ingress._kibana_host = self.logging.kibana.host

    @property
    def host_namespace(self) -> str:
        """Where node-exporter and Filebeat run: apart, so the stack's namespace can be restricted."""
        return self.node_namespace or f"{self.namespace}-node"

    @rule
    def _node_namespace_apart(self, at: str) -> Iterable[str]:
        if self.platform == "docker":
            return
        name = self.host_namespace
        if name == self.namespace:
            yield (f"{at}nodeNamespace = {name!r} is not valid: expected another namespace than {at}namespace (the "
                   "host-access workloads need a privileged namespace of their own)")
        elif len(name) > 63:
            yield (f"{at}nodeNamespace is empty and {at}namespace = {self.namespace!r} is too long for the default "
                   f"<namespace>-node ({len(name)} characters): expected a namespace of at most 58 characters, "
                   f"or {at}nodeNamespace set")

    @rule(each=("prometheus", "alertmanager"))
    def _external_url_beside_an_ingress(self, at: str, section: str) -> Iterable[str]:
        url, ingress = getattr(self, section).external_url, self.ingress.url(section)
        if url and ingress and self.platform != "docker":
            yield (f"{at}{section}.externalUrl = {url!r} is not valid with {at}ingress.{section}Host: expected "
                   f"empty (the ingress, {ingress}, is where {section} is opened from outside)")

    @rule
    def _traces_in_elasticsearch_need_logging(self, at: str) -> Iterable[str]:
        tracing = self.tracing
        if tracing.enabled and tracing.storage == "elasticsearch" and not self.logging.enabled:
            yield (f"{at}tracing.storage = 'elasticsearch' needs the logging stack's Elasticsearch: expected "
                   f"{at}logging.enabled = true, or {at}tracing.storage memory or badger")

    @rule(each=tuple(_SINGLE_HOST))
    def _fits_one_docker_host(self, at: str, key: str) -> Iterable[str]:
        broken, expected = _SINGLE_HOST[key]
        if self.platform == "docker":
            value = functools.reduce(getattr, key.split("."), self)
            if broken(self, value):
                shown = ("true" if value else "false") if isinstance(value, bool) else \
                    repr(value) if isinstance(value, str) else value
                yield f"{at}{key} = {shown} is not valid on platform docker: expected {expected}"

    @rule
    def _shards_need_thanos(self, at: str) -> Iterable[str]:
        # On a Docker host _fits_one_docker_host already refuses the value.
        if self.platform != "docker" and self.prometheus.shards > 1 and not self.thanos.enabled:
            yield (f"{at}prometheus.shards = {self.prometheus.shards} needs {at}thanos.enabled = true: Thanos Query "
                   "merges the shards into the view Grafana reads and Thanos Ruler evaluates the rules over it; "
                   f"expected {at}thanos.enabled = true, or {at}prometheus.shards = 1")

    @rule
    def _no_report_beside_shards(self, at: str) -> Iterable[str]:
        if self.report.enabled and self.prometheus.shards > 1:
            yield (f"{at}report.enabled = true is not valid with {at}prometheus.shards = {self.prometheus.shards}: "
                   "expected false (the report reads one Prometheus, which then holds a share of the series and "
                   "none of the SLO recordings, now Thanos Ruler's)")

    @rule
    def _no_demo_beside_protected_data(self, at: str) -> Iterable[str]:
        if self.demo.enabled and self.protect_data:
            yield (f"{at}demo.enabled = true is not valid with {at}protectData = true: expected false (the demo's "
                   "made-up requests, logs and traces would be kept and alerted on as the real service's; a "
                   "protected stack is a production one)")

    @rule(each=(("demo", "demo/Dockerfile", "football-demo"),
                ("report", "components/report/Dockerfile", "football-monitoring-report")))
    def _image_on_kubernetes(self, at: str, built: tuple[str, str, str]) -> Iterable[str]:
        section, dockerfile, name = built
        if getattr(self, section).enabled and self.platform == "kubernetes" and not getattr(self, section).image:
            yield (f"{at}{section}.image is not set: expected the {section}'s image in a registry the cluster pulls "
                   f"from when {at}{section}.enabled is true on platform kubernetes (docker build -f {dockerfile} -t "
                   f"<registry>/{name}:<tag> . and push it), or {at}{section}.enabled = false")

    @rule
    def _report_reads_the_slos(self, at: str) -> Iterable[str]:
        if self.report.enabled and not self.slo.enabled:
            yield (f"{at}report.enabled = true is not valid with {at}slo.enabled = false: expected {at}slo.enabled "
                   "true (the report reads the SLOs' recorded series)")

    @rule
    def _no_two_node_cluster(self, at: str) -> Iterable[str]:
        if self.logging.enabled and self.platform != "docker" and self.logging.elasticsearch.nodes == 2:
            yield (f"{at}logging.elasticsearch.nodes = 2 is not valid: expected 1 (a single node) or 3 or more (two "
                   "master-eligible nodes cannot elect a master once either is gone)")


class Settings(StackConfig):
    """A loaded stack: its configuration, its name, and its secrets as secret Outputs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    stack: str
    secrets: Secrets = knob(repr=False)
