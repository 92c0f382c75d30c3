"""What evaluating the stack's rules in Thanos Ruler, through Thanos Query, costs against evaluating
them in Prometheus itself (prometheus.shards > 1 moves them there; docs/scaling.md reports the figures).

A benchmark, not a test. The synthetic fleet of scripts/capacity_benchmark.py (the prod shape) is
served as one scrape target and scraped by two Prometheus processes at once:

- "local": every rule file of the stack (rules/*.yaml and the SLO rules) evaluated by Prometheus;
- "ruler": Prometheus without rules, its Thanos sidecar, the Rulers' Thanos Query and one Thanos
  Ruler with the same rule files, each started with the command line prod renders with two shards
  (addresses and paths made local; the Ruler sends no alerts: its Alertmanager flags are dropped).

After a warm-up it reads, over a window, each evaluator's slowest rule group, the sum of all groups'
last durations (one round of every rule), failed and missed evaluations, and the CPU of the
processes each way needs.

    FM_TOOLS_BIN_DIR=$(scripts/install-test-tools.sh --bin-dir) \\
      .venv/bin/python -m scripts.ruler_latency_benchmark --sizes 10,40 --interval 15
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from scripts.capacity_benchmark import cpu_seconds, exposition, own
from tests.loopback_http import OPENMETRICS, metrics_target
from scripts.dashboard_query_benchmark import find_tool, free_port
from tests import stack_rules
from tests.test_thanos_rule_e2e import query_config_here

ROOT = Path(__file__).resolve().parent.parent


def set_flags(args: list[str], values: dict[str, str]) -> list[str]:
    """The generated arguments with these flags' values replaced (added if absent)."""
    out = [f"{a.split('=', 1)[0]}={values[a.split('=', 1)[0]]}" if a.split("=", 1)[0] in values else a for a in args]
    return out + [f"{flag}={value}" for flag, value in values.items() if not any(a.startswith(f"{flag}=") for a in args)]


def container_args(result, kind: str, name: str, container: str) -> list[str]:
    spec = result.one(kind, name)["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == container)["args"]


class Processes:
    def __init__(self, work: Path):
        self.work, self.running = work, {}

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "w")
        self.running[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              env={"PATH": "/usr/bin:/bin", **(env or {})}, start_new_session=True)
        return self.running[name]

    def cpu(self, names) -> float:
        return sum(cpu_seconds(self.running[n].pid) for n in names)

    def stop(self) -> None:
        for proc in reversed(list(self.running.values())):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def rule_numbers(port: int) -> dict:
    return {"slowest_group_s": own(port, "prometheus_rule_group_last_duration_seconds", max),
            "all_groups_s": own(port, "prometheus_rule_group_last_duration_seconds"),
            "failures": own(port, "prometheus_rule_evaluation_failures_total"),
            "missed": own(port, "prometheus_rule_group_iterations_missed_total")}


