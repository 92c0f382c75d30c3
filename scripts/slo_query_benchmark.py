"""Every SLO query over 30 days of the synthetic fleet in a real Prometheus: the SLO recording rules'
expressions, the SLO dashboard's queries and the report's, each timed; the 30-day ratio also from the raw
series (the baseline the recorded 5-minute series replace).

    .venv/bin/python scripts/slo_query_benchmark.py --api-pods 2 --handlers 5 --days 30 --step 60
    .venv/bin/python scripts/slo_query_benchmark.py --write-docs     # the table into docs/slos.md

The pipeline is scripts/dashboard_query_benchmark.py's (its fleet, its Prometheus runner and rule
back-fill), reduced to the fleet's series the SLOs read: OpenMetrics -> promtool blocks, then the SLO
rules' 5-minute series (and the rules they read) back-filled at the step, then each query run --repeat
times at the end of the history (median kept, client side, and Prometheus' own execTotalTime).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.configs import slo as slo_config  # noqa: E402
from components.report.queries import Period, Queries  # noqa: E402
from scripts import dashboard_query_benchmark as bench  # noqa: E402
from tests import promql_names as pn  # noqa: E402
from tests import slo_week as sw  # noqa: E402
from tests import stack_rules  # noqa: E402
from tests import synthetic_fleet as sf  # noqa: E402

BEGIN, END = "<!-- slo-query-benchmark:begin -->", "<!-- slo-query-benchmark:end -->"
FIVE_MINUTE = {slo_config.ERRORS_5M, slo_config.EVENTS_5M, slo_config.OBJECTIVE, slo_config.ERROR_BUDGET,
               slo_config.TIME_PERIOD}


def base_names(exprs, contract) -> set[str]:
    out, todo = set(), [n for e in exprs for n in pn.metric_names(e)]
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in contract.recording:
            todo += pn.metric_names(contract.recording[name])
        else:
            out.add(name)
    return out


def timed(prom, expr: str, at: int, repeat: int) -> tuple[float, float, str]:
    seconds, exec_time, error = [], float("nan"), ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        data = prom.post("/api/v1/query", {"query": expr, "time": at, "stats": "all"})
        seconds.append(time.perf_counter() - t0)
        if data.get("status") != "success":
            error = str(data.get("error"))[:200]
            break
        exec_time = float(((data.get("data") or {}).get("stats") or {}).get("timings", {}).get("execTotalTime", "nan"))
    return statistics.median(seconds), exec_time, error


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api-pods", type=int, default=sf.FleetSpec.api_pods)
    ap.add_argument("--worker-pods", type=int, default=sf.FleetSpec.worker_pods)
    ap.add_argument("--handlers", type=int, default=sf.FleetSpec.handlers)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--step", type=int, default=30, help="seconds between samples and rule evaluations")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-seconds", type=float, default=0.2, help="the bound each recorded SLO query must keep")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/slos.md")
    a = ap.parse_args(argv)
    promtool, prometheus = bench.find_tool("promtool"), bench.find_tool("prometheus")
    end = (int(time.time()) - 3600) // 86400 * 86400
    spec = sf.FleetSpec(api_pods=a.api_pods, worker_pods=a.worker_pods, nodes=1, handlers=a.handlers,
                        seconds=int(a.days * 86400), step=a.step, end=end, tracing=False, logging=False)
    slos = stack_rules.slos()
    contract = pn.load_contract(ROOT)
    groups = [g for s in slos for g in slo_config.rule_groups(s, spec.environment, spec.step)]
    rule_exprs = [(g["name"], r["record"], r["expr"]) for g in groups for r in g["rules"] if "record" in r]
    needed = base_names([e for _, _, e in rule_exprs], contract)
    families = [f for f in sf.build(spec) if f.series_names() & needed]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fm-slo-bench-") as tmp:
        work = Path(tmp)
        tsdb = work / "tsdb"
        tsdb.mkdir()
        sw.write_history(spec, families, work, tsdb, promtool)
        history_s = time.perf_counter() - t0
        # The 5-minute series and the rules they read, at every step: what the 30-day queries sum.
        fine = {r["record"] for g in groups for r in g["rules"] if r.get("record") in FIVE_MINUTE}
        fine |= {n for _, r, e in rule_exprs if r in FIVE_MINUTE for n in pn.metric_names(e) if n in contract.recording}
        rules_file = work / "rules.yaml"
        kept = []
        for path in pn.rule_files(ROOT):
            for g in yaml.safe_load(path.read_text())["groups"]:
                rules = [r for r in g["rules"] if r.get("record") in fine]
                if rules:
                    kept.append({"name": f"{path.stem}/{g['name']}", "rules": rules})
        rules_file.write_text(yaml.safe_dump({"groups": kept}, sort_keys=False))
        with bench.Prometheus(prometheus, tsdb, work, [], retention="90d") as prom:
            prom.start()
            t1 = time.perf_counter()
            bench.backfill_rules(prom, promtool, [rules_file], spec.start, spec.end, work, eval_interval=a.step,
                                 max_block="168h")
            rules_s = time.perf_counter() - t1
            rows = []
            for group, record, expr in rule_exprs:
                rows.append(("rule", f"{group}: {record}", expr, *timed(prom, expr, spec.end, a.repeat)))
            for s in slos:
                raw = f"({s.query('error', '30d')})\n/\n({s.query('total', '30d')})"
                rows.append(("baseline", f"slo.{s.name}: the 30-day ratio from the raw series", raw,
                             *timed(prom, raw, spec.end, a.repeat)))
            for target in bench.dashboard_targets(ROOT / "dashboards" / "slos.json"):
                tr = bench.TimeRange("30d", 30 * 86400, spec.end)
                expr = bench.interpolate(target.expr, {**tr.builtins(), "environment": spec.environment, "slo": ".+"})
                rows.append(("dashboard", target.where, expr, *timed(prom, expr, spec.end, a.repeat)))
            for name, expr in Queries(spec.environment, Period("week", spec.end)).all().items():
                if name.startswith("slo_"):
                    rows.append(("report", f"report: {name}", expr, *timed(prom, expr, spec.end, a.repeat)))
    series = sum(len(f.series) for f in families)
    lines = [f"Fleet: {a.api_pods} API pods x {a.handlers} routes, {a.worker_pods} workers, {a.days:g} days at "
             f"{a.step} s ({series} series of {len(families)} families the SLOs read); history "
             f"{history_s:.0f} s, rule back-fill {rules_s:.0f} s; median of {a.repeat} runs at the end of the "
             f"history, Prometheus {subprocess_version(prometheus)} on this machine.", "",
             "| kind | query | median (client) | Prometheus execTotalTime |", "|---|---|---|---|"]
    slow = []
    for kind, where, expr, seconds, exec_s, error in rows:
        shown = error or f"{seconds * 1000:.1f} ms"
        lines.append(f"| {kind} | {where.replace('|', '/')} | {shown} | {exec_s * 1000:.1f} ms |")
        if kind != "baseline" and (error or seconds > a.max_seconds):
            slow.append(where)
    lines.append("")
    lines.append(f"Over {a.max_seconds * 1000:.0f} ms or failing (baselines aside): {', '.join(slow) or 'none'}.")
    text = "\n".join(lines)
    print(text)
    if a.write_docs:
        docs = ROOT / "docs" / "slos.md"
        body = docs.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        body = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, body, flags=re.S) \
            if BEGIN in body else body.rstrip() + "\n\n" + block + "\n"
        docs.write_text(body)
    return 1 if slow else 0


def subprocess_version(binary: str) -> str:
    import subprocess

    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    return out[2] if len(out) > 2 else "?"


if __name__ == "__main__":
    sys.exit(main())
