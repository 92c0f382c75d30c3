"""Every Grafana panel query of dashboards/ against a real Prometheus over synthetic history.

    .venv/bin/python scripts/dashboard_query_benchmark.py                 # 20 API pods, 7 days, 30 s step (~15 min)
    .venv/bin/python scripts/dashboard_query_benchmark.py --days 1 --step 30 --api-pods 5
    .venv/bin/python scripts/dashboard_query_benchmark.py --keep /tmp/fm-bench   # keep the TSDB

Pipeline (also what tests/test_dashboard_queries.py runs, on a tiny fleet):

1. tests/synthetic_fleet.py writes the fleet's history as OpenMetrics, one file per
   2 h TSDB block (promtool re-reads its whole input once per output block, so one
   big file would be read once per block), and `promtool tsdb create-blocks-from openmetrics` turns
   each into a block; windows run in parallel worker processes (--workers).
2. `prometheus` (loopback, free port, minimal config loading rules/recording.yaml)
   serves that TSDB; `promtool tsdb create-blocks-from rules` back-fills the recording
   rules of rules/*.yaml (today all in recording.yaml) over the same range. Rules that
   read other recording rules need those in the TSDB first, so the rules are split by
   dependency level into temporary files and each level is back-filled after the previous one was moved in and
   Prometheus restarted.
3. Unless --no-settle, the benchmark waits until Prometheus has compacted the
   back-filled 2 h blocks (and the overlapping rule blocks) the way a long-running
   server would have, so that queries read a realistic block layout.
4. Every dashboard is loaded the way Grafana (12.x) would: variables resolved through the
   label-values API (All -> the variable's allValue, single-value variables -> the
   first value in sort order), then every panel target runs once per time range
   (default: last 24 h and last 7 d, ending at the last sample):
   * range targets -> /api/v1/query_range, step = $__interval;
   * instant targets (stat/gauge/table panels) -> /api/v1/query at the end time;
   * $__interval = Grafana's rounding of range / max data points (1000), at least the
     datasource's timeInterval (30 s): 24 h -> 1m, 7 d -> 10m;
   * $__rate_interval = max($__interval + 30 s, 4 x 30 s): 24 h -> 2m, 7 d -> 630s;
   * $__range = the range in seconds.
   Each query is timed client-side (--repeat times, median kept) and with Prometheus'
   own stats (stats=all: evaluation time, samples touched).

Exit status 1 if any query errors, returns no data (other than the reported
EXPECTED_EMPTY ones) or its median time exceeds --max-seconds. Prometheus is always
stopped; temporary directories are removed unless --keep.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import promql_names as pn  # noqa: E402
from tests import synthetic_fleet as sf  # noqa: E402
from tests.ports import free_port  # noqa: E402

SCRAPE_INTERVAL = 30  # the stack's scrape interval and Grafana datasource timeInterval (seconds)
EVAL_INTERVAL = 30  # the stack's rule evaluation interval
MAX_DATA_POINTS = 1000

# Panel targets that cannot return data for a real reason: (dashboard file stem, panel id, refId) -> why.
# Printed on every run (never silently skipped); a test fails when one of them starts returning data.
EXPECTED_EMPTY = {
    ("infrastructure", 22, "A"): "ICMP reachability: the prod stack configures no ICMP probe "
                                 "(Pulumi.prod.yaml probes.icmp: []), so job blackbox-icmp has no series",
    ("infrastructure", 10, "B"): "swap usage: Kubernetes nodes run without swap (SwapTotal 0) and the "
                                 "`SwapTotal > 0` guard drops them, by design",
}


def log(msg: str) -> None:
    print(msg, flush=True)


def find_tool(name: str) -> str:
    """The program built at the image's version (the test tools' directory), never one from PATH."""
    bin_dir = os.environ.get("FM_TOOLS_BIN_DIR")
    if not bin_dir:
        script = Path(__file__).resolve().parent / "install-test-tools.sh"
        bin_dir = subprocess.run([str(script), "--bin-dir"], check=True, capture_output=True,
                                 text=True).stdout.strip()
    path = Path(bin_dir) / name
    if not path.is_file():
        raise SystemExit(f"{name} is not in {bin_dir}: run scripts/install-test-tools.sh")
    return str(path)


def dir_size(path: Path) -> int:
    total = 0
    for p in Path(path).rglob("*"):
        if p.is_file():
            total += p.stat().st_size
    return total


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


# --------------------------------------------------------------------------
# 1. synthetic history -> TSDB blocks
# --------------------------------------------------------------------------

_FLEET: dict = {}  # set in the parent before forking the window workers


def _backfill_window(args) -> tuple[int, int, float, float]:
    """Worker: write one window's OpenMetrics file, turn it into a block, move the block in."""
    index, first, last, work, tsdb, promtool = args
    spec, families = _FLEET["spec"], _FLEET["families"]
    om = Path(work) / f"window-{index:04d}.om"
    out = Path(work) / f"blocks-{index:04d}"
    t0 = time.perf_counter()
    lines = sf.write_openmetrics(spec, om, families, first, last)
    size = om.stat().st_size
    t1 = time.perf_counter()
    proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(om), str(out)],
                          capture_output=True, text=True, timeout=1800)
    t2 = time.perf_counter()
    om.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from openmetrics failed for window {index}:\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    for block in out.iterdir():
        shutil.move(str(block), str(Path(tsdb) / block.name))
    out.rmdir()
    return lines, size, t1 - t0, t2 - t1


