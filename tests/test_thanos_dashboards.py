"""Every dashboard query answers the same through Thanos Query as from the Prometheus it reads.

The small synthetic fleet of tests/test_dashboard_queries.py (back-filled with promtool, the
recording rules back-filled against the running Prometheus) is served by one Prometheus with
prod's external labels (environment, replica) and a Thanos sidecar beside it, run with the sidecar's
generated arguments; Thanos Query runs with prod's generated arguments, its one endpoint that
sidecar. Each panel target and variable of dashboards/ is asked of both, with the template
variables resolved as Grafana would, over 1 h and 3 h: the answers must match, series by series
and value by value, but for the replica label, which Thanos Query removes when it deduplicates.
"""

from __future__ import annotations

import math
import re
import urllib.parse

import pytest
import yaml

from scripts import dashboard_query_benchmark as bench
from tests import synthetic_fleet as sf
from tests.ports import free_port
from tests.conftest import ROOT, require_tool
from tests.test_thanos_e2e import set_flags, wait_for, Process
from tools import offline

SPEC = sf.FleetSpec(api_pods=2, worker_pods=1, nodes=1, handlers=3, seconds=3 * 3600, step=30)
RANGES = [("1h", 3600), ("3h", 3 * 3600)]
REPLICA = "prometheus-0"