def run_size(api_pods: int, interval: int, warmup: int, window: int, work: Path) -> dict:
    from tools import offline

    body, series = exposition(api_pods)
    target = metrics_target(body, OPENMETRICS)
    rules = work / "rules"
    rules.mkdir(parents=True)
    for path in [*sorted((ROOT / "rules").glob("*.yaml")), *stack_rules.generated_rule_paths(ROOT)]:
        shutil.copy(path, rules)
    (work / "bucket").mkdir()
    result = offline.run("prod", {
        "prometheus": {"shards": 2, "scrapeInterval": f"{interval}s", "scrapeTimeout": f"{min(interval, 10)}s",
                       "evaluationInterval": f"{interval}s"},
        "thanos": {"objstore": {"type": "filesystem", "directory": str(work / "bucket")}}})
    objstore = work / "objstore.yml"
    objstore.write_text(result.one("Secret", "prometheus-thanos-sidecar-objstore")["stringData"]["objstore.yml"])
    scrape = [{"job_name": "fleet", "honor_labels": True, "static_configs": [{"targets": [target.address]}],
               "sample_limit": 0}]
    procs = Processes(work)
    ports = {name: free_port() for name in ("local", "shard", "sidecar-http", "sidecar-grpc", "query-http",
                                            "query-grpc", "rule-http", "rule-grpc")}
    prometheus, thanos = find_tool("prometheus"), find_tool("thanos")
    prom_args = container_args(result, "StatefulSet", "prometheus", "prometheus")
    try:
        for name, rule_files in (("local", [str(rules / "*.yaml")]), ("shard", [])):
            base = work / name
            (base / "data").mkdir(parents=True)
            (base / "prometheus.yml").write_text(yaml.safe_dump({
                "global": {"scrape_interval": f"{interval}s", "scrape_timeout": f"{min(interval, 10)}s",
                           "evaluation_interval": f"{interval}s",
                           "external_labels": {"environment": "prod", "replica": f"{name}-0", "shard": "0"}},
                "rule_files": rule_files, "scrape_configs": scrape}))
            procs.start(name, [prometheus, *set_flags(prom_args, {
                "--config.file": str(base / "prometheus.yml"), "--storage.tsdb.path": str(base / "data"),
                "--web.listen-address": f"127.0.0.1:{ports[name]}"})])
        procs.start("sidecar", [thanos, *set_flags(container_args(result, "StatefulSet", "prometheus", "thanos-sidecar"), {
            "--http-address": f"127.0.0.1:{ports['sidecar-http']}", "--grpc-address": f"127.0.0.1:{ports['sidecar-grpc']}",
            "--tsdb.path": str(work / "shard" / "data"), "--prometheus.url": f"http://127.0.0.1:{ports['shard']}",
            "--objstore.config-file": str(objstore)})])
        (work / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": [
            {"address": f"127.0.0.1:{ports['sidecar-grpc']}"}, {"address": f"127.0.0.1:{ports['rule-grpc']}"}]}))
        procs.start("query", [thanos, *set_flags(container_args(result, "Deployment", "thanos-query-rule", "thanos-query-rule"), {
            "--http-address": f"127.0.0.1:{ports['query-http']}", "--grpc-address": f"127.0.0.1:{ports['query-grpc']}",
            "--endpoint.sd-config-file": str(work / "endpoints.yaml")})])
        rule_args = [a for a in container_args(result, "StatefulSet", "thanos-rule", "thanos-rule")
                     if not a.startswith("--alertmanagers.url=")]
        procs.start("rule", [thanos, *[a.replace("$(POD_NAME)", "thanos-rule-0") for a in set_flags(rule_args, {
            "--http-address": f"127.0.0.1:{ports['rule-http']}", "--grpc-address": f"127.0.0.1:{ports['rule-grpc']}",
            "--data-dir": str(work / "rule"), "--rule-file": str(rules / "*.yaml"),
            "--query.config-file": query_config_here(result, work / "query.yaml", f"127.0.0.1:{ports['query-http']}"),
            "--objstore.config-file": str(objstore)})]])
        time.sleep(warmup)
        ways = {"local": ["local"], "ruler": ["shard", "sidecar", "query", "rule"]}
        before = {w: (procs.cpu(names), rule_numbers(ports["local" if w == "local" else "rule-http"]))
                  for w, names in ways.items()}
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        row = {"api_pods": api_pods, "exposed_series": series, "interval_s": interval}
        for way, names in ways.items():
            now = rule_numbers(ports["local" if way == "local" else "rule-http"])
            row[way] = {"cpu_cores": (procs.cpu(names) - before[way][0]) / elapsed,
                        "slowest_group_s": now["slowest_group_s"], "all_groups_s": now["all_groups_s"],
                        "failed_evaluations": now["failures"] - before[way][1]["failures"],
                        "missed_evaluations": now["missed"] - before[way][1]["missed"]}
        row["rule_groups"] = own(ports["rule-http"], "prometheus_rule_group_rules", len)
        return row
    finally:
        procs.stop()
        target.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,40", help="API pods of each fleet size (comma-separated)")
    parser.add_argument("--interval", type=int, default=15, help="scrape and evaluation interval, seconds")
    parser.add_argument("--warmup", type=int, default=45, help="seconds before the window")
    parser.add_argument("--window", type=int, default=60, help="seconds measured per size")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fm-ruler-") as tmp:
        for i, size in enumerate(int(s) for s in args.sizes.split(",")):
            row = run_size(size, args.interval, args.warmup, args.window, Path(tmp) / f"size-{i}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| API pods | series | evaluated by | slowest group (s) | all groups, one round (s) | failed | missed | CPU (cores) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        for way, label in (("local", "Prometheus"), ("ruler", "Thanos Ruler via Query")):
            w = r[way]
            print(f"| {r['api_pods']} | {r['exposed_series']} | {label} | {w['slowest_group_s']:.3f} | "
                  f"{w['all_groups_s']:.3f} | {w['failed_evaluations']:.0f} | {w['missed_evaluations']:.0f} | "
                  f"{w['cpu_cores']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
