#!/usr/bin/env python3
"""Measure fault-to-notification time of real alerts on the real binaries (not a timed test).

Starts the e2e pipeline of tests/e2e/harness.py (two Prometheus, two clustered Alertmanagers,
node-exporter, blackbox exporter, the fake FootballPrediction API, capture servers) with the
shortened settings (scrape/evaluation 1s, group_wait 1s), injects every fault at once, and for
each alert prints:

- bound: for + scrape interval + evaluation interval + group_wait, from the generated configs
  (the same formula tests/test_latency_budget.py applies to prod);
- first: fault -> first firing notification (any receiver);
- all: fault -> the last of the receivers the route tree sends it to;
- resolved: recovery -> first resolved notification (NodeDown, FootballApiHealthProbeFailing;
  the error-ratio alert needs its 5m rate window to clear and is not waited for).

    .venv/bin/python scripts/alert_latency_benchmark.py [--runs N] [--keep DIR]

Takes about 3 minutes per run (the rules' `for: 2m` stay as written). Exit status 1 when a
notification did not arrive at all (a timeout in the scenario).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import Pipeline, notification_bound, rule_for_seconds, run_scenario  # noqa: E402


def one_run(workdir: Path, verbose: bool) -> tuple[dict[str, dict], list[str]]:
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if verbose else (lambda message: None)
    with Pipeline(workdir, log=log) as pipeline:
        result = run_scenario(pipeline, baseline=5, dedup_settle=0, kill_alertmanager=False,
                              survivor_heartbeat=False)
        g = pipeline.generated
        rows = {}
        for fault in result.faults:
            name = fault.alertname
            bound = notification_bound(g.prometheus_yml, g.alertmanager_yml, rule_for_seconds(g.rule_files, name))
            resolved = pipeline.notified(name, "resolved", result.t_recover)
            rows[name] = {
                "bound": bound["total"],
                "first": result.first_notified.get(name, float("nan")) - result.t_fault,
                "all": result.all_delivered.get(name, float("nan")) - result.t_fault,
                "resolved": (min(n.time for n in resolved) - result.t_recover) if resolved else float("nan"),
                "check_resolved": fault.check_resolved,
            }
        return rows, result.errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="how many runs (each about 3 minutes)")
    ap.add_argument("--keep", type=Path, help="keep configs and logs in this directory")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print progress")
    args = ap.parse_args(argv)

    runs: list[dict[str, dict]] = []
    errors: list[str] = []
    for i in range(max(1, args.runs)):
        started = time.time()
        if args.keep:
            workdir = args.keep / f"run-{i}"
            rows, errs = one_run(workdir, not args.quiet)
        else:
            with tempfile.TemporaryDirectory(prefix="alert-latency-") as tmp:
                rows, errs = one_run(Path(tmp), not args.quiet)
        runs.append(rows)
        errors += errs
        print(f"run {i + 1}: {time.time() - started:.0f}s", file=sys.stderr)

    print(f"{'alert':32} {'bound':>7} {'first':>7} {'all':>7} {'resolved':>9}  within bound")
    for name in runs[0]:
        def med(key: str) -> float:
            values = [r[name][key] for r in runs if r[name][key] == r[name][key]]  # drop NaN
            return statistics.median(values) if values else float("nan")

        bound, first, all_, resolved = med("bound"), med("first"), med("all"), med("resolved")
        shown = f"{resolved:8.1f}s" if runs[0][name]["check_resolved"] else "  not run"
        verdict = "yes" if all_ <= bound else ("NO" if all_ == all_ else "not delivered")
        print(f"{name:32} {bound:6.1f}s {first:6.1f}s {all_:6.1f}s {shown}  {verdict}")
    if len(runs) > 1:
        print(f"(medians of {len(runs)} runs)")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
