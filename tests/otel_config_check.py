"""A strict structural check of OpenTelemetry Collector configurations (Jaeger v2 and otelcol-contrib).

No collector binary is available to the tests (neither `jaeger validate` nor `otelcol validate`),
so this module checks what the collector itself checks at start-up, from data:

- only the known top-level sections, and only `extensions`, `pipelines`, `telemetry` in `service`;
- component ids are `type` or `type/name`, and every type is a component the pinned
  distribution really ships (JAEGER_COMPONENTS for jaegertracing/jaeger 2.15,
  CONTRIB_COMPONENTS for a subset of otel/opentelemetry-collector-contrib 0.139);
- the pipeline graph: pipeline ids are `traces|metrics|logs[/name]`, each has receivers and
  exporters, every receiver, processor and exporter a pipeline names is defined in its
  section, nothing is listed twice, every defined component is used (the collector only warns;
  here it is an error), the component supports the pipeline's signal, the memory limiter comes
  first and batch last;
- `service.extensions` names only defined extensions and every defined extension is enabled;
- the configuration keys of every component this stack uses against the fields of that
  component's config struct (KNOWN_KEYS), plus value rules (sampling percentages, tail-sampling
  policy types, Elasticsearch rollover frequencies, metrics levels, ...);
- Jaeger's own references: the storage exporter and the query extension name a
  `jaeger_storage` backend, each backend has exactly one known kind, no unused backend, the
  query extension needs the storage extension, no password written into the file;
- every listening endpoint binds 0.0.0.0 (reachable through the Service), and
  `listening_ports` returns them for the tests to compare with the container and Service ports.

Not verified (needs the binaries): value types the collector would decode (durations, sizes),
defaults the collector fills in, whether the process starts, and components or keys that
exist in the pinned versions but are not listed here (the lists are deliberately short).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import yaml

TOP_LEVEL = {"receivers", "processors", "exporters", "extensions", "connectors", "service"}
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
SERVICE_KEYS = {"extensions", "pipelines", "telemetry"}
SIGNALS = {"traces", "metrics", "logs"}
ID_RE = re.compile(r"^([a-z][a-z0-9_]*)(?:/([^/\s]+))?$")

# jaegertracing/jaeger 2.15 (cmd/jaeger/internal/components.go, cmd/jaeger/builder.yaml): the
# components present both in mid-2025 builds and in the 2026 builder manifest.
JAEGER_COMPONENTS = {
    "extensions": {"healthcheckv2", "zpages", "jaeger_query", "jaeger_storage", "remote_sampling", "expvar",
                   "remote_storage"},
    "receivers": {"otlp", "nop", "jaeger", "kafka", "zipkin"},
    "processors": {"batch", "memory_limiter"},
    "exporters": {"debug", "otlp", "otlphttp", "nop", "jaeger_storage_exporter", "kafka", "prometheus"},
    "connectors": {"forward", "spanmetrics"},
}
# otel/opentelemetry-collector-contrib 0.139: a short list of well-known components.
CONTRIB_COMPONENTS = {
    "extensions": {"health_check", "healthcheckv2", "pprof", "zpages", "basicauth", "bearertokenauth",
                   "oauth2client", "file_storage"},
    "receivers": {"otlp", "nop", "jaeger", "zipkin", "kafka", "prometheus", "hostmetrics"},
    "processors": {"batch", "memory_limiter", "probabilistic_sampler", "tail_sampling", "attributes", "resource",
                   "filter", "transform", "k8sattributes", "resourcedetection", "groupbytrace"},
    "exporters": {"otlp", "otlphttp", "debug", "nop", "loadbalancing", "kafka", "prometheus",
                  "prometheusremotewrite", "file"},
    "connectors": {"forward", "spanmetrics", "servicegraph", "routing"},
}
DISTRIBUTIONS = {"jaeger": JAEGER_COMPONENTS, "contrib": CONTRIB_COMPONENTS}

# Components that handle only some signals (the rest handle all three).
COMPONENT_SIGNALS = {
    "jaeger_storage_exporter": {"traces"},
    "tail_sampling": {"traces"},
    "groupbytrace": {"traces"},
    "probabilistic_sampler": {"traces", "logs"},
    "jaeger": {"traces"},
    "zipkin": {"traces"},
    "prometheus/receiver": {"metrics"},
    "prometheus/exporter": {"metrics"},
    "prometheusremotewrite": {"metrics"},
    "hostmetrics": {"metrics"},
}

_SERVER = {"endpoint", "transport", "tls", "max_recv_msg_size_mib", "max_concurrent_streams", "read_buffer_size",
           "write_buffer_size", "keepalive", "auth", "include_metadata", "cors", "traces_url_path",
           "metrics_url_path", "logs_url_path", "response_headers", "compression_algorithms"}
_INDEX = {"priority", "date_layout", "shards", "replicas", "rollover_frequency"}
# Fields of the config structs of the components this stack uses: (kind, type) -> allowed keys.
KNOWN_KEYS = {
    ("receivers", "otlp"): {"protocols"},
    ("receivers", "nop"): set(),
    ("processors", "memory_limiter"): {"check_interval", "limit_mib", "spike_limit_mib", "limit_percentage",
                                       "spike_limit_percentage", "min_gc_interval_when_soft_limited",
                                       "min_gc_interval_when_hard_limited"},
    ("processors", "batch"): {"timeout", "send_batch_size", "send_batch_max_size", "metadata_keys",
                              "metadata_cardinality_limit"},
    ("processors", "probabilistic_sampler"): {"sampling_percentage", "hash_seed", "mode", "sampling_precision",
                                              "fail_closed", "attribute_source", "from_attribute",
                                              "sampling_priority"},
    ("processors", "tail_sampling"): {"decision_wait", "num_traces", "expected_new_traces_per_sec", "policies",
                                      "decision_cache", "sample_on_first_match"},
    ("exporters", "otlp"): {"endpoint", "tls", "sending_queue", "retry_on_failure", "timeout", "compression",
                            "headers", "balancer_name", "auth", "keepalive", "write_buffer_size",
                            "read_buffer_size", "wait_for_ready"},
    ("exporters", "nop"): set(),
    ("exporters", "jaeger_storage_exporter"): {"trace_storage", "queue", "retry_on_failure", "timeout"},
    ("extensions", "health_check"): {"endpoint", "path", "tls", "response_body", "check_collector_pipeline"},
    ("extensions", "healthcheckv2"): {"use_v2", "http", "grpc", "component_health"},
    ("extensions", "jaeger_storage"): {"backends", "metric_backends"},
    ("extensions", "jaeger_query"): {"storage", "http", "grpc", "ui", "base_path", "max_clock_skew_adjust",
                                     "enable_tracing", "bearer_token_propagation"},
}
BACKEND_KINDS = {"memory", "badger", "grpc", "cassandra", "elasticsearch", "opensearch", "clickhouse"}
BACKEND_KEYS = {
    "memory": {"max_traces"},
    "badger": {"ttl", "directories", "ephemeral", "consistency", "maintenance_interval", "metrics_update_interval",
               "read_only"},
    # internal/storage/elasticsearch/config/config.go (Configuration, mapstructure tags)
    "elasticsearch": {"server_urls", "remote_read_clusters", "auth", "tls", "sniffing", "disable_health_check",
                      "send_get_body_as", "query_timeout", "http_compression", "bulk_processing", "version",
                      "log_level", "indices", "use_aliases", "create_mappings", "use_ilm", "max_doc_count",
                      "max_span_age", "service_cache_ttl", "adaptive_sampling_lookback", "tags_as_fields"},
}
TAIL_POLICY_TYPES = {"always_sample", "latency", "numeric_attribute", "probabilistic", "status_code",
                     "string_attribute", "rate_limiting", "span_count", "trace_state", "boolean_attribute",
                     "ottl_condition", "and", "composite", "drop"}
METRICS_LEVELS = {"none", "basic", "normal", "detailed"}


def parse(text: str) -> dict:
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ValueError("the configuration is not a YAML mapping")
    return document


def _type(component_id: Any) -> str | None:
    match = ID_RE.match(component_id) if isinstance(component_id, str) else None
    return match.group(1) if match else None


def _keys(where: str, value: Any, allowed: set, problems: list[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping, got {value!r}")
        return {}
    for key in sorted(set(value) - allowed):
        problems.append(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed)) or 'none'})")
    return value


def check(config: dict, distribution: str) -> list[str]:
    """Every problem found in one collector configuration ('' list when it passes)."""
    allowed = DISTRIBUTIONS[distribution]
    problems: list[str] = []
    for key in sorted(set(config) - TOP_LEVEL):
        problems.append(f"unknown top-level key {key!r}")
    sections = {}
    for section in SECTIONS:
        value = config.get(section) or {}
        if not isinstance(value, dict):
            problems.append(f"{section}: expected a mapping")
            value = {}
        sections[section] = value
        for component_id in value:
            ctype = _type(component_id)
            if ctype is None:
                problems.append(f"{section}: {component_id!r} is not a component id (type or type/name)")
            elif ctype not in allowed[section]:
                problems.append(f"{section}: {component_id!r}: type {ctype!r} is not a {section[:-1]} of the "
                                f"{distribution} distribution ({', '.join(sorted(allowed[section]))})")
    service = config.get("service")
    if not isinstance(service, dict):
        return problems + ["service: missing"]
    for key in sorted(set(service) - SERVICE_KEYS):
        problems.append(f"service: unknown key {key!r}")
    problems += _check_pipelines(service.get("pipelines"), sections)
    problems += _check_extensions(service.get("extensions"), sections["extensions"])
    problems += _check_telemetry(service.get("telemetry") or {})
    problems += _check_components(sections)
    problems += _check_jaeger(sections)
    problems += [f"{where}: listens on {endpoint!r}, expected 0.0.0.0:<port> (reachable through the Service)"
                 for where, endpoint in _endpoints(config) if not str(endpoint).startswith("0.0.0.0:")]
    return problems


def _check_pipelines(pipelines: Any, sections: dict) -> list[str]:
    problems: list[str] = []
    if not isinstance(pipelines, dict) or not pipelines:
        return ["service.pipelines: at least one pipeline is required"]
    used = {section: set() for section in ("receivers", "processors", "exporters", "connectors")}
    connector_as = {"receivers": set(), "exporters": set()}
    for pipeline_id, pipeline in pipelines.items():
        where = f"service.pipelines.{pipeline_id}"
        signal = _type(pipeline_id)
        if signal not in SIGNALS:
            problems.append(f"{where}: the pipeline type must be one of {sorted(SIGNALS)}")
        pipeline = _keys(where, pipeline, {"receivers", "processors", "exporters"}, problems)
        for role in ("receivers", "exporters"):
            if not pipeline.get(role):
                problems.append(f"{where}: needs at least one of {role}")
        for role in ("receivers", "processors", "exporters"):
            ids = pipeline.get(role) or []
            if not isinstance(ids, list):
                problems.append(f"{where}.{role}: expected a list")
                continue
            for dup in sorted({i for i in ids if ids.count(i) > 1}):
                problems.append(f"{where}.{role}: {dup!r} listed twice")
            for component_id in ids:
                if role != "processors" and component_id in sections["connectors"]:
                    used["connectors"].add(component_id)
                    connector_as[role].add(component_id)
                    continue
                if component_id not in sections[role]:
                    problems.append(f"{where}.{role}: {component_id!r} is not defined in {role}")
                    continue
                used[role].add(component_id)
                supported = _signals(role, component_id)
                if signal in SIGNALS and signal not in supported:
                    problems.append(f"{where}.{role}: {component_id!r} does not handle {signal}")
        processors = [p for p in pipeline.get("processors") or [] if isinstance(p, str)]
        limiters = [i for i, p in enumerate(processors) if _type(p) == "memory_limiter"]
        if limiters and limiters[0] != 0:
            problems.append(f"{where}.processors: memory_limiter must come first")
        batches = [i for i, p in enumerate(processors) if _type(p) == "batch"]
        if batches and batches[-1] != len(processors) - 1:
            problems.append(f"{where}.processors: batch must come last")
    for section in ("receivers", "processors", "exporters", "connectors"):
        for component_id in sorted(set(sections[section]) - used[section]):
            problems.append(f"{section}: {component_id!r} is defined but no pipeline uses it")
    for component_id in sorted(connector_as["receivers"] ^ connector_as["exporters"]):
        problems.append(f"connectors: {component_id!r} must be an exporter of one pipeline and a receiver of another")
    return problems


def _signals(role: str, component_id: str) -> set:
    ctype = _type(component_id)
    if ctype == "prometheus":
        return COMPONENT_SIGNALS[f"prometheus/{role[:-1]}"]
    return COMPONENT_SIGNALS.get(ctype, SIGNALS)


def _check_extensions(enabled: Any, defined: dict) -> list[str]:
    problems: list[str] = []
    enabled = enabled or []
    if not isinstance(enabled, list):
        return ["service.extensions: expected a list"]
    for dup in sorted({e for e in enabled if enabled.count(e) > 1}):
        problems.append(f"service.extensions: {dup!r} listed twice")
    for extension in enabled:
        if extension not in defined:
            problems.append(f"service.extensions: {extension!r} is not defined in extensions")
    for extension in sorted(set(defined) - set(enabled)):
        problems.append(f"extensions: {extension!r} is defined but not enabled in service.extensions")
    return problems


def _check_telemetry(telemetry: dict) -> list[str]:
    problems: list[str] = []
    telemetry = _keys("service.telemetry", telemetry, {"resource", "metrics", "logs", "traces"}, problems)
    metrics = _keys("service.telemetry.metrics", telemetry.get("metrics"), {"level", "readers", "views"}, problems)
    if metrics.get("level") is not None and metrics["level"] not in METRICS_LEVELS:
        problems.append(f"service.telemetry.metrics.level: {metrics['level']!r} is not one of {sorted(METRICS_LEVELS)}")
    for i, reader in enumerate(metrics.get("readers") or []):
        where = f"service.telemetry.metrics.readers[{i}]"
        reader = _keys(where, reader, {"pull", "periodic"}, problems)
        pull = _keys(f"{where}.pull", reader.get("pull"), {"exporter"}, problems)
        exporter = _keys(f"{where}.pull.exporter", pull.get("exporter"), {"prometheus"}, problems)
        prometheus = _keys(f"{where}.pull.exporter.prometheus", exporter.get("prometheus"),
                           {"host", "port", "without_units", "without_type_suffix", "without_scope_info",
                            "with_resource_constant_labels"}, problems)
        if "pull" in reader and not isinstance(prometheus.get("port"), int):
            problems.append(f"{where}.pull.exporter.prometheus.port: expected a port number")
    _keys("service.telemetry.logs", telemetry.get("logs"),
          {"level", "encoding", "development", "disable_caller", "disable_stacktrace", "sampling", "output_paths",
           "error_output_paths", "initial_fields", "processors"}, problems)
    return problems


def _check_components(sections: dict) -> list[str]:
    problems: list[str] = []
    for section in SECTIONS:
        for component_id, body in sections[section].items():
            ctype = _type(component_id)
            allowed = KNOWN_KEYS.get((section, ctype))
            where = f"{section}.{component_id}"
            if allowed is None:
                continue  # a known type this stack does not use: its keys are not listed here
            body = _keys(where, body, allowed, problems)
            check = _VALUE_CHECKS.get((section, ctype))
            if check:
                problems += check(where, body)
    return problems


def _otlp_receiver(where: str, body: dict) -> list[str]:
    problems: list[str] = []
    protocols = _keys(f"{where}.protocols", body.get("protocols"), {"grpc", "http"}, problems)
    if not protocols:
        problems.append(f"{where}.protocols: at least one of grpc, http is required")
    for name, server in protocols.items():
        _keys(f"{where}.protocols.{name}", server, _SERVER, problems)
    return problems


def _memory_limiter(where: str, body: dict) -> list[str]:
    problems = []
    if not body.get("check_interval"):
        problems.append(f"{where}.check_interval: required (0 disables the limiter)")
    if ("limit_mib" in body) == ("limit_percentage" in body):
        problems.append(f"{where}: exactly one of limit_mib, limit_percentage is required")
    pct = body.get("limit_percentage")
    if pct is not None and not (isinstance(pct, int) and 0 < pct <= 100):
        problems.append(f"{where}.limit_percentage: expected 1..100")
    spike = body.get("spike_limit_percentage")
    if pct is not None and spike is not None and not (isinstance(spike, int) and 0 <= spike < pct):
        problems.append(f"{where}.spike_limit_percentage: expected below limit_percentage")
    return problems


def _batch(where: str, body: dict) -> list[str]:
    size, most = body.get("send_batch_size"), body.get("send_batch_max_size")
    if size is not None and most is not None and most < size:
        return [f"{where}.send_batch_max_size: must be at least send_batch_size"]
    return []


def _percentage(where: str, value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        return [f"{where}: expected a percentage in (0, 100], got {value!r}"]
    return []


def _probabilistic_sampler(where: str, body: dict) -> list[str]:
    problems = _percentage(f"{where}.sampling_percentage", body.get("sampling_percentage"))
    if body.get("mode") not in (None, "hash_seed", "equalizing", "proportional"):
        problems.append(f"{where}.mode: {body.get('mode')!r} is not hash_seed, equalizing or proportional")
    return problems


def _tail_sampling(where: str, body: dict) -> list[str]:
    problems: list[str] = []
    policies = body.get("policies")
    if not isinstance(policies, list) or not policies:
        return [f"{where}.policies: at least one policy is required"]
    names = [p.get("name") for p in policies if isinstance(p, dict)]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{where}.policies: name {dup!r} used twice")
    for i, policy in enumerate(policies):
        pwhere = f"{where}.policies[{i}]"
        if not isinstance(policy, dict) or not policy.get("name"):
            problems.append(f"{pwhere}: needs a name")
            continue
        ptype = policy.get("type")
        if ptype not in TAIL_POLICY_TYPES:
            problems.append(f"{pwhere}: type {ptype!r} is not one of {sorted(TAIL_POLICY_TYPES)}")
            continue
        _keys(pwhere, policy, {"name", "type", ptype}, problems)
        settings = policy.get(ptype) or {}
        if ptype == "probabilistic":
            problems += _percentage(f"{pwhere}.probabilistic.sampling_percentage", settings.get("sampling_percentage"))
        elif ptype == "status_code":
            codes = settings.get("status_codes") or []
            if not codes or set(codes) - {"OK", "ERROR", "UNSET"}:
                problems.append(f"{pwhere}.status_code.status_codes: expected some of OK, ERROR, UNSET")
        elif ptype == "latency":
            if not isinstance(settings.get("threshold_ms"), int) or settings["threshold_ms"] <= 0:
                problems.append(f"{pwhere}.latency.threshold_ms: expected a positive number of milliseconds")
    return problems


def _otlp_exporter(where: str, body: dict) -> list[str]:
    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str) or not re.fullmatch(r"(?:dns:///)?[A-Za-z0-9.-]+:\d{1,5}", endpoint):
        return [f"{where}.endpoint: expected host:port, got {endpoint!r}"]
    return []


def _healthcheckv2(where: str, body: dict) -> list[str]:
    problems: list[str] = []
    http = _keys(f"{where}.http", body.get("http"), {"endpoint", "status", "config", "tls", "cors", "auth"}, problems)
    _keys(f"{where}.http.status", http.get("status"), {"enabled", "path"}, problems)
    if body.get("use_v2") is not True:
        problems.append(f"{where}.use_v2: expected true (the legacy mode ignores http.status)")
    return problems


_VALUE_CHECKS = {
    ("receivers", "otlp"): _otlp_receiver,
    ("processors", "memory_limiter"): _memory_limiter,
    ("processors", "batch"): _batch,
    ("processors", "probabilistic_sampler"): _probabilistic_sampler,
    ("processors", "tail_sampling"): _tail_sampling,
    ("exporters", "otlp"): _otlp_exporter,
    ("extensions", "healthcheckv2"): _healthcheckv2,
}


def _check_jaeger(sections: dict) -> list[str]:
    problems: list[str] = []
    extensions = sections["extensions"]
    storage = extensions.get("jaeger_storage")
    backends = (storage or {}).get("backends") if isinstance(storage, dict) else None
    referenced: set = set()
    if storage is not None:
        if not isinstance(backends, dict) or not backends:
            problems.append("extensions.jaeger_storage.backends: at least one backend is required")
            backends = {}
        for name, backend in backends.items():
            where = f"extensions.jaeger_storage.backends.{name}"
            kinds = set(backend or {}) if isinstance(backend, dict) else set()
            if len(kinds) != 1 or not kinds <= BACKEND_KINDS:
                problems.append(f"{where}: expected exactly one of {sorted(BACKEND_KINDS)}, got {sorted(kinds)}")
                continue
            kind = kinds.pop()
            body = _keys(f"{where}.{kind}", backend[kind], BACKEND_KEYS.get(kind, set(backend[kind] or {})), problems)
            if kind == "elasticsearch":
                problems += _elasticsearch(f"{where}.elasticsearch", body)
            if kind == "badger":
                ttl = _keys(f"{where}.badger.ttl", body.get("ttl"), {"spans"}, problems)
                _keys(f"{where}.badger.directories", body.get("directories"), {"keys", "values"}, problems)
                if body.get("ephemeral") is not False or not ttl.get("spans"):
                    problems.append(f"{where}.badger: expected ephemeral false (data on the volume) and ttl.spans")
            if kind == "memory" and not isinstance(body.get("max_traces"), int):
                problems.append(f"{where}.memory.max_traces: required, or the store grows without bound")
    for section, component_id, key in (("exporters", "jaeger_storage_exporter", "trace_storage"),):
        for cid, body in sections[section].items():
            if _type(cid) == component_id:
                name = (body or {}).get(key)
                referenced.add(name)
                if name not in (backends or {}):
                    problems.append(f"{section}.{cid}.{key}: {name!r} is not a jaeger_storage backend")
    for cid, body in extensions.items():
        if _type(cid) != "jaeger_query":
            continue
        query_storage = _keys(f"extensions.{cid}.storage", (body or {}).get("storage"),
                              {"traces", "traces_archive", "metrics"}, [])
        for key in ("traces", "traces_archive"):
            if key in query_storage:
                referenced.add(query_storage[key])
                if query_storage[key] not in (backends or {}):
                    problems.append(f"extensions.{cid}.storage.{key}: {query_storage[key]!r} is not a "
                                    "jaeger_storage backend")
        if "traces" not in query_storage:
            problems.append(f"extensions.{cid}.storage.traces: required")
        if storage is None:
            problems.append(f"extensions.{cid}: needs the jaeger_storage extension")
    for name in sorted(set(backends or {}) - referenced):
        problems.append(f"extensions.jaeger_storage.backends.{name}: defined but nothing reads or writes it")
    return problems


def _elasticsearch(where: str, body: dict) -> list[str]:
    problems: list[str] = []
    urls = body.get("server_urls")
    if not isinstance(urls, list) or not urls or not all(re.match(r"^https?://", str(u)) for u in urls):
        problems.append(f"{where}.server_urls: expected a list of http(s) URLs")
    indices = _keys(f"{where}.indices", body.get("indices"),
                    {"index_prefix", "spans", "services", "dependencies", "sampling"}, problems)
    for name in ("spans", "services", "dependencies", "sampling"):
        index = _keys(f"{where}.indices.{name}", indices.get(name), _INDEX, problems)
        if index.get("rollover_frequency") not in (None, "hour", "day"):
            problems.append(f"{where}.indices.{name}.rollover_frequency: expected hour or day")
    auth = _keys(f"{where}.auth", body.get("auth"), {"basic", "bearer_token"}, problems)
    basic = _keys(f"{where}.auth.basic", auth.get("basic"), {"username", "password", "password_file"}, problems)
    if "password" in basic:
        problems.append(f"{where}.auth.basic.password: a password in the config file; use password_file (a Secret)")
    if basic and not basic.get("password_file"):
        problems.append(f"{where}.auth.basic.password_file: required with a username")
    _keys(f"{where}.tls", body.get("tls"), {"ca_file", "cert_file", "key_file", "insecure", "insecure_skip_verify",
                                             "server_name_override", "min_version", "reload_interval"}, problems)
    return problems


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
    metrics = (((config.get("service") or {}).get("telemetry") or {}).get("metrics") or {})
    for i, reader in enumerate(metrics.get("readers") or []):
        prometheus = (((reader or {}).get("pull") or {}).get("exporter") or {}).get("prometheus")
        if isinstance(prometheus, dict):
            yield f"service.telemetry.metrics.readers[{i}]", f"{prometheus.get('host')}:{prometheus.get('port')}"


def listening_ports(config: dict) -> dict[str, int]:
    """where -> port of every endpoint the process listens on."""
    return {where: int(str(endpoint).rsplit(":", 1)[1]) for where, endpoint in _endpoints(config)}
