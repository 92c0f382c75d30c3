"""The collector and Jaeger configs, checked by the programs that read them.

`otelcol validate` (the collector built from exactly the gateway's components, at the image's
release) and `jaeger validate` (Jaeger at the image's release) load each rendered config the way
they do at start-up: component types, their settings, the pipeline graph and the extensions.
Some settings are checked only when a component starts (tail-sampling policies, extension
dependencies), so the configs that need no Elasticsearch are also started on loopback.
Deprecation warnings count as failures: a config that only works through an alias breaks at the
next release. Each mutation breaks one rule and the program must say so.
"""

from __future__ import annotations

import copy
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests import otel_policy
from tests.test_tracing_config import RENDERED, program, render, rendered
from tests.ports import free_port


def validate(distribution: str, text: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return subprocess.run([program(distribution), "validate", f"--config={path}"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_rendered_config_passes_the_real_validator(name, tmp_path):
    proc = validate(RENDERED[name][0], render(name), tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name}: {output}"
    assert "deprecated" not in output.lower(), f"{name} uses a deprecated form: {output}"


KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")


def test_the_collector_is_built_with_exactly_the_components_the_gateway_configs_use():
    """The builder's list in scripts/install-test-tools.sh against the rendered gateway configs: a
    component they gain must be built (else validate refuses it, as it should), and one they drop
    must leave the build, so that validate keeps refusing a config that names it."""
    proc = subprocess.run([program("contrib"), "components"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    built = {kind: sorted(c["name"] for c in yaml.safe_load(proc.stdout)[kind] or []) for kind in KINDS}
    used: dict[str, set] = {kind: set() for kind in KINDS}
    for name, (distribution, _) in RENDERED.items():
        if distribution == "contrib":
            config = rendered(name)[1]
            for kind in KINDS:
                used[kind] |= {cid.split("/", 1)[0] for cid in config.get(kind) or {}}
    assert built == {kind: sorted(names) for kind, names in used.items()}


# Names of the cluster the rendered configs reach, by what stands in for them on loopback.
JAEGER_NAMES = ("jaeger-collector-headless.monitoring.svc:4317", "jaeger-collector.monitoring.svc:4317", "jaeger:4317")
PEERS_NAME = "otel-gateway-headless.monitoring.svc"


def on_loopback(text: str, tmp_path) -> str:
    """The config with each listener on its own free 127.0.0.1 port (tests run side by side), the
    exporter aimed at a closed loopback port, the routing tier's peers looked up as localhost (this
    process itself, on its own peer port) and Badger's directories in the test's directory."""
    for port in sorted(set(otel_policy.listening_ports(otel_policy.parse(text)).values())):
        free = free_port()
        text = (text.replace(f"0.0.0.0:{port}", f"127.0.0.1:{free}").replace(f"port: {port}\n", f"port: {free}\n")
                .replace(f"port: '{port}'\n", f"port: '{free}'\n"))
    text = text.replace("host: 0.0.0.0", "host: 127.0.0.1").replace(f"hostname: {PEERS_NAME}\n", "hostname: localhost\n")
    for remote in JAEGER_NAMES:
        text = text.replace(remote, "127.0.0.1:9")
    return text.replace("/tmp/badger", str(tmp_path / "badger"))


def start(distribution: str, text: str, tmp_path, seconds: float = 5.0) -> tuple[int | None, str, str]:
    """Run the program on loopback for a few seconds: its exit code (None: still running, as it
    should be), every warning or error it logged, and its whole output."""
    path = tmp_path / "running.yaml"
    path.write_text(on_loopback(text, tmp_path))
    proc = subprocess.Popen([program(distribution), f"--config={path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        code = None
    # The closed exporter port, and the web UI that the test build of Jaeger does not embed.
    noisy = ("failed to connect", "connection refused", "Exporting failed", "ui assets not embedded")
    warnings = [line for line in out.splitlines()
                if ('"level":"warn"' in line or '"level":"error"' in line) and not any(n in line for n in noisy)]
    return code, "\n".join(warnings), out


STARTABLE = ["all-in-one-badger", "all-in-one-memory", "gateway-keep-all", "gateway-probabilistic", "gateway-tail",
             "gateway-tail-routed"]


@pytest.mark.parametrize("name", STARTABLE)
def test_rendered_config_starts_without_warnings(name, tmp_path):
    code, warnings, out = start(RENDERED[name][0], render(name), tmp_path)
    assert code is None, f"{name} exited with {code}: {out[-2000:]}"
    assert warnings == "", warnings


def _pipeline(c):
    return c["service"]["pipelines"]["traces"]


def _tail_policies(c):
    return c["processors"]["tail_sampling"]["policies"]


# name: (config it breaks, how the program sees it, mutation, substring of the program's complaint)
MUTATIONS = {
    "unknown_top_level_key": ("collector", "validate", lambda c: c.update(pipelines={}), "invalid keys: pipelines"),
    "unknown_service_key": ("collector", "validate", lambda c: c["service"].update(extension=[]),
                            "'service' has invalid keys: extension"),
    "undefined_receiver": ("collector", "validate", lambda c: _pipeline(c)["receivers"].append("zipkin"),
                           'references receiver "zipkin" which is not configured'),
    "undefined_processor": ("gateway-tail", "validate", lambda c: _pipeline(c)["processors"].insert(1, "batch/x"),
                            'references processor "batch/x" which is not configured'),
    "undefined_exporter": ("gateway-tail", "validate", lambda c: _pipeline(c).update(exporters=["otlp_grpc/tempo"]),
                           'references exporter "otlp_grpc/tempo" which is not configured'),
    "listed_twice": ("collector", "validate", lambda c: _pipeline(c)["processors"].append("batch"),
                     'references processor "batch" multiple times'),
    "no_exporters": ("collector", "validate", lambda c: _pipeline(c).pop("exporters"),
                     "must have at least one exporter"),
    "no_pipelines": ("collector", "validate", lambda c: c["service"].update(pipelines={}),
                     "service must have at least one pipeline"),
    "bad_signal": ("collector", "validate", lambda c: c["service"].update(pipelines={"trace": _pipeline(c)}),
                   'unknown pipeline signal: "trace"'),
    "extension_not_defined": ("collector", "validate", lambda c: c["service"]["extensions"].append("zpages"),
                              'references extension "zpages" which is not configured'),
    "unknown_component_type": ("collector", "validate", lambda c: c["exporters"].update(
        {"jaeger_storage_exporterr": c["exporters"].pop("jaeger_storage_exporter")}),
        'unknown type: "jaeger_storage_exporterr"'),
    "jaeger_component_in_gateway": ("gateway-tail", "validate", lambda c: c["exporters"].update(
        {"jaeger_storage_exporter": {"trace_storage": "traces"}}), 'unknown type: "jaeger_storage_exporter"'),
    "bad_component_id": ("collector", "validate", lambda c: c["receivers"].update({"OTLP": {}}),
                         'unknown type: "OTLP"'),
    "wrong_signal": ("collector", "validate", lambda c: c["service"]["pipelines"].update(
        {"metrics": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}}),
        'for data type "metrics": telemetry type is not supported'),
    "unknown_component_key": ("gateway-tail", "validate", lambda c: c["processors"]["batch"].update(
        send_batch_sise=10), "invalid keys: send_batch_sise"),
    "es_unknown_key": ("collector", "validate", lambda c: c["extensions"]["jaeger_storage"]["backends"]["traces"][
        "elasticsearch"].update(index_prefix="jaeger"), "'elasticsearch' has invalid keys: index_prefix"),
    "memory_limiter_without_limit": ("collector", "validate", lambda c: c["processors"]["memory_limiter"].pop(
        "limit_percentage"), "'limit_mib' or 'limit_percentage' must be greater than zero"),
    "exporter_endpoint_url": ("gateway-tail", "validate", lambda c: c["exporters"]["otlp_grpc/jaeger"].update(
        endpoint="http://jaeger:4317/v1/traces"), 'invalid port "4317/v1/traces"'),
    "telemetry_level": ("collector", "validate", lambda c: c["service"]["telemetry"]["metrics"].update(
        level="verbose"), 'unknown metrics level "verbose"'),
    "telemetry_reader": ("collector", "validate", lambda c: c["service"]["telemetry"]["metrics"]["readers"][0][
        "pull"]["exporter"]["prometheus"].update(port="8888"), "expected type 'int'"),
    "tail_policy_type": ("gateway-tail", "start", lambda c: _tail_policies(c)[0].update(type="errors"),
                         "unknown sampling policy type errors"),
    "tail_policy_status": ("gateway-tail", "start", lambda c: _tail_policies(c)[0].update(
        status_code={"status_codes": ["FAILED"]}), 'unknown status code "FAILED"'),
    "tail_policy_duplicate": ("gateway-tail", "start", lambda c: _tail_policies(c).append(
        copy.deepcopy(_tail_policies(c)[0])), 'duplicate policy name "errors"'),
    "balancer_name": ("gateway-tail", "validate", lambda c: c["exporters"]["otlp_grpc/jaeger"].update(
        balancer_name="round-robin"), "invalid balancer_name: round-robin"),
    "routing_key": ("gateway-tail-routed", "start", lambda c: c["exporters"]["load_balancing"].update(
        routing_key="traceid"), "unsupported routing_key: traceid"),
    "two_resolvers": ("gateway-tail-routed", "start", lambda c: c["exporters"]["load_balancing"]["resolver"].update(
        static={"hostnames": ["127.0.0.1:9"]}), "only one resolver should be specified"),
    "no_resolver": ("gateway-tail-routed", "start", lambda c: c["exporters"]["load_balancing"].update(resolver={}),
                    "no resolvers specified for the exporter"),
    "query_without_storage_extension": ("all-in-one-memory", "start", lambda c: (
        c["extensions"].pop("jaeger_storage"), c["service"]["extensions"].remove("jaeger_storage")),
        "unable to find extension jaeger_storage on which extension jaeger_query depends"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_program_refuses_a_broken_config(mutation, tmp_path):
    name, mode, mutate, expected = MUTATIONS[mutation]
    distribution, config = rendered(name)
    mutate(config)
    text = yaml.safe_dump(config)
    if mode == "validate":
        proc = validate(distribution, text, tmp_path)
        code, out = proc.returncode, proc.stdout + proc.stderr
    else:
        code, _, out = start(distribution, text, tmp_path)
    assert code not in (0, None), f"{mutation}: the program accepted it: {out[-2000:]}"
    assert expected in out, f"{mutation}: {out[-2000:]}"


# ---------------------------------------------------------------- programs kept running on loopback

# Prometheus 3's scrape Accept header: what decides the exposition format the programs answer with.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
                     "application/openmetrics-text;version=0.0.1;q=0.5,"
                     "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")


def http_get(url: str, accept: str = "*/*") -> str:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept}), timeout=5) as response:
        return response.read().decode()


def exposed(port: int) -> set[str]:
    text = http_get(f"http://127.0.0.1:{port}/metrics", PROMETHEUS_ACCEPT)
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def wait_for(what: str, check, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError as error:  # not listening yet
            last = error
        time.sleep(0.3)
    raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what} ({last})")


class Running:
    """The program with a config (already moved to loopback), its output in directory/output.log."""

    def __init__(self, distribution: str, text: str, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.ports = otel_policy.listening_ports(otel_policy.parse(text))
        path = directory / "config.yaml"
        path.write_text(text)
        self.log = directory / "output.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([program(distribution), f"--config={path}"], stdout=log,
                                         stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def metrics_port(self) -> int:
        return self.ports["service.telemetry.metrics.readers[0]"]



def counter(port: int, name: str) -> float:
    """A counter's sum over its series, by its exact name as Prometheus would store it."""
    text = http_get(f"http://127.0.0.1:{port}/metrics", PROMETHEUS_ACCEPT)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.split("{", 1)[0].split(" ", 1)[0] == name)


# ---------------------------------------------------------------- one maximal batch, gateway -> collector

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # length-delimited (wire type 2)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _fixed64(number: int, value: int) -> bytes:
    return _varint(number << 3 | 1) + value.to_bytes(8, "little")


def _attribute(key: str, value: str) -> bytes:
    return _field(1, key.encode()) + _field(2, _field(1, value.encode()))  # KeyValue{key, AnyValue{string_value}}


def otlp_traces(spans: int, attribute_bytes: int) -> bytes:
    """An OTLP ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1) of one service:
    `spans` spans of one trace each, each with an attribute of `attribute_bytes` bytes."""
    now = time.time_ns()
    filler = "x" * attribute_bytes
    body = b"".join(_field(2, (  # ScopeSpans.spans: Span
        _field(1, i.to_bytes(16, "big")) + _field(2, (i + 1).to_bytes(8, "big")) + _field(5, b"GET /predictions")
        + _varint(6 << 3) + _varint(2) + _fixed64(7, now - 1_000_000) + _fixed64(8, now)
        + _field(9, _attribute("payload", filler)))) for i in range(spans))
    scope_spans = _field(1, _field(1, b"loopback-test")) + body
    resource = _field(1, _field(1, _attribute("service.name", "football-api")))
    return _field(1, resource + _field(2, scope_spans))  # ExportTraceServiceRequest.resource_spans


@pytest.mark.parametrize("split", [True, False], ids=["as-generated", "without-the-byte-split"])
def test_a_maximal_gateway_batch_reaches_the_jaeger_collector(split, tmp_path):
    """The gateway (the collector built at the image's release) forwards the largest batch its batch
    processor forms (send_batch_max_size spans) to a Jaeger collector (Jaeger at the image's release)
    started with the rendered receivers: every span must arrive. Without the exporter's byte split the
    same batch is over the receiver's limit and is dropped: the batch is really a maximal one."""
    _, gateway = rendered("gateway-keep-all")
    _, prod_gateway = rendered("gateway-tail")
    # The parts that decide the batch and the export are the same for every sampling mode.
    assert gateway["processors"]["batch"] == prod_gateway["processors"]["batch"]
    assert gateway["exporters"] == {"otlp_grpc/jaeger": {**prod_gateway["exporters"]["otlp_grpc/jaeger"],
                                                         "endpoint": "jaeger:4317"}}
    if not split:
        gateway["exporters"]["otlp_grpc/jaeger"]["sending_queue"].pop("batch")
    _, collector = rendered("collector")
    # No Elasticsearch here: the store is memory, the receivers and processors are as rendered.
    collector["extensions"]["jaeger_storage"]["backends"]["traces"] = {"memory": {"max_traces": 100_000}}

    collector_cfg = otel_policy.parse(on_loopback(yaml.safe_dump(collector), tmp_path / "jaeger"))
    grpc_endpoint = collector_cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    gateway_text = on_loopback(yaml.safe_dump(gateway), tmp_path / "gateway").replace("127.0.0.1:9", grpc_endpoint)
    gateway_cfg = otel_policy.parse(gateway_text)
    spans = gateway_cfg["processors"]["batch"]["send_batch_max_size"]
    # ~1 KiB a span: the batch is over every limit involved, under the gateway's 20 MiB HTTP body limit.
    payload = otlp_traces(spans, 1000)
    limit = collector_cfg["receivers"]["otlp"]["protocols"]["grpc"]["max_recv_msg_size_mib"] * 1024 * 1024
    assert limit < len(payload) < 20 * 1024 * 1024

    jaeger = Running("jaeger", yaml.safe_dump(collector_cfg), tmp_path / "jaeger")
    gateway_run = Running("contrib", yaml.safe_dump(gateway_cfg), tmp_path / "gateway")
    try:
        for running in (jaeger, gateway_run):
            wait_for(f"{running.log.parent.name} to serve its metrics", lambda r=running: exposed(r.metrics_port()))
        http = gateway_cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        request = urllib.request.Request(f"http://{http}/v1/traces", data=payload, method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            sent = counter(gateway_run.metrics_port(), "otelcol_exporter_sent_spans_total")
            failed = counter(gateway_run.metrics_port(), "otelcol_exporter_send_failed_spans_total")
            if sent + failed >= spans:
                break
            time.sleep(0.5)
        accepted = counter(jaeger.metrics_port(), "otelcol_receiver_accepted_spans_total")
    finally:
        for running in (gateway_run, jaeger):
            running.stop()
    gateway_log = gateway_run.log.read_text()
    if split:
        assert (sent, failed, accepted) == (spans, 0, spans), gateway_log[-3000:]
    else:
        assert failed == spans and accepted == 0, gateway_log[-3000:]
        assert "ResourceExhausted" in gateway_log and "larger than max" in gateway_log, gateway_log[-3000:]
