"""How many active series and samples/s one Prometheus replica sustains with the stack's rules.

A benchmark, not a test (docs/scaling.md reports its figures). For each fleet size, the synthetic
fleet (tests/synthetic_fleet.py, the prod shape: every family the rules and dashboards read) is
served as one scrape target (honor_labels, so each series keeps its own job and instance), and the
built Prometheus scrapes it with every rule file of the stack (rules/*.yaml and the SLO rules)
evaluated at the scrape interval. After a warm-up it records over a window:

- head series (prometheus_tsdb_head_series) and samples appended per second;
- Prometheus' CPU (its process' user+system time from /proc) in cores;
- the slowest rule group's evaluation time, and missed evaluations;
- resident memory.

The capacity of 2 cores is extrapolated from the CPU cost per 1000 samples/s at the largest size
that kept up (appended rate within 5% of the offered rate, no missed evaluation). Bounded: sizes
and window are arguments, every process is stopped at the end.

    FM_TOOLS_BIN_DIR=$(scripts/install-test-tools.sh --bin-dir) \\
      .venv/bin/python -m scripts.capacity_benchmark --sizes 10,40,160 --interval 5 --window 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from scripts.dashboard_query_benchmark import find_tool
from tests.loopback_http import OPENMETRICS, metrics_target
from tests.ports import free_port
from tests import synthetic_fleet as sf
from tests import stack_rules

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def exposition(api_pods: int) -> tuple[bytes, int]:
    """The fleet's current values as one Prometheus text exposition (no timestamps), and its series."""
    spec = sf.FleetSpec(api_pods=api_pods, worker_pods=max(1, api_pods // 5), nodes=max(1, api_pods // 4),
                        handlers=30, seconds=60, step=30)
    spec = spec.resolved()
    families = sf.build(spec)
    with tempfile.NamedTemporaryFile("w+", suffix=".om") as om:
        sf.write_openmetrics(spec, om.name, families, first=spec.end, last=spec.end)
        text = Path(om.name).read_text()
    lines, series = [], 0
    for line in text.splitlines():
        if line.startswith("# EOF"):
            continue
        if line.startswith("#"):
            lines.append(line)
            continue
        # name{labels} value timestamp: the timestamp goes, Prometheus stamps the scrape.
        lines.append(line.rsplit(" ", 1)[0])
        series += 1
    return ("\n".join(lines) + "\n# EOF\n").encode(), series


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def own(port: int, name: str, combine=sum) -> float:
    """One of Prometheus' own metrics, read from its /metrics (not from its TSDB, where the fleet's
    synthetic Prometheus series of the same names live)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " ")]
    return combine(values) if values else 0.0


def run_size(api_pods: int, interval: int, warmup: int, window: int, work: Path) -> dict:
    body, series = exposition(api_pods)
    target = metrics_target(body, OPENMETRICS)
    rules = work / "rules"
    rules.mkdir(parents=True)
    for path in sorted((ROOT / "rules").glob("*.yaml")):
        shutil.copy(path, rules)
    for path in stack_rules.generated_rule_paths(ROOT):
        shutil.copy(path, rules)
    config = {
        "global": {"scrape_interval": f"{interval}s", "scrape_timeout": f"{min(interval, 10)}s",
                   "evaluation_interval": f"{interval}s",
                   "external_labels": {"environment": "prod", "replica": "benchmark"}},
        "rule_files": [str(rules / "*.yaml")],
        "scrape_configs": [{"job_name": "fleet", "honor_labels": True, "static_configs": [{"targets": [target.address]}],
                            "sample_limit": 0}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(work / "prometheus.log", "w")
    proc = subprocess.Popen([find_tool("prometheus"), f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(warmup)
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        a0 = own(port, "prometheus_tsdb_head_samples_appended_total")
        m0 = own(port, "prometheus_rule_group_iterations_missed_total")
        time.sleep(window)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        a1 = own(port, "prometheus_tsdb_head_samples_appended_total")
        m1 = own(port, "prometheus_rule_group_iterations_missed_total")
        elapsed = t1 - t0
        return {
            "api_pods": api_pods, "exposed_series": series, "offered_samples_per_s": series / interval,
            "head_series": own(port, "prometheus_tsdb_head_series"),
            "appended_samples_per_s": (a1 - a0) / elapsed,
            "cpu_cores": (c1 - c0) / elapsed,
            "slowest_rule_group_s": own(port, "prometheus_rule_group_last_duration_seconds", max),
            "rule_groups": own(port, "prometheus_rule_group_rules", len),
            "missed_evaluations": m1 - m0,
            "rss_bytes": rss_bytes(proc.pid),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        target.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,40,160", help="API pods of each fleet size (comma-separated)")
    parser.add_argument("--interval", type=int, default=5, help="scrape and evaluation interval, seconds")
    parser.add_argument("--warmup", type=int, default=30, help="seconds before the window")
    parser.add_argument("--window", type=int, default=60, help="seconds measured per size")
    parser.add_argument("--cores", type=float, default=2.0, help="cores the capacity is stated for")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fm-capacity-") as tmp:
        for i, size in enumerate(int(s) for s in args.sizes.split(",")):
            row = run_size(size, args.interval, args.warmup, args.window, Path(tmp) / f"size-{i}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    kept_up = [r for r in rows if r["appended_samples_per_s"] >= 0.95 * r["offered_samples_per_s"]
               and r["missed_evaluations"] == 0]
    print("\n| API pods | head series | samples/s appended | CPU (cores) | slowest rule group (s) | RSS (MiB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['api_pods']} | {r['head_series']:.0f} | {r['appended_samples_per_s']:.0f} | {r['cpu_cores']:.3f} "
              f"| {r['slowest_rule_group_s']:.3f} | {r['rss_bytes'] / 2**20:.0f} |")
    if kept_up:
        big = max(kept_up, key=lambda r: r["appended_samples_per_s"])
        per_ksps = big["cpu_cores"] / (big["appended_samples_per_s"] / 1000)
        capacity = args.cores / per_ksps * 1000
        series = capacity * args.interval
        print(f"\nCPU per 1000 samples/s (at {big['api_pods']} API pods): {per_ksps:.3f} cores; "
              f"{args.cores:g} cores: about {capacity:,.0f} samples/s, {series:,.0f} active series at a "
              f"{args.interval} s interval ({capacity * 30:,.0f} series at the stack's 30 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
