"""The post-deploy verification command (tools/verify/) against real processes on loopback.

Real binaries (prometheus and alertmanager, built at the images' versions; amtool for the routing cross-check),
each on a free 127.0.0.1 port with its own temp dir, killed at teardown even when a test fails:

- a 2-node Alertmanager gossip cluster running prod's generated alertmanager.yml (receiver URLs,
  the DingTalk relay and the Slack URL file pointed at a local capture server; e-mail off because
  there is no SMTP server here; timings shortened through the stack settings);
- a Prometheus with prod's generated rule files and a minimal hand-made prometheus.yml (Debian's
  Prometheus has no Kubernetes discovery, so the generated scrape jobs cannot run here): it
  scrapes itself and both Alertmanagers and alerts to both;
- a fake Grafana (there is no Grafana binary) serving /api/health and the datasource health API,
  which asks the real Prometheus and proxies to the real Alertmanager.

Every wait is bounded; the whole module takes about 20 s.
"""

from __future__ import annotations

import base64
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from tools import offline
from tools import verify
from components.configs import alertmanager as am_config
from components.configs import grafana as grafana_config
from components.settings import PROJECT
from tests.conftest import ROOT, require_tool
from tests.e2e.harness import http_get, wait_until
from tests.ports import free_port

FAST = {"groupWait": "1s", "groupInterval": "2s", "repeatInterval": "1h"}
PASSWORD = offline.GENERATED_SECRET  # what the offline run outputs as grafanaAdminPassword
RECEIVER_PATHS = {"alertmanagerWebhookUrl": "/default", "slackApiUrl": "/slack", "heartbeatUrl": "/heartbeat",
                  "escalationWebhookUrl": "/escalation"}


# --------------------------------------------------------------------------- helpers

def closed_port() -> int:
    """A port nothing listens on (reserved, never bound: connections are refused)."""
    return free_port()


class Process:
    """One real binary in its own session, its output in a log file; stop() ends only it."""

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name, self.argv = name, argv
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def wait_ready(self, url: str, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            return http_get(url, timeout=1)[0] == 200
        wait_until(ready, timeout, interval=0.2, what=f"{self.name} at {url}")


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.workdir, self.all = workdir, []

    def start(self, name: str, argv: list[str]) -> Process:
        proc = Process(name, argv, self.workdir)
        self.all.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.all):
            proc.stop()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Listener(ThreadingHTTPServer):
    # Alertmanager opens a connection per notification, a burst of them at once; with the default
    # backlog of 5 a loaded machine resets some, which real receivers never do.
    request_queue_size = 128


class Server:
    """A ThreadingHTTPServer on a free loopback port, serving from a daemon thread."""

    def __init__(self, handler: type) -> None:
        self.httpd = _Listener(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class Capture(Server):
    """Records every POST body by path: the notification sink of every receiver."""

    class Handler(_Quiet):
        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1 << 20))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            with self.server.owner.lock:
                self.server.owner.posts.append((self.path, body))
            self.reply(200, {"ok": True})

    def __init__(self) -> None:
        self.lock, self.posts = threading.Lock(), []
        super().__init__(self.Handler)

    def received(self) -> list[tuple[str, Any]]:
        with self.lock:
            return list(self.posts)