@dataclass
class BackfillStats:
    samples: int = 0
    openmetrics_bytes: int = 0
    series: int = 0
    windows: int = 0
    wall_seconds: float = 0.0
    generate_cpu_seconds: float = 0.0  # summed over the workers
    promtool_seconds: float = 0.0  # summed over the workers


def backfill_fleet(spec: sf.FleetSpec, tsdb: Path, work: Path, promtool: str, workers: int = 1,
                   progress: Optional[Callable[[str], None]] = None) -> BackfillStats:
    spec = spec.resolved()
    families = sf.build(spec)
    sf.check_coverage(families)
    _FLEET.update(spec=spec, families=families)
    windows = sf.block_windows(spec)
    tasks = [(i, a, b, str(work), str(tsdb), promtool) for i, (a, b) in enumerate(windows)]
    stats = BackfillStats(series=sf.series_count(families), windows=len(windows))
    t0 = time.perf_counter()

    def account(result, done):
        lines, size, gen, pt = result
        stats.samples += lines
        stats.openmetrics_bytes += size
        stats.generate_cpu_seconds += gen
        stats.promtool_seconds += pt
        if progress and (done % max(1, len(tasks) // 10) == 0 or done == len(tasks)):
            progress(f"  backfilled {done}/{len(tasks)} windows, {stats.samples / 1e6:.1f} M samples, "
                     f"{time.perf_counter() - t0:.0f} s")

    if workers <= 1 or len(tasks) == 1:
        for n, task in enumerate(tasks, 1):
            account(_backfill_window(task), n)
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers) as pool:
            for n, result in enumerate(pool.imap_unordered(_backfill_window, tasks), 1):
                account(result, n)
    stats.wall_seconds = time.perf_counter() - t0
    return stats


# --------------------------------------------------------------------------
# 2. Prometheus and the recording rules
# --------------------------------------------------------------------------


class Prometheus:
    """`prometheus` on 127.0.0.1:<free port> serving `tsdb`; stop() always kills it."""

    def __init__(self, binary: str, tsdb: Path, work: Path, rule_files: list[Path], retention: str = "30d"):
        self.binary, self.tsdb, self.work, self.retention = binary, Path(tsdb), Path(work), retention
        self.config = self.work / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL}s", "evaluation_interval": f"{EVAL_INTERVAL}s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [],
        }))
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.log_path = self.work / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict]:
        """The instant query's result now (raises on an error answer)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=30) as r:
            answer = json.loads(r.read())
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def start(self, timeout: float = 120) -> float:
        assert self.proc is None
        self.port = free_port()
        t0 = time.perf_counter()
        logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.tsdb}",
             f"--storage.tsdb.retention.time={self.retention}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn"],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> float:
        self.stop()
        return self.start()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- HTTP API -------------------------------------------------------
    def get(self, path: str, params: dict, timeout: float = 300) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        return _http_json(url, None, timeout)

    def post(self, path: str, params: dict, timeout: float = 300) -> dict:
        return _http_json(self.url + path, urllib.parse.urlencode(params, doseq=True).encode(), timeout)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out


def _http_json(url: str, data: Optional[bytes], timeout: float) -> dict:
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # Prometheus answers errors (400/422/503) with a JSON body
        body = e.read()
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "errorType": f"http {e.code}", "error": body.decode(errors="replace")[:500]}


def recording_rule_levels(rule_files: list[Path]) -> list[dict]:
    """The recording rules of rule_files split by dependency level: [{groups: ...}, ...], level 0 first.

    A rule's level is 0 if its expression reads no recording rule, else one more than the
    highest level it reads. Group names (prefixed by the file when two files share one) and
    intervals are kept; alerting rules are left out.
    """
    groups = []  # (name, group dict)
    for path in rule_files:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            for g in pn._groups(doc):
                groups.append((g.get("name"), g, Path(path).stem))
    names = [n for n, _g, _f in groups]
    records = {r["record"]: r["expr"] for _n, g, _f in groups for r in g.get("rules") or [] if "record" in r}
    level: dict[str, int] = {}

    def lvl(name: str, stack=()) -> int:
        if name in level:
            return level[name]
        if name in stack:
            raise ValueError(f"recording rules form a cycle: {' -> '.join(stack + (name,))}")
        deps = [n for n in pn.metric_names(records[name]) if n in records]
        level[name] = 0 if not deps else 1 + max(lvl(d, stack + (name,)) for d in deps)
        return level[name]

    for name in records:
        lvl(name)
    out = []
    for k in range(max(level.values(), default=-1) + 1):
        level_groups = []
        for name, g, stem in groups:
            rules = [r for r in g.get("rules") or [] if "record" in r and level[r["record"]] == k]
            if rules:
                unique = name if names.count(name) == 1 else f"{stem}/{name}"
                level_groups.append({**{key: v for key, v in g.items() if key != "rules"}, "name": unique,
                                     "rules": rules})
        out.append({"groups": level_groups})
    return out


def backfill_rules(prom: Prometheus, promtool: str, rule_files: list[Path], start: int, end: int, work: Path,
                   progress: Optional[Callable[[str], None]] = None, eval_interval: int = EVAL_INTERVAL,
                   name: str = "recording", max_block: Optional[str] = None) -> float:
    """Back-fill the recording rules of rule_files over [start, end] level by level, one evaluation every
    eval_interval seconds (``name`` keeps the work files of two calls apart; ``max_block``, e.g. "168h", lets
    promtool write longer blocks than 2 h: it writes one block per rule and block, and asks Prometheus once
    for each); returns seconds."""
    t0 = time.perf_counter()
    for k, doc in enumerate(recording_rule_levels(rule_files)):
        rule_file = work / f"{name}-level{k}.yaml"
        rule_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        out = work / f"{name}-blocks-{k}"
        out.mkdir()
        n_rules = sum(len(g["rules"]) for g in doc["groups"])
        t1 = time.perf_counter()
        proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "rules", "-q", f"--url={prom.url}",
                               f"--start={start}", f"--end={end}", f"--output-dir={out}",
                               f"--eval-interval={eval_interval}s",
                               *([f"--max-block-duration={max_block}"] if max_block else []), str(rule_file)],
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"promtool create-blocks-from rules failed (level {k}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        blocks = list(out.iterdir())
        for block in blocks:
            shutil.move(str(block), str(prom.tsdb / block.name))
        out.rmdir()
        restart = prom.restart()
        if progress:
            progress(f"  rules level {k}: {n_rules} rules, {len(blocks)} blocks in "
                     f"{time.perf_counter() - t1:.1f} s (restart {restart:.1f} s)")
    return time.perf_counter() - t0


def block_metas(tsdb: Path) -> list[dict]:
    metas = []
    for d in Path(tsdb).iterdir():
        try:  # Prometheus may be deleting a compacted block right now
            metas.append(json.loads((d / "meta.json").read_text()))
        except (OSError, ValueError):
            pass
    return sorted(metas, key=lambda m: m["minTime"])


def overlapping_blocks(tsdb: Path) -> int:
    metas = block_metas(tsdb)
    n = 0
    for a, b in zip(metas, metas[1:]):
        if b["minTime"] < a["maxTime"]:
            n += 1
    return n


def wait_for_compaction(prom: Prometheus, timeout: float, progress: Optional[Callable[[str], None]] = None) -> float:
    """Wait until Prometheus' compaction loop (every minute) has merged the back-filled blocks."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    stable, last = 0, None
    while time.monotonic() < deadline:
        m = prom.metrics()
        state = (m.get("prometheus_tsdb_blocks_loaded"), m.get("prometheus_tsdb_compactions_total"))
        busy = m.get("prometheus_tsdb_compaction_populating_block", 0) > 0
        triggered = m.get("prometheus_tsdb_compactions_triggered_total", 0) > 0
        stable = stable + 1 if (state == last and not busy and triggered) else 0
        last = state
        if stable >= 4 and overlapping_blocks(prom.tsdb) == 0:
            break
        time.sleep(5)
    else:
        if progress:
            progress(f"  compaction not settled after {timeout:.0f} s; benchmarking anyway")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------
