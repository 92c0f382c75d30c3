"""The demo workload (demo/) against the contract and the stack's real programs, on loopback.

- run as a process's threads, the API and the worker expose every metric of metrics/catalog.yaml
  with its type, its labels and its buckets;
- a real Prometheus scrapes them for a short while with the jobs of dev's generated prometheus.yml
  (static targets, as on a Docker host) and the recording rules, and every dashboard query that
  reads the application's contract (directly or through recording rules) returns data;
- its log lines, through the pipeline oracle, come out parsed and with nothing that must be
  redacted left in them;
- its traces, through the real gateway in front of a real Jaeger, arrive whole: every span the
  demo made, parents included.
"""

from __future__ import annotations

import io
import json
import re
import time

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from demo.app import INCIDENT, ErrorRates, Workload
from demo.metrics import catalog
from scripts import dashboard_query_benchmark as bench
from tests import otel_policy
from tests import promql_names as pn
from tests import stack_rules
from tests.conftest import ROOT, require_tool
from tests.test_logging_pipeline import run_filter
from tests.test_otel_validate import Running, exposed, http_get, on_loopback, wait_for
from tests.test_tracing_config import render

SCRAPE_SECONDS = 20  # how long Prometheus scrapes the demo before the queries run
RECORDED_SERIES: list = []
RULES_WAIT = 60.0  # then at most this long for the recording rules' first results
RECORDED = ("job_handler:http_requests:rate5m", "job_handler_method_status:http_requests:rate5m",
            "job_handler:http_request_duration_seconds_bucket:rate5m", "slo:sli_error:ratio_rate5m")


def started(component: str, **kwargs) -> tuple[Workload, io.StringIO]:
    """A workload at an incident's error rates: every error panel and log rule has data in seconds."""
    log = io.StringIO()
    return Workload(component, host="127.0.0.1", port=0, log=log, max_runtime=300, seed=7, errors=INCIDENT,
                    **kwargs).start(), log


@pytest.fixture(scope="module")
def workloads():
    api, api_log = started("api", rps=20)
    worker, worker_log = started("worker")
    try:
        yield {"api": (api, api_log), "worker": (worker, worker_log)}
    finally:
        api.stop()
        worker.stop()


def families(port: int) -> dict:
    text = http_get(f"http://127.0.0.1:{port}/metrics")
    return {f.name: f for f in text_string_to_metric_families(text)}


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("",), "gauge": ("",)}
# As Prometheus' text format writes them: an info metric is a gauge of value 1, named with its _info.
TEXT_TYPE = {"info": "gauge"}


@pytest.mark.parametrize("component", ["api", "worker"])
def test_every_metric_of_the_contract_is_exposed_with_its_type_and_labels(workloads, component):
    workload = workloads[component][0]
    time.sleep(2.5)  # a few requests and ticks
    exposed_families = families(workload.port)
    for spec in catalog(component):
        name = spec["name"]
        family_name = name.removesuffix("_total") if spec["type"] == "counter" else name
        family = exposed_families.get(family_name)
        assert family is not None, f"{component}: {name} is not exposed"
        assert family.type == TEXT_TYPE.get(spec["type"], spec["type"]), (name, family.type)
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        assert samples, f"{name} has no series"
        for sample in samples:
            assert sample.name in {family_name + suffix for suffix in SUFFIXES[spec["type"]]}, sample.name
            labels = set(sample.labels) - {"le"}
            assert labels == set(spec.get("labels") or []), (name, sample.labels)
        if spec["type"] == "info":
            assert [s.value for s in samples] == [1.0], name
        if spec["type"] == "histogram":
            bounds = sorted({float(s.labels["le"]) for s in samples if s.name.endswith("_bucket")})
            assert bounds == sorted(spec["buckets"] + [float("inf")]), name
    # prometheus-client's own <counter>_created families are outside the contract (never queried).
    outside = {f for f in exposed_families if not f.endswith("_created")} - {
        s["name"].removesuffix("_total") for s in catalog(component)}
    assert not outside, f"metrics outside the contract: {sorted(outside)}"


# ---------------------------------------------------------------- a real Prometheus, the dashboards


def contract_only(expr: str, records: dict[str, str], app: set[str]) -> bool:
    """Whether every name the query reads is the application's (through recording rules); `up` counts
    only beside such names."""
    names = pn.metric_names(pn.substitute_vars(expr))

    def ours(name: str) -> bool:
        if name in records:
            return all(ours(n) for n in pn.metric_names(records[name]))
        return name in app or re.sub(r"_(bucket|sum|count|info)$", "", name) in app

    return bool(names - {"up"}) and all(ours(n) for n in names - {"up"})


