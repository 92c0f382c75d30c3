"""Thanos end to end, with the pinned binaries on loopback: two Prometheus replicas with the
generated config and their generated sidecars, a filesystem bucket, Thanos Query, the store
gateway and the compactor, each started with the command line prod renders.

What is changed to run here, and why:
- paths under the containers' mount points become directories of a throwaway root, and every
  listen address a free port on 127.0.0.1; the endpoints Thanos Query dials (each replica's
  sidecar by its stable name, the store gateway) become those ports;
- the bucket is a directory (thanos.objstore.type filesystem, the setting meant for tests) instead
  of prod's S3, and prod's scrape interval of 30 s becomes 1 s (the stack's own setting), so that a
  gap shows within seconds;
- prometheus.yml keeps the generated global section (external labels environment and
  replica=${POD_NAME}, which Prometheus expands from POD_NAME as in the pod), the rule files and a
  static job (staticTargets) scraping a loopback target; the Kubernetes discovery jobs are left out:
  there is no cluster here to discover;
- history older than the head comes from `promtool tsdb create-blocks-from openmetrics` (2 h blocks,
  compaction level 1, as Prometheus cuts them with --storage.tsdb.{min,max}-block-duration=2h), put
  into each replica's TSDB before it starts; each replica gets its own run (own block ids), since
  two replicas never share a block;
- the compactor gets --consistency-delay=0s: its default (30 min) leaves blocks younger than
  that alone, and every block here is seconds old;
- a third replica (not in Thanos Query's endpoints) has a sidecar whose bucket is broken (its
  directory is a regular file): its Prometheus scrapes the three sidecars with the generated
  thanos-sidecar job (pod discovery replaced by static targets carrying the labels it would find)
  and evaluates the generated meta.thanos group with for: dropped, so that an alert fires as soon
  as its expression holds; the expressions are those deployed;
- Thanos Query re-reads its endpoint file every 5 s instead of 5 min, and the store gateway is
  restarted to list the compactor's new blocks at once instead of within its 15 min sync, so that
  components started later in the module are seen within seconds;
- the sidecars ask their Prometheus for its labels every second instead of every 30 s
  (--prometheus.get_config_interval), so that a stopped Prometheus shows in
  thanos_sidecar_prometheus_up within seconds.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.ports import free_port
from tests.conftest import require_tool
from components import data
from tests.discovery_run import pod_port_labels
from tests.loopback_http import metrics_target
from tools import offline

STEP = 60  # seconds between backfilled samples
# Backfilled, ending 3 h before now: 4 days, so that one whole 2-day range (the compactor's third
# level) is covered and followed by newer blocks, which makes the compactor join it into a block
# long enough (over 40 h) to downsample to 5 m.
HISTORY_HOURS = 96
HISTORY_METRIC = "fm_e2e_history"
LIVE_JOB = "e2e-target"
BLOCKS = HISTORY_HOURS // 2  # per replica


class Process:
    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None):
        self.name, self.argv, self.log = name, argv, log_dir / f"{name}.log"
        self.env = {"PATH": "/usr/bin:/bin", **(env or {})}
        self.popen = None
        self.start()

    def start(self):
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=self.env, start_new_session=True)

    def stop(self):
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


def set_flags(args: list[str], values: dict[str, str]) -> list[str]:
    """The generated arguments with the flags of ``values`` set to these values (added if absent);
    a generated flag this check does not know what to do with is refused, not passed on blind."""
    out, seen = [], set()
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in values:
            out.append(f"{flag}={values[flag]}")
            seen.add(flag)
        else:
            out.append(arg)
    out += [f"{flag}={value}" for flag, value in values.items() if flag not in seen]
    return out


def wait_for(what: str, check, timeout: float, processes=()) -> object:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in processes)
    pytest.fail(f"{what} within {timeout}s (last: {last!r})\n{logs}", pytrace=False)


def get_json(url: str, params: dict | None = None) -> dict:
    query = "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
    with urllib.request.urlopen(url + query, timeout=30) as answer:
        return json.load(answer)


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def history_openmetrics(start: int, end: int) -> str:
    lines = [f"# TYPE {HISTORY_METRIC} gauge"]
    for series in range(3):
        for t in range(start, end, STEP):
            lines.append(f'{HISTORY_METRIC}{{job="e2e-history",series="{series}"}} {series * 1000 + (t // STEP) % 600} {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class Cluster:
    """The loopback deployment: everything from prod's rendered objects."""

    def __init__(self, root: Path):
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.bucket = root / "bucket"
        self.bucket.mkdir()
        self.target = metrics_target(b"# TYPE fm_e2e_live gauge\nfm_e2e_live 1\n")
        self.result = offline.run("prod", {
            "thanos": {"objstore": {"type": "filesystem", "directory": str(self.bucket)}},
            "prometheus": {"scrapeInterval": "1s", "scrapeTimeout": "1s", "evaluationInterval": "1s"},
            "staticTargets": [{"job": LIVE_JOB, "target": self.target.address}],
        })
        self.processes: dict[str, Process] = {}
        self.prometheus = require_tool("prometheus")
        self.thanos = require_tool("thanos")
        self.ports = {name: free_port() for name in (
            "prom-0", "prom-1", "prom-2", "sidecar-0-http", "sidecar-0-grpc", "sidecar-1-http", "sidecar-1-grpc",
            "sidecar-2-http", "sidecar-2-grpc",
            "query-http", "query-grpc", "store-http", "store-grpc", "compactor-http")}
        statefulset = self.result.one("StatefulSet", "prometheus")
        self.containers = {c["name"]: c for c in statefulset["spec"]["template"]["spec"]["containers"]}
        self.objstore = self.root / "objstore.yml"
        self.objstore.write_text(self.result.one("Secret", "prometheus-thanos-sidecar-objstore")["stringData"]["objstore.yml"])
        # The broken bucket: the generated config, its directory a regular file, so that every
        # bucket call fails (as an unreachable S3 endpoint's would).
        broken = yaml.safe_load(self.objstore.read_text())
        broken["config"]["directory"] = str(self.root / "not-a-directory")
        (self.root / "not-a-directory").write_text("")
        self.broken_objstore = self.root / "objstore-broken.yml"
        self.broken_objstore.write_text(yaml.safe_dump(broken))
        self.now = int(time.time())

    def args(self, kind: str, name: str) -> list[str]:
        return self.result.one(kind, name)["spec"]["template"]["spec"]["containers"][0]["args"]

    def start(self, name: str, argv: list[str], env: dict | None = None) -> Process:
        self.processes[name] = Process(name, argv, self.logs, env)
        return self.processes[name]

    # -- Prometheus and its sidecar, replica i
    def prepare_replica(self, i: int, hours: int = HISTORY_HOURS, rules: dict[str, str] | None = None,
                        jobs: tuple[dict, ...] = ()) -> None:
        base = self.root / f"prometheus-{i}"
        (base / "config").mkdir(parents=True)
        (base / "rules").mkdir()
        (base / "data").mkdir()
        rules = self.result.one("ConfigMap", "prometheus-rules")["data"] if rules is None else rules
        for name, text in rules.items():
            (base / "rules" / name).write_text(text)
        config = yaml.safe_load(self.result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
        config["rule_files"] = [str(base / "rules" / "*.yaml")]
        config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] == LIVE_JOB]
        assert config["scrape_configs"], "the static job is not in the generated config"
        config["scrape_configs"] += jobs
        (base / "config" / "prometheus.yml").write_text(yaml.safe_dump(config))
        history = base / "history.om"
        # Aligned on 2 h so that promtool cuts only full blocks.
        end = (self.now - 3 * 3600) // 7200 * 7200
        history.write_text(history_openmetrics(end - hours * 3600, end))
        if hours == HISTORY_HOURS:
            self.history_range = (end - HISTORY_HOURS * 3600, end - STEP)
        subprocess.run([require_tool("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(history),
                        str(base / "data")], check=True, capture_output=True, timeout=120)

    def start_replica(self, i: int, objstore: Path | None = None) -> None:
        base = self.root / f"prometheus-{i}"
        prom = set_flags(self.containers["prometheus"]["args"], {
            "--config.file": str(base / "config" / "prometheus.yml"),
            "--storage.tsdb.path": str(base / "data"),
            "--web.listen-address": f"127.0.0.1:{self.ports[f'prom-{i}']}",
        })
        # The pod's name is the replica label's value (env_from_pod POD_NAME).
        self.start(f"prometheus-{i}", [self.prometheus, *prom], {"POD_NAME": f"prometheus-{i}"})
        sidecar = set_flags(self.containers["thanos-sidecar"]["args"], {
            "--http-address": f"127.0.0.1:{self.ports[f'sidecar-{i}-http']}",
            "--grpc-address": f"127.0.0.1:{self.ports[f'sidecar-{i}-grpc']}",
            "--tsdb.path": str(base / "data"),
            "--prometheus.url": f"http://127.0.0.1:{self.ports[f'prom-{i}']}",
            "--objstore.config-file": str(objstore or self.objstore),
            # Its heartbeat to Prometheus (30 s in a pod): a stopped Prometheus shows at once.
            "--prometheus.get_config_interval": "1s",
        })
        self.start(f"sidecar-{i}", [self.thanos, *sidecar])

    def sidecar_job(self, replicas: tuple[int, ...]) -> dict:
        """The generated thanos-sidecar job, its pod discovery replaced by what it would find: a
        target per port of each replica's sidecar container, with the pod's labels; the job's own
        relabelling picks the port."""
        config = yaml.safe_load(self.result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
        [job] = [j for j in config["scrape_configs"] if j["job_name"] == "thanos-sidecar"]
        [sd] = job.pop("kubernetes_sd_configs")
        statefulset = self.result.one("StatefulSet", "prometheus")
        namespace = statefulset["metadata"]["namespace"]
        assert sd["role"] == "pod" and namespace in sd["namespaces"]["names"], sd
        container = self.containers["thanos-sidecar"]
        http_port = int(next(a for a in container["args"] if a.startswith("--http-address=")).rsplit(":", 1)[1])
        grpc_port = int(next(a for a in container["args"] if a.startswith("--grpc-address=")).rsplit(":", 1)[1])
        job["static_configs"] = []
        for i in replicas:
            here = {http_port: self.ports[f"sidecar-{i}-http"], grpc_port: self.ports[f"sidecar-{i}-grpc"]}
            for port in container["ports"]:
                job["static_configs"].append({
                    "targets": [f"127.0.0.1:{here[port['containerPort']]}"],
                    "labels": pod_port_labels(namespace, f"prometheus-{i}", "node-0", statefulset["spec"]["template"],
                                              container["name"], port)})
        return job

    def start_broken_replica(self) -> None:
        """Replica 2: a Prometheus with one 2 h block to ship and a sidecar whose bucket is broken.
        It also scrapes all three sidecars with the generated job and evaluates a copy of the
        generated meta.thanos group with no for:, so that the alerts show at once."""
        rules = yaml.safe_load(self.result.one("ConfigMap", "prometheus-rules")["data"][data.THANOS_RULE_FILE])
        [group] = [g for g in rules["groups"] if g["name"] == "meta.thanos"]
        self.thanos_rules = group["rules"]
        copy = {"groups": [{**group, "rules": [{k: v for k, v in r.items() if k != "for"} for r in group["rules"]]}]}
        self.prepare_replica(2, hours=4, rules={"meta-thanos.yaml": yaml.safe_dump(copy, sort_keys=False)},
                             jobs=(self.sidecar_job((0, 1, 2)),))
        self.start_replica(2, objstore=self.broken_objstore)

    def prometheus_get(self, i: int, path: str, params: dict | None = None) -> dict:
        answer = get_json(f"http://127.0.0.1:{self.ports[f'prom-{i}']}{path}", params)
        assert answer["status"] == "success", answer
        return answer["data"]

    def stop_replica(self, i: int) -> None:
        self.processes[f"sidecar-{i}"].stop()
        self.processes[f"prometheus-{i}"].stop()

    def start_query(self) -> None:
        endpoints = yaml.safe_load(self.result.one("ConfigMap", "thanos-query-endpoints")["data"]["endpoints.yaml"])
        here = {"prometheus-0.prometheus-headless.monitoring.svc:10901": f"127.0.0.1:{self.ports['sidecar-0-grpc']}",
                "prometheus-1.prometheus-headless.monitoring.svc:10901": f"127.0.0.1:{self.ports['sidecar-1-grpc']}",
                "thanos-store.monitoring.svc:10901": f"127.0.0.1:{self.ports['store-grpc']}"}
        assert {e["address"] for e in endpoints["endpoints"]} == set(here), endpoints
        for e in endpoints["endpoints"]:
            e["address"] = here[e["address"]]
        path = self.root / "endpoints.yaml"
        path.write_text(yaml.safe_dump(endpoints))
        query = set_flags(self.args("Deployment", "thanos-query"), {
            "--http-address": f"127.0.0.1:{self.ports['query-http']}",
            "--grpc-address": f"127.0.0.1:{self.ports['query-grpc']}",
            "--endpoint.sd-config-file": str(path),
            # The endpoint file is re-read every 5 m in a pod; here the store gateway joins late.
            "--endpoint.sd-config-reload-interval": "5s",
        })
        self.start("query", [self.thanos, *query])

    def stop(self, name: str) -> None:
        self.processes[name].stop()

    def start_store(self) -> None:
        store = set_flags(self.args("StatefulSet", "thanos-store"), {
            "--http-address": f"127.0.0.1:{self.ports['store-http']}",
            "--grpc-address": f"127.0.0.1:{self.ports['store-grpc']}",
            "--data-dir": str(self.root / "store"),
            "--objstore.config-file": str(self.objstore),
        })
        self.start("store", [self.thanos, *store])

    def start_compactor(self) -> None:
        compactor = set_flags(self.args("StatefulSet", "thanos-compactor"), {
            "--http-address": f"127.0.0.1:{self.ports['compactor-http']}",
            "--data-dir": str(self.root / "compactor"),
            "--objstore.config-file": str(self.objstore),
            "--consistency-delay": "0s",
        })
        self.start("compactor", [self.thanos, *compactor])

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['query-http']}"

    def query(self, expr: str, at: float, dedup: bool = True) -> list:
        answer = get_json(f"{self.query_url}/api/v1/query",
                          {"query": expr, "time": f"{at:.3f}", "dedup": str(dedup).lower()})
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def bucket_blocks(self) -> list[dict]:
        return [json.loads(meta.read_text()) for meta in self.bucket.glob("*/meta.json")]

    def close(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.target.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("thanos-e2e"))
    try:
        for i in (0, 1):
            c.prepare_replica(i)
            c.start_replica(i)
        c.start_broken_replica()
        c.start_query()
        yield c
    finally:
        c.close()


def live_series(cluster: Cluster, dedup: bool) -> list:
    return cluster.query(f'fm_e2e_live{{job="{LIVE_JOB}"}}', time.time(), dedup)


def test_a_series_scraped_by_both_replicas_appears_once(cluster):
    both = wait_for("both replicas' copies of the live series through Thanos Query",
                    lambda: len(live_series(cluster, dedup=False)) == 2 and live_series(cluster, dedup=False),
                    60, cluster.processes.values())
    assert sorted(s["metric"]["replica"] for s in both) == ["prometheus-0", "prometheus-1"]
    merged = live_series(cluster, dedup=True)
    assert len(merged) == 1
    assert "replica" not in merged[0]["metric"]
    assert merged[0]["metric"]["environment"] == "prod"


def samples(cluster: Cluster, dedup: bool, at: float, window: int) -> dict[str, list[float]]:
    """Raw sample timestamps of the live series in (at - window, at], by replica ('' once merged)."""
    result = cluster.query(f'fm_e2e_live{{job="{LIVE_JOB}"}}[{window}s]', at, dedup)
    return {s["metric"].get("replica", ""): [float(t) for t, _ in s["values"]] for s in result}


def largest_gap(timestamps: list[float]) -> float:
    return max(b - a for a, b in zip(timestamps, timestamps[1:]))


def test_with_one_replica_stopped_the_merged_series_has_no_gap(cluster):
    wait_for("both replicas scraping", lambda: len(live_series(cluster, dedup=False)) == 2, 60,
             cluster.processes.values())
    time.sleep(3)
    cluster.stop_replica(1)
    time.sleep(10)
    cluster.start_replica(1)
    wait_for("replica 1 back", lambda: len(samples(cluster, False, time.time(), 3).get("prometheus-1", [])) > 0,
             60, cluster.processes.values())
    time.sleep(3)
    at = time.time()
    raw = samples(cluster, False, at, 25)
    merged = samples(cluster, True, at, 25)
    # The stopped replica's own copy has the hole (the check can fail), the merged one has none.
    assert largest_gap(raw["prometheus-1"]) >= 8, raw["prometheus-1"]
    # The replica that kept running scrapes every second, give or take a late scrape on a busy machine.
    assert largest_gap(raw["prometheus-0"]) < 4, raw["prometheus-0"]
    assert list(merged) == [""]
    assert merged[""][0] <= raw["prometheus-1"][0] + 1 and merged[""][-1] >= at - 3
    # No hole of the stopped replica shows. Query's penalty deduplication (pkg/dedup/iter.go) seeks
    # the replica it did not pick at 2 x the last sample spacing beyond the picked one's sample, so
    # where it switches over, a merged gap is at most twice a spacing plus the other's own spacing:
    # seconds on a busy machine, well under the stopped replica's hole.
    spacings = [b - a for series in raw.values() for a, b in zip(series, series[1:]) if b - a < 8]
    bound = 2 * max(spacings) + largest_gap(raw["prometheus-0"]) + 0.05
    assert bound < 8, raw
    assert largest_gap(merged[""]) <= bound, (bound, merged[""], raw)


def test_blocks_reach_the_bucket(cluster):
    def uploaded():
        blocks = cluster.bucket_blocks()
        replicas = {b["thanos"]["labels"].get("replica") for b in blocks}
        return blocks if len(blocks) >= 2 * BLOCKS and replicas == {"prometheus-0", "prometheus-1"} else None

    blocks = wait_for("the backfilled blocks of both replicas in the bucket", uploaded, 60, cluster.processes.values())
    for block in blocks:
        assert block["thanos"]["labels"]["environment"] == "prod"
        assert block["thanos"]["source"] == "sidecar"
        assert block["maxTime"] - block["minTime"] <= 2 * 3600 * 1000


def exposed(address: str) -> tuple[set[str], dict[str, str]]:
    """The sample names a component serves on /metrics, and each family's type (its # TYPE line)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    names = {line.split("{")[0].split(" ")[0] for line in lines if line and not line.startswith("#")}
    types = {line.split()[2]: line.split()[3] for line in lines if line.startswith("# TYPE ")}
    return names, types


def promised(job: str) -> dict[str, str]:
    """What metrics/exporters.yaml says the job exposes, with each one's type (the rules and
    dashboards rely on both: rate() of a counter, a gauge compared with 0 or 1)."""
    exporters = yaml.safe_load((Path(__file__).resolve().parent.parent / "metrics" / "exporters.yaml").read_text())
    kinds = {}
    for spec in exporters["exporters"].values():
        if job in spec["jobs"]:
            kinds.update(spec["metrics"])
    assert kinds, job
    return kinds


def missing_or_mistyped(job: str, address: str) -> list[str]:
    names, types = exposed(address)
    problems = []
    for name, kind in promised(job).items():
        if (f"{name}_count" if kind == "histogram" else name) not in names:
            problems.append(f"{name} missing")
        elif types.get(name) != kind:
            problems.append(f"{name} is a {types.get(name)}, not a {kind}")
    return problems


def test_the_sidecars_expose_what_the_rules_read(cluster):
    for i in (0, 1):
        problems = missing_or_mistyped("thanos-sidecar", f"127.0.0.1:{cluster.ports[f'sidecar-{i}-http']}")
        assert not problems, f"sidecar {i}: {problems}"


def firing(cluster: Cluster, alertname: str) -> set[str]:
    """The pods an alert fires for in replica 2's Prometheus."""
    alerts = cluster.prometheus_get(2, "/api/v1/alerts")["alerts"]
    return {a["labels"].get("pod") for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"}


def scraped(cluster: Cluster, expr: str) -> dict[str, float]:
    result = cluster.prometheus_get(2, "/api/v1/query", {"query": expr})["result"]
    return {s["metric"]["pod"]: float(s["value"][1]) for s in result}


def test_a_sidecar_that_cannot_reach_its_bucket_fires_the_upload_alert(cluster):
    # The rules evaluated are the generated ones but for for:.
    def rules():
        loaded = {r["name"]: r for g in cluster.prometheus_get(2, "/api/v1/rules")["groups"] for r in g["rules"]}
        return loaded if loaded and all(r["health"] != "unknown" for r in loaded.values()) else None
    loaded = wait_for("replica 2's Prometheus with its rules evaluated", rules, 30, cluster.processes.values())
    assert set(loaded) == {r.get("alert", r.get("record")) for r in cluster.thanos_rules}
    copy = yaml.safe_load((cluster.root / "prometheus-2" / "rules" / "meta-thanos.yaml").read_text())
    assert [r["expr"] for r in copy["groups"][0]["rules"]] == [r["expr"] for r in cluster.thanos_rules]
    assert all(r["health"] == "ok" and r.get("duration", 0) == 0 for r in loaded.values()), loaded
    # The generated job keeps one target per sidecar: its HTTP port.
    def targets():
        active = cluster.prometheus_get(2, "/api/v1/targets", {"state": "active"})["activeTargets"]
        return {t["labels"]["pod"]: t["scrapeUrl"] for t in active if t["labels"]["job"] == "thanos-sidecar"
                and t["health"] == "up"}
    up = wait_for("the three sidecars scraped through the generated job", lambda: len(targets()) == 3 and targets(),
                  30, cluster.processes.values())
    assert up == {f"prometheus-{i}": f"http://127.0.0.1:{cluster.ports[f'sidecar-{i}-http']}/metrics"
                  for i in (0, 1, 2)}

    # increase() needs a rise between two scrapes: the first failed sync (at the sidecar's start) is
    # seen only if a scrape came before it, the second comes 30 s later.
    wait_for("ThanosSidecarUploadFailing for the broken sidecar",
             lambda: "prometheus-2" in firing(cluster, "ThanosSidecarUploadFailing"), 60, cluster.processes.values())
    # What the real shipper counts on a failed sync: the sync failed, the bucket call failed, and
    # not one upload failure (it is counted only with --shipper.allow-out-of-order-uploads).
    assert scraped(cluster, 'thanos_shipper_dir_sync_failures_total{job="thanos-sidecar"}')["prometheus-2"] > 0
    assert scraped(cluster, 'sum by (pod) (thanos_objstore_bucket_operation_failures_total{job="thanos-sidecar"})'
                   )["prometheus-2"] > 0
    assert scraped(cluster, 'thanos_shipper_upload_failures_total{job="thanos-sidecar"}')["prometheus-2"] == 0
    # The healthy sidecars have synced (and shipped) and do not fire it.
    syncs = scraped(cluster, 'thanos_shipper_dir_syncs_total{job="thanos-sidecar"}')
    assert syncs.get("prometheus-0", 0) > 0 and syncs.get("prometheus-1", 0) > 0, syncs
    assert "prometheus-2" not in syncs or syncs["prometheus-2"] == 0, syncs
    assert firing(cluster, "ThanosSidecarUploadFailing") == {"prometheus-2"}
    # Sidecars up for seconds have had no time to ship a 2 h block: no alert for it yet.
    assert firing(cluster, "ThanosSidecarNoUpload") == set()


def test_a_sidecar_whose_prometheus_is_stopped_fires_the_unreachable_alert(cluster):
    # Only replica 1's Prometheus stops; its sidecar stays up and scraped (by replica 2, which
    # evaluates the generated rules without for:).
    wait_for("three sidecars that reach their Prometheus",
             lambda: scraped(cluster, 'thanos_sidecar_prometheus_up{job="thanos-sidecar"}') ==
             {f"prometheus-{i}": 1.0 for i in (0, 1, 2)}, 30, cluster.processes.values())
    assert firing(cluster, "ThanosSidecarPrometheusUnreachable") == set()
    cluster.processes["prometheus-1"].stop()
    try:
        wait_for("ThanosSidecarPrometheusUnreachable for prometheus-1",
                 lambda: firing(cluster, "ThanosSidecarPrometheusUnreachable") == {"prometheus-1"}, 30,
                 cluster.processes.values())
        assert scraped(cluster, 'thanos_sidecar_prometheus_up{job="thanos-sidecar"}') == {
            "prometheus-0": 1.0, "prometheus-1": 0.0, "prometheus-2": 1.0}
    finally:
        cluster.processes["prometheus-1"].start()
    # Back once its Prometheus answers (after the replay of its WAL).
    wait_for("ThanosSidecarPrometheusUnreachable resolved",
             lambda: firing(cluster, "ThanosSidecarPrometheusUnreachable") == set() and
             scraped(cluster, 'thanos_sidecar_prometheus_up{job="thanos-sidecar"}')["prometheus-1"] == 1.0, 60,
             cluster.processes.values())


def history(cluster: Cluster, dedup: bool) -> dict:
    start, end = cluster.history_range
    answer = get_json(f"{cluster.query_url}/api/v1/query_range", {
        "query": HISTORY_METRIC, "start": start, "end": end, "step": STEP, "dedup": str(dedup).lower()})
    assert answer["status"] == "success", answer
    return {(s["metric"]["series"], s["metric"].get("replica", "")): s["values"] for s in answer["data"]["result"]}


def test_history_comes_from_the_store_gateway_once_local_data_is_gone(cluster):
    wait_for("blocks of both replicas in the bucket", lambda: len(cluster.bucket_blocks()) >= 2 * BLOCKS, 60,
             cluster.processes.values())
    before = history(cluster, dedup=True)
    assert len(before) == 3 and all(len(v) == HISTORY_HOURS * 3600 // STEP for v in before.values())
    cluster.start_store()
    # Both replicas gone, and one of them with its disk: only the bucket holds the range now.
    for i in (0, 1):
        cluster.stop_replica(i)
    shutil.rmtree(cluster.root / "prometheus-0" / "data")
    after = wait_for("the history through the store gateway", lambda: history(cluster, dedup=True) or None, 60,
                     cluster.processes.values())
    assert after == before
    per_replica = history(cluster, dedup=False)
    assert {replica for _, replica in per_replica} == {"prometheus-0", "prometheus-1"}


def raw_spacing(cluster: Cluster, resolution: str, at: float) -> list[float]:
    """Distances between the samples a 1 h range selector reads at ``at`` for a source resolution."""
    answer = get_json(f"{cluster.query_url}/api/v1/query", {
        "query": f'{HISTORY_METRIC}{{series="0"}}[1h]', "time": at, "max_source_resolution": resolution})
    assert answer["status"] == "success", answer
    values = answer["data"]["result"][0]["values"] if answer["data"]["result"] else []
    return sorted({float(b[0]) - float(a[0]) for a, b in zip(values, values[1:])})


def timed_week(cluster: Cluster, resolution: str) -> tuple[float, list]:
    start, end = cluster.history_range
    began = time.monotonic()
    answer = get_json(f"{cluster.query_url}/api/v1/query_range", {
        "query": f"avg_over_time({HISTORY_METRIC}[1h])", "start": end - 7 * 86400, "end": end, "step": 3600,
        "max_source_resolution": resolution})
    assert answer["status"] == "success", answer
    return time.monotonic() - began, answer["data"]["result"]


def compactor_iterations(cluster: Cluster) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.ports['compactor-http']}/metrics", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    [value] = [float(line.split()[1]) for line in lines if line.startswith("thanos_compact_iterations_total ")]
    return value


def test_the_compactor_downsamples_and_a_week_panel_reads_the_downsampled_blocks(cluster):
    wait_for("blocks of both replicas in the bucket", lambda: len(cluster.bucket_blocks()) >= 2 * BLOCKS, 60,
             cluster.processes.values())
    cluster.start_compactor()

    def downsampled():
        blocks = [b for b in cluster.bucket_blocks() if b["thanos"]["downsample"]["resolution"] == 300_000]
        return blocks if {b["thanos"]["labels"]["replica"] for b in blocks} == {"prometheus-0", "prometheus-1"} \
            else None

    # Compacting 2 x 48 blocks up the levels, then downsampling: seconds on a quiet machine, minutes
    # on two cores shared with the rest of the suite.
    blocks = wait_for("5 m blocks of both replicas", downsampled, 300, [cluster.processes["compactor"]])
    # ThanosCompactorNotIterating reads this counter: a compactor that has done its work counts the
    # iteration (the 5 m blocks come from its second downsampling pass, the iteration ends with the
    # retention and clean-up).
    wait_for("a finished iteration counted", lambda: compactor_iterations(cluster) >= 1, 120,
             [cluster.processes["compactor"]])
    for block in blocks:
        assert block["maxTime"] - block["minTime"] > 40 * 3600 * 1000  # the compactor's threshold for 5 m
    # The store gateway lists the bucket at start and every 15 m (--sync-block-duration): a restart
    # shows it the new blocks now.
    cluster.stop("store")
    cluster.start_store()
    start, end = cluster.history_range
    inside = min(b["maxTime"] for b in blocks) / 1000 - 3600
    wait_for("the 5 m blocks through the store gateway", lambda: raw_spacing(cluster, "5m", inside) == [300.0], 60,
             cluster.processes.values())
    assert raw_spacing(cluster, "0s", inside) == [float(STEP)]  # the raw blocks are still there
    raw_seconds, raw = timed_week(cluster, "0s")
    down_seconds, down = timed_week(cluster, "5m")
    print(f"7-day range query, step 1 h, {len(raw)} series: raw {raw_seconds:.3f} s, 5 m {down_seconds:.3f} s")
    assert [s["metric"] for s in raw] == [s["metric"] for s in down] and len(raw) == 3
    for r, d in zip(raw, down):
        assert [t for t, _ in r["values"]] == [t for t, _ in d["values"]]
        # The hour's average from the 5 m sums and counts: the window takes whole 5 m buckets, so on
        # the history's ramp (1 a minute) it is off by at most 5, but where the ramp wraps (every 10 h).
        off = [abs(float(a) - float(b)) for (_, a), (_, b) in zip(r["values"], d["values"])]
        assert sum(o > 5 for o in off) <= len(off) / 8, off


def test_query_store_and_compactor_expose_what_the_rules_read(cluster):
    for job, port in (("thanos-query", "query-http"), ("thanos-store", "store-http"),
                      ("thanos-compactor", "compactor-http")):
        problems = missing_or_mistyped(job, f"127.0.0.1:{cluster.ports[port]}")
        assert not problems, f"{job}: {problems}"