# 3. dashboards as Grafana runs them
# --------------------------------------------------------------------------


def round_interval(seconds: float) -> float:
    """Grafana's rangeutil.roundInterval (ms thresholds), in seconds."""
    ms = seconds * 1000
    table = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
             (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
             (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
             (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
             (32400000, 21600000), (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
             (3628800000, 2592000000)]
    for limit, value in table:
        if ms <= limit:
            return value / 1000
    return 31536000.0


@dataclass(frozen=True)
class TimeRange:
    label: str  # "24h"
    seconds: int
    end: int  # unix seconds (the last sample of the history)
    max_data_points: int = MAX_DATA_POINTS

    @property
    def interval(self) -> int:  # $__interval = the query_range step
        return int(max(SCRAPE_INTERVAL, round_interval(self.seconds / self.max_data_points)))

    @property
    def rate_interval(self) -> int:
        return max(self.interval + SCRAPE_INTERVAL, 4 * SCRAPE_INTERVAL)

    @property
    def start(self) -> int:
        return (self.end - self.seconds) // self.interval * self.interval

    @property
    def aligned_end(self) -> int:
        return self.end // self.interval * self.interval

    def builtins(self) -> dict[str, str]:
        iv = self.interval
        return {
            "__interval": _duration(iv), "__interval_ms": str(iv * 1000), "__interval_s": str(iv),
            "__rate_interval": _duration(self.rate_interval), "__rate_interval_ms": str(self.rate_interval * 1000),
            "__range": _duration(self.seconds), "__range_s": str(self.seconds), "__range_ms": str(self.seconds * 1000),
            "__auto": _duration(iv),
        }


def _duration(seconds: int) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % n == 0:
            return f"{seconds // n}{unit}"
    return f"{seconds}s"


@dataclass
class Target:
    dashboard: str  # file stem
    panel_id: int
    panel: str
    ref: str
    expr: str
    instant: bool
    kind: str = "panel"  # panel | variable

    @property
    def key(self) -> tuple:
        return (self.dashboard, self.panel_id, self.ref)

    @property
    def where(self) -> str:
        if self.kind == "variable":
            return f"{self.dashboard}: variable ${self.ref}"
        return f"{self.dashboard}: panel {self.panel_id} {self.panel!r} {self.ref}"


def dashboard_targets(path: Path) -> list[Target]:
    d = pn.load_dashboard(path)
    out = []
    for panel in pn.iter_panels(d):
        for t in panel.get("targets") or []:
            if t.get("expr"):
                instant = bool(t.get("instant")) and not t.get("range", False)
                out.append(Target(path.stem, panel.get("id"), panel.get("title", ""), t.get("refId", "A"),
                                  t["expr"], instant))
    return out


_VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)(?::(\w+))?\]\]")


