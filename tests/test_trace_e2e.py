"""Traces end to end: a fake FootballPrediction, prod's gateway replicas and prod's split Jaeger.

tests/trace_stack.py starts, on loopback and with the configs the program generates, what prod
runs (two gateway replicas with the routing tier by trace id in front of tail sampling, memory
limiter and batch; the Jaeger collector and the Jaeger query as two processes) and dev's
all-in-one Jaeger; its docstring lists what changes from the generated configs (addresses, and
prod's Elasticsearch store, which cannot run here, replaced by Jaeger's remote-storage backend on
a memory store shared by collector and query). tests/trace_app.py is the application: eight
instances (the API and the worker, over OTLP/gRPC and OTLP/HTTP, to both replicas) with the
OpenTelemetry Python SDK, every trace spread over three instances.

Everything is asserted through Jaeger's query API (the prod query process, reading what the
collector wrote):

- every error trace and every trace over the slow threshold is kept, with all its spans, though
  the error is in one span only and the slowness shows only across instances; the rest is kept at
  the configured percentage (read from the rendered config), within 4 standard deviations of the
  binomial over 2,000 traces;
- an export of large spans (more than 4 MiB of attributes in one request, over each protocol)
  arrives whole;
- dev's all-in-one serves what the instances send to it directly, as dev has no gateway;
- with the Jaeger collector stopped, the gateway's export fails and a real Prometheus, running
  prod's scrape jobs and prod's tracing and meta-monitoring rules (``for:`` removed), fires
  ``TargetDown`` for the collector; after the restart it resolves and the traces sent during the
  outage, held in the gateway's queue, are stored. ``TracingExportFailing`` cannot fire early in
  such an outage: the exporter counts spans as failed only when its retries give up (5 minutes).
  What ``TracingExportStalled`` reads instead is read from the real gateways: requests in flight
  and the sent count standing still during the outage, neither after it;
- dev's all-in-one takes one export over 8 MiB (up to the gateway's 20 MiB) over either protocol.

Not here: the memory limiter's refusal, which needs each replica in a memory cgroup of its pod's
limit (tests/test_gateway_memory_limit.py).

The tail sampler's decision wait (10 s) is not a setting; every test waits for it once.
"""

from __future__ import annotations

import json
import math
import time

import pytest
import yaml

from tests import trace_stack
from tests.conftest import require_tool
from tests.trace_app import API, FakeFootballPrediction
from tools import offline
from tests.trace_stack import DevJaeger, ProdTraces, metric_sum, trace_by_id, traces_of

PLAIN_TRACES = 2000
ERROR_TRACES = 100
SLOW_TRACES = 100
SIGMAS = 4
SPANS_PER_TRACE = 3
DECIDED = "otelcol_processor_tail_sampling_global_count_traces_sampled_total"


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    stack = ProdTraces(tmp_path_factory.mktemp("trace-e2e"))
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def app(prod):
    fake = FakeFootballPrediction(prod.gateway_endpoints())
    yield fake
    fake.shutdown()


def logs(stack: ProdTraces) -> str:
    return "\n".join(f"--- {p.directory.name}\n{p.tail(1500)}" for p in stack.processes())


@pytest.fixture(scope="module")
def burst(prod, app):
    """2,200 traces sent at once: (sent by trace id, what Jaeger serves by trace id, seconds taken)."""
    started = time.monotonic()
    since = int(time.time() * 1e6) - 60_000_000
    # Spans of the past few seconds, as requests that just finished.
    base = time.time_ns() - 5_000_000_000
    kinds = ["error"] * ERROR_TRACES + ["slow"] * SLOW_TRACES + ["plain"] * PLAIN_TRACES
    sent = {}
    for n, kind in enumerate(kinds):
        one = app.request(n, kind, base + n * 1000)
        sent[one.trace_id] = one
    app.flush()
    accepted, refused = app.exported()
    assert (accepted, refused) == (len(kinds) * SPANS_PER_TRACE, 0), logs(prod)

    def decided():
        return sum(metric_sum(g.metrics(), DECIDED) for g in prod.gateways) >= len(kinds)
    trace_stack.wait_for("every trace's sampling decision", decided, seconds=60, every=1)
    sampled = sum(metric_sum(g.metrics(), DECIDED, decision="sampled") for g in prod.gateways)

    def stored():
        found = {t: s for t, s in traces_of(prod.query_url(), API, since).items() if t in sent}
        complete = len(found) >= sampled and all(len(s) == SPANS_PER_TRACE for s in found.values())
        return found if complete else None
    try:
        found = trace_stack.wait_for("the sampled traces in Jaeger", stored, seconds=30, every=1)
    except AssertionError:
        # Assert on what arrived, so that the failure names the traces.
        found = {t: s for t, s in traces_of(prod.query_url(), API, since).items() if t in sent}
    return sent, found, time.monotonic() - started


