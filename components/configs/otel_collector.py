"""The OpenTelemetry Collector gateway in front of Jaeger (otelcol-contrib configuration).

Pure function from typed inputs to the collector's YAML. The gateway receives OTLP from the
applications, protects itself with the memory limiter, samples (probabilistic, or tail
sampling that always keeps errors and slow traces), batches, and exports OTLP to Jaeger.
tests/test_otel_validate.py validates and starts the output with the collector built at the
image's release.

The export to Jaeger resolves a name that lists every collector pod (``dns:///`` target, a
headless Service) and balances round robin over one sub-connection per pod: one connection to
a Service's virtual IP would carry everything to the one collector it was opened to.

Tail sampling decides on whole traces, so with more than one replica every span of a trace
must reach the same replica. Each replica then runs two tiers: the applications' OTLP goes
through the memory limiter to the ``load_balancing`` exporter, which hashes the trace id over
the replicas that the peers' name resolves to (every replica resolves the same list and so
picks the same one) and sends to that replica's peer receiver; the peer pipeline samples,
batches and exports to Jaeger. With one replica (or probabilistic sampling, which decides by
the trace id alone and keeps the same traces on every replica) the second tier is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import yaml

from components.configs import jaeger as jaeger_config

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
PEER_OTLP_PORT = 4319  # OTLP/gRPC from the other replicas' routing tier, spans already routed by trace id
METRICS_PORT = 8888
HEALTH_PORT = 13133
HEALTH_PATH = "/"

SAMPLING_MODES = ("probabilistic", "tail")

MIB = 1024 * 1024
# The batch processor counts spans (8192 to 16384 a batch), and a span's size has no bound: a
# batch of ordinary 1 KiB spans is 8 to 16 MiB, over what the Jaeger collector accepts in one
# message. The exporter's queue therefore splits every batch, at span boundaries, into requests
# of at most this many bytes of OTLP protobuf (exporterhelper's `bytes` sizer measures the
# message the exporter sends): half the receiver's limit, so no request comes near it.
MAX_EXPORT_BYTES = jaeger_config.OTLP_MAX_RECV_MSG_SIZE_MIB * MIB // 2
# The peer receiver accepts what Jaeger's receivers accept, so the same split fits both hops.
PEER_MAX_RECV_MSG_SIZE_MIB = jaeger_config.OTLP_MAX_RECV_MSG_SIZE_MIB
# The applications' receiver (jaeger_config.APP_OTLP_MAX_RECV_MSG_SIZE_MIB): left unset, grpc-go's
# 4 MiB applies and an SDK batch of 512 spans of 8 KiB each is refused with ResourceExhausted, which
# the SDKs drop after their retries. The export queue splits what comes in to MAX_EXPORT_BYTES, so
# this size never reaches a peer or Jaeger whole.
APP_MAX_RECV_MSG_SIZE_MIB = jaeger_config.APP_OTLP_MAX_RECV_MSG_SIZE_MIB
# How often the routing tier looks the peers up again: a replica that left stops getting spans
# (and one that came gets its share) within this time; the resolver's default.
PEER_RESOLVE_INTERVAL = "5s"


@dataclass(frozen=True)
class GatewayConfig:
    jaeger_endpoint: str  # host:port of Jaeger's OTLP gRPC receiver
    sampling_mode: str  # "probabilistic" or "tail"
    sampling_percentage: float  # share of traces kept (0 < p <= 100)
    slow_trace_threshold_ms: int = 2000  # tail: traces slower than this are always kept
    decision_wait: str = "10s"  # tail: how long spans of a trace are gathered before deciding
    max_traces_in_memory: int = 50000
    memory_limit_percentage: int = 80
    memory_spike_percentage: int = 20
    # The sampling tier's limiter (routing tier only): the same hard limit, a smaller spike, so
    # that it refuses later than the applications' pipeline (see PEER_LIMITER).
    peer_memory_spike_percentage: int = 10
    queue_size: int = 5000
    max_export_bytes: int = MAX_EXPORT_BYTES
    replicas: int = 1
    # A DNS name that resolves to every ready gateway replica (a headless Service); needed when
    # routes_by_trace(): the routing tier sends each trace to the replica its id hashes to.
    peers_host: Optional[str] = None


# With the routing tier, what the applications' pipeline has accepted waits in the routing
# exporter's queue for the sampling pipeline of the replica its trace id hashes to, often the same
# process. One limiter for both pipelines refuses both at once: the queue then cannot move into the
# sampling tier, and it holds the memory that keeps the limiter refusing, until its retries give up
# (5 minutes; under a flat-out push, docs/tracing.md, a replica still refused every application 50
# to 90 s after it). The sampling tier therefore has a limiter of its own whose soft limit is
# higher: the applications are refused first, and what was accepted can still move on.
PEER_LIMITER = "memory_limiter/peers"


def _memory_limiter(limit_percentage: int, spike_percentage: int) -> dict:
    return {"check_interval": "1s", "limit_percentage": limit_percentage, "spike_limit_percentage": spike_percentage}


def routes_by_trace(cfg: GatewayConfig) -> bool:
    """Whether the gateway runs the routing tier: tail sampling on more than one replica."""
    return cfg.sampling_mode == "tail" and cfg.replicas > 1


def _listen(port: int) -> str:
    return f"0.0.0.0:{port}"


def sampler(cfg: GatewayConfig) -> dict:
    """The sampling processor(s), by id; empty when every trace is kept."""
    if cfg.sampling_mode not in SAMPLING_MODES:
        raise ValueError(f"sampling mode {cfg.sampling_mode!r} is not one of {SAMPLING_MODES}")
    if not 0 < cfg.sampling_percentage <= 100:
        raise ValueError(f"sampling percentage {cfg.sampling_percentage} is not in (0, 100]")
    if cfg.sampling_mode == "probabilistic":
        if cfg.sampling_percentage >= 100:
            return {}
        # Decides by a hash of the trace id (same seed everywhere), so every replica keeps the same traces.
        return {"probabilistic_sampler": {"sampling_percentage": cfg.sampling_percentage, "hash_seed": 22}}
    return {"tail_sampling": {
        "decision_wait": cfg.decision_wait,
        "num_traces": cfg.max_traces_in_memory,
        "expected_new_traces_per_sec": 100,
        # A trace is kept if any policy says so: every error, every slow trace, and a share of the rest.
        "policies": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": cfg.slow_trace_threshold_ms}},
            {"name": "baseline", "type": "probabilistic",
             "probabilistic": {"sampling_percentage": cfg.sampling_percentage}},
        ],
    }}


def _retry(max_elapsed_time: str = "5m", max_interval: str = "30s") -> dict:
    return {"enabled": True, "initial_interval": "1s", "max_interval": max_interval,
            "max_elapsed_time": max_elapsed_time}


def _split_queue(cfg: GatewayConfig) -> dict:
    return {"enabled": True, "num_consumers": 4, "queue_size": cfg.queue_size,
            # Split only: with no minimum nothing waits here (the batch processor batches).
            "batch": {"sizer": "bytes", "min_size": 0, "max_size": cfg.max_export_bytes, "flush_timeout": "1s"}}


# The applications' connections are closed after about this age, as Jaeger's are
# (jaeger_config.OTLP_MAX_CONNECTION_AGE), so they spread again over the replicas after a rollout
# instead of all staying on the replica that was up first.
MAX_CONNECTION_AGE = jaeger_config.OTLP_MAX_CONNECTION_AGE


def document(cfg: GatewayConfig) -> dict:
    sampling = sampler(cfg)
    routed = routes_by_trace(cfg)
    if routed and not cfg.peers_host:
        raise ValueError(f"tail sampling on {cfg.replicas} replicas routes by trace id and needs peers_host")
    if routed and not 0 < cfg.peer_memory_spike_percentage < cfg.memory_spike_percentage:
        raise ValueError(f"the sampling tier's spike ({cfg.peer_memory_spike_percentage} %) must be below the "
                         f"applications' pipeline's ({cfg.memory_spike_percentage} %), so that it refuses later")
    processors = {
        "memory_limiter": _memory_limiter(cfg.memory_limit_percentage, cfg.memory_spike_percentage),
        **({PEER_LIMITER: _memory_limiter(cfg.memory_limit_percentage, cfg.peer_memory_spike_percentage)}
           if routed else {}),
        **sampling,
        "batch": {"send_batch_size": 8192, "send_batch_max_size": 16384, "timeout": "5s"},
    }
    receivers: dict = {"otlp": {"protocols": {
        "grpc": {"endpoint": _listen(OTLP_GRPC_PORT), "max_recv_msg_size_mib": APP_MAX_RECV_MSG_SIZE_MIB,
                 "keepalive": {"server_parameters": dict(MAX_CONNECTION_AGE)}},
        "http": {"endpoint": _listen(OTLP_HTTP_PORT)}}}}
    exporters: dict = {}
    # Memory limiter first, batch last: the collector's recommended order.
    sampling_pipeline = {"processors": [PEER_LIMITER if routed else "memory_limiter", *sampling, "batch"],
                         "exporters": ["otlp_grpc/jaeger"]}
    if routed:
        receivers["otlp/peers"] = {"protocols": {"grpc": {
            "endpoint": _listen(PEER_OTLP_PORT), "max_recv_msg_size_mib": PEER_MAX_RECV_MSG_SIZE_MIB}}}
        exporters["load_balancing"] = {
            "routing_key": "traceID",
            "protocol": {"otlp": {
                # In-cluster hop between the stack's own pods, isolated by network policy.
                "tls": {"insecure": True},
                # No queue per peer: a send that still fails after a short retry returns to the
                # routing tier's own queue, which routes it again over the peers it then resolves
                # (a replica that went away is no longer among them). Per-peer queues would hold
                # those spans for the departed replica, and their metrics are not exposed.
                "sending_queue": {"enabled": False},
                "retry_on_failure": _retry(max_elapsed_time="10s", max_interval="5s"),
            }},
            "resolver": {"dns": {"hostname": cfg.peers_host, "port": str(PEER_OTLP_PORT),
                                 "interval": PEER_RESOLVE_INTERVAL, "timeout": "1s"}},
            # Splits requests before routing, so no request to a peer is over its receiver's limit.
            "sending_queue": _split_queue(cfg),
            "retry_on_failure": _retry(),
        }
        pipelines = {
            "traces": {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["load_balancing"]},
            "traces/sampling": {"receivers": ["otlp/peers"], **sampling_pipeline},
        }
    else:
        pipelines = {"traces": {"receivers": ["otlp"], **sampling_pipeline}}
    exporters["otlp_grpc/jaeger"] = {
        "endpoint": cfg.jaeger_endpoint,
        # One sub-connection per address the target resolves to, requests spread over them.
        "balancer_name": "round_robin",
        # In-cluster hop between two services of the stack, isolated by network policy.
        "tls": {"insecure": True},
        "sending_queue": _split_queue(cfg),
        "retry_on_failure": _retry(),
    }
    return {
        "extensions": {"health_check": {"endpoint": _listen(HEALTH_PORT), "path": HEALTH_PATH}},
        "receivers": receivers,
        "processors": processors,
        "exporters": exporters,
        "service": {
            "extensions": ["health_check"],
            "pipelines": pipelines,
            "telemetry": {
                "resource": {"attributes": [{"name": "service.name", "value": "otel-gateway"}]},
                "metrics": {"level": "detailed", "readers": [
                    {"pull": {"exporter": {"prometheus": {
                "host": "0.0.0.0", "port": METRICS_PORT,
                # Explicit: from collector 0.161 an unset suffix option means none, and the counters
                # the rules read (otelcol_*_total) would lose their _total.
                "without_type_suffix": False, "without_units": False, "without_scope_info": True}}}}]},
                "logs": {"level": "info", "encoding": "json"},
            },
        },
    }


def go_memory_limit(cfg: GatewayConfig, container_memory_bytes: float) -> str:
    """GOMEMLIMIT for the gateway's container: the memory limiter's hard limit (``limit_percentage``
    of the container's memory), as the memory limiter's README recommends (80 % of the limit).

    Without it Go collects only when the heap has doubled since the last collection. The limiter
    refuses at its soft limit (60 %) but looks once a second, and a refused request is still read
    and decoded first: with the live heap near the soft limit, that garbage took the heap past the
    container's limit before the next collection (a flat-out push in docs/tracing.md: OOM-killed at
    1Gi within 4 s). With it, Go collects as the heap nears the hard limit."""
    return f"{int(container_memory_bytes * cfg.memory_limit_percentage / 100) // MIB}MiB"


def render(cfg: GatewayConfig) -> str:
    return ("# Generated by football-monitoring; edit the settings, not this file.\n"
            + yaml.safe_dump(document(cfg), sort_keys=False, default_flow_style=False, width=120))


def ports(cfg: GatewayConfig) -> dict[str, int]:
    """The ports this config listens on, by container port name (``peer-otlp``: the routing tier's
    peers; its name keeps it apart from the applications' ``otlp-*`` ports)."""
    found = {"otlp-grpc": OTLP_GRPC_PORT, "otlp-http": OTLP_HTTP_PORT}
    if routes_by_trace(cfg):
        found["peer-otlp"] = PEER_OTLP_PORT
    return {**found, "metrics": METRICS_PORT, "health": HEALTH_PORT}