class FakeGrafana(Server):
    """Grafana's /api/health and datasource health API, backed by the real Prometheus and Alertmanager.

    Like Grafana 10/11: the Prometheus datasource has a backend health check; the Alertmanager one is a
    frontend-only plugin whose /health answers 500 "Plugin unavailable", tested through the proxy.
    """

    class Handler(_Quiet):
        def do_GET(self) -> None:  # noqa: N802
            fake: FakeGrafana = self.server.owner
            if self.path == "/api/health":
                return self.reply(200, {"commit": "fake", "database": "ok", "version": "11.1.0"})
            expected = "Basic " + base64.b64encode(f"admin:{fake.password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self.reply(401, {"message": "Invalid username or password"})
            if self.path == "/api/datasources/uid/prometheus/health":
                if fake.prometheus_down:
                    return self.reply(400, {"status": "ERROR", "message": "Post \"http://prometheus.monitoring.svc:"
                                                                         "9090/api/v1/query\": dial tcp: no such host"})
                status, _ = http_get(fake.prometheus_url + "/api/v1/status/buildinfo")
                return self.reply(200 if status == 200 else 400,
                                  {"status": "OK" if status == 200 else "ERROR",
                                   "message": "Successfully queried the Prometheus API."})
            if self.path == "/api/datasources/uid/alertmanager/health":
                return self.reply(500, {"message": "Plugin unavailable", "messageId": "plugin.unavailable",
                                        "statusCode": 500})
            if self.path == "/api/datasources/proxy/uid/alertmanager/api/v2/status":
                status, body = http_get(fake.alertmanager_url + "/api/v2/status")
                return self.reply(status, body)
            return self.reply(404, {"message": "Not found"})

    def __init__(self, prometheus_url: str, alertmanager_url: str, password: str = PASSWORD) -> None:
        self.prometheus_url, self.alertmanager_url, self.password = prometheus_url, alertmanager_url, password
        self.prometheus_down = False
        super().__init__(self.Handler)


class FakeJson(Server):
    """Answers GET paths from a dict {path: (status, body)}: Elasticsearch and Jaeger stand-ins."""

    class Handler(_Quiet):
        def do_GET(self) -> None:  # noqa: N802
            routes = self.server.owner.routes
            path = self.path.split("?")[0]
            status, body = routes.get(path, (404, {"error": "not found"}))
            self.reply(status, body)

    def __init__(self, routes: dict[str, tuple[int, Any]]) -> None:
        self.routes = routes
        super().__init__(self.Handler)


def run_verify(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = verify.main(list(args), out=out)
    return code, out.getvalue()


def lines(output: str, status: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(status + "  ")]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("verify")


@pytest.fixture(scope="module")
def capture():
    server = Capture()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def generated(capture) -> offline.RunResult:
    """prod as the program renders it, with fast timings, e-mail off and receivers on the capture server."""
    config, secret_keys = offline.stack_config("prod", {"alerting": {
        "email": {"enabled": False}, **{sev: dict(FAST) for sev in ("critical", "warning", "info")}}})
    for key, path in RECEIVER_PATHS.items():
        config[f"{PROJECT}:{key}"] = capture.url(path)
    return offline.run("prod", config=config, secret_keys=secret_keys)


def write_alertmanager_config(generated: offline.RunResult, capture: Capture, directory: Path,
                              credentials: Optional[dict[str, str]] = None) -> Path:
    """The generated alertmanager.yml with in-pod paths and the in-cluster DingTalk relay made local;
    ``credentials`` replaces the content of some credential files (e.g. a receiver URL)."""
    directory.mkdir(parents=True, exist_ok=True)
    templates, credentials_dir = directory / "templates", directory / "credentials"
    templates.mkdir(exist_ok=True)
    credentials_dir.mkdir(exist_ok=True)
    for name, text in am_config.templates().items():
        (templates / name).write_text(text)
    files = dict(generated.one("Secret", "alertmanager-credentials")["stringData"])
    assert set(credentials or {}) <= set(files), f"no such credential file: {sorted(set(credentials) - set(files))}"
    for name, text in {**files, **(credentials or {})}.items():
        (credentials_dir / name).write_text(text)
    text = generated.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"]
    text = text.replace(am_config.TEMPLATES_DIR, str(templates)).replace(am_config.CREDENTIALS_DIR,
                                                                         str(credentials_dir))
    text, relays = re.subn(r"http://dingtalk-relay\.[a-z0-9.-]+:\d+", capture.url(""), text)
    assert relays, "prod's critical receivers should notify the DingTalk relay"
    path = directory / "alertmanager.yml"
    path.write_text(text)
    return path


def start_alertmanager(procs: Processes, name: str, config: Path, mesh: list[int], own: Optional[int]) -> str:
    port = free_port()
    data = procs.workdir / f"{name}-data"
    data.mkdir()
    argv = [require_tool("alertmanager"), f"--config.file={config}", f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}/"]
    if own is None:
        argv.append("--cluster.listen-address=")
    else:
        argv += [f"--cluster.listen-address=127.0.0.1:{own}", f"--cluster.advertise-address=127.0.0.1:{own}",
                 "--cluster.peer-timeout=1s", "--cluster.gossip-interval=50ms", "--cluster.pushpull-interval=2s"]
        argv += [f"--cluster.peer=127.0.0.1:{p}" for p in mesh if p != own]
    procs.start(name, argv).wait_ready(f"http://127.0.0.1:{port}/-/ready")
    return f"http://127.0.0.1:{port}"


def write_prometheus_config(directory: Path, generated: offline.RunResult, *, prometheus_port: int,
                            alertmanagers: list[str], extra_jobs: list[dict] = ()) -> Path:
    rules = directory / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    for name, text in generated.one("ConfigMap", "prometheus-rules")["data"].items():
        (rules / name).write_text(text)
    document = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s",
                   "external_labels": {"environment": "prod"}},
        "rule_files": [str(rules / "*.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prometheus_port}"]}]},
            {"job_name": "alertmanager", "static_configs": [{"targets": alertmanagers}]},
            *extra_jobs,
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def start_prometheus(procs: Processes, name: str, generated: offline.RunResult, alertmanagers: list[str],
                     extra_jobs: list[dict] = ()) -> str:
    port = free_port()
    directory = procs.workdir / name
    config = write_prometheus_config(directory, generated, prometheus_port=port, alertmanagers=alertmanagers,
                                     extra_jobs=extra_jobs)
    procs.start(name, [require_tool("prometheus"), f"--config.file={config}",
                       f"--storage.tsdb.path={directory / 'data'}",
                       f"--web.listen-address=127.0.0.1:{port}"]).wait_ready(f"http://127.0.0.1:{port}/-/ready")
    return f"http://127.0.0.1:{port}"