@pytest.fixture(scope="module")
def prometheus(workloads, tmp_path_factory):
    """Prometheus with dev's scrape jobs of the two demo targets and dev's rule files, scraping
    every second, then the dashboards' queries over the last hour."""
    from tools import offline

    work = tmp_path_factory.mktemp("demo-prometheus")
    result = offline.run("dev")
    generated = yaml.safe_load(next(u["content"] for u in result.container("prometheus").inputs["uploads"]
                                    if u["file"].endswith("/prometheus.yml")))
    ports = {"football-prediction-api": workloads["api"][0].port,
             "football-prediction-worker": workloads["worker"][0].port}
    jobs = [job for job in generated["scrape_configs"] if job["job_name"] in ports]
    assert {job["job_name"] for job in jobs} == set(ports), "dev scrapes the demo as static targets"
    for job in jobs:
        assert job["static_configs"][0]["targets"] == [f"{job['job_name']}:{8000 if 'api' in job['job_name'] else 9808}"]
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[job['job_name']]}"]
    # The recording rules of every rule file dev's Prometheus loads (the generated SLO rules among
    # them; the dashboards read no alert), each group evaluated every second: the rules' results
    # within the short scrape.
    rule_paths = []
    for upload in result.container("prometheus").inputs["uploads"]:
        if "/rules/" in upload["file"]:
            groups = [{**group, "interval": "1s", "rules": [r for r in group["rules"] if "record" in r]}
                      for group in yaml.safe_load(upload["content"])["groups"]]
            groups = [g for g in groups if g["rules"]]
            if groups:
                rule_paths.append(work / upload["file"].rsplit("/", 1)[1])
                rule_paths[-1].write_text(yaml.safe_dump({"groups": groups}))
    assert {"recording.yaml", "slo-api-availability.yaml"} <= {p.name for p in rule_paths}
    prom = bench.Prometheus(require_tool("prometheus"), work / "tsdb", work, rule_paths)
    prom.config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s",
                   "external_labels": {"environment": "dev"}},
        "rule_files": [str(p) for p in rule_paths], "scrape_configs": jobs}))
    prom.start()
    try:
        time.sleep(SCRAPE_SECONDS)
        # On a loaded machine the first evaluations of the rules can lag the scrapes: wait (bounded)
        # until both a recording rule of rules/ and a generated SLO rule have results.
        deadline = time.monotonic() + RULES_WAIT
        while not all(prom.get("/api/v1/query", {"query": f'{name}{{environment="dev"}}'})["data"]["result"]
                      for name in RECORDED):
            if time.monotonic() > deadline:
                pytest.fail(f"no results of {RECORDED} after {SCRAPE_SECONDS + RULES_WAIT}s:\n{prom.log_tail()}")
            time.sleep(1)
        # Range queries end at the last multiple of their step (30 s) before `end`: that point must
        # come after the recorded series began, or they are empty there while the raw ones are not.
        seen = time.time()
        step = bench.TimeRange("1h", 3600, int(seen)).interval
        time.sleep(step - seen % step + 1)
        end = int(time.time())
        assert bench.TimeRange("1h", 3600, end).aligned_end > seen
        results = bench.run_dashboards(prom, [bench.TimeRange("1h", 3600, end)], "dev")
        # What the recording rules held when the queries ran: the failure message shows it.
        RECORDED_SERIES[:] = [(r["metric"], r["value"][1]) for r in prom.get("/api/v1/query", {
            "query": 'count by (__name__, environment) ({__name__=~".+:.+"})'})["data"]["result"]]
        yield results
    finally:
        prom.stop()


# Dashboard queries on the application's contract that a short-lived demo cannot fill: why.
DEMO_EXPECTED_EMPTY: dict[tuple, str] = {}


def test_every_dashboard_query_on_the_contract_has_data(prometheus):
    contract = pn.load_contract(ROOT)
    app = {m["name"] for m in yaml.safe_load((ROOT / "metrics" / "catalog.yaml").read_text())["metrics"]}
    records = {r["record"]: r["expr"] for r in pn.iter_rules(ROOT) if "record" in r}
    assert contract.app
    ours = [r for r in prometheus if r.target.kind == "panel" and contract_only(r.target.expr, records, app)]
    assert len(ours) > 50, len(ours)
    errors = [f"{r.target.where}: {r.error}" for r in ours if r.error]
    assert not errors, "\n".join(errors)
    empty = [f"{r.target.where}: {r.query}" for r in ours if r.empty and r.target.key not in DEMO_EXPECTED_EMPTY]
    assert not empty, ("dashboard queries without data from the demo:\n" + "\n".join(empty)
                       + f"\nrecorded series then: {RECORDED_SERIES}")
    variables = [r for r in prometheus if r.target.kind == "variable" and r.target.dashboard in
                 ("application", "prediction-performance")]
    assert variables and not [r.target.where for r in variables if r.empty]


# ---------------------------------------------------------------- logs


SECRET_PATTERNS = [r"@example\.org", r"password=hunter\d", r"hunter\d+", r"eyJhbGci", r"sk_live_", r"tk_[0-9a-f]{6}"]


