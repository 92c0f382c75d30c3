"""Jaeger v2 configuration (an OpenTelemetry Collector config with Jaeger's extensions).

Pure functions from typed inputs to the YAML Jaeger reads with ``--config``. No Pulumi here:
`jaeger validate` at the image's release checks the output (tests/test_otel_validate.py);
tests/otel_policy.py adds the stack's own rules (listeners, storage references).

Three roles share one binary:

- ``all-in-one``: receives OTLP, stores spans (memory or Badger) and serves the UI/API;
- ``collector``: receives OTLP and writes to Elasticsearch (scaled by replicas);
- ``query``: reads Elasticsearch and serves the UI/API (a no-op pipeline, since the
  collector framework insists on one).

Every store is bounded: memory by ``max_traces``, Badger by its span TTL, Elasticsearch by
daily indices (``date_layout``) that the index cleaner deletes after the retention days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import yaml

from components.units import mib_share

# Ports (the names are the container port names of components/tracing/__init__.py).
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
QUERY_HTTP_PORT = 16686
QUERY_GRPC_PORT = 16685
METRICS_PORT = 8888
HEALTH_PORT = 13133
HEALTH_PATH = "/status"

# The largest OTLP/gRPC message the receivers accept. Left unset, configgrpc (v0.140.0, inside
# Jaeger 2.14) adds no limit and grpc-go's default of 4 MiB applies, counted after decompression;
# a larger export is refused with ResourceExhausted, which the OTLP exporter treats as permanent
# and drops. Set here so that senders (the gateway's exporter) are sized against a visible value.
OTLP_MAX_RECV_MSG_SIZE_MIB = 8
# The largest OTLP/gRPC message a receiver the applications export to accepts: what the OTLP/HTTP
# receiver accepts by default (confighttp's max_request_body_size, 20 MiB), so that an SDK's export
# is taken over either protocol. The gateway's receiver (prod) and the all-in-one (dev, where the
# applications have no gateway in front) both use it; the collector behind the gateway gets the
# gateway's split requests and keeps the smaller limit above.
APP_OTLP_MAX_RECV_MSG_SIZE_MIB = 20
# gRPC server keepalive of the OTLP receiver: each connection is closed (GOAWAY; calls in flight get
# the grace) after about this age. A client that balances over the pods of a headless Service (the
# gateway: dns:/// target, round robin) looks the name up again only when a connection ends, so
# this is how it finds collectors added since; clients of the Service's virtual IP spread again.
OTLP_MAX_CONNECTION_AGE = {"max_connection_age": "5m", "max_connection_age_grace": "30s"}

ROLES = ("all-in-one", "collector", "query")
STORAGE_NAME = "traces"  # the jaeger_storage backend every role uses
DATE_LAYOUT = "2006-01-02"  # Go layout: one index per day, named <prefix>-jaeger-span-YYYY-MM-DD


@dataclass(frozen=True)
class MemoryStorage:
    max_traces: int


@dataclass(frozen=True)
class BadgerStorage:
    directory: str  # on the data volume
    retention_days: int


@dataclass(frozen=True)
class ElasticsearchStorage:
    urls: Sequence[str]
    index_prefix: str
    retention_days: int
    username: Optional[str] = None
    password_file: Optional[str] = None  # a mounted Secret file, never the password itself
    ca_file: Optional[str] = None
    shards: int = 1
    replicas: int = 1


Storage = Union[MemoryStorage, BadgerStorage, ElasticsearchStorage]


@dataclass(frozen=True)
class JaegerConfig:
    role: str
    storage: Storage
    service_name: str = "jaeger"
    # The collector keeps this share of its memory limit for itself before refusing spans.
    memory_limit_percentage: int = 80
    memory_spike_percentage: int = 20


def _listen(port: int) -> str:
    # Inside a pod or container every interface is the pod's own; 0.0.0.0 lets the Service reach it.
    return f"0.0.0.0:{port}"


def _backend(storage: Storage) -> dict:
    if isinstance(storage, MemoryStorage):
        return {"memory": {"max_traces": storage.max_traces}}
    if isinstance(storage, BadgerStorage):
        return {"badger": {
            "directories": {"keys": f"{storage.directory}/keys", "values": f"{storage.directory}/values"},
            "ephemeral": False,
            "ttl": {"spans": f"{storage.retention_days * 24}h"},
            "maintenance_interval": "5m",
        }}
    index = {"date_layout": DATE_LAYOUT, "rollover_frequency": "day", "shards": storage.shards,
             "replicas": storage.replicas}
    es: dict = {
        "server_urls": list(storage.urls),
        "indices": {"index_prefix": storage.index_prefix, "spans": dict(index), "services": dict(index),
                    "dependencies": dict(index), "sampling": dict(index)},
        "use_aliases": False,
        "use_ilm": False,
        "create_mappings": True,
        # Queries never look further back than the indices that still exist.
        "max_span_age": f"{storage.retention_days * 24}h",
    }
    if storage.username:
        es["auth"] = {"basic": {"username": storage.username, "password_file": storage.password_file}}
    if storage.ca_file:
        es["tls"] = {"ca_file": storage.ca_file}
    return {"elasticsearch": es}


def _telemetry(service_name: str) -> dict:
    return {
        # The map form: the collector core inside Jaeger 2.14 refuses the attribute-list form
        # that the gateway's newer collector asks for (jaeger validate proves both).
        "resource": {"service.name": service_name},
        "metrics": {"level": "detailed", "readers": [
            {"pull": {"exporter": {"prometheus": {
                "host": "0.0.0.0", "port": METRICS_PORT,
                # Explicit: from collector 0.161 an unset suffix option means none, and the counters
                # the rules read (otelcol_*_total) would lose their _total.
                "without_type_suffix": False, "without_units": False, "without_scope_info": True}}}}]},
        "logs": {"level": "info", "encoding": "json"},
    }


def document(cfg: JaegerConfig) -> dict:
    if cfg.role not in ROLES:
        raise ValueError(f"role {cfg.role!r} is not one of {ROLES}")
    if cfg.role != "all-in-one" and not isinstance(cfg.storage, ElasticsearchStorage):
        raise ValueError("separate collector and query processes need a shared store (elasticsearch)")
    extensions: dict = {
        "healthcheckv2": {"use_v2": True, "http": {"endpoint": _listen(HEALTH_PORT),
                                                   "status": {"enabled": True, "path": HEALTH_PATH}}},
        "jaeger_storage": {"backends": {STORAGE_NAME: _backend(cfg.storage)}},
    }
    enabled = ["jaeger_storage", "healthcheckv2"]
    if cfg.role in ("all-in-one", "query"):
        extensions["jaeger_query"] = {
            "storage": {"traces": STORAGE_NAME},
            "http": {"endpoint": _listen(QUERY_HTTP_PORT)},
            "grpc": {"endpoint": _listen(QUERY_GRPC_PORT)},
        }
        # The extension traces itself by default (jaegerquery factory: EnableTracing true) to the
        # SDK's default OTLP endpoint, localhost:4317: nothing in the query pod, where every export
        # fails; in the all-in-one its own receiver, which stops first, so every stop waited 10 s for
        # the last export to time out (and the UI's own requests filled dev's trace list).
        extensions["jaeger_query"]["enable_tracing"] = False
        enabled.insert(1, "jaeger_query")
    if cfg.role == "query":
        # Reads only: the pipeline the framework requires receives and exports nothing.
        receivers: dict = {"nop": None}
        processors: dict = {}
        exporters: dict = {"nop": None}
        pipeline = {"receivers": ["nop"], "exporters": ["nop"]}
    else:
        receivers = {"otlp": {"protocols": {"grpc": {"endpoint": _listen(OTLP_GRPC_PORT),
                                                     "max_recv_msg_size_mib": APP_OTLP_MAX_RECV_MSG_SIZE_MIB
                                                     if cfg.role == "all-in-one" else OTLP_MAX_RECV_MSG_SIZE_MIB,
                                                     "keepalive": {"server_parameters": dict(OTLP_MAX_CONNECTION_AGE)}},
                                            "http": {"endpoint": _listen(OTLP_HTTP_PORT)}}}}
        processors = {
            # First in the pipeline: refuse spans (clients retry) before the process runs out of memory.
            "memory_limiter": {"check_interval": "1s", "limit_percentage": cfg.memory_limit_percentage,
                               "spike_limit_percentage": cfg.memory_spike_percentage},
            "batch": {"send_batch_size": 1024, "timeout": "2s"},
        }
        exporters = {"jaeger_storage_exporter": {"trace_storage": STORAGE_NAME}}
        pipeline = {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                    "exporters": ["jaeger_storage_exporter"]}
    doc: dict = {
        "extensions": extensions,
        "receivers": receivers,
    }
    if processors:
        doc["processors"] = processors
    doc["exporters"] = exporters
    doc["service"] = {
        "extensions": enabled,
        "pipelines": {"traces": pipeline},
        "telemetry": _telemetry(cfg.service_name),
    }
    return doc


# GOMEMLIMIT of a role without a memory limiter (query): the share Prometheus 3 (--auto-gomemlimit.ratio)
# and Thanos (--enable-auto-gomemlimit) give Go of their cgroup's limit, the rest for what is not heap.
GO_MEMORY_LIMIT_PERCENTAGE = 90


def has_memory_limiter(cfg: JaegerConfig) -> bool:
    return "memory_limiter" in document(cfg)["service"]["pipelines"]["traces"].get("processors", [])


def go_memory_limit(cfg: JaegerConfig, container_memory_bytes: float) -> str:
    """GOMEMLIMIT for a Jaeger container. Jaeger 2.14 sets no Go memory limit of its own (no
    automemlimit, no runtime/debug.SetMemoryLimit in jaeger v1.76.0 nor in the collector core it
    embeds), so Go collects only when the heap has doubled since the last collection, and a heap
    that grows with load meets the container's limit before its next collection.

    With a memory limiter (all-in-one, collector) the limiter's hard limit, ``limit_percentage`` of
    the cgroup's limit: where the limiter forces a collection, and what the limiter's README
    (collector v0.140.0, the core inside Jaeger 2.14) recommends for GOMEMLIMIT; any higher and
    Go would let the heap past the limit the limiter refuses below. Without one (query)
    GO_MEMORY_LIMIT_PERCENTAGE."""
    percentage = cfg.memory_limit_percentage if has_memory_limiter(cfg) else GO_MEMORY_LIMIT_PERCENTAGE
    return f"{mib_share(container_memory_bytes, percentage)}MiB"


def render(cfg: JaegerConfig) -> str:
    return ("# Generated by football-monitoring; edit the settings, not this file.\n"
            + yaml.safe_dump(document(cfg), sort_keys=False, default_flow_style=False, width=120))


def ports(cfg: JaegerConfig) -> dict[str, int]:
    """The ports this role listens on, by container port name (the UI first, for Docker publishing)."""
    result: dict[str, int] = {}
    if cfg.role in ("all-in-one", "query"):
        result["query"] = QUERY_HTTP_PORT
        result["query-grpc"] = QUERY_GRPC_PORT
    if cfg.role in ("all-in-one", "collector"):
        result["otlp-grpc"] = OTLP_GRPC_PORT
        result["otlp-http"] = OTLP_HTTP_PORT
    result["metrics"] = METRICS_PORT
    result["health"] = HEALTH_PORT
    return result