def interpolate(expr: str, values: dict[str, str]) -> str:
    def repl(m):
        name = m.group(1) or m.group(3) or m.group(4)
        if name not in values:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return values[name]

    return _VAR_RE.sub(repl, expr)


def _regex_escape(value: str) -> str:  # Grafana's prometheusSpecialRegexEscape
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)


@dataclass
class Result:
    target: Target
    range: str
    query: str
    seconds: list = field(default_factory=list)  # client-side wall time per repetition
    eval_seconds: Optional[float] = None  # Prometheus' execTotalTime (stats=all)
    samples: Optional[int] = None  # totalQueryableSamples
    peak_samples: Optional[int] = None
    series: int = 0
    empty: bool = True
    all_nan: bool = False
    error: Optional[str] = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def resolve_variables(prom: Prometheus, path: Path, tr: TimeRange, environment: str,
                      results: list[Result], repeat: int = 1) -> dict[str, str]:
    """Template variables as Grafana sets them on first load; their queries are timed too."""
    d = pn.load_dashboard(path)
    values = dict(tr.builtins())
    for var in (d.get("templating") or {}).get("list") or []:
        name = var.get("name")
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if var.get("type") != "query" or not isinstance(q, str):
            if var.get("type") == "custom":
                opts = [o.strip() for o in (var.get("query") or "").split(",") if o.strip()]
                values[name] = opts[0] if opts else ""
            elif var.get("type") in ("interval",):
                values[name] = _duration(tr.interval)
            else:
                values[name] = str((var.get("current") or {}).get("value") or "")
            continue
        m = re.match(r"^\s*label_values\s*\((.*)\)\s*$", q, re.S)
        if not m:
            raise ValueError(f"{path.name}: variable {name}: unsupported query {q!r}")
        body = m.group(1)
        if "," in body:
            selector, _, label = body.rpartition(",")
            selector = interpolate(selector.strip(), values)
        else:
            selector, label = None, body
        label = label.strip()
        params = {"start": tr.start, "end": tr.aligned_end}
        if selector:
            params["match[]"] = selector
        target = Target(path.stem, 0, name, name, q, False, kind="variable")
        res = Result(target, tr.label, f"label_values({selector or ''}, {label})")
        data = None
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            data = prom.get(f"/api/v1/label/{label}/values", params)
            res.seconds.append(time.perf_counter() - t0)
        if data.get("status") != "success":
            res.error = f"{data.get('errorType')}: {data.get('error')}"
            options = []
        else:
            options = sorted(data.get("data") or [])
            if var.get("sort") in (2,):
                options.reverse()
            if var.get("regex"):
                rx = re.compile(var["regex"].strip("/"))
                options = [o for o in options if rx.search(o)]
        res.series = len(options)
        res.empty = not options
        results.append(res)
        if name == "environment":
            values[name] = environment if environment in options or not options else options[0]
        elif var.get("includeAll"):
            if var.get("allValue"):
                values[name] = var["allValue"]
            else:
                escaped = [_regex_escape(o) for o in options]
                values[name] = escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        else:
            values[name] = (options[0] if options else "")
    return values