def span_ids(spans: list[dict]) -> list[str]:
    return sorted(s["spanID"].rjust(16, "0") for s in spans)


def test_every_error_and_slow_trace_is_kept_whole(burst, prod):
    sent, found, _ = burst
    for kind in ("error", "slow"):
        wanted = [s for s in sent.values() if s.kind == kind]
        missing = [s.trace_id for s in wanted if s.trace_id not in found]
        assert missing == [], f"{len(missing)} of {len(wanted)} {kind} traces not in Jaeger: {missing[:5]}\n{logs(prod)}"
        partial = {s.trace_id: span_ids(found[s.trace_id]) for s in wanted
                   if span_ids(found[s.trace_id]) != sorted(s.span_ids)}
        assert partial == {}, f"{kind} traces not whole in Jaeger: {list(partial.items())[:3]}"


def test_the_rest_is_kept_at_the_configured_percentage(burst, prod):
    sent, found, _ = burst
    share = prod.sampling_percentage() / 100
    plain = [s for s in sent.values() if s.kind == "plain"]
    kept = [s for s in plain if s.trace_id in found]
    expected = len(plain) * share
    tolerance = SIGMAS * math.sqrt(len(plain) * share * (1 - share))
    print(f"kept {len(kept)} of {len(plain)} plain traces at {share:.0%}: expected {expected:.0f} ± {tolerance:.0f}")
    assert abs(len(kept) - expected) <= tolerance, (len(kept), expected, tolerance)
    partial = [s.trace_id for s in kept if span_ids(found[s.trace_id]) != sorted(s.span_ids)]
    assert partial == [], f"kept traces not whole: {partial[:5]}"
    unknown = set(found) - set(sent)
    assert not unknown


def test_each_trace_went_to_one_replica_and_both_replicas_sampled(burst, prod, app):
    sent, found, _ = burst
    # Each replica's sampler counts the traces it saw; a trace split over both would count twice.
    seen = [metric_sum(g.metrics(), "otelcol_processor_tail_sampling_new_trace_id_received_total")
            for g in prod.gateways]
    assert sum(seen) == len(sent) and all(seen), seen
    # Spans reached the replicas from every instance, over both protocols.
    instances = {tag["value"] for spans in found.values() for span in spans
                 for tag in span["process"]["tags"] if tag["key"] == "service.instance.id"}
    assert instances == {i.name for i in app.instances}, instances


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_export_of_large_spans_arrives_whole(prod, app, protocol):
    """One SDK export of 200 spans with 24 KiB of attributes each (over 4 MiB in one request)."""
    since = int(time.time() * 1e6) - 60_000_000
    payload = {"prediction.explanation": "x" * (24 * 1024)}
    instance = next(i for i in app.instances if i.protocol == protocol)
    sent, size, accepted = app.one_export(instance, 100, payload)
    assert size > 4 * 1024 * 1024, size
    assert accepted, f"the gateway refused one export of {size} bytes over {protocol}\n{logs(prod)}"

    def stored():
        found = traces_of(prod.query_url(), instance.service, since)
        return all(len(found.get(s.trace_id, [])) == len(s.span_ids) for s in sent) and found
    found = trace_stack.wait_for("the large traces in Jaeger", stored, seconds=60, every=1)
    for s in sent:
        assert span_ids(found[s.trace_id]) == sorted(s.span_ids)
        for span in found[s.trace_id]:
            tags = {t["key"]: t["value"] for t in span["tags"]}
            assert tags["prediction.explanation"] == payload["prediction.explanation"]
    failed = sum(metric_sum(g.metrics(), "otelcol_exporter_send_failed_spans_total") for g in prod.gateways)
    assert failed == 0


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    jaeger = DevJaeger(tmp_path_factory.mktemp("trace-e2e-dev"))
    try:
        yield jaeger.start()
    finally:
        jaeger.stop()


