"""Thanos Ruler over two scrape shards, end to end with the pinned binaries on loopback: prod with
prometheus.shards 2, each shard an HA pair (Prometheus and its sidecar, started with the rendered
arguments and the shard's rendered prometheus.yml), Grafana's Thanos Query and the Rulers' own
(thanos-query-rule) with their rendered arguments, the two Ruler replicas with theirs, and a real
Alertmanager.

What is changed to run here, and why:
- listen addresses become free loopback ports, the mounted paths directories of a throwaway root,
  and the names the Queries and the Rulers dial (sidecars, Rulers, Query, Alertmanager) those
  ports; the store gateway is left out of the Queries' endpoints (there is none here: the bucket's side
  is tests/test_thanos_e2e.py's), and the bucket is a directory (thanos.objstore.type filesystem);
- the scrape and evaluation intervals are 1 s (the stack's settings), and the Rulers resend a firing
  alert every 2 s (--resend-delay, 1m rendered as upstream's default), so that targets and alerts
  show within seconds;
- each shard's prometheus.yml keeps its generated global section (external labels environment,
  replica, shard) and its generated kubernetes-pods job, whose pod discovery is pointed at the
  loopback stand-in of the Kubernetes API (tests/test_pod_discovery.py) listing TARGETS annotated
  application pods, each served by a loopback HTTP server at its pod address; the other jobs are
  left out (their targets are not here);
- the Rulers load the stack's TargetDown rule as rendered into thanos-rule-rules but for its
  `for:` (so that it fires as soon as its expression holds), and a recording rule of this test's
  own (its series is read back through Query); Alertmanager's config is a minimal one (one null
  receiver): what is checked is what it receives.

The proof: TARGETS pods of one job, split by hashmod between the shards; some of one shard's
targets are stopped. Each shard alone would compute its own ratio of down targets (or none); the
Ruler, reading both shards' pairs through Query, fires one TargetDown for the job with the
fleet-wide ratio, and Alertmanager holds it once although two Rulers send it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest
import yaml

from components.configs.grafana import DATA_PROXY_TIMEOUT_SECONDS
from components.settings.types import duration_seconds

from tests.ports import free_port
from tests.conftest import require_tool
from tests.test_pod_discovery import KubernetesStandIn, app_pod
from tests.test_thanos_e2e import Process, get_json, missing_or_mistyped, set_flags, wait_for
from tools import offline

TARGETS = 20  # split by hashmod of their addresses; both shards get some but with probability 2^-19
JOB = "football-prediction-api"  # the kubernetes-pods job names a target after its app label
RECORD = "fm_e2e:up:sum"
HANG_GROUP = "e2e.hang"  # two rules, evaluated one after the other while a store hangs
# Grafana's Query and the Rulers' own: Deployment name -> this test's name of its process.
QUERY, RULE_QUERY = "thanos-query", "thanos-query-rule"
PROCESS = {QUERY: "query", RULE_QUERY: "query-rule"}


class PodServer:
    """A pod's metrics endpoint at its address on the stand-in's pod network (127.0.x.y)."""

    def __init__(self, address: str, port: int):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = b"# TYPE fm_e2e_requests gauge\nfm_e2e_requests 1\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.closed = False
        self.server = ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.closed = True


def query_config_here(result: offline.RunResult, path: Path, address: str) -> str:
    """The Ruler's rendered --query.config-file with its Thanos Query's address moved to `address` and
    nothing else changed (its deadline stays as rendered), written to `path`; returns the path."""
    [entry] = yaml.safe_load(result.one("ConfigMap", "thanos-rule-query")["data"]["query.yaml"])
    assert entry["static_configs"] == [f"{RULE_QUERY}.monitoring.svc:10902"], entry
    path.write_text(yaml.safe_dump([{**entry, "static_configs": [address]}], sort_keys=False))
    return str(path)


def without_repeated(args: list[str], flag: str) -> tuple[list[str], list[str]]:
    """(args without every `flag=...`, the values it had)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{flag}=")]
    return [a for a in args if not a.startswith(f"{flag}=")], values