def api(url: str) -> Any:
    status, body = http_get(url)
    assert status == 200, (url, status, body[:200])
    return json.loads(body)


class Stack:
    """The running system of the module: what the verification is pointed at."""

    prometheus: str
    alertmanagers: list[str]
    grafana: FakeGrafana
    outputs_file: Path
    procs: Processes
    am_yml: Path  # the cluster's alertmanager.yml


@pytest.fixture(scope="module")
def stack(workdir, capture, generated):
    procs = Processes(workdir)
    grafana = None
    try:
        am_yml = write_alertmanager_config(generated, capture, workdir / "alertmanager")
        mesh = [free_port(udp=True), free_port(udp=True)]
        ams = [start_alertmanager(procs, f"alertmanager-{i}", am_yml, mesh, mesh[i]) for i in range(2)]
        prometheus = start_prometheus(procs, "prometheus", generated, [a.split("//")[1] for a in ams])
        grafana = FakeGrafana(prometheus, ams[0])

        wait_until(lambda: all(api(f"{a}/api/v2/status")["cluster"]["status"] == "ready"
                               and len(api(f"{a}/api/v2/status")["cluster"]["peers"]) == 2 for a in ams),
                   30, what="the Alertmanager cluster to form")
        targets = lambda: api(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]  # noqa: E731
        wait_until(lambda: len(targets()) == 3 and all(t["health"] == "up" for t in targets()), 30,
                   what="Prometheus to scrape its 3 targets")
        wait_until(lambda: len(api(f"{prometheus}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]) == 2, 30,
                   what="Prometheus to discover both Alertmanagers")
        wait_until(lambda: any(a["labels"]["alertname"] == "Watchdog" and a["state"] == "firing"
                               for a in api(f"{prometheus}/api/v1/alerts")["data"]["alerts"]), 30, what="the Watchdog")

        outputs_file = workdir / "outputs.json"
        # prod's real outputs: in-cluster URLs, password; minus the logging stack and tracing, which are
        # not started here (their checks run against stand-ins in test_optional_logging_and_tracing_checks).
        outputs_file.write_text(json.dumps({k: v for k, v in generated.outputs.items()
                                            if not k.startswith(("elasticsearch", "kibana", "jaeger", "otlp"))}))
        s = Stack()
        s.prometheus, s.alertmanagers, s.grafana, s.outputs_file, s.procs = (
            prometheus, ams, grafana, outputs_file, procs)
        s.am_yml = am_yml
        yield s
    except BaseException:
        for proc in procs.all:
            sys.stderr.write(f"--- {proc.name} ---\n{proc.tail()}\n")
        raise
    finally:
        if grafana:
            grafana.stop()
        procs.stop()


def local_urls(stack: Stack, alertmanager: Optional[str] = None) -> list[str]:
    return ["--outputs", str(stack.outputs_file), "--prometheus-url", stack.prometheus,
            "--alertmanager-url", alertmanager or stack.alertmanagers[0], "--grafana-url", stack.grafana.url()]


# --------------------------------------------------------------------------- the live system

def test_healthy_stack_passes_and_every_receiver_gets_a_test_alert(stack, capture):
    before = len(capture.received())
    code, output = run_verify("--stack", "prod", *local_urls(stack), "--delivery-timeout", "30")
    print(output)  # the report an operator reads (pytest -s shows it)
    failed_attempts = "\n".join(line for proc in stack.procs.all if proc.name.startswith("alertmanager")
                                for line in proc.log.read_text().splitlines() if "Notify attempt failed" in line)
    assert code == 0, f"{output}\nAlertmanager's failed attempts:\n{failed_attempts}"
    assert not lines(output, "FAIL"), output
    checks = {line.split()[1] for line in lines(output, "PASS")}
    assert {"prometheus.ready", "prometheus.targets", "prometheus.rules", "prometheus.alerting-rules",
            "prometheus.watchdog", "prometheus.alertmanagers", "alertmanager.ready", "alertmanager.cluster",
            "alertmanager.receivers", "alertmanager.delivery.routing", "alertmanager.delivery[webhook]",
            "alertmanager.delivery[slack]", "alertmanager.delivery.resolve", "grafana.health",
            "grafana.datasource.prometheus", "grafana.datasource.alertmanager"} <= checks, output
    # Expected replicas come from Prometheus' Alertmanager targets (2), not Pulumi.prod.yaml (3).
    assert "2 peer(s) of 2 expected (the Alertmanager targets in Prometheus' configuration)" in output
    assert "3/3 active targets up" in output
    assert "the plugin has no health endpoint" in output  # Alertmanager datasource tested through the proxy
    assert re.search(r"SKIP  elasticsearch\.url .*no elasticsearchExternalUrl or elasticsearchUrl output", output)
    assert re.search(r"SKIP  jaeger\.url .*no jaegerExternalUrl or jaegerUrl output", output)
    assert PASSWORD not in output

    # The capture server got the test alert of every receiver with a webhook or Slack integration.
    run_id = re.search(r"verification_id=([0-9a-f-]{36})", output).group(1)
    tested = set()
    for path, body in capture.received()[before:]:
        if isinstance(body, dict) and "alerts" in body:  # webhook payloads name the receiver
            if any(a["labels"].get("verification_id") == run_id for a in body["alerts"]):
                tested.add((path, body["receiver"]))
    receivers = {r["name"] for r in yaml.safe_load(stack.am_yml.read_text())["receivers"]}
    assert {name for _, name in tested} == receivers, tested
    assert any(path == "/heartbeat" for path, _ in tested) and any(path == "/escalation" for path, _ in tested)
    slack = [b for p, b in capture.received()[before:] if p == "/slack" and run_id[:8] in json.dumps(b)]
    assert slack, "the Slack integration should have posted the test alerts"

    # Resolved: no test alert of this run is still active in Alertmanager.
    active = api(f"{stack.alertmanagers[0]}/api/v2/alerts?active=true&filter=verification_id%3D%22{run_id}%22")
    assert not [a for a in active if a["status"]["state"] == "active"
                and a["endsAt"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())], active


def test_alertmanager_cluster_missing_a_replica_fails(stack):
    code, output = run_verify(*local_urls(stack), "--alertmanager-replicas", "3",
                              "--only", "alertmanager.cluster", "--only", "prometheus.alertmanagers")
    assert code == 1, output
    assert re.search(r"^FAIL  alertmanager\.cluster .*cluster incomplete: cluster ready, 2 peer\(s\) of 3 expected",
                     output, re.M), output
    assert re.search(r"^FAIL  prometheus\.alertmanagers .*connected to 2 Alertmanager\(s\), expected 3", output,
                     re.M), output
    assert "AlertmanagerClusterMembersMissing.md" in output


def test_failing_target_is_named(stack, generated):
    port = closed_port()
    procs = Processes(stack.procs.workdir)
    try:
        prometheus = start_prometheus(procs, "prometheus-broken-target", generated,
                                      [a.split("//")[1] for a in stack.alertmanagers],
                                      [{"job_name": "football-api",
                                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}])
        wait_until(lambda: any(t["health"] == "down"
                               for t in api(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]),
                   30, what="the closed-port target to be scraped")
        code, output = run_verify("--outputs", str(stack.outputs_file), "--prometheus-url", prometheus,
                                  "--only", "prometheus.targets")
    finally:
        procs.stop()
    assert code == 1, output
    fail = lines(output, "FAIL")
    assert fail and fail[0].split()[1] == "prometheus.targets", output
    assert re.search(rf"down: job=football-api instance=127\.0\.0\.1:{port}: .*connection refused", output), output
    assert "what to do:" in output and "TargetDown.md" in output


def test_unreachable_receiver_fails_with_its_integration(stack, generated, capture, workdir):
    port = closed_port()
    am_yml = write_alertmanager_config(generated, capture, workdir / "alertmanager-broken",
                                       credentials={"escalation-url": f"http://127.0.0.1:{port}/escalation"})
    procs = Processes(workdir)
    try:
        alertmanager = start_alertmanager(procs, "alertmanager-broken", am_yml, [], None)
        code, output = run_verify("--outputs", str(stack.outputs_file), "--alertmanager-url", alertmanager,
                                  "--alertmanager-replicas", "1", "--only", "alertmanager", "--delivery-timeout", "20")
        # The metrics name the failing receiver, and so does its log line.
        log = procs.all[0].log.read_text()
    finally:
        procs.stop()
    assert code == 1, output
    assert re.search(r"^FAIL  alertmanager\.delivery\[webhook\] .*webhook unreachable: .*[1-9]\d* failed attempts.*"
                     r"escalation", output, re.M), output
    assert re.search(r"^PASS  alertmanager\.delivery\[slack\]", output, re.M), output
    assert re.search(r"^PASS  alertmanager\.delivery\.resolve", output, re.M), output
    assert "grep 'Notify attempt failed'" in output
    # One log line names the failing receiver and integration (field order differs between releases).
    assert any('msg="Notify attempt failed' in line and "receiver=escalation" in line
               and "integration=webhook[0]" in line for line in log.splitlines()), log[-2000:]


def test_grafana_wrong_password_and_unhealthy_datasource(stack, workdir):
    outputs = json.loads(stack.outputs_file.read_text())
    outputs["grafanaAdminPassword"] = "not-the-password-Zq81"
    wrong = workdir / "outputs-wrong-password.json"
    wrong.write_text(json.dumps(outputs))
    code, output = run_verify("--outputs", str(wrong), "--grafana-url", stack.grafana.url(), "--only", "grafana")
    assert code == 1, output
    assert re.search(r"^FAIL  grafana\.datasource\.prometheus .*refused the admin credentials \(HTTP 401\)", output,
                     re.M), output
    assert "not-the-password-Zq81" not in output

    stack.grafana.prometheus_down = True
    try:
        code, output = run_verify("--outputs", str(stack.outputs_file), "--grafana-url", stack.grafana.url(),
                                  "--only", "grafana")
    finally:
        stack.grafana.prometheus_down = False
    assert code == 1, output
    assert re.search(r"^FAIL  grafana\.datasource\.prometheus .*unhealthy \(HTTP 400\): .*no such host", output, re.M)
    assert re.search(r"^PASS  grafana\.datasource\.alertmanager ", output, re.M), output


# --------------------------------------------------------------------------- no processes needed

@pytest.fixture(scope="module")
def operator_outputs(generated, tmp_path_factory) -> dict:
    """prod's outputs as `pulumi stack output --json` gives them: the mock runtime's placeholder CA
    replaced by a real certificate, as pulumi-tls issues one."""
    ca, _, _ = _stack_ca(tmp_path_factory.mktemp("ca"))
    return {**generated.outputs, "elasticsearchCaCertificate": ca.read_text()}


def test_in_cluster_urls_print_port_forward_commands(operator_outputs, tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(operator_outputs))
    out = io.StringIO()
    code = verify.main(["--outputs", str(outputs), "--only", "prometheus", "--only", "alertmanager"], out=out,
                       resolver=lambda host: False)
    output = out.getvalue()
    assert code == 1, output
    assert "kubectl --namespace monitoring port-forward svc/prometheus 9090:9090" in output
    assert "--prometheus-url http://127.0.0.1:9090" in output
    assert "kubectl --namespace monitoring port-forward svc/alertmanager 9093:9093" in output
    assert re.search(r"^SKIP  prometheus\.targets .*no URL for prometheus", output, re.M)


def test_command_line_entry_point(operator_outputs, tmp_path):
    """python -m tools.verify, as an operator runs it (the real resolver: *.svc does not resolve here)."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(operator_outputs))
    done = subprocess.run([sys.executable, "-m", "tools.verify", "--outputs", str(outputs), "--only",
                           "prometheus.ready", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["exit"] == 1
    assert document["results"][0]["check"] == "prometheus.url"
    assert "port-forward svc/prometheus 9090:9090" in document["results"][0]["action"]


def test_outputs_without_pulumi_cli(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, output = run_verify("--stack", "prod")
    assert code == 2
    assert "pulumi CLI is not installed" in output and "--outputs" in output


def test_grafana_datasource_uids_match_provisioning():
    assert dict(verify.GRAFANA_DATASOURCES) == {grafana_config.PROMETHEUS_UID: "prometheus",
                                                grafana_config.ALERTMANAGER_UID: "alertmanager"}


def test_route_walk_agrees_with_amtool(generated, capture, tmp_path):
    """For every receiver of prod, the labels found in Python reach exactly the receivers amtool says."""
    config = write_alertmanager_config(generated, capture, tmp_path)
    document = yaml.safe_load(config.read_text())
    root = verify.build_route(document["route"])
    base = {"alertname": verify.TEST_ALERTNAME, "environment": "prod"}
    checked = 0
    for receiver in document["receivers"]:
        if not verify.receiver_integrations(receiver):
            continue
        labels, reaches = verify.labels_for_receiver(root, receiver["name"], base)
        argv = [require_tool("amtool"), "config", "routes", "test", f"--config.file={config}"]
        done = subprocess.run(argv + [f"{k}={v}" for k, v in sorted(labels.items())], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        amtool = [r.strip() for r in done.stdout.strip().split(",") if r.strip()]
        assert receiver["name"] in amtool and sorted(amtool) == sorted(reaches), (receiver["name"], labels, amtool)
        checked += 1
    assert checked == 11  # default, heartbeat, escalation, 4 teams x critical and warning
    team = verify.labels_for_receiver(root, "backend-critical", base)[0]
    assert team["severity"] == "critical" and team["team"] == "backend"
    assert verify.labels_for_receiver(root, "heartbeat", base)[0]["alertname"] == "Watchdog"
    assert "severity" not in verify.labels_for_receiver(root, "default-webhook", base)[0]


def test_matcher_syntax():
    parse = verify.parse_matchers
    assert parse('severity="critical"') == [verify.Matcher("severity", "=", "critical")]
    assert parse('{team=~"a|b", env!="dev"}') == [verify.Matcher("team", "=~", "a|b"),
                                                  verify.Matcher("env", "!=", "dev")]
    assert parse('x!~"a\\"b"') == [verify.Matcher("x", "!~", 'a"b')]
    assert parse("team = backend") == [verify.Matcher("team", "=", "backend")]
    assert verify.Matcher("team", "=~", "a|b").matches({"team": "b"})
    assert not verify.Matcher("team", "=~", "a|b").matches({"team": "ab"})  # anchored like Alertmanager
    assert verify.Matcher("team", "!=", "a").matches({})
    root = verify.build_route({"receiver": "r0", "group_by": ["alertname"], "routes": [
        {"receiver": "r1", "match_re": {"severity": "critical|page"}, "continue": True},
        {"receiver": "r2", "matchers": ['team=~"db|data"', 'severity!="info"']},
    ]})
    labels, reaches = verify.labels_for_receiver(root, "r2", {"alertname": "x"})
    assert labels["team"] == "db" and reaches == ["r2"]
    labels, reaches = verify.labels_for_receiver(root, "r1", {"alertname": "x"})
    assert labels["severity"] == "critical" and reaches == ["r1"]
    assert root.routes[0].group_wait == 30 and root.routes[1].group_by == ["alertname"]


def test_optional_logging_and_tracing_checks(tmp_path):
    """Against stand-ins answering like the documented APIs; no real Elasticsearch or Jaeger here."""
    es = FakeJson({"/_cluster/health": (200, {"cluster_name": "logs", "status": "yellow", "number_of_nodes": 1,
                                              "active_shards_percent_as_number": 50.0, "unassigned_shards": 5})})
    jaeger = FakeJson({"/api/services": (200, {"data": ["football-api", "football-worker"], "total": 2}),
                       "/api/traces": (200, {"data": [{"traceID": "abc", "spans": []}]})})
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"environment": "prod", "elasticsearchUrl": es.url(),
                                   "jaegerUrl": jaeger.url()}))
    try:
        code, output = run_verify("--outputs", str(outputs), "--only", "elasticsearch", "--only", "jaeger")
        assert code == 0, output  # yellow is a warning
        assert re.search(r"^WARN  elasticsearch\.health .*cluster logs yellow: 1 nodes", output, re.M), output
        assert re.search(r"^PASS  jaeger\.traces .*2 services have sent traces", output, re.M), output

        es.routes["/_cluster/health"] = (200, {"cluster_name": "logs", "status": "red"})
        jaeger.routes["/api/services"] = (200, {"data": [], "total": 0})
        code, output = run_verify("--outputs", str(outputs), "--only", "elasticsearch", "--only", "jaeger")
        assert code == 1
        assert re.search(r"^FAIL  elasticsearch\.health .*red", output, re.M), output
        assert re.search(r"^FAIL  jaeger\.traces .*no trace has arrived", output, re.M), output

        es.routes["/_cluster/health"] = (200, {"cluster_name": "logs", "status": "green"})
        code, output = run_verify("--outputs", str(outputs), "--only", "elasticsearch")
        assert code == 0 and re.search(r"^PASS  elasticsearch\.health .*green", output, re.M), output
    finally:
        es.stop()
        jaeger.stop()


def test_notification_metrics_parsing():
    text = ('# HELP x\nalertmanager_notifications_total{integration="webhook"} 3\n'
            'alertmanager_notification_requests_total{integration="webhook"} 5\n'
            'alertmanager_notification_requests_failed_total{integration="webhook"} 2\n'
            'alertmanager_notifications_failed_total{code="5xx",integration="webhook"} 1\n'
            'alertmanager_notifications_failed_total{code="4xx",integration="webhook"} 0\n')
    before = verify.Counters.parse(text.replace(" 3\n", " 0\n").replace(" 5\n", " 0\n").replace(" 2\n", " 0\n")
                                   .replace(" 1\n", " 0\n"))
    now = verify.Counters.parse(text)
    [outcome] = verify.measure(before, now, {(None, "webhook"): 3})
    assert (outcome.attempted, outcome.delivered, outcome.failed) == (3, 3, 3) and not outcome.ok
    per_receiver = verify.Counters.parse('alertmanager_notifications_total{integration="slack",receiver_name="a"} 1\n')
    assert per_receiver.per_receiver and per_receiver.values["alertmanager_notifications_total"][("a", "slack")] == 1


def _stack_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost and 127.0.0.1, like the logging stack's own (openssl)."""
    openssl = require_tool("openssl")

    def run(*args: str) -> None:
        proc = subprocess.run([openssl, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert proc.returncode == 0, proc.stderr

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=football-monitoring logging CA (test)")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "http.key", "-out", "http.csr", "-subj", "/CN=elasticsearch")
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:localhost,DNS:elasticsearch,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "http.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "http.crt",
        "-days", "2", "-extfile", "san.ext")
    return tmp_path / "ca.crt", tmp_path / "http.crt", tmp_path / "http.key"


def test_elasticsearch_is_trusted_through_the_stacks_own_ca(tmp_path):
    """The published (Docker) or port-forwarded Elasticsearch answers with a certificate of the stack's
    CA; verify trusts it from the elasticsearchCaCertificate output, and nothing else does."""
    import ssl
    ca, cert, key = _stack_ca(tmp_path)
    es = FakeJson({"/_cluster/health": (200, {"cluster_name": "logs", "status": "green", "number_of_nodes": 1,
                                              "active_shards_percent_as_number": 100.0, "unassigned_shards": 0})})
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    es.httpd.socket = server_tls.wrap_socket(es.httpd.socket, server_side=True)
    outputs = tmp_path / "outputs.json"
    stack = {"environment": "dev", "elasticsearchUrl": "https://elasticsearch:9200",
             "elasticsearchExternalUrl": f"https://localhost:{es.port}"}
    try:
        outputs.write_text(json.dumps({**stack, "elasticsearchCaCertificate": ca.read_text()}))
        code, output = run_verify("--outputs", str(outputs), "--only", "elasticsearch")
        assert code == 0 and re.search(r"^PASS  elasticsearch\.health .*green", output, re.M), output

        outputs.write_text(json.dumps(stack))  # without the CA the certificate is not trusted
        code, output = run_verify("--outputs", str(outputs), "--only", "elasticsearch")
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in output, output
    finally:
        es.stop()
    outputs.write_text(json.dumps({**stack, "elasticsearchCaCertificate": "not a certificate"}))
    code, output = run_verify("--outputs", str(outputs), "--only", "elasticsearch")
    assert code == 2 and "elasticsearchCaCertificate is not a PEM certificate" in output


def test_the_checkout_rule_count_leaves_out_each_optional_part_and_the_slos():
    """What a stack deploys of this checkout: an optional part switched off (components/data.py
    OPTIONAL_PARTS) loads none of its rule file's alerts, slo.enabled false none of the SLOs'."""
    from components import data
    from tools.verify.prometheus import checkout_alerting_rules
    full = checkout_alerting_rules()
    for part, (rules, _) in data.OPTIONAL_PARTS.items():
        alerts = sum(1 for g in yaml.safe_load((ROOT / "rules" / rules).read_text())["groups"]
                     for r in g["rules"] if "alert" in r)
        assert alerts and checkout_alerting_rules(parts_off=[part]) == full - alerts, part
    assert checkout_alerting_rules(slos_dir=None) < full
    assert checkout_alerting_rules(slos_dir=None, parts_off=list(data.OPTIONAL_PARTS)) < \
        checkout_alerting_rules(slos_dir=None)


def test_a_sharded_stack_has_its_rules_checked_in_thanos_ruler(stack, workdir):
    """With scrape shards the rules run in Thanos Ruler (thanosRuleUrl): the pinned Ruler, started
    with the rendered command line of prod with two shards (addresses and paths on loopback, its
    query endpoint this module's Prometheus, its Alertmanager this module's), holds the rules the
    checks read, and Watchdog fires there. The checks read the Ruler, not this module's Prometheus
    (which has rules of its own): pointed at a closed port instead, they fail."""
    from tests.test_thanos_e2e import set_flags
    from tests.test_thanos_rule_e2e import query_config_here, without_repeated
    sharded = offline.run("prod", {"prometheus": {"shards": 2}})
    rule = sharded.one("StatefulSet", "thanos-rule")
    [container] = [c for c in rule["spec"]["template"]["spec"]["containers"] if c["name"] == "thanos-rule"]
    args, _ = without_repeated(container["args"], "--alertmanagers.url")
    base = workdir / "thanos-rule"
    (base / "rules").mkdir(parents=True)
    for name, text in sharded.one("ConfigMap", "thanos-rule-rules")["data"].items():
        (base / "rules" / name).write_text(text)
    (base / "bucket").mkdir()
    (base / "objstore.yml").write_text(yaml.safe_dump({"type": "FILESYSTEM", "config": {"directory": str(base / "bucket")}}))
    http, grpc = free_port(), free_port()
    argv = set_flags(args, {"--http-address": f"127.0.0.1:{http}", "--grpc-address": f"127.0.0.1:{grpc}",
                            "--data-dir": str(base / "data"), "--rule-file": f"{base / 'rules'}/*.yaml",
                            "--query.config-file": query_config_here(sharded, base / "query.yaml",
                                                                     stack.prometheus.split("//")[1]),
                            "--objstore.config-file": str(base / "objstore.yml"),
                            "--eval-interval": "2s"})
    argv = [a.replace("$(POD_NAME)", "thanos-rule-0") for a in argv]
    argv.append(f"--alertmanagers.url={stack.alertmanagers[0]}")
    ruler = f"http://127.0.0.1:{http}"
    process = stack.procs.start("thanos-rule", [require_tool("thanos"), *argv])
    try:
        process.wait_ready(f"{ruler}/-/ready")
        rulers_checks(stack, ruler)
    finally:
        process.stop()  # its 230 rules every 2 s would load the rest of the run


def test_a_sharded_stack_without_thanos_query_fails_the_target_check_with_the_port_forward(stack, tmp_path):
    """On a sharded stack (the prometheusShards output) the targets are read through Thanos Query:
    shard 0's Prometheus, reachable here, holds a share of them, so its answer must not pass. From a
    workstation the thanosQueryUrl output is an in-cluster address: the check fails with the
    port-forward to run, and the shard count is read from the output, not guessed."""
    from tools.verify import prometheus as verify_prometheus
    from components.configs.prometheus import SHARD_LABEL
    assert verify_prometheus.SHARD_LABEL == SHARD_LABEL
    sharded = offline.run("prod", {"prometheus": {"shards": 2}})
    assert sharded.outputs["prometheusShards"] == 2
    assert "prometheusShards" not in offline.run("prod").outputs
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({k: v for k, v in sharded.outputs.items() if k != "elasticsearchCaCertificate"}))
    out = io.StringIO()
    code = verify.main(["--outputs", str(outputs), "--prometheus-url", stack.prometheus, "--only", "prometheus.targets"],
                       out=out, resolver=lambda host: host == "127.0.0.1")
    output = out.getvalue()
    assert code == 1, output
    [line] = lines(output, "FAIL")
    assert "prometheus.targets" in line and "2 scrape shards" in line and "through Thanos Query" in line, output
    assert "kubectl --namespace monitoring port-forward svc/thanos-query 10902:10902" in output
    assert "--thanos-query-url http://127.0.0.1:10902" in output
    assert not lines(output, "PASS"), output


def rulers_checks(stack, ruler: str) -> None:
    checks = ("prometheus.rules", "prometheus.alerting-rules", "prometheus.watchdog")
    only = [arg for name in checks for arg in ("--only", name)]
    # Each rule is one query over HTTP: the first round of the 230 rules takes seconds.
    deadline = time.monotonic() + 60
    while True:
        code, output = run_verify("--stack", "prod", *local_urls(stack), "--rules-url", ruler, *only)
        if (code == 0 and len(lines(output, "PASS")) == len(checks)) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert code == 0, output
    assert {line.split()[1] for line in lines(output, "PASS")} == set(checks), output
    assert "(in Thanos Ruler: the stack has scrape shards)" in output
    # The same checks against the Ruler's address with nothing there fail: they read it, not Prometheus.
    code, output = run_verify("--stack", "prod", *local_urls(stack), "--rules-url", f"http://127.0.0.1:{free_port()}", *only)
    assert code != 0 and lines(output, "FAIL"), output