def test_dev_all_in_one_serves_every_trace_whole(dev):
    proc = dev.proc
    endpoint = (f"127.0.0.1:{proc.ports['receivers.otlp.protocols.grpc']}",
                f"{proc.url('receivers.otlp.protocols.http')}/v1/traces")
    fake = FakeFootballPrediction([endpoint, endpoint])
    try:
        base = time.time_ns() - 1_000_000_000
        sent = [fake.request(n, "plain", base + n * 1000) for n in range(40)]
        fake.flush()
        assert fake.exported() == (len(sent) * SPANS_PER_TRACE, 0)
    finally:
        fake.shutdown()
    query = proc.url("extensions.jaeger_query.http")
    for s in sent:
        spans = trace_stack.wait_for(f"trace {s.trace_id} in dev's Jaeger",
                                     lambda: (found := trace_by_id(query, s.trace_id)) and
                                     len(found) == SPANS_PER_TRACE and found, seconds=30)
        assert span_ids(spans) == sorted(s.span_ids)


# ------------------------------------------------------------------ an outage of the Jaeger collector

# The alerts that speak of the trace pipeline (rules/tracing.yaml) and the one that speaks of a
# scrape target that is gone (rules/meta-monitoring.yaml).
ALERT_FILES = ("tracing.yaml", "meta-monitoring.yaml")
SCRAPED_JOBS = {"otel-gateway": "gateways", "jaeger-collector": "collector", "jaeger": "query"}


@pytest.fixture(scope="module")
def prometheus(prod, tmp_path_factory):
    """A real Prometheus with prod's tracing and meta-monitoring rules (``for:`` removed, every
    expression as rendered) scraping, through prod's own jobs, the gateways and both Jaeger
    processes on loopback."""
    from scripts import dashboard_query_benchmark as bench
    from tests.e2e.harness import simulated_pod
    from tests.test_kube_state_metrics import without_for

    work = tmp_path_factory.mktemp("trace-e2e-prometheus")
    result = offline.run("prod")
    rules = dict(result.one("ConfigMap", "prometheus-rules")["data"])
    rules_dir = work / "rules"
    rules_dir.mkdir()
    for name, text in without_for({n: rules[n] for n in ALERT_FILES}).items():
        (rules_dir / name).write_text(text)
    generated = yaml.safe_load(result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    jobs = []
    for job in generated["scrape_configs"]:
        if job["job_name"] not in SCRAPED_JOBS:
            continue
        procs = {"gateways": prod.gateways, "collector": [prod.collector], "query": [prod.query]}[
            SCRAPED_JOBS[job["job_name"]]]
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [simulated_pod(job, address=f"{p.ip}:{p.ports[trace_stack.METRICS]}",
                                               pod=f"{job['job_name']}-{i}", node="e2e-node-1", namespace="monitoring")
                                 for i, p in enumerate(procs)]
        job.update(scrape_interval="1s", scrape_timeout="1s")
        jobs.append(job)
    assert {j["job_name"] for j in jobs} == set(SCRAPED_JOBS)
    server = bench.Prometheus(require_tool("prometheus"), work / "tsdb", work, [])
    server.config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_dir / "*.yaml")], "scrape_configs": jobs}))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def firing(prometheus, alert: str, job: str) -> list[dict]:
    answer = json.loads(trace_stack.http_get(f"{prometheus.url}/api/v1/alerts"))["data"]["alerts"]
    return [a for a in answer if a["labels"]["alertname"] == alert and a["labels"].get("job") == job
            and a["state"] == "firing"]


def scalar(prometheus, expr: str) -> float:
    return sum(float(r["value"][1]) for r in prometheus.query(expr))


def in_flight(prometheus) -> float:
    return scalar(prometheus, 'otelcol_exporter_in_flight_requests{job="otel-gateway", exporter="otlp_grpc/jaeger"}')


def sent_spans(prometheus) -> float:
    return scalar(prometheus, 'otelcol_exporter_sent_spans_total{job="otel-gateway", exporter="otlp_grpc/jaeger"}')


