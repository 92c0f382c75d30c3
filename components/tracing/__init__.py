"""Tracing: Jaeger v2 (built on the OpenTelemetry Collector) and an optional OTel Collector gateway.

Two shapes, chosen by ``tracing.storage``:

- memory or badger: one all-in-one Jaeger (``jaeger``) receives OTLP, keeps spans (Badger on
  a volume, with a TTL of the retention days) and serves the UI. This is dev, on Kubernetes or
  on one Docker host.
- elasticsearch: collectors (``jaeger-collector``, scaled by replicas behind one Service) write
  to the logging stack's Elasticsearch in daily indices, a query service (``jaeger``) serves the
  UI, and a nightly CronJob (``jaeger-es-index-cleaner``) deletes indices older than the
  retention days, so the indices cannot grow without bound. Kubernetes only.

The optional gateway (``otel-gateway``) sits in front: memory limiter, sampling (rate per
environment from settings), batching, OTLP export to Jaeger. Applications send OTLP to
``otlp_grpc_endpoint`` / ``otlp_http_endpoint`` (stack outputs), whichever of the three that is.
The gateway reaches Jaeger's OTLP receivers through a headless Service (``<name>-headless``) and
balances over every pod; with tail sampling on more than one replica it also routes each trace
to one replica over a headless Service of its own (components/configs/otel_collector.py).

Elasticsearch credentials reach Jaeger only as a mounted Secret file (``password_file``) and
the index cleaner only through a secretKeyRef; the CA certificate is the logging stack's own
Secret, mounted by name.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi

from components.configs import jaeger as jaeger_config
from components.configs import otel_collector as gateway_config
from components.configs.prometheus import ScrapeTarget
from components.settings import Resources, Settings, duration_seconds
from components.settings.types import quantity_bytes
from components.platform.workload import (INGRESS, OTHER_NAMESPACES, ConfigFiles, DataVolume, ElasticsearchConnection, ExternalSecret, Flow,
                                          HttpCheck, Platform, Port,
                       ServiceSpec)

JAEGER_UID = 10001  # the user of the jaeger and otelcol-contrib images
CONFIG_DIR = "/etc/jaeger"
ES_CREDENTIALS_DIR = "/etc/jaeger/es-credentials"
ES_CA_DIR = "/etc/jaeger/es-ca"
BADGER_DIR = "/tmp/badger"  # on the data volume mounted at /tmp (the image's own writable /tmp)
CLEANER_SCHEDULE = "15 0 * * *"  # nightly, after the day's index has rolled over at midnight UTC
CLEANER_RESOURCES = Resources.of(cpu_request="10m", memory_request="32Mi", memory_limit="128Mi")
OTLP_PORTS = [(jaeger_config.OTLP_GRPC_PORT, "TCP"), (jaeger_config.OTLP_HTTP_PORT, "TCP")]
# The stack's own OTLP clients (the demo, the gateway) export over gRPC only.
OTLP_CLIENT_PORTS = [(jaeger_config.OTLP_GRPC_PORT, "TCP")]
GATEWAY = "otel-gateway"


def _config(text: str) -> ConfigFiles:
    # Read at start: a change rolls the pods (checksum annotation) or replaces the container.
    return ConfigFiles("config", CONFIG_DIR, {"config.yaml": text})


def _go_memory_limit(cfg: jaeger_config.JaegerConfig, resources: Resources) -> dict[str, str]:
    return {"GOMEMLIMIT": jaeger_config.go_memory_limit(cfg, quantity_bytes(resources.limits.memory))}


def _ports(ports: dict[str, int]) -> list[Port]:
    return [Port(name, port) for name, port in ports.items()]


class Jaeger(pulumi.ComponentResource):
    """Jaeger v2: all-in-one (memory/Badger) or collectors + query + index cleaner (Elasticsearch)."""

    internal_url: str
    external_url: Optional[str]
    otlp_grpc_endpoint: str
    otlp_http_endpoint: str

    def __init__(self, name: str, *, settings: Settings, platform: Platform,
                 elasticsearch: Optional[ElasticsearchConnection] = None, gateway: bool = False,
                 otlp_clients: Sequence[str] = (), opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:tracing:Jaeger", name, None, opts)
        tracing = settings.tracing
        self.external_url = platform.public_url("jaeger")
        # Who may send OTLP to Jaeger: the gateway when there is one, otherwise the applications of
        # other namespaces and the stack's own ``otlp_clients`` (the demo), which no namespace rule admits.
        self._otlp_from = ([Flow(GATEWAY, OTLP_CLIENT_PORTS)] if gateway else
                           [Flow(OTHER_NAMESPACES, OTLP_PORTS)] + [Flow(c, OTLP_CLIENT_PORTS) for c in otlp_clients])
        self._headless = ["otlp-grpc"] if gateway else []
        if tracing.storage == "elasticsearch":
            if elasticsearch is None:
                raise ValueError("tracing.storage elasticsearch needs an ElasticsearchConnection")
            self._split(settings, platform, elasticsearch)
        else:
            self._all_in_one(settings, platform)
        self.internal_url = self.query.url("query")
        # Every pod's own receiver, for a gateway that balances over them (headless_ports below).
        self.otlp_grpc_pods_address = self.collector.pods_address("otlp-grpc") if gateway else None
        self.otlp_grpc_endpoint = self.collector.url("otlp-grpc")
        self.otlp_http_endpoint = self.collector.url("otlp-http")
        if self.external_url:
            platform.expose(self.query, "query", parent=self)
        served = [self.query] if self.query is self.collector else [self.query, self.collector]
        self.scrape_targets = [ScrapeTarget(d.name, d.name, "metrics", addresses=[d.address("metrics")])
                               for d in served]
        self.register_outputs({"internal_url": self.internal_url, "external_url": self.external_url,
                               "otlp_grpc_endpoint": self.otlp_grpc_endpoint,
                               "otlp_http_endpoint": self.otlp_http_endpoint})

    # -- one process: memory or Badger ------------------------------------------------
    def _all_in_one(self, settings: Settings, platform: Platform) -> None:
        tracing = settings.tracing
        if tracing.storage == "badger":
            storage: jaeger_config.Storage = jaeger_config.BadgerStorage(BADGER_DIR, tracing.retention_days)
        else:
            storage = jaeger_config.MemoryStorage(tracing.memory_max_traces)
        cfg = jaeger_config.JaegerConfig(role="all-in-one", storage=storage, service_name="jaeger")
        self.config = jaeger_config.render(cfg)
        spec = ServiceSpec(
            name="jaeger",
            component="tracing",
            image=settings.images["jaeger"],
            ports=_ports(jaeger_config.ports(cfg)),
            resources=tracing.collector.resources,
            env=_go_memory_limit(cfg, tracing.collector.resources),
            run_as_user=JAEGER_UID,
            args=[f"--config={CONFIG_DIR}/config.yaml"],
            config=[_config(self.config)],
            # Badger needs a writable, persistent directory; the memory store only a scratch /tmp.
            data=DataVolume("/tmp", tracing.storage_size) if tracing.storage == "badger" else None,
            scratch_paths=[] if tracing.storage == "badger" else ["/tmp"],
            liveness=HttpCheck(jaeger_config.HEALTH_PATH, "health"),
            readiness=HttpCheck(jaeger_config.HEALTH_PATH, "health"),
            headless_ports=self._headless,
            allow_in=[*self._otlp_from,
                      Flow("grafana", [(jaeger_config.QUERY_HTTP_PORT, "TCP")]),
                      Flow(INGRESS, [(jaeger_config.QUERY_HTTP_PORT, "TCP")]),
                      Flow("prometheus", [(jaeger_config.METRICS_PORT, "TCP")])],
        )
        self.configs = {"jaeger": self.config}
        self.query = self.collector = platform.deploy(spec, self)

    # -- Elasticsearch: collectors, query, index cleaner ---------------------------------
    def _split(self, settings: Settings, platform: Platform, es: ElasticsearchConnection) -> None:
        tracing = settings.tracing
        storage = jaeger_config.ElasticsearchStorage(
            urls=[es.url], index_prefix=tracing.index_prefix, retention_days=tracing.retention_days,
            username=es.username, password_file=f"{ES_CREDENTIALS_DIR}/password",
            ca_file=f"{ES_CA_DIR}/{es.ca_key}" if es.ca_secret_name else None,
            shards=tracing.index_shards, replicas=tracing.index_replicas)
        external = [ExternalSecret(es.ca_secret_name, ES_CA_DIR)] if es.ca_secret_name else []
        to_es = Flow(es.peer, [(es.port, "TCP")])
        credentials = ConfigFiles("es-credentials", ES_CREDENTIALS_DIR, {"password": es.password}, secret=True)
        self.configs = {}

        def server(name: str, role: str, resources: Resources, replicas: int, allow_in: list,
                   headless_ports: Sequence[str] = (), preempts: bool = True) -> ServiceSpec:
            cfg = jaeger_config.JaegerConfig(role=role, storage=storage, service_name=name)
            self.configs[name] = jaeger_config.render(cfg)
            return ServiceSpec(
                name=name, component="tracing", image=settings.images["jaeger"],
                ports=_ports(jaeger_config.ports(cfg)), resources=resources,
                env=_go_memory_limit(cfg, resources), run_as_user=JAEGER_UID,
                args=[f"--config={CONFIG_DIR}/config.yaml"],
                config=[_config(self.configs[name]), credentials],
                external_secrets=external, scratch_paths=["/tmp"],
                liveness=HttpCheck(jaeger_config.HEALTH_PATH, "health"),
                readiness=HttpCheck(jaeger_config.HEALTH_PATH, "health"),
                replicas=replicas, headless_ports=headless_ports, preempts=preempts,
                allow_in=allow_in + [Flow("prometheus", [(jaeger_config.METRICS_PORT, "TCP")])],
                allow_out=[to_es],
            )

        self.collector = platform.deploy(server(
            "jaeger-collector", "collector", tracing.collector.resources, tracing.collector.replicas,
            self._otlp_from, self._headless), self)
        self.query = platform.deploy(server(
            "jaeger", "query", tracing.query.resources, 1,
            [Flow("grafana", [(jaeger_config.QUERY_HTTP_PORT, "TCP")]),
             Flow(INGRESS, [(jaeger_config.QUERY_HTTP_PORT, "TCP")])], preempts=False), self)
        self.config = self.configs["jaeger-collector"]

        cleaner_args = [str(tracing.retention_days), es.url, f"--index-prefix={tracing.index_prefix}",
                        f"--es.username={es.username}"]
        if es.ca_secret_name:
            cleaner_args += ["--es.tls.enabled=true", f"--es.tls.ca={ES_CA_DIR}/{es.ca_key}"]
        self.cleaner = platform.deploy(ServiceSpec(
            name="jaeger-es-index-cleaner", component="tracing", image=settings.images["jaegerIndexCleaner"],
            ports=[], resources=CLEANER_RESOURCES, run_as_user=JAEGER_UID, args=cleaner_args,
            # The cleaner reads its password only from the environment (ES_PASSWORD), through a secretKeyRef.
            secret_env={"ES_PASSWORD": es.password},
            external_secrets=external, schedule=CLEANER_SCHEDULE, allow_out=[to_es],
        ), self)


class OtelGateway(pulumi.ComponentResource):
    """OpenTelemetry Collector (contrib) in front of Jaeger: memory limiter, sampling, batching."""

    otlp_grpc_endpoint: str
    otlp_http_endpoint: str

    def __init__(self, name: str, *, settings: Settings, platform: Platform, jaeger_otlp_pods_address: str,
                 jaeger_app: str, otlp_clients: Sequence[str] = (), opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:tracing:OtelGateway", name, None, opts)
        tracing = settings.tracing
        self.gateway_config = gateway_config.GatewayConfig(
            # gRPC's DNS resolver lists every collector pod; round robin then uses them all.
            jaeger_endpoint=f"dns:///{jaeger_otlp_pods_address}", sampling_mode=tracing.sampling.mode,
            sampling_percentage=tracing.sampling.percentage,
            slow_trace_threshold_ms=int(duration_seconds(tracing.sampling.slow_trace_threshold) * 1000),
            replicas=tracing.gateway.replicas, peers_host=platform.pods_host(GATEWAY))
        self.config = gateway_config.render(self.gateway_config)
        routed = gateway_config.routes_by_trace(self.gateway_config)
        # The routing tier's traffic: from every replica to every replica (itself included), on the
        # peer port only.
        peers = [Flow(GATEWAY, [(gateway_config.PEER_OTLP_PORT, "TCP")])] if routed else []
        spec = ServiceSpec(
            name=GATEWAY,
            component="tracing",
            image=settings.images["otelCollector"],
            ports=_ports(gateway_config.ports(self.gateway_config)),
            resources=tracing.gateway.resources,
            env={"GOMEMLIMIT": gateway_config.go_memory_limit(
                self.gateway_config, quantity_bytes(tracing.gateway.resources.limits.memory))},
            run_as_user=JAEGER_UID,
            args=["--config=/etc/otelcol/config.yaml"],
            config=[ConfigFiles("config", "/etc/otelcol", {"config.yaml": self.config})],
            scratch_paths=["/tmp"],
            liveness=HttpCheck(gateway_config.HEALTH_PATH, "health"),
            readiness=HttpCheck(gateway_config.HEALTH_PATH, "health"),
            replicas=tracing.gateway.replicas,
            headless_ports=["peer-otlp"] if routed else [],
            # Applications in any other namespace send OTLP here, and the stack's own otlp_clients.
            allow_in=[Flow(OTHER_NAMESPACES, OTLP_PORTS), *(Flow(c, OTLP_CLIENT_PORTS) for c in otlp_clients),
                      Flow("prometheus", [(gateway_config.METRICS_PORT, "TCP")]), *peers],
            allow_out=[Flow(jaeger_app, [(jaeger_config.OTLP_GRPC_PORT, "TCP")]), *peers],
        )
        self.deployed = platform.deploy(spec, self)
        self.otlp_grpc_endpoint = self.deployed.url("otlp-grpc")
        self.otlp_http_endpoint = self.deployed.url("otlp-http")
        self.scrape_targets = [ScrapeTarget(GATEWAY, GATEWAY, "metrics", addresses=[self.deployed.address("metrics")])]
        self.register_outputs({"otlp_grpc_endpoint": self.otlp_grpc_endpoint,
                               "otlp_http_endpoint": self.otlp_http_endpoint})
