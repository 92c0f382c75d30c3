"""Every Grafana panel query against a real Prometheus over a small synthetic history.

The smoke version of scripts/dashboard_query_benchmark.py, through the same code: a
tiny fleet (2 API pods, 1 worker + 1 crash-looping worker, 1 node, 3 handlers, 3 h
at 30 s) is back-filled with promtool, the recording rules are back-filled against
a running Prometheus, and every panel target and variable query of dashboards/ runs
over the last 1 h and 3 h as Grafana would send it. Every query must succeed and
return data, except the EXPECTED_EMPTY ones, which are listed with their reason and
must stay empty (so that the list cannot go stale).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from scripts import dashboard_query_benchmark as bench
from tests import synthetic_fleet as sf
from tests.conftest import ROOT, require_tool

SPEC = sf.FleetSpec(api_pods=2, worker_pods=1, nodes=1, handlers=3, seconds=3 * 3600, step=30)
RANGES = [("1h", 3600), ("3h", 3 * 3600)]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    promtool = require_tool("promtool")
    prometheus = require_tool("prometheus")
    return bench.run_pipeline(SPEC, RANGES, tmp_path_factory.mktemp("dashboard-queries"), promtool, prometheus,
                              workers=1, repeat=1, max_seconds=5.0)


def _report(p) -> str:
    return bench.report(p.results, p.verdict, 5.0)


def test_no_query_errors(pipeline):
    assert not pipeline.verdict.errors, _report(pipeline)


def test_every_panel_query_returns_data(pipeline):
    empty = [f"[{r.range}] {r.target.where}: {r.query}" for r in pipeline.verdict.unexpected_empty]
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_expected_empty_targets_are_still_empty(pipeline):
    """EXPECTED_EMPTY documents real gaps; an entry that now returns data must be removed."""
    stale = sorted({r.target.where for r in pipeline.verdict.expected_but_has_data})
    assert not stale, f"listed in EXPECTED_EMPTY but returned data: {stale}"
    targets = {t.key for path in bench.pn.dashboard_files(ROOT) for t in bench.dashboard_targets(path)}
    unknown = set(bench.EXPECTED_EMPTY) - targets
    assert not unknown, f"EXPECTED_EMPTY names targets that do not exist: {sorted(unknown)}"


def test_every_target_and_variable_ran_in_each_range(pipeline):
    targets = [t for path in bench.pn.dashboard_files(ROOT) for t in bench.dashboard_targets(path)]
    ran = Counter((r.target.kind, r.range) for r in pipeline.results)
    for label, _seconds in RANGES:
        assert ran[("panel", label)] == len(targets)
        assert ran[("variable", label)] > 0


def test_variables_resolve_to_the_fleet(pipeline):
    env = [r for r in pipeline.results if r.target.kind == "variable" and r.target.ref == "environment"]
    assert env and all(not r.empty for r in env)
    # no $variable or Grafana macro is left in any query sent
    leftover = [r.query for r in pipeline.results if r.target.kind == "panel" and re.search(r"\$\w|\[\[", r.query)]
    assert not leftover, leftover


def test_fleet_covers_every_metric_the_dashboards_need():
    sf.check_coverage(sf.build(SPEC))


def test_fleet_produces_only_names_the_catalogs_list():
    families = sf.build(SPEC)
    assert sf.unlisted_names(families) == []
    invented = sf.Family("kube_pod_container_status_ready", "gauge")
    assert sf.unlisted_names([*families, invented]) == ["kube_pod_container_status_ready"]


def test_coverage_check_names_what_is_missing():
    families = [f for f in sf.build(SPEC) if f.name not in ("redis_up", "http_request_duration_seconds")]
    with pytest.raises(RuntimeError) as exc:
        sf.check_coverage(families)
    message = str(exc.value)
    assert "redis_up" in message and "http_request_duration_seconds_bucket" in message


def test_openmetrics_output_is_well_formed(tmp_path):
    """What promtool's OpenMetrics parser and the spec expect: one TYPE per family, families not
    interleaved, counters declared without _total and sampled with it, timestamps in seconds,
    histogram buckets cumulative and ending at +Inf == _count, counters never decreasing, # EOF."""
    spec = sf.FleetSpec(api_pods=1, worker_pods=1, nodes=1, handlers=2, seconds=1800, step=30).resolved()
    path = tmp_path / "fleet.om"
    sf.write_openmetrics(spec, path)
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    types: dict[str, str] = {}
    order: list[str] = []
    last_value: dict[str, float] = {}
    buckets: dict[tuple, list] = {}
    counts: dict[tuple, float] = {}
    family = mtype = None
    for line in lines[:-1]:
        if line.startswith("# TYPE "):
            _, _, family, mtype = line.split(" ")
            assert family not in types, f"family {family} declared twice (interleaved)"
            types[family] = mtype
            order.append(family)
            continue
        series, value, ts = line.rsplit(" ", 2)
        name = series.split("{", 1)[0]
        assert spec.start <= int(ts) <= spec.end, line
        if mtype == "counter":
            assert name == family + "_total", line
        elif mtype == "info":
            assert name == family + "_info" and value == "1", line
        elif mtype == "histogram":
            assert name in (family + "_bucket", family + "_count", family + "_sum"), line
        else:
            assert name == family, line
        v = float(value)
        if mtype == "counter" or (mtype == "histogram"):
            assert v >= last_value.get(series, 0.0), f"counter went down: {line}"
            last_value[series] = v
        if mtype == "histogram" and name.endswith("_bucket"):
            labels = re.sub(r',?le="[^"]*"', "", series.split("{", 1)[1])
            buckets.setdefault((labels, ts), []).append(v)
        if mtype == "histogram" and name.endswith("_count"):
            counts[(series.split("{", 1)[1].rstrip("}"), ts)] = v
    for (labels, ts), values in buckets.items():
        assert values == sorted(values), f"buckets not cumulative: {labels} {ts}"
        assert values[-1] == counts[(labels.rstrip("}"), ts)], f"+Inf != _count: {labels} {ts}"
    assert types["http_requests"] == "counter" and types["http_request_duration_seconds"] == "histogram"
    assert types["football_system"] == "info"
