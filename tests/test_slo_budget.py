"""A week of synthetic history with an incident spends the share of the API availability budget that the
same history says, on real Prometheus with the generated rules.

The week is the synthetic fleet's API traffic (tests/synthetic_fleet.py: diurnal load, closed-form
counters, 30 s samples), reduced to the series the availability SLI reads plus the health probe it
must leave out: a baseline of 0.02% server errors and a 45-minute incident at the evening peak with
20% of requests failing. The pipeline is the dashboards' (scripts/dashboard_query_benchmark.py):
OpenMetrics -> `promtool tsdb create-blocks-from openmetrics` (day-long blocks), `prometheus` on loopback,
`promtool tsdb create-blocks-from rules` for the SLO's recording rules, then the SLO dashboard's
"Budget spent in the time range" query over the week and the SLO's 30-day ratio. The expected values
come from the counters' own closed form, never from Prometheus: bad events / all events in the week
over the budget, times 7 / 30 days (the SRE workbook's budget consumption).
"""

from __future__ import annotations

import time
import pytest
import yaml

from components.configs import slo as slo_config
from scripts import dashboard_query_benchmark as bench
from tests import stack_rules
from tests import synthetic_fleet as sf
from tests.conftest import ROOT, require_tool
from tests.slo_week import DAY, SLO_NAME, TOLERANCE, WEEK, Traffic, expected_share, families, write_history


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    promtool, prometheus = require_tool("promtool"), require_tool("prometheus")
    work = tmp_path_factory.mktemp("slo-budget")
    tsdb = work / "tsdb"
    tsdb.mkdir()
    end = (int(time.time()) - 3600) // DAY * DAY  # a whole week of days, within any retention
    spec = sf.FleetSpec(seconds=WEEK, step=30, end=end)
    timings = {}
    t = time.perf_counter()
    write_history(spec, families(spec), work, tsdb, promtool)
    timings["history"] = time.perf_counter() - t
    slo = next(s for s in stack_rules.slos() if s.name == SLO_NAME)
    group = slo_config.rule_groups(slo, "prod", spec.step)[0]
    wanted = {slo_config.ERRORS_5M, slo_config.EVENTS_5M, slo_config.ERROR_BUDGET}
    rules = work / "slo-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": group["name"],
                                                 "rules": [r for r in group["rules"] if r.get("record") in wanted]}]}))
    with bench.Prometheus(prometheus, tsdb, work, [], retention="60d") as prom:
        prom.start()
        t = time.perf_counter()
        bench.backfill_rules(prom, promtool, [rules], spec.start, spec.end, work)
        timings["rules"] = time.perf_counter() - t
        yield spec, slo, prom, timings


def _query(prom, expr: str, at: int) -> float:
    data = prom.get("/api/v1/query", {"query": expr, "time": at})
    assert data.get("status") == "success", data
    result = data["data"]["result"]
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def _dashboard_query(title: str) -> str:
    targets = [t for t in bench.dashboard_targets(ROOT / "dashboards" / "slos.json") if t.panel == title]
    assert len(targets) == 1, title
    return targets[0].expr


def test_a_week_with_an_incident_spends_the_expected_share_of_the_budget(week):
    spec, slo, prom, timings = week
    expr = bench.interpolate(_dashboard_query("Budget spent in the time range"), {
        "environment": "prod", "slo": SLO_NAME, "__range": "7d", "__range_s": str(WEEK)})
    measured = _query(prom, expr, spec.end)
    # The 5-minute rates cover the week but its first five minutes.
    expected = expected_share(spec, slo, spec.start, spec.end)
    print(f"\nbudget spent in the week: {measured:.4f} by the rules, {expected:.4f} from the history "
          f"(history {timings['history']:.1f} s, rule backfill {timings['rules']:.1f} s)")
    assert expected > 0.2, expected  # the incident matters: a quarter of the budget and more
    assert abs(measured - expected) < TOLERANCE, (measured, expected)


def test_the_period_ratio_is_the_share_of_bad_events(week):
    """The 30-day ratio (the week is all there is) is bad events / all events, as the history has them."""
    spec, slo, prom, _ = week
    group = slo_config.rule_groups(slo, "prod", spec.step)[0]
    period = next(r for r in group["rules"] if r.get("record") == slo_config.SLI_ERROR_RATIO.format(
        window=slo_config.PERIOD))
    measured = _query(prom, period["expr"], spec.end)
    bad, total = Traffic(spec, "bad"), Traffic(spec, "all")
    expected = (bad.bad(spec.end) - bad.bad(spec.start)) / (total.total(spec.end) - total.total(spec.start))
    spent = (measured - expected) / float(slo.budget) * 7 / 30
    assert abs(spent) < TOLERANCE, (measured, expected)