class Endpoint:
    """An HTTP query API, as dashboard_query_benchmark asks Prometheus."""

    def __init__(self, url: str, extra: dict | None = None):
        self.url, self.extra = url, extra or {}

    def post(self, path: str, params: dict, timeout: float = 120) -> dict:
        data = urllib.parse.urlencode({**params, **self.extra}, doseq=True).encode()
        return bench._http_json(self.url + path, data, timeout)

    def get(self, path: str, params: dict, timeout: float = 120) -> dict:
        return bench._http_json(f"{self.url}{path}?{urllib.parse.urlencode({**params, **self.extra}, doseq=True)}",
                                None, timeout)


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    work = tmp_path_factory.mktemp("thanos-dashboards")
    spec = SPEC.resolved()
    tsdb = work / "tsdb"
    tsdb.mkdir()
    promtool, thanos = require_tool("promtool"), require_tool("thanos")
    bench.backfill_fleet(spec, tsdb, work, promtool, 1)
    prod = offline.run("prod")
    external = yaml.safe_load(prod.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])["global"][
        "external_labels"]
    prom = bench.Prometheus(require_tool("prometheus"), tsdb, work, [ROOT / "rules" / "recording.yaml"])
    config = yaml.safe_load(prom.config.read_text())
    config["global"]["external_labels"] = {k: v.replace("${POD_NAME}", REPLICA) for k, v in external.items()}
    prom.config.write_text(yaml.safe_dump(config))
    processes = []
    try:
        prom.start()
        bench.backfill_rules(prom, promtool, bench.pn.rule_files(ROOT), spec.start, spec.end, work)
        statefulset = prod.one("StatefulSet", "prometheus")
        sidecar_args = next(c for c in statefulset["spec"]["template"]["spec"]["containers"]
                            if c["name"] == "thanos-sidecar")["args"]
        grpc, http, query_http = free_port(), free_port(), free_port()
        # No bucket here: this check is about answers, not uploads (the objstore flag is dropped).
        sidecar = [a for a in set_flags(sidecar_args, {
            "--http-address": f"127.0.0.1:{http}", "--grpc-address": f"127.0.0.1:{grpc}",
            "--tsdb.path": str(tsdb), "--prometheus.url": prom.url}) if not a.startswith("--objstore.")]
        processes.append(Process("sidecar", [thanos, *sidecar], work))
        (work / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": [{"address": f"127.0.0.1:{grpc}"}]}))
        query = set_flags(prod.one("Deployment", "thanos-query")["spec"]["template"]["spec"]["containers"][0]["args"], {
            "--http-address": f"127.0.0.1:{query_http}", "--grpc-address": f"127.0.0.1:{free_port()}",
            "--endpoint.sd-config-file": str(work / "endpoints.yaml")})
        processes.append(Process("query", [thanos, *query], work))
        thanos_api = Endpoint(f"http://127.0.0.1:{query_http}", {"dedup": "true"})
        wait_for("Thanos Query to see the sidecar's data",
                 lambda: thanos_api.get("/api/v1/query", {"query": "count(up)", "time": spec.end})["data"]["result"],
                 60, processes)
        yield spec, Endpoint(prom.url), thanos_api
    finally:
        for p in processes:
            p.stop()
        prom.stop()


def canonical(data: dict) -> tuple:
    """(result type, {labels without replica: values}) of a query answer."""
    kind, result = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        return kind, {(): [tuple(result)]}
    out = {}
    for series in result:
        labels = tuple(sorted((k, v) for k, v in series["metric"].items() if k != "replica"))
        out[labels] = [tuple(p) for p in series.get("values") or [series["value"]]]
    return kind, out


def same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = float(a), float(b)
    if math.isnan(x) and math.isnan(y):
        return True
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def values_by_step(series: dict) -> dict:
    """Timestamp -> the sorted values of every series there."""
    out: dict = {}
    for points in series.values():
        for t, v in points:
            out.setdefault(t, []).append(float(v))
    return {t: sorted(v) for t, v in out.items()}


def same_by_step(a: dict, b: dict) -> bool:
    """topk/bottomk break ties by the order series arrive in, which differs between Prometheus' own
    TSDB and a StoreAPI stream: between equal values either series is right, so the values chosen
    at each step are compared, not which series carried them."""
    x, y = values_by_step(a), values_by_step(b)
    return x.keys() == y.keys() and all(len(x[t]) == len(y[t]) and all(
        math.isclose(p, q, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(p) and math.isnan(q))
        for p, q in zip(x[t], y[t])) for t in x)


def test_every_dashboard_query_answers_the_same_through_thanos(endpoints):
    spec, prometheus, thanos = endpoints
    compared, problems, nonempty = 0, [], 0
    for label, seconds in RANGES:
        tr = bench.TimeRange(label, seconds, spec.end)
        for path in bench.pn.dashboard_files(ROOT):
            values = bench.resolve_variables(prometheus, path, tr, spec.environment, [])
            for target in bench.dashboard_targets(path):
                query = bench.interpolate(target.expr, values)
                if target.instant:
                    api, params = "/api/v1/query", {"query": query, "time": tr.end}
                else:
                    api, params = "/api/v1/query_range", {"query": query, "start": tr.start, "end": tr.aligned_end,
                                                          "step": tr.interval}
                answers = [e.post(api, params) for e in (prometheus, thanos)]
                compared += 1
                if any(a.get("status") != "success" for a in answers):
                    problems.append(f"{target.where} ({label}): {[a.get('error') for a in answers]}")
                    continue
                (kind_p, got_p), (kind_t, got_t) = (canonical(a["data"]) for a in answers)
                nonempty += bool(got_p)
                if re.search(r"\b(topk|bottomk)\s*\(", query) and kind_p == kind_t:
                    if not same_by_step(got_p, got_t):
                        problems.append(f"{target.where} ({label}): the values chosen differ")
                    continue
                if kind_p != kind_t or set(got_p) != set(got_t):
                    problems.append(f"{target.where} ({label}): series differ: only Prometheus "
                                    f"{sorted(set(got_p) - set(got_t))[:2]}, only Thanos {sorted(set(got_t) - set(got_p))[:2]}")
                    continue
                for key, points in got_p.items():
                    other = got_t[key]
                    if [t for t, _ in points] != [t for t, _ in other] or not all(
                            same_value(a, b) for (_, a), (_, b) in zip(points, other)):
                        problems.append(f"{target.where} ({label}): values differ for {dict(key)}")
                        break
    assert not problems, f"{len(problems)} of {compared} answers differ:\n" + "\n".join(problems[:30])
    # The comparison is of answers with data, not of empty ones.
    assert nonempty > 0.9 * compared, (nonempty, compared)