def test_a_collector_outage_fires_target_down_and_the_queued_spans_arrive_after_it(prod, app, prometheus):
    def all_up():
        answer = json.loads(trace_stack.http_get(f"{prometheus.url}/api/v1/query?query=sum(up)"))["data"]["result"]
        return answer and float(answer[0]["value"][1]) == 4
    trace_stack.wait_for("Prometheus to scrape the gateways and Jaeger", all_up, seconds=30)
    assert not firing(prometheus, "TargetDown", "jaeger-collector")

    since = int(time.time() * 1e6) - 60_000_000
    prod.collector.stop()
    try:
        base = time.time_ns() - 1_000_000_000
        sent = [app.request(20_000 + n, "error", base + n * 1000) for n in range(300)]
        app.flush()
        # The gateway keeps the spans: the outage is behind it, not in front.
        assert app.exported()[1] == 0
        trace_stack.wait_for("TargetDown for the collector", lambda: firing(prometheus, "TargetDown", "jaeger-collector"),
                             seconds=30)

        def export_failing():
            return any(line for g in prod.gateways for line in g.tail(500_000).splitlines()
                       if "Exporting failed" in line and "otlp_grpc/jaeger" in line)
        # The tail sampler decides after its decision wait, then the batch goes out and fails.
        trace_stack.wait_for("the gateway's export to fail", export_failing, seconds=40)
        # What TracingExportStalled reads: while the export is retried, the requests stay in
        # flight and nothing counts as sent (a failure counts only when the retries give up).
        sent_before = sent_spans(prometheus)
        trace_stack.wait_for("the retried requests in flight, as Prometheus scrapes them",
                             lambda: in_flight(prometheus) > 0, seconds=20)
        time.sleep(2)
        assert sent_spans(prometheus) == sent_before
        alerts = json.loads(trace_stack.http_get(f"{prometheus.url}/api/v1/alerts"))["data"]["alerts"]
        print("firing during the outage:", sorted({(a["labels"]["alertname"], a["labels"].get("job"))
                                                   for a in alerts if a["state"] == "firing"}))
    finally:
        prod.collector.start()
    prod.collector.wait_serving()

    def stored():
        found = traces_of(prod.query_url(), API, since)
        return all(len(found.get(s.trace_id, [])) == SPANS_PER_TRACE for s in sent) and found
    found = trace_stack.wait_for("the spans queued during the outage in Jaeger", stored, seconds=60, every=1)
    assert all(span_ids(found[s.trace_id]) == sorted(s.span_ids) for s in sent)
    trace_stack.wait_for("TargetDown to resolve", lambda: not firing(prometheus, "TargetDown", "jaeger-collector"),
                         seconds=30)
    trace_stack.wait_for("no request in flight after the restart", lambda: in_flight(prometheus) == 0, seconds=30)
    assert sent_spans(prometheus) > sent_before


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_dev_all_in_one_takes_an_export_as_large_as_the_gateway_takes(dev, protocol):
    """In dev the applications export straight to the all-in-one: it takes, over either protocol,
    one export larger than the collector behind prod's gateway accepts (8 MiB) and within what the
    gateway accepts (20 MiB)."""
    proc = dev.proc
    endpoint = (f"127.0.0.1:{proc.ports['receivers.otlp.protocols.grpc']}",
                f"{proc.url('receivers.otlp.protocols.http')}/v1/traces")
    fake = FakeFootballPrediction([endpoint, endpoint])
    try:
        since = int(time.time() * 1e6) - 60_000_000
        payload = {"prediction.explanation": "x" * (24 * 1024)}
        instance = next(i for i in fake.instances if i.protocol == protocol)
        sent, size, accepted = fake.one_export(instance, 200, payload)
        assert 9 * 1024 * 1024 < size < 20 * 1024 * 1024, size
        assert accepted, f"dev's Jaeger refused one export of {size} bytes over {protocol}\n{proc.tail()}"
    finally:
        fake.shutdown()
    query = proc.url("extensions.jaeger_query.http")

    def stored():
        found = traces_of(query, instance.service, since)
        return all(len(found.get(s.trace_id, [])) == len(s.span_ids) for s in sent) and found
    trace_stack.wait_for("the large traces in dev's Jaeger", stored, seconds=60, every=1)


def test_jaeger_stops_at_once_after_serving_its_ui(tmp_path):
    """The query extension traces itself unless told not to, to localhost:4317; stopping, the
    all-in-one waited for that export to time out (10 s) after its own receiver had stopped."""
    jaeger = DevJaeger(tmp_path).start()
    try:
        query = jaeger.proc.url("extensions.jaeger_query.http")
        for _ in range(5):
            trace_stack.http_get(f"{query}/api/services")
    finally:
        began = time.monotonic()
        jaeger.stop()
    assert time.monotonic() - began < 5, jaeger.proc.tail()
