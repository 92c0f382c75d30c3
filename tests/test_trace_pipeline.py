"""The trace pipeline with the real programs: the gateway's rendered config in front of Jaeger's.

The gateway (otelcol built from exactly its components, at the image's release) exports to a
Jaeger all-in-one (built at its image's release) with the in-memory store, both on loopback with
their rendered configs. One span goes in over OTLP/HTTP as an instrumented app sends it; it must
come out of Jaeger's query API, and both programs must expose, as Prometheus scrapes them, every
metric name that metrics/exporters.yaml promises for their jobs: the rules and dashboards read
those names, and the collector has changed them between releases (suffixes, units).
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request

import pytest
import yaml

from tests import otel_policy
from tests.conftest import ROOT
from tests.test_otel_validate import Running, exposed, http_get, on_loopback, wait_for
from tests.test_tracing_config import render

# Names the programs create only when the thing they count first happens.
ONLY_ON_FAILURE = {
    "otelcol_exporter_send_failed_spans_total": "an export that failed for good",
    "otelcol_exporter_enqueue_failed_spans_total": "a full sending queue",
}
# Names the Elasticsearch bulk writer exposes: no Elasticsearch runs in the tests.
ELASTICSEARCH_ONLY = {"jaeger_storage_bulk_index_attempts_total", "jaeger_storage_bulk_index_inserts_total",
                      "jaeger_storage_bulk_index_errors_total"}
# Sending queues exist only where the config enables one (the gateway's OTLP exporter); the count of
# requests in flight is newer than the collector libraries Jaeger builds on (exporterhelper v0.140.0
# has no exporter_in_flight_requests in its metadata.yaml, v0.161.0 has).
GATEWAY_ONLY = {"otelcol_exporter_queue_size", "otelcol_exporter_queue_capacity",
                "otelcol_exporter_in_flight_requests"}


def promised_names() -> set[str]:
    catalog = yaml.safe_load((ROOT / "metrics" / "exporters.yaml").read_text())["exporters"]
    return set(catalog["jaeger"]["metrics"])


def otlp_span(trace_id: str) -> bytes:
    now = time.time_ns()
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "football-prediction-api"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": secrets.token_hex(8), "name": "GET /predictions/{match_id}",
            "kind": 2, "startTimeUnixNano": str(now - 25_000_000), "endTimeUnixNano": str(now),
            "status": {"code": 2}}]}]}]}).encode()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    work = tmp_path_factory.mktemp("trace-pipeline")
    jaeger_text = on_loopback(render("all-in-one-memory"), work)
    jaeger_ports = otel_policy.listening_ports(otel_policy.parse(jaeger_text))
    # The gateway's exporter aims at the Jaeger started here instead of the closed port.
    gateway_text = on_loopback(render("gateway-keep-all"), work).replace(
        "127.0.0.1:9\n", f"127.0.0.1:{jaeger_ports['receivers.otlp.protocols.grpc']}\n")
    jaeger = Running("jaeger", jaeger_text, work / "jaeger")
    gateway = Running("contrib", gateway_text, work / "gateway")
    try:
        for running in (jaeger, gateway):
            wait_for(f"{running.log.parent.name} to serve its metrics", lambda r=running: exposed(r.metrics_port()))
        yield jaeger, gateway, send_span(gateway)
    finally:
        for running in (gateway, jaeger):
            running.stop()


def test_a_span_sent_to_the_gateway_is_served_by_jaeger(pipeline):
    jaeger, gateway, trace_id = pipeline
    query = jaeger.ports["extensions.jaeger_query.http"]

    def found():
        try:
            return json.loads(http_get(f"http://127.0.0.1:{query}/api/traces/{trace_id}"))["data"]
        except urllib.error.HTTPError as error:
            if error.code == 404:  # not stored yet: the gateway batches for up to 5 s
                return None
            raise

    traces = wait_for("the trace in Jaeger's query API", found)
    spans = traces[0]["spans"]
    assert [s["operationName"] for s in spans] == ["GET /predictions/{match_id}"], gateway.log.read_text()[-2000:]


def missing_names(running: Running, names: set[str], seconds: float = 30.0) -> set[str]:
    """The names the program still does not expose after up to ``seconds`` (exporter counters appear
    once the first batch has left)."""
    deadline = time.monotonic() + seconds
    while True:
        missing = names - exposed(running.metrics_port())
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def send_span(running: Running) -> str:
    trace_id = secrets.token_hex(16)
    request = urllib.request.Request(f"http://127.0.0.1:{running.ports['receivers.otlp.protocols.http']}/v1/traces",
                                     data=otlp_span(trace_id), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    return trace_id


def test_both_programs_expose_the_promised_metric_names(pipeline):
    jaeger, gateway, _ = pipeline
    promised = promised_names() - ELASTICSEARCH_ONLY - set(ONLY_ON_FAILURE)
    for name, running, names in (("gateway", gateway, promised), ("jaeger", jaeger, promised - GATEWAY_ONLY)):
        missing = missing_names(running, names)
        assert not missing, f"{name} does not expose {sorted(missing)} (metrics/exporters.yaml promises them)"


def test_the_exposition_check_fails_on_the_collectors_own_suffix_default(tmp_path):
    # Without the explicit suffix options, collector 0.161 drops _total from every counter.
    text = on_loopback(render("gateway-keep-all"), tmp_path)
    stripped = "".join(line for line in text.splitlines(keepends=True)
                       if "without_type_suffix" not in line and "without_units" not in line)
    assert stripped != text
    gateway = Running("contrib", stripped, tmp_path / "gateway")
    try:
        wait_for("the gateway to serve its metrics", lambda: exposed(gateway.metrics_port()))
        send_span(gateway)
        assert "otelcol_receiver_accepted_spans_total" in missing_names(
            gateway, {"otelcol_receiver_accepted_spans_total"}, seconds=8)
        assert not missing_names(gateway, {"otelcol_receiver_accepted_spans"}, seconds=8)
    finally:
        gateway.stop()
