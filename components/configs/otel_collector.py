"""The OpenTelemetry Collector gateway in front of Jaeger (otelcol-contrib configuration).

Pure function from typed inputs to the collector's YAML. The gateway receives OTLP from the
applications, protects itself with the memory limiter, samples (probabilistic, or tail
sampling that always keeps errors and slow traces), batches, and exports OTLP to Jaeger.
tests/test_otel_validate.py validates and starts the output with the collector built at the
image's release.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from components.configs import jaeger as jaeger_config

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
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
    queue_size: int = 5000
    max_export_bytes: int = MAX_EXPORT_BYTES


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


def document(cfg: GatewayConfig) -> dict:
    sampling = sampler(cfg)
    processors = {
        "memory_limiter": {"check_interval": "1s", "limit_percentage": cfg.memory_limit_percentage,
                           "spike_limit_percentage": cfg.memory_spike_percentage},
        **sampling,
        "batch": {"send_batch_size": 8192, "send_batch_max_size": 16384, "timeout": "5s"},
    }
    return {
        "extensions": {"health_check": {"endpoint": _listen(HEALTH_PORT), "path": HEALTH_PATH}},
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": _listen(OTLP_GRPC_PORT)},
                                             "http": {"endpoint": _listen(OTLP_HTTP_PORT)}}}},
        "processors": processors,
        "exporters": {"otlp_grpc/jaeger": {
            "endpoint": cfg.jaeger_endpoint,
            # In-cluster hop between two services of the stack, isolated by network policy.
            "tls": {"insecure": True},
            "sending_queue": {"enabled": True, "num_consumers": 4, "queue_size": cfg.queue_size,
                              # Split only: with no minimum nothing waits here (the batch processor batches).
                              "batch": {"sizer": "bytes", "min_size": 0, "max_size": cfg.max_export_bytes,
                                        "flush_timeout": "1s"}},
            "retry_on_failure": {"enabled": True, "initial_interval": "1s", "max_interval": "30s",
                                 "max_elapsed_time": "5m"},
        }},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {"traces": {
                "receivers": ["otlp"],
                # Memory limiter first, batch last: the collector's recommended order.
                "processors": ["memory_limiter", *sampling, "batch"],
                "exporters": ["otlp_grpc/jaeger"],
            }},
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


def render(cfg: GatewayConfig) -> str:
    return ("# Generated by football-monitoring; edit the settings, not this file.\n"
            + yaml.safe_dump(document(cfg), sort_keys=False, default_flow_style=False, width=120))


def ports() -> dict[str, int]:
    return {"otlp-grpc": OTLP_GRPC_PORT, "otlp-http": OTLP_HTTP_PORT, "metrics": METRICS_PORT,
            "health": HEALTH_PORT}