def run_query(prom: Prometheus, target: Target, tr: TimeRange, values: dict[str, str], repeat: int,
              as_range: bool = False) -> Result:
    query = interpolate(target.expr, values)
    res = Result(target, tr.label, query)
    if target.instant and not as_range:
        path, params = "/api/v1/query", {"query": query, "time": tr.end, "stats": "all"}
    else:
        path, params = "/api/v1/query_range", {"query": query, "start": tr.start, "end": tr.aligned_end,
                                               "step": tr.interval, "stats": "all"}
    data = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        data = prom.post(path, params)
        res.seconds.append(time.perf_counter() - t0)
        if data.get("status") != "success":
            break
    if data.get("status") != "success":
        res.error = f"{data.get('errorType')}: {data.get('error')}"
        return res
    body = data.get("data") or {}
    result = body.get("result")
    rtype = body.get("resultType")
    if rtype == "scalar" or rtype == "string":
        res.series, res.empty = 1, False
        vals = [result[1]]
    else:
        result = result or []
        res.series = len(result)
        res.empty = not result
        if rtype == "matrix":
            vals = [v for s in result for _t, v in s.get("values", [])]
        else:
            vals = [s["value"][1] for s in result]
    res.all_nan = bool(vals) and all(v in ("NaN", "+Inf", "-Inf") for v in vals)
    stats = body.get("stats") or {}
    timings, samples = stats.get("timings") or {}, stats.get("samples") or {}
    if "execTotalTime" in timings:
        res.eval_seconds = float(timings["execTotalTime"])
    if "totalQueryableSamples" in samples:
        res.samples = int(samples["totalQueryableSamples"])
        res.peak_samples = int(samples.get("peakSamples", 0))
    return res


