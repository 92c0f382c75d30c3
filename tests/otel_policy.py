"""What this stack requires of its collector and Jaeger configs beyond what the programs enforce.

`otelcol validate`, `jaeger validate` and a start on loopback (tests/test_otel_validate.py)
decide whether a config is one the program accepts: component types, keys, the pipeline graph,
extension references, value types, sampling policies. What remains here are rules of this
stack the programs accept either way, each with the reason it matters:

- every listening endpoint binds all interfaces: a collector bound to localhost starts fine
  and is unreachable through its Service;
- the memory limiter comes first and batch last in every pipeline: any order starts, but a
  limiter behind other processors refuses data only after they have buffered it;
- every defined extension is enabled: a defined but unlisted health check is silently not
  started, and the kubelet's probes then fail;
- no password in the file (only `password_file`, mounted from a Secret): Jaeger reads both;
- the in-memory store is bounded and Badger keeps its data on the volume: Jaeger's defaults
  are unbounded and ephemeral;
- the storage exporter and the query extension name a `jaeger_storage` backend, and each
  backend is used: Jaeger resolves these only at start, against a reachable Elasticsearch,
  which these tests do not have.

`listening_ports` gives the ports a config opens, for comparison with container and Service.
"""

from __future__ import annotations

from typing import Iterable

import yaml


def parse(text: str) -> dict:
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ValueError("the configuration is not a YAML mapping")
    return document


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _endpoints(config: dict) -> Iterable[tuple[str, str]]:
    """(where, host:port) of every server endpoint the configuration opens."""
    for rid, receiver in (config.get("receivers") or {}).items():
        for protocol, server in ((receiver or {}).get("protocols") or {}).items():
            if isinstance(server, dict) and "endpoint" in server:
                yield f"receivers.{rid}.protocols.{protocol}", server["endpoint"]
    for eid, extension in (config.get("extensions") or {}).items():
        extension = extension or {}
        if _type(eid) == "health_check" and "endpoint" in extension:
            yield f"extensions.{eid}", extension["endpoint"]
        for server_name in ("http", "grpc"):
            server = extension.get(server_name)
            if _type(eid) in ("healthcheckv2", "jaeger_query") and isinstance(server, dict) and "endpoint" in server:
                yield f"extensions.{eid}.{server_name}", server["endpoint"]
    metrics = ((config.get("service") or {}).get("telemetry") or {}).get("metrics") or {}
    for i, reader in enumerate(metrics.get("readers") or []):
        prometheus = (((reader or {}).get("pull") or {}).get("exporter") or {}).get("prometheus")
        if isinstance(prometheus, dict):
            yield f"service.telemetry.metrics.readers[{i}]", f"{prometheus.get('host')}:{prometheus.get('port')}"


def listening_ports(config: dict) -> dict[str, int]:
    """where -> port of every endpoint the process listens on."""
    return {where: int(str(endpoint).rsplit(":", 1)[1]) for where, endpoint in _endpoints(config)}


def check(config: dict) -> list[str]:
    """Every breach of the rules above in one config (an empty list when it keeps them)."""
    problems = []
    for where, endpoint in _endpoints(config):
        if not str(endpoint).startswith("0.0.0.0:"):
            problems.append(f"{where}: listens on {endpoint!r}; bind 0.0.0.0 so the Service reaches it")
    service = config.get("service") or {}
    for name, pipeline in (service.get("pipelines") or {}).items():
        processors = [_type(p) for p in pipeline.get("processors") or []]
        if "memory_limiter" in processors and processors[0] != "memory_limiter":
            problems.append(f"service.pipelines.{name}: memory_limiter must come first")
        if "batch" in processors and processors[-1] != "batch":
            problems.append(f"service.pipelines.{name}: batch must come last")
    for extension in sorted(set(config.get("extensions") or {}) - set(service.get("extensions") or [])):
        problems.append(f"extensions.{extension}: defined but not enabled in service.extensions")
    problems += _jaeger_storage(config)
    return problems


def _jaeger_storage(config: dict) -> list[str]:
    problems = []
    extensions = config.get("extensions") or {}
    backends = (extensions.get("jaeger_storage") or {}).get("backends") or {}
    for name, backend in backends.items():
        where = f"extensions.jaeger_storage.backends.{name}"
        if "memory" in backend and not isinstance((backend["memory"] or {}).get("max_traces"), int):
            problems.append(f"{where}.memory.max_traces: required, or the store grows without bound")
        if "badger" in backend:
            badger = backend["badger"] or {}
            if badger.get("ephemeral") is not False or not (badger.get("ttl") or {}).get("spans"):
                problems.append(f"{where}.badger: expected ephemeral false (data on the volume) and ttl.spans")
        basic = (((backend.get("elasticsearch") or {}).get("auth") or {}).get("basic")) or {}
        if "password" in basic:
            problems.append(f"{where}.elasticsearch.auth.basic.password: a password in the config file; "
                            "use password_file (a Secret)")
    referenced = set()
    for cid, body in (config.get("exporters") or {}).items():
        if _type(cid) == "jaeger_storage_exporter":
            referenced.add((body or {}).get("trace_storage"))
            if (body or {}).get("trace_storage") not in backends:
                problems.append(f"exporters.{cid}.trace_storage: {(body or {}).get('trace_storage')!r} "
                                "is not a jaeger_storage backend")
    for cid, body in extensions.items():
        if _type(cid) == "jaeger_query":
            for key, name in ((body or {}).get("storage") or {}).items():
                if key in ("traces", "traces_archive"):
                    referenced.add(name)
                    if name not in backends:
                        problems.append(f"extensions.{cid}.storage.{key}: {name!r} is not a jaeger_storage backend")
    for name in sorted(set(backends) - referenced):
        problems.append(f"extensions.jaeger_storage.backends.{name}: defined but nothing reads or writes it")
    return problems