def test_the_logs_come_out_of_the_pipeline_parsed_and_redacted(workloads):
    api, api_log = workloads["api"]
    worker, worker_log = workloads["worker"]
    for _ in range(12):  # failed logins among them, whatever the traffic drew
        api.serve("POST", "/api/v1/login")
    for source in ("fixtures", "odds", "scores"):
        worker._collect(source)
    lines = [(line, "football-prediction-api") for line in api_log.getvalue().splitlines()] + \
            [(line, "football-prediction-worker") for line in worker_log.getvalue().splitlines()]
    raw = "\n".join(line for line, _ in lines)
    for pattern in SECRET_PATTERNS:
        assert re.search(pattern, raw), f"the demo writes nothing for rule {pattern} to catch"
    for line, container in lines:
        doc = run_filter(line, container=container)
        assert doc["tags"] == [], (line, doc)
        assert doc["@timestamp"] and doc["log"]["level"] in ("info", "warning", "error") and doc["message"], doc
        assert doc["service"] == {"name": container}
        text = json.dumps(doc)
        assert not [p for p in SECRET_PATTERNS if re.search(p, text)], (line, doc)
        assert "password" not in doc and "headers" not in doc
        if doc["log"]["logger"] == "api.access":
            assert doc["http"]["request"]["id"] and len(doc["trace"]["id"]) == 32 and len(doc["span"]["id"]) == 16
            assert isinstance(doc["http"]["response"]["status_code"], int)
            assert isinstance(doc["event"]["duration_ms"], float)


# ---------------------------------------------------------------- traces


def test_the_traces_arrive_whole_through_the_gateway_and_jaeger(tmp_path):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    jaeger_text = on_loopback(render("all-in-one-memory"), tmp_path)
    jaeger_ports = otel_policy.listening_ports(otel_policy.parse(jaeger_text))
    gateway_text = on_loopback(render("gateway-keep-all"), tmp_path).replace(
        "127.0.0.1:9\n", f"127.0.0.1:{jaeger_ports['receivers.otlp.protocols.grpc']}\n")
    jaeger = Running("jaeger", jaeger_text, tmp_path / "jaeger")
    gateway = Running("contrib", gateway_text, tmp_path / "gateway")
    demo = None
    try:
        for running in (jaeger, gateway):
            wait_for(f"{running.log.parent.name} to serve its metrics", lambda r=running: exposed(r.metrics_port()))
        endpoint = f"http://127.0.0.1:{gateway.ports['receivers.otlp.protocols.grpc']}"
        demo, _ = started("api", rps=0, otlp_endpoint=endpoint)
        kept = InMemorySpanExporter()
        demo.tracing.provider.add_span_processor(SimpleSpanProcessor(kept))
        for n in range(6):
            demo.serve("GET", f"/api/v1/predictions/{n}")
        demo.serve("GET", "/api/v1/matches/3/odds")
        demo.tracing.provider.force_flush()
        made: dict[str, dict] = {}
        for span in kept.get_finished_spans():
            made.setdefault(f"{span.context.trace_id:032x}", {})[f"{span.context.span_id:016x}"] = (
                span.name, f"{span.parent.span_id:016x}" if span.parent else None)
        assert len(made) == 7 and all(len(spans) >= 2 for spans in made.values()), made
        query = jaeger.ports["extensions.jaeger_query.http"]

        def served(trace_id: str):
            try:
                data = json.loads(http_get(f"http://127.0.0.1:{query}/api/traces/{trace_id}"))["data"]
            except Exception:  # 404 until the gateway's batch has left
                return None
            spans = data[0]["spans"] if data else []
            return spans if len(spans) == len(made[trace_id]) else None

        for trace_id, spans in made.items():
            arrived = wait_for(f"trace {trace_id} whole in Jaeger", lambda t=trace_id: served(t))
            got = {s["spanID"]: (s["operationName"],
                                 next((r["spanID"] for r in s.get("references", []) if r["refType"] == "CHILD_OF"),
                                      None)) for s in arrived}
            assert got == spans
            services = {p["serviceName"] for p in json.loads(
                http_get(f"http://127.0.0.1:{query}/api/traces/{trace_id}"))["data"][0]["processes"].values()}
            assert services == {"football-prediction-api"}
    finally:
        if demo:
            demo.stop()
        for running in (gateway, jaeger):
            running.stop()


# ---------------------------------------------------------------- inside the objectives


def _budget(name: str) -> float:
    slo = next(s for s in stack_rules.slos() if s.name == name)
    return float(slo.budget)


def test_the_demo_stays_inside_every_objective_by_default():
    """A newcomer's dev stack must not page from its first minute: at its default rates the demo's
    failures are a fraction of each budget its SLIs read; the incident's rates exceed them."""
    normal = ErrorRates()
    # The API's 5xx come only from failed predictions, a subset of its requests.
    assert 1 / normal.prediction_failure_every < _budget("api-availability") / 4
    assert normal.collection_failure < _budget("data-collection-success") / 4
    assert 1 / INCIDENT.prediction_failure_every > _budget("api-availability")
    assert INCIDENT.collection_failure > _budget("data-collection-success")