def run_dashboards(prom: Prometheus, ranges: list[TimeRange], environment: str, repeat: int = 1,
                   root: Path = ROOT, progress: Optional[Callable[[str], None]] = None,
                   as_range: bool = False) -> list[Result]:
    results: list[Result] = []
    for tr in ranges:
        for path in pn.dashboard_files(root):
            values = resolve_variables(prom, path, tr, environment, results, repeat)
            for target in dashboard_targets(path):
                results.append(run_query(prom, target, tr, values, repeat, as_range))
        if progress:
            times = [r.median for r in results if r.range == tr.label]
            progress(f"  range {tr.label}: {len(times)} queries, {sum(times):.1f} s in total")
    return results


# --------------------------------------------------------------------------
# 4. report
# --------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Verdict:
    errors: list = field(default_factory=list)
    unexpected_empty: list = field(default_factory=list)
    expected_empty: list = field(default_factory=list)
    expected_but_has_data: list = field(default_factory=list)
    all_nan: list = field(default_factory=list)
    slow: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.errors or self.unexpected_empty or self.slow)


def judge(results: list[Result], max_seconds: float, expected_empty: dict = EXPECTED_EMPTY) -> Verdict:
    v = Verdict()
    for r in results:
        if r.error:
            v.errors.append(r)
            continue
        expected = r.target.kind == "panel" and r.target.key in expected_empty
        if r.empty and expected:
            v.expected_empty.append(r)
        elif r.empty:
            v.unexpected_empty.append(r)
        elif expected:
            v.expected_but_has_data.append(r)
        if not r.empty and r.all_nan:
            v.all_nan.append(r)
        if r.median > max_seconds:
            v.slow.append(r)
    return v


def report(results: list[Result], verdict: Verdict, max_seconds: float, top: int = 10) -> str:
    out = []
    ranges = list(dict.fromkeys(r.range for r in results))
    dashboards = sorted({r.target.dashboard for r in results})
    out.append("per dashboard, client-side seconds per query (median of the repetitions); panel targets + variables")
    header = f"{'dashboard':<24}" + "".join(f" | {rg:>6} n   p50    p95    max   sum " for rg in ranges)
    out.append(header)
    for d in dashboards:
        row = f"{d:<24}"
        for rg in ranges:
            ts = [r.median for r in results if r.target.dashboard == d and r.range == rg]
            row += f" | {len(ts):>8} {percentile(ts, .5):6.3f} {percentile(ts, .95):6.3f} {max(ts):6.3f} {sum(ts):5.1f}"
        out.append(row)
    for rg in ranges:
        ts = [r.median for r in results if r.range == rg]
        ev = [r.eval_seconds for r in results if r.range == rg and r.eval_seconds is not None]
        out.append(f"all dashboards {rg}: {len(ts)} queries, p50 {percentile(ts, .5):.3f} s, p95 "
                   f"{percentile(ts, .95):.3f} s, max {max(ts):.3f} s, sum {sum(ts):.1f} s; Prometheus execTotalTime "
                   f"p50 {percentile(ev, .5):.3f} s, max {max(ev, default=float('nan')):.3f} s")
    out.append("")
    out.append(f"slowest {top} queries:")
    for r in sorted(results, key=lambda r: -r.median)[:top]:
        extra = f", eval {r.eval_seconds:.3f} s, {r.samples} samples" if r.eval_seconds is not None else ""
        out.append(f"  {r.median:7.3f} s  [{r.range}{' instant' if r.target.instant else ''}] {r.target.where}"
                   f"{extra}\n             {r.query}")

    def section(title, rows, fmt):
        out.append("")
        out.append(f"{title}: {len(rows)}")
        for r in rows:
            out.append("  " + fmt(r))

    section("queries with errors", verdict.errors, lambda r: f"[{r.range}] {r.target.where}: {r.error}\n    {r.query}")
    section("queries without data", verdict.unexpected_empty, lambda r: f"[{r.range}] {r.target.where}\n    {r.query}")
    section(f"queries over {max_seconds} s", verdict.slow, lambda r: f"[{r.range}] {r.median:.3f} s {r.target.where}")
    section("expected empty (EXPECTED_EMPTY, reported not hidden)", verdict.expected_empty,
            lambda r: f"[{r.range}] {r.target.where}: {EXPECTED_EMPTY[r.target.key]}")
    if verdict.expected_but_has_data:
        section("listed in EXPECTED_EMPTY but returned data (remove them)", verdict.expected_but_has_data,
                lambda r: f"[{r.range}] {r.target.where}")
    section("queries whose values are all NaN/Inf (data, but nothing to draw)", verdict.all_nan,
            lambda r: f"[{r.range}] {r.target.where}")
    return "\n".join(out)