class Deployment:
    def __init__(self, root: Path):
        self.root, self.logs = root, root / "logs"
        self.logs.mkdir()
        (root / "bucket").mkdir()
        self.result = offline.run("prod", {
            "prometheus": {"shards": 2, "scrapeInterval": "1s", "scrapeTimeout": "1s", "evaluationInterval": "1s"},
            "thanos": {"objstore": {"type": "filesystem", "directory": str(root / "bucket")}},
        })
        self.processes: dict[str, Process] = {}
        self.prometheus, self.thanos = require_tool("prometheus"), require_tool("thanos")
        self.objstore = root / "objstore.yml"
        self.objstore.write_text(self.result.one("Secret", "prometheus-thanos-sidecar-objstore")["stringData"]["objstore.yml"])
        self.port = {}
        self.servers: dict[str, PodServer] = {}

    def free(self, name: str) -> int:
        self.port[name] = free_port()
        return self.port[name]

    def start(self, name: str, argv: list[str], env: dict | None = None) -> None:
        self.processes[name] = Process(name, argv, self.logs, env)

    def stop(self, name: str) -> None:
        self.processes[name].stop()

    # -- the fleet
    def start_fleet(self) -> None:
        port = free_port()
        api = {"name": "api", "image": "api:1", "ports": [{"name": "http", "containerPort": port}]}
        annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port)}
        pods = [app_pod(f"{JOB}-{n}", "football-prediction", [api], annotations) for n in range(TARGETS)]
        self.api = KubernetesStandIn(pods)  # gives each pod its address, 127.0.1.1 and on
        for pod in pods:
            address = pod["status"]["podIP"]
            self.servers[pod["metadata"]["name"]] = PodServer(address, port)

    # -- the shards
    def shard_names(self) -> list[str]:
        return ["prometheus", "prometheus-shard-1"]

    def start_shard(self, shard: int) -> None:
        name = self.shard_names()[shard]
        statefulset = self.result.one("StatefulSet", name)
        containers = {c["name"]: c for c in statefulset["spec"]["template"]["spec"]["containers"]}
        config = yaml.safe_load(self.result.one("ConfigMap", f"{name}-config")["data"]["prometheus.yml"])
        assert config["rule_files"] == [] and config["global"]["external_labels"]["shard"] == str(shard)
        [job] = [j for j in config["scrape_configs"] if j["job_name"] == "kubernetes-pods"]
        job["kubernetes_sd_configs"] = [{**c, "api_server": self.api.url} for c in job["kubernetes_sd_configs"]]
        config["scrape_configs"] = [job]
        for replica in range(statefulset["spec"]["replicas"]):
            pod = f"{name}-{replica}"
            base = self.root / pod
            (base / "data").mkdir(parents=True)
            (base / "prometheus.yml").write_text(yaml.safe_dump(config))
            prom = set_flags(containers["prometheus"]["args"], {
                "--config.file": str(base / "prometheus.yml"),
                "--storage.tsdb.path": str(base / "data"),
                "--web.listen-address": f"127.0.0.1:{self.free(pod)}",
            })
            self.start(pod, [self.prometheus, *prom], {"POD_NAME": pod})
            sidecar = set_flags(containers["thanos-sidecar"]["args"], {
                "--http-address": f"127.0.0.1:{self.free(f'{pod}-sidecar-http')}",
                "--grpc-address": f"127.0.0.1:{self.free(f'{pod}-sidecar-grpc')}",
                "--tsdb.path": str(base / "data"),
                "--prometheus.url": f"http://127.0.0.1:{self.port[pod]}",
                "--objstore.config-file": str(self.objstore),
            })
            self.start(f"{pod}-sidecar", [self.thanos, *sidecar])

    def shard_targets(self, pod: str) -> dict[str, str]:
        """The targets one Prometheus scrapes: pod name -> health."""
        answer = get_json(f"http://127.0.0.1:{self.port[pod]}/api/v1/targets", {"state": "active"})
        return {t["labels"]["pod"]: t["health"] for t in answer["data"]["activeTargets"]}

    # -- the Queries and the Rulers
    def start_query(self, deployment: str) -> None:
        """Grafana's Query or the Rulers', from its rendered arguments and endpoints."""
        process = PROCESS[deployment]
        rule = self.result.one("StatefulSet", "thanos-rule")
        endpoints = yaml.safe_load(self.result.one("ConfigMap", f"{deployment}-endpoints")["data"]["endpoints.yaml"])
        here = {f"{name}-{replica}.{name}-headless.monitoring.svc:10901": f"127.0.0.1:{self.port[f'{name}-{replica}-sidecar-grpc']}"
                for name in self.shard_names() for replica in (0, 1)}
        for replica in range(rule["spec"]["replicas"]):
            grpc = f"thanos-rule-{replica}-grpc"
            here[f"thanos-rule-{replica}.thanos-rule-headless.monitoring.svc:10901"] = \
                f"127.0.0.1:{self.port[grpc] if grpc in self.port else self.free(grpc)}"
        store = "thanos-store.monitoring.svc:10901"
        assert {e["address"] for e in endpoints["endpoints"]} == set(here) | {store}, endpoints
        endpoints["endpoints"] = [{"address": here[e["address"]]} for e in endpoints["endpoints"] if e["address"] != store]
        path = self.root / f"{deployment}-endpoints.yaml"
        path.write_text(yaml.safe_dump(endpoints))
        query = set_flags(self.query_args(deployment), {
            "--http-address": f"127.0.0.1:{self.free(f'{process}-http')}",
            "--grpc-address": f"127.0.0.1:{self.free(f'{process}-grpc')}",
            "--endpoint.sd-config-file": str(path),
            # Re-read every 5 m in a pod; here the Rulers start after Query.
            "--endpoint.sd-config-reload-interval": "1s",
        })
        self.start(process, [self.thanos, *query])

    def rule_files(self) -> dict[str, str]:
        """The stack's TargetDown, as rendered for the Ruler, with no for:; and a recording rule."""
        rendered = self.result.one("ConfigMap", "thanos-rule-rules")["data"]
        found = [r for text in rendered.values() for g in yaml.safe_load(text)["groups"] for r in g["rules"]
                 if r.get("alert") == "TargetDown"]
        assert len(found) == 1
        self.target_down = found[0]
        alert = {k: v for k, v in found[0].items() if k != "for"}
        # PrometheusNoneUp reads job prometheus, whose pods no discovery finds here: the same
        # expression over this test's job (the only one scraped) stands in for it.
        [none_up] = [r for text in rendered.values() for g in yaml.safe_load(text)["groups"] for r in g["rules"]
                     if r.get("alert") == "PrometheusNoneUp"]
        assert 'job="prometheus"' in none_up["expr"]
        none_up = {**{k: v for k, v in none_up.items() if k != "for"},
                   "expr": none_up["expr"].replace('job="prometheus"', f'job="{JOB}"')}
        return {"e2e.yaml": yaml.safe_dump({"groups": [
            {"name": "e2e.scrape", "rules": [alert]},
            {"name": "e2e.watchdog", "rules": [none_up]},
            {"name": "e2e.record", "rules": [{"record": RECORD, "expr": f'sum(up{{job="{JOB}"}})'}]},
            {"name": HANG_GROUP, "rules": [{"record": f"fm_e2e:up:{how}", "expr": f'{how}(up{{job="{JOB}"}})'}
                                           for how in ("count", "max")]},
        ]}, sort_keys=False)}

    def start_alertmanager(self) -> None:
        base = self.root / "alertmanager"
        (base / "data").mkdir(parents=True)
        (base / "alertmanager.yml").write_text(yaml.safe_dump({
            "route": {"receiver": "null", "group_wait": "1s", "group_interval": "1s"},
            "receivers": [{"name": "null"}]}))
        self.start("alertmanager", [require_tool("alertmanager"), f"--config.file={base / 'alertmanager.yml'}",
                                    f"--storage.path={base / 'data'}", "--cluster.listen-address=",
                                    f"--web.listen-address=127.0.0.1:{self.free('alertmanager')}"])

    def start_rulers(self) -> None:
        rule = self.result.one("StatefulSet", "thanos-rule")
        [container] = [c for c in rule["spec"]["template"]["spec"]["containers"] if c["name"] == "thanos-rule"]
        args, alertmanagers = without_repeated(container["args"], "--alertmanagers.url")
        replicas = self.result.one("StatefulSet", "alertmanager")["spec"]["replicas"]
        assert alertmanagers == [f"http://alertmanager-{i}.alertmanager-headless.monitoring.svc:9093"
                                 for i in range(replicas)]
        rule_dir = next(a.split("=", 1)[1] for a in args if a.startswith("--rule-file=")).rsplit("/", 1)[0]
        for replica in range(rule["spec"]["replicas"]):
            pod = f"thanos-rule-{replica}"
            base = self.root / pod
            (base / "rules").mkdir(parents=True)
            for name, text in self.rule_files().items():
                (base / "rules" / name).write_text(text)
            argv = set_flags(args, {
                "--http-address": f"127.0.0.1:{self.free(f'{pod}-http')}",
                "--grpc-address": f"127.0.0.1:{self.port[f'{pod}-grpc']}",
                "--data-dir": str(base / "data"),
                "--rule-file": f"{base / 'rules'}/*.yaml",
                "--query.config-file": query_config_here(self.result, base / "query.yaml",
                                                         f"127.0.0.1:{self.port['query-rule-http']}"),
                "--objstore.config-file": str(self.objstore),
                # A firing alert's new value reaches Alertmanager at the next resend (1m by default).
                "--resend-delay": "2s",
            }) + [f"--alertmanagers.url=http://127.0.0.1:{self.port['alertmanager']}"]
            assert rule_dir == "/etc/prometheus/rules"
            # The kubelet expands $(POD_NAME) from the container's environment.
            assert '--label=replica="$(POD_NAME)"' in argv
            argv = [a.replace("$(POD_NAME)", pod) for a in argv]
            self.start(pod, [self.thanos, *argv])

    def query(self, expr: str) -> list:
        answer = get_json(f"http://127.0.0.1:{self.port['query-http']}/api/v1/query", {"query": expr})
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def ruler_alerts(self, replica: int, alertname: str = "TargetDown") -> list:
        answer = get_json(f"http://127.0.0.1:{self.port[f'thanos-rule-{replica}-http']}/api/v1/alerts")
        # The Ruler's own API (pkg/api/rule/v1.go) names the list "Alerts", where Prometheus' says "alerts".
        return [a for a in answer["data"]["Alerts"] or [] if a["labels"]["alertname"] == alertname]

    def rule_group(self, replica: int, name: str) -> dict:
        answer = get_json(f"http://127.0.0.1:{self.port[f'thanos-rule-{replica}-http']}/api/v1/rules")
        [group] = [g for g in answer["data"]["groups"] if g["name"] == name]
        return group

    def store_silence(self, deployment: str = RULE_QUERY) -> float:
        """A Query's rendered --store.response-timeout, seconds (the Rulers' by default)."""
        [value] = [a.split("=", 1)[1] for a in self.query_args(deployment) if a.startswith("--store.response-timeout=")]
        return duration_seconds(value)

    def query_args(self, deployment: str) -> list[str]:
        return self.result.one("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]["args"]

    def ruler_deadline(self) -> tuple[float, float]:
        """The Ruler's rendered deadline of one rule query in seconds: (the connection, the answer)."""
        [entry] = yaml.safe_load(self.result.one("ConfigMap", "thanos-rule-query")["data"]["query.yaml"])
        transport = entry["http_config"]["transport_config"]
        return transport["dialer_timeout"] / 1e9, transport["response_header_timeout"] / 1e9

    def wait_healthy(self, group: str) -> None:
        for replica in (0, 1):
            wait_for(f"{group} healthy in thanos-rule-{replica}",
                     lambda: all(r["health"] == "ok" for r in self.rule_group(replica, group)["rules"]),
                     60, self.processes.values())

    def evaluation_after(self, replica: int, group: str, moment: float) -> Optional[dict]:
        """The group's last evaluation if it began after `moment` (epoch seconds) and every rule
        of it failed, else None."""
        found = self.rule_group(replica, group)
        if since_epoch(found["lastEvaluation"]) > moment and all(r["health"] == "err" for r in found["rules"]):
            return found
        return None

    def in_flight_in_query(self) -> float:
        """Queries in flight in the Rulers' Query."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port['query-rule-http']}/metrics", timeout=10) as answer:
            lines = answer.read().decode().splitlines()
        [value] = [float(line.rsplit(" ", 1)[1]) for line in lines
                   if line.startswith("thanos_query_concurrent_gate_queries_in_flight ")]
        return value

    def verify(self, query_url: str | None = None) -> dict[str, dict]:
        """tools.verify's target check (with the shard check it brings) as an operator runs it on
        this stack: the rendered outputs, their URLs moved to the processes here. check -> result."""
        import io
        from tools.verify.cli import main
        outputs = dict(self.result.outputs)
        outputs.pop("elasticsearchCaCertificate")  # the offline render's placeholder, no certificate
        outputs.update(prometheusUrl=f"http://127.0.0.1:{self.port['prometheus-0']}",
                       thanosQueryUrl=query_url or f"http://127.0.0.1:{self.port['query-http']}",
                       thanosRuleUrl=f"http://127.0.0.1:{self.port['thanos-rule-0-http']}")
        path = self.root / "outputs.json"
        path.write_text(json.dumps(outputs))
        out = io.StringIO()
        main(["--outputs", str(path), "--only", "prometheus.targets", "--json"], out=out)
        return {r["check"]: r for r in json.loads(out.getvalue())["results"]}

    def alertmanager_alerts(self) -> list:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port['alertmanager']}/api/v2/alerts", timeout=10) as answer:
            return [a for a in json.load(answer) if a["labels"]["alertname"] == "TargetDown"]

    def close(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        for server in self.servers.values():
            server.close()
        if hasattr(self, "api"):
            self.api.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    d = Deployment(tmp_path_factory.mktemp("thanos-rule-e2e"))
    try:
        d.start_fleet()
        for shard in (0, 1):
            d.start_shard(shard)
        d.start_alertmanager()
        d.start_query(QUERY)
        d.start_query(RULE_QUERY)
        d.start_rulers()
        yield d
    finally:
        d.close()


def test_an_alert_over_both_shards_fires_once_with_the_fleet_wide_value(deployment):
    d = deployment
    everyone = set(d.servers)
    # Both replicas of a shard scrape the same share; the shares are disjoint and cover the fleet.
    def shares():
        seen = [d.shard_targets(f"{name}-{r}") for name in d.shard_names() for r in (0, 1)]
        if all(seen) and all(set(s.values()) == {"up"} for s in seen):
            return seen
        return None
    seen = wait_for("every target up in its shard", shares, 60, d.processes.values())
    assert set(seen[0]) == set(seen[1]) and set(seen[2]) == set(seen[3])
    shard0, shard1 = set(seen[0]), set(seen[2])
    assert shard0 and shard1 and not shard0 & shard1 and shard0 | shard1 == everyone, (shard0, shard1)

    # The recorded series, written by the two Rulers, read back once through Query.
    recorded = wait_for(f"{RECORD} through Thanos Query",
                        lambda: (r := d.query(RECORD)) and float(r[0]["value"][1]) == TARGETS and r,
                        60, d.processes.values())
    assert len(recorded) == 1 and "replica" not in recorded[0]["metric"]
    assert d.ruler_alerts(0) == [] and d.ruler_alerts(1) == []

    # Down: all but one target of the larger shard, so that the shard's own ratio differs from the fleet's.
    larger = max((shard0, shard1), key=len)
    down = sorted(larger)[:len(larger) - 1]
    for pod in down:
        d.servers[pod].close()
    expected = 100 * len(down) / TARGETS
    assert expected != 100 * len(down) / len(larger)
    print(f"shares {len(shard0)}/{len(shard1)}; {len(down)} down: {expected:.4g}% of the fleet, "
          f"{100 * len(down) / len(larger):.4g}% of its shard")

    description = f"{expected:.4g}% of the {JOB} targets"

    def delivered():
        # The ratio climbs as the stopped targets' failed scrapes come in; the Rulers resend a
        # firing alert (and its new description) every --resend-delay (2 s here).
        values = [float(a["value"]) for r in (0, 1) for a in d.ruler_alerts(r) if a["state"] == "firing"]
        alerts = d.alertmanager_alerts()
        if len(values) == 2 and all(v == pytest.approx(expected) for v in values) \
                and any(description in a["annotations"]["description"] for a in alerts):
            return alerts
        return None

    alerts = wait_for(f"TargetDown at {expected}% from both Rulers and in Alertmanager", delivered, 150,
                      d.processes.values())
    # One alert although two Rulers send it, for the job, carrying neither replica nor shard.
    assert len(alerts) == 1, alerts
    labels = alerts[0]["labels"]
    assert labels["job"] == JOB and labels["environment"] == "prod"
    assert "replica" not in labels and "shard" not in labels
    for replica in (0, 1):
        [alert] = d.ruler_alerts(replica)
        assert alert["state"] == "firing" and float(alert["value"]) == pytest.approx(expected), (alert, expected)
    assert d.target_down["expr"].startswith("100 * (count by (environment, job) (up == 0)")


def down_instances(result: dict) -> set[str]:
    return {d.split(" instance=", 1)[1].split(":", 1)[0] for d in result["details"] if d.startswith("down: ")}


def test_verify_checks_the_targets_of_every_shard(deployment, tmp_path):
    """tools.verify on the sharded stack: its target check reads every shard's targets through
    Thanos Query (both replicas of each pair), not shard 0's share, and lists every target down
    whichever shard scrapes it, with its error; the shard check finds a Prometheus of each shard.
    Through the query frontend (the thanosQueryUrl output when thanos.queryFrontend is on) alike."""
    d = deployment
    assert d.result.outputs["prometheusShards"] == 2
    shares = [d.shard_targets(f"{name}-0") for name in d.shard_names()]
    # The TargetDown test left targets of one shard down; one of the other's too.
    pods = {pod["metadata"]["name"]: pod["status"]["podIP"] for pod in d.api.pods}
    untouched = next(share for share in shares if not any(d.servers[p].closed for p in share))
    d.servers[sorted(untouched)[0]].close()
    stopped = {pods[name] for name, server in d.servers.items() if server.closed}
    assert all(stopped & {pods[p] for p in share} for share in shares), "a target down in each shard"

    def settled():
        # A scrape cut short by a server's shutdown reports its own error; the next is refused.
        results = d.verify()
        targets = results["prometheus.targets"]
        refused = all("connection refused" in line for line in targets["details"] if line.startswith("down: "))
        return results if down_instances(targets) == stopped and refused else None
    results = wait_for("verify to list every stopped target, refused", settled, 30, d.processes.values())
    shards, targets = results["prometheus.shards"], results["prometheus.targets"]
    print(f"\n{shards['summary']}\n{targets['summary']}")
    assert shards["status"] == "PASS" and "2 of 2 scrape shards" in shards["summary"], shards
    assert targets["status"] == "FAIL" and targets["summary"].startswith(f"{TARGETS - len(stopped)}/{TARGETS} "), targets
    # Shard 0's Prometheus alone, what the check read before, holds a share only.
    assert len(shares[0]) < TARGETS

    frontend_result = offline.run("prod", {"prometheus": {"shards": 2}, "thanos": {"queryFrontend": True}})
    args = frontend_result.one("Deployment", "thanos-query-frontend")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert frontend_result.outputs["thanosQueryUrl"] == "http://thanos-query-frontend.monitoring.svc:10902"
    port = d.free("query-frontend")
    d.start("query-frontend", [d.thanos, *set_flags(args, {
        "--http-address": f"127.0.0.1:{port}",
        "--query-frontend.downstream-url": f"http://127.0.0.1:{d.port['query-http']}"})])
    try:
        through = wait_for("verify through the query frontend",
                           lambda: (r := d.verify(f"http://127.0.0.1:{port}")) and
                           down_instances(r["prometheus.targets"]) == stopped and r, 30, d.processes.values())
    finally:
        d.stop("query-frontend")
    assert through["prometheus.shards"]["status"] == "PASS", through
    assert through["prometheus.targets"]["summary"] == targets["summary"], (through, targets)


def test_the_rulers_expose_what_the_rules_read(deployment):
    for replica in (0, 1):
        problems = missing_or_mistyped("thanos-rule", f"127.0.0.1:{deployment.port[f'thanos-rule-{replica}-http']}")
        assert not problems, f"thanos-rule-{replica}: {problems}"


def since_epoch(rfc3339: str) -> float:
    """Seconds since the epoch of the Ruler's timestamps (nanoseconds, UTC "Z")."""
    from datetime import datetime
    whole, _, fraction = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{fraction or 0}")


def test_a_store_that_hangs_holds_a_rule_query_for_the_rendered_silence_only(deployment):
    """One Prometheus of shard 1 stopped in its tracks (SIGSTOP): its sidecar still passes the
    Queries' endpoint checks, so they keep it among the stores of every query, and each Series call
    to it waits on the stopped Prometheus, until Query's --query.timeout (2m) if nothing else ends
    it; the rules of a group would wait in turn. With the rendered --store.response-timeout, the
    Rulers' Query gives the silent store up after that silence: each rule query fails then (partial
    response abort), the group's evaluation ends after its rules times the silence, and that Query's
    queries in flight stay within one per group and Ruler (no abandoned query keeps its place).
    Grafana's Query gives a store longer: its query, with partial responses as Grafana asks, is
    still waiting at twice the rules' silence, and is answered from the other stores, with a
    warning, after its own (rendered) silence, before Grafana's data proxy would give up."""
    d = deployment
    silence = d.store_silence()
    _, ruler_wait = d.ruler_deadline()
    assert ruler_wait > silence  # the Ruler hears Query's answer before it would give up
    rules = len(d.rule_group(0, HANG_GROUP)["rules"])
    groups = len(get_json(f"http://127.0.0.1:{d.port['thanos-rule-0-http']}/api/v1/rules")["data"]["groups"])
    d.wait_healthy(HANG_GROUP)
    hung = d.processes["prometheus-shard-1-0"].popen.pid
    os.kill(hung, signal.SIGSTOP)
    stopped = time.time()
    in_flight = []
    try:
        def over_the_hung_store():
            in_flight.append(d.in_flight_in_query())
            return d.evaluation_after(0, HANG_GROUP, stopped)
        # Without the timeout the first rule alone waits 2 minutes.
        group = wait_for(f"an evaluation of {HANG_GROUP} begun after the stop, every rule failed",
                         over_the_hung_store, rules * silence * 2 + 15, d.processes.values())
        for _ in range(3):  # while the Rulers keep asking
            time.sleep(silence)
            in_flight.append(d.in_flight_in_query())
        answers: list = []

        def ask_grafanas_query():
            asked = time.monotonic()
            answers.append(get_json(f"http://127.0.0.1:{d.port['query-http']}/api/v1/query", {
                "query": f'count(up{{job="{JOB}"}})', "dedup": "true", "partial_response": "true"}))
            answers.append(time.monotonic() - asked)
        grafana_asks = threading.Thread(target=ask_grafanas_query, daemon=True)
        grafana_asks.start()
        # Twice the Rulers' silence: where the rules' query has long been given up.
        grafana_asks.join(2 * silence)
        held = grafana_asks.is_alive()
        grafana_asks.join(DATA_PROXY_TIMEOUT_SECONDS)
    finally:
        os.kill(hung, signal.SIGCONT)
    assert len(answers) == 2, f"Grafana's query had no answer within Grafana's {DATA_PROXY_TIMEOUT_SECONDS} s"
    grafana, grafana_seconds = answers
    grafana_silence = d.store_silence(QUERY)
    times = [r["evaluationTime"] for r in group["rules"]]
    print(f"\n--store.response-timeout {silence:.0f} s; {HANG_GROUP} over the hung store: rules {times} s, "
          f"group {group['evaluationTime']:.2f} s; the Rulers' Query's queries in flight {in_flight}; "
          f"Grafana's Query (--store.response-timeout {grafana_silence:.0f} s): a partial-response query "
          f"answered in {grafana_seconds:.2f} s with warnings {grafana.get('warnings')}")
    assert all(silence - 0.5 < t < silence + 1 for t in times), (times, silence)
    assert group["evaluationTime"] < rules * (silence + 1), (group, silence)
    log = d.processes["thanos-rule-0"].log.read_text(errors="replace")
    assert f"failed to receive any data in {silence:.0f}s from" in log, d.processes["thanos-rule-0"].tail()
    assert max(in_flight) <= 2 * groups, (in_flight, groups)
    assert held, (grafana, grafana_seconds)  # not given up on the store at the rules' silence
    assert grafana["status"] == "success", grafana
    assert grafana_silence - 0.5 < grafana_seconds < grafana_silence + 2 < DATA_PROXY_TIMEOUT_SECONDS, grafana_seconds
    assert any(f"failed to receive any data in {grafana_silence:.0f}s" in w for w in grafana.get("warnings") or []), grafana
    # From the stores that answered: shard 0 whole and shard 1's other replica.
    assert float(grafana["data"]["result"][0]["value"][1]) == TARGETS, grafana
    d.wait_healthy(HANG_GROUP)


def test_a_query_that_hangs_holds_a_rule_for_the_rulers_deadline_only(deployment):
    """The Rulers' Query itself stopped (SIGSTOP): the kernel still takes the Ruler's connections,
    nothing answers, and no store timeout can act; without a client deadline the Ruler would wait
    for ever. Each rule query is given up after the Ruler's rendered wait for an answer."""
    d = deployment
    _, ruler_wait = d.ruler_deadline()
    rules = len(d.rule_group(0, HANG_GROUP)["rules"])
    d.wait_healthy(HANG_GROUP)
    hung = d.processes[PROCESS[RULE_QUERY]].popen.pid
    os.kill(hung, signal.SIGSTOP)
    stopped = time.time()
    try:
        group = wait_for(f"an evaluation of {HANG_GROUP} begun after the Rulers' Query stopped, every rule failed",
                         lambda: d.evaluation_after(0, HANG_GROUP, stopped), rules * ruler_wait * 2 + 15,
                         d.processes.values())
    finally:
        os.kill(hung, signal.SIGCONT)
    times = [r["evaluationTime"] for r in group["rules"]]
    print(f"\nthe Ruler's wait {ruler_wait:.0f} s; {HANG_GROUP} with Query stopped: rules {times} s")
    assert all(ruler_wait - 0.5 < t < ruler_wait + 1 for t in times), (times, ruler_wait)
    log = d.processes["thanos-rule-0"].log.read_text(errors="replace")
    assert "net/http: timeout awaiting response headers" in log, d.processes["thanos-rule-0"].tail()
    d.wait_healthy(HANG_GROUP)


def test_with_a_shard_wholly_down_the_rules_go_on_over_the_other(deployment):
    """A shard whose replicas are all gone is no partial response: Thanos Query drops its endpoints
    after their failed health checks and the rules (partial response abort) evaluate over the
    shards that answer; in the cluster the shard that watches it reports its Prometheus pods down."""
    d = deployment
    gone = "prometheus-shard-1"
    kept = d.shard_targets("prometheus-0")
    before = [evaluation_failures(d, replica) for replica in (0, 1)]  # the counter counts since the start
    for replica in (0, 1):
        d.stop(f"{gone}-{replica}-sidecar")
        d.stop(f"{gone}-{replica}")
    stopped = time.monotonic()
    remaining = sum(1 for health in kept.values() if health == "up")

    def evaluated_over_the_rest():
        recorded = d.query(RECORD)
        return recorded and float(recorded[0]["value"][1]) == remaining and recorded

    wait_for(f"{RECORD} over shard 0 alone ({remaining})", evaluated_over_the_rest, 60, d.processes.values())
    settled = time.monotonic() - stopped
    # Once settled, every evaluation succeeds: read each Ruler's rule health twice, a few rounds apart.
    for _ in range(2):
        time.sleep(3)
        for replica in (0, 1):
            answer = get_json(f"http://127.0.0.1:{d.port[f'thanos-rule-{replica}-http']}/api/v1/rules")
            rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
            assert rules and all(r["health"] == "ok" for r in rules), rules
    failures = [evaluation_failures(d, replica) - before[replica] for replica in (0, 1)]
    rules = sum(len(g["rules"]) for g in get_json(
        f"http://127.0.0.1:{d.port['thanos-rule-0-http']}/api/v1/rules")["data"]["groups"])
    print(f"the rules read shard 0 alone {settled:.1f} s after shard 1 stopped; failed evaluations meanwhile "
          f"({rules} rules): {failures}")


def test_verify_names_a_shard_thanos_query_reaches_no_prometheus_of(deployment):
    """With shard 1's pair gone (the test before), Query's targets answer lists shard 0's share and
    no warning: the shard check is what says that shard 1's targets went unchecked."""
    d = deployment
    results = wait_for("verify to miss shard 1", lambda: (r := d.verify()) and
                       r["prometheus.shards"]["status"] == "FAIL" and r, 30, d.processes.values())
    shards = results["prometheus.shards"]
    print(f"\n{shards['summary']}")
    assert shards["summary"].endswith("1 of 2 scrape shards: none of shard 1"), shards
    assert [line for line in shards["details"] if line.startswith("shard 0: ")], shards
    assert not [line for line in shards["details"] if line.startswith("shard 1: ") and "failing" not in line], shards


def test_with_every_shard_down_the_rules_still_evaluate_and_only_prometheus_none_up_says_so(deployment):
    """Query answers an empty result, not an error, once it reaches no shard: the rules keep
    evaluating without a failure and every alert over the fleet is quiet; PrometheusNoneUp fires."""
    d = deployment
    for replica in (0, 1):
        assert not d.ruler_alerts(replica, "PrometheusNoneUp"), "fired while a shard was up"
    for replica in (0, 1):
        d.stop(f"prometheus-{replica}-sidecar")
        d.stop(f"prometheus-{replica}")
    for replica in (0, 1):
        wait_for(f"PrometheusNoneUp firing in thanos-rule-{replica}",
                 lambda: [a for a in d.ruler_alerts(replica, "PrometheusNoneUp") if a["state"] == "firing"],
                 60, d.processes.values())
    assert d.query(f'up{{job="{JOB}"}}') == []
    # Each group evaluates at its own offset in the interval: one may still show the round before
    # Query dropped the stopped sidecars when PrometheusNoneUp's has fired.
    def every_rule_ok():
        answer = get_json(f"http://127.0.0.1:{d.port['thanos-rule-0-http']}/api/v1/rules")
        return all(r["health"] == "ok" for g in answer["data"]["groups"] for r in g["rules"])
    wait_for("every rule of thanos-rule-0 evaluated without a failure", every_rule_ok, 10, d.processes.values())


def evaluation_failures(d: Deployment, replica: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{d.port[f'thanos-rule-{replica}-http']}/metrics", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("prometheus_rule_evaluation_failures_total"))