# --------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------


@dataclass
class PipelineResult:
    spec: sf.FleetSpec
    backfill: BackfillStats
    rules_seconds: float
    settle_seconds: float
    tsdb_bytes: int
    blocks: int
    results: list
    verdict: Verdict
    query_seconds: float
    tsdb: Path


def run_pipeline(spec: sf.FleetSpec, ranges_seconds: list[tuple[str, int]], work: Path, promtool: str,
                 prometheus: str, workers: int = 1, repeat: int = 1, max_seconds: float = 1.0, settle: bool = False,
                 settle_timeout: float = 900, root: Path = ROOT,
                 progress: Optional[Callable[[str], None]] = None, as_range: bool = False) -> PipelineResult:
    spec = spec.resolved()
    work = Path(work)
    tsdb = work / "tsdb"
    tsdb.mkdir(parents=True)
    if progress:
        progress(f"fleet: {spec.api_pods} API pods, {spec.worker_pods} workers (+1 crash-looping: "
                 f"{spec.incidents}), {spec.nodes} nodes, {spec.handlers} handlers, "
                 f"{spec.seconds / 3600:g} h at {spec.step} s, end {spec.end}")
    bf = backfill_fleet(spec, tsdb, work, promtool, workers, progress)
    if progress:
        progress(f"data: {bf.series} series, {bf.samples / 1e6:.1f} M samples, "
                 f"{human_bytes(bf.openmetrics_bytes)} OpenMetrics in {bf.windows} windows; "
                 f"{bf.wall_seconds:.1f} s wall (generation {bf.generate_cpu_seconds:.1f} s + promtool "
                 f"{bf.promtool_seconds:.1f} s, summed over {workers} worker(s))")
    rules_path = root / "rules" / "recording.yaml"
    with Prometheus(prometheus, tsdb, work, [rules_path]) as prom:
        start_s = prom.start()
        if progress:
            progress(f"prometheus on {prom.url} ready in {start_s:.1f} s")
        rules_s = backfill_rules(prom, promtool, pn.rule_files(root), spec.start, spec.end, work, progress)
        if progress:
            progress(f"recording rules back-filled in {rules_s:.1f} s")
        settle_s = 0.0
        if settle:
            settle_s = wait_for_compaction(prom, settle_timeout, progress)
            if progress:
                progress(f"compaction settled after {settle_s:.0f} s: {len(block_metas(tsdb))} blocks, "
                         f"{overlapping_blocks(tsdb)} overlapping")
        size = dir_size(tsdb)
        blocks = len(block_metas(tsdb))
        ranges = [TimeRange(label, secs, spec.end) for label, secs in ranges_seconds]
        t0 = time.perf_counter()
        results = run_dashboards(prom, ranges, spec.environment, repeat, root, progress, as_range)
        qs = time.perf_counter() - t0
    return PipelineResult(spec, bf, rules_s, settle_s, size, blocks, results, judge(results, max_seconds), qs, tsdb)


def _parse_range(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"(\d+)([mhd])", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: expected e.g. 3h, 24h, 7d")
    return text, int(m.group(1)) * {"m": 60, "h": 3600, "d": 86400}[m.group(2)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api-pods", type=int, default=sf.FleetSpec.api_pods)
    ap.add_argument("--worker-pods", type=int, default=sf.FleetSpec.worker_pods)
    ap.add_argument("--nodes", type=int, default=sf.FleetSpec.nodes)
    ap.add_argument("--handlers", type=int, default=sf.FleetSpec.handlers)
    ap.add_argument("--days", type=float, default=7.0, help="history length (default 7)")
    ap.add_argument("--step", type=int, default=30, help="seconds between samples (default 30, the scrape interval)")
    ap.add_argument("--ranges", type=_parse_range, nargs="+", default=[("24h", 86400), ("7d", 7 * 86400)],
                    help="dashboard time ranges, ending at the last sample (default 24h 7d)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per query; the median is reported (default 3)")
    ap.add_argument("--max-seconds", type=float, default=1.0, help="fail when a query's median exceeds this")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel window workers")
    ap.add_argument("--as-range", action="store_true",
                    help="run instant targets (stat/gauge/table) as range queries too, instead of as Grafana does")
    ap.add_argument("--no-settle", action="store_true", help="do not wait for Prometheus to compact the blocks")
    ap.add_argument("--settle-timeout", type=float, default=1200)
    ap.add_argument("--keep", type=Path, help="work directory to use and keep (default: a removed temp dir)")
    ap.add_argument("--json", type=Path, help="also write every result to this JSON file")
    a = ap.parse_args(argv)

    promtool, prometheus = find_tool("promtool"), find_tool("prometheus")
    spec = sf.FleetSpec(api_pods=a.api_pods, worker_pods=a.worker_pods, nodes=a.nodes, handlers=a.handlers,
                        seconds=int(a.days * 86400), step=a.step).resolved()
    if a.keep:
        a.keep.mkdir(parents=True, exist_ok=False)
        work, cleanup = a.keep, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="fm-dashboard-bench-")
        work = Path(cleanup.name)
    t0 = time.perf_counter()
    try:
        log(f"prometheus {subprocess.run([prometheus, '--version'], capture_output=True, text=True).stdout.splitlines()[0]}"
            f"; {os.cpu_count()} CPUs; work dir {work}")
        res = run_pipeline(spec, a.ranges, work, promtool, prometheus, a.workers, a.repeat, a.max_seconds,
                           not a.no_settle, a.settle_timeout, ROOT, log, a.as_range)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    log("")
    log(f"timings: data generation + promtool backfill {res.backfill.wall_seconds:.1f} s wall "
        f"(generation {res.backfill.generate_cpu_seconds:.1f} s, promtool {res.backfill.promtool_seconds:.1f} s, "
        f"summed over {a.workers} workers), rule backfill {res.rules_seconds:.1f} s, compaction wait "
        f"{res.settle_seconds:.0f} s, queries {res.query_seconds:.1f} s, total {time.perf_counter() - t0:.0f} s")
    log(f"TSDB: {human_bytes(res.tsdb_bytes)} in {res.blocks} blocks; {res.backfill.series} series, "
        f"{res.backfill.samples / 1e6:.1f} M samples from {human_bytes(res.backfill.openmetrics_bytes)} OpenMetrics")
    log("")
    log(report(res.results, res.verdict, a.max_seconds))
    if a.json:
        a.json.write_text(json.dumps([{
            "dashboard": r.target.dashboard, "where": r.target.where, "range": r.range,
            "instant": r.target.instant, "query": r.query, "seconds": r.seconds, "median": r.median,
            "eval_seconds": r.eval_seconds, "samples": r.samples, "peak_samples": r.peak_samples,
            "series": r.series, "empty": r.empty, "all_nan": r.all_nan, "error": r.error} for r in res.results],
            indent=1))
    return 0 if res.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
