"""The whole alerting pipeline on loopback, from the configs the Pulumi program generates.

``Pipeline`` runs, with real binaries and on 127.0.0.1 ports chosen at run time:

- two fake FootballPrediction workloads (``fake_app.FakeApp``: the API and a worker);
- node_exporter and blackbox_exporter (the generated blackbox.yml);
- N Prometheus replicas (default 2, like prod's HA pair) with the generated prometheus.yml,
  POD_NAME set per replica so the ``replica`` external label differs;
- N Alertmanagers (default 2) with the generated alertmanager.yml, in one gossip cluster;
- ``capture.CaptureServer`` (webhooks, Slack, heartbeat, escalation, DingTalk relay URL) and
  ``capture.SmtpCapture`` (the e-mail receiver).

What comes from the program, unchanged: every rule file, alertmanager.yml (receivers, routes,
inhibitions, templates), blackbox.yml, and prometheus.yml's ``global``, ``alerting`` (relabelling)
and each kept job's job_name, metrics_path, params and relabel_configs. Settings overrides
(``E2E_SETTINGS``) shorten intervals and point receivers at the capture servers, exactly as a
stack file could. What the harness changes, because the cluster is not there:

- Kubernetes discovery: Debian's prometheus has none, so each pod-discovered job gets a
  static_configs block whose labels carry the ``__meta_kubernetes_*`` labels discovery would
  have set (``simulated_pod``); the generated relabel_configs then run as they would in the
  cluster (keep on app name and port name, namespace/pod/node/instance, environment, and for
  the application the ``kubernetes-pods`` annotation rules that set job=football-prediction-api);
- in-pod paths (rule files, Alertmanager templates and credentials) become temp dirs;
- in-cluster addresses become loopback ones: the Alertmanager targets, the blackbox exporter
  address of the probe job, and the DingTalk relay URL (pointed at the capture server);
- jobs whose targets do not exist here (kubelet, cadvisor, apiserver, grafana,
  kube-state-metrics, postgres/redis exporters, blackbox-tcp) are left out.

Every wait is bounded in time; every process is killed at ``close()`` (also on errors, and at
interpreter exit as a last resort).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import offline  # noqa: E402
from components.configs import alertmanager as am_config  # noqa: E402
from components.configs.prometheus import RULES_DIR  # noqa: E402
from components.settings import PROJECT  # noqa: E402

from tests.e2e.capture import CaptureServer, SmtpCapture  # noqa: E402
from tests.e2e.fake_app import FakeApp  # noqa: E402
from tests.ports import free_port  # noqa: E402

STACK = "prod"
NAMESPACE_APP = "football-prediction"
NODE = "e2e-node-1"  # the node name discovery would report for the node-exporter pod
FAST_TIMINGS = {"groupWait": "1s", "groupInterval": "2s", "repeatInterval": "1h"}
INTERVALS = {"scrapeInterval": "1s", "scrapeTimeout": "1s", "evaluationInterval": "1s"}

# Capture paths of the secret receiver URLs (secrets are plain config values under the mocks).
CAPTURE_PATHS = {
    "alertmanagerWebhookUrl": "/default",
    "slackApiUrl": "/slack",
    "heartbeatUrl": "/heartbeat",
    "escalationWebhookUrl": "/escalation",
}


def _tool(name: str) -> str:
    from tests.conftest import require_tool  # fails (never skips) when a binary is missing

    return require_tool(name)


# --------------------------------------------------------------------------- generation

def stack_config(overrides: dict, stack: str = STACK) -> tuple[dict[str, str], list[str]]:
    """The stack's config with ``overrides`` merged into its sections (see offline.stack_config)."""
    return offline.stack_config(stack, overrides)


def e2e_settings(*, app_health_url: str, smtp_port: Optional[int]) -> dict:
    alerting: dict = {sev: dict(FAST_TIMINGS) for sev in ("critical", "warning", "info")}
    if smtp_port:
        # Plain SMTP on loopback: the capture server has no certificate for STARTTLS.
        alerting["email"] = {"smarthost": f"127.0.0.1:{smtp_port}", "requireTls": False}
    else:
        alerting["email"] = {"enabled": False}
    return {
        "prometheus": dict(INTERVALS),
        "alerting": alerting,
        "probes": {"http": [{"name": "api-health", "target": app_health_url}], "tcp": [], "icmp": []},
    }


@dataclass
class Generated:
    result: offline.RunResult
    prometheus_yml: str
    rule_files: dict[str, str]
    alertmanager_yml: str
    credentials: dict[str, str]
    templates: dict[str, str]
    blackbox_yml: str


def generate(settings: dict, receiver_urls: dict[str, str], stack: str = STACK) -> Generated:
    config, secret_keys = stack_config(settings, stack)
    for key, url in receiver_urls.items():
        config[f"{PROJECT}:{key}"] = url
    result = offline.run(stack, config=config, secret_keys=secret_keys)
    return Generated(
        result=result,
        prometheus_yml=result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"],
        rule_files=dict(result.one("ConfigMap", "prometheus-rules")["data"]),
        alertmanager_yml=result.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"],
        credentials=dict(result.one("Secret", "alertmanager-credentials")["stringData"]),
        templates=am_config.templates(),
        blackbox_yml=result.one("ConfigMap", "blackbox-exporter-config")["data"]["blackbox.yml"],
    )


def simulated_pod(job: dict, *, address: str, pod: str, node: str, namespace: str,
                  extra: Optional[dict] = None) -> dict:
    """A static_configs entry carrying the meta labels Kubernetes pod discovery would set.

    The values that the job's `keep` rules require (app name, port name, annotation) are
    read from those rules, so the generated relabelling decides what the target becomes.
    """
    labels = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod,
              "__meta_kubernetes_pod_node_name": node, "__meta_kubernetes_pod_phase": "Running",
              "__meta_kubernetes_pod_container_init": "false", "__meta_kubernetes_pod_ready": "true"}
    for rule in job.get("relabel_configs", []):
        sources = rule.get("source_labels", [])
        if rule.get("action") == "keep" and len(sources) == 1 and sources[0].startswith("__meta_kubernetes_"):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", rule["regex"]):
                raise ValueError(f"{job['job_name']}: keep regex {rule['regex']!r} is not a literal value")
            labels[sources[0]] = rule["regex"]
    labels.update(extra or {})
    return {"targets": [address], "labels": labels}


def static_prometheus_config(prometheus_yml: str, *, rules_dir: Path, alertmanagers: list[str],
                             targets: dict[str, list[dict]], blackbox_address: str) -> dict:
    """prometheus.yml with discovery replaced by static targets (see the module docstring)."""
    doc = yaml.safe_load(prometheus_yml)
    rule_files = doc["rule_files"]
    assert rule_files == [f"{RULES_DIR}/*.yaml"], rule_files
    doc["rule_files"] = [str(rules_dir / "*.yaml")]
    assert len(doc["alerting"]["alertmanagers"]) == 1
    doc["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": list(alertmanagers)}]
    jobs = []
    for job in doc["scrape_configs"]:
        name = job["job_name"]
        if name.startswith("blackbox-") and "static_configs" in job:
            if not job["static_configs"]:
                continue
            replaced = 0
            for rule in job["relabel_configs"]:
                if rule.get("target_label") == "__address__" and "source_labels" not in rule:
                    rule["replacement"] = blackbox_address
                    replaced += 1
            assert replaced == 1, f"{name}: expected one __address__ rule pointing at the blackbox exporter"
            jobs.append(job)
        elif name in targets:
            job.pop("kubernetes_sd_configs", None)
            job["static_configs"] = targets[name]
            jobs.append(job)
    doc["scrape_configs"] = jobs
    return doc


# --------------------------------------------------------------------------- processes

_LIVE: "set[Process]" = set()


@atexit.register
def _kill_leftovers() -> None:  # last resort if a caller forgot close()
    for proc in list(_LIVE):
        proc.stop(timeout=2)


def _die_with_parent() -> None:
    """In the child before exec: be killed if the test runner dies without tearing down (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Process:
    def __init__(self, name: str, argv: list[str], log_dir: Path, env: Optional[dict] = None) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.popen: Optional[subprocess.Popen] = None
        self.started_at = 0.0
        self.stopped_at = 0.0

    def start(self) -> "Process":
        log = open(self.log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        self.started_at = time.time()
        _LIVE.add(self)
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; only this process (its own session)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        self.stopped_at = time.time()
        _LIVE.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def http_get(url: str, timeout: float = 3) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; bounded in time and in count."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    for _ in range(int(timeout / interval) + 2):
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, KeyError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_error})"
                                                                                if last_error else ""))


# --------------------------------------------------------------------------- notifications

@dataclass
class Notification:
    """One notification as a receiver integration delivered it."""

    integration: str  # webhook | slack | email
    destination: str  # capture path, Slack channel or e-mail recipient
    receiver: str  # Alertmanager receiver name ('' when the payload does not say)
    status: str  # firing | resolved
    alertname: str
    alerts: list[dict]  # labels of each alert ({} where the payload carries none)
    time: float
    sender: str = ""  # externalURL of the Alertmanager that sent it (webhooks only)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.integration, self.destination, self.receiver)


_TITLE = re.compile(r"^\[(?P<status>FIRING|RESOLVED)(?::\d+)?\] (?P<alertname>\S+) \(")


def _labels_from_text(text: str) -> list[dict]:
    alerts = []
    for line in text.splitlines():
        if line.startswith("Labels:"):
            alerts.append(dict(pair.split("=", 1) for pair in line[len("Labels:"):].split()))
    return alerts


@dataclass
class Pipeline:
    workdir: Path
    prometheus_replicas: int = 2
    alertmanager_replicas: int = 2
    email: bool = True
    log: Callable[[str], None] = lambda message: None

    capture: CaptureServer = field(init=False)
    smtp: Optional[SmtpCapture] = field(init=False, default=None)
    api: FakeApp = field(init=False)
    worker: FakeApp = field(init=False)
    generated: Generated = field(init=False)
    processes: dict[str, Process] = field(init=False, default_factory=dict)
    ports: dict[str, int] = field(init=False, default_factory=dict)
    events: dict[str, float] = field(init=False, default_factory=dict)  # name -> time.time()
    alertmanager_yml_path: Path = field(init=False)

    # ------------------------------------------------------------------ start / stop
    def __enter__(self) -> "Pipeline":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.capture = CaptureServer().start()
        self.smtp = SmtpCapture().start() if self.email else None
        self.api = FakeApp("api").start()
        self.worker = FakeApp("worker").start()
        for name in ("node-exporter", "blackbox"):
            self.ports[name] = free_port()
        for i in range(self.prometheus_replicas):
            self.ports[f"prometheus-{i}"] = free_port()
        for i in range(self.alertmanager_replicas):
            self.ports[f"alertmanager-{i}"] = free_port()
            self.ports[f"alertmanager-{i}-mesh"] = free_port(udp=True)

        receiver_urls = {key: self.capture.url(path) for key, path in CAPTURE_PATHS.items()}
        self.generated = generate(e2e_settings(app_health_url=self.api.health_url,
                                               smtp_port=self.smtp.port if self.smtp else None), receiver_urls)
        self._write_configs()
        self.events["generated"] = time.time()

        self._start_node_exporter()
        self._start("blackbox", [_tool("blackbox_exporter"),
                                 f"--config.file={self.workdir / 'blackbox.yml'}",
                                 f"--web.listen-address=127.0.0.1:{self.ports['blackbox']}"])
        mesh = [f"127.0.0.1:{self.ports[f'alertmanager-{i}-mesh']}" for i in range(self.alertmanager_replicas)]
        for i in range(self.alertmanager_replicas):
            self._start_alertmanager(i, mesh)
        for i in range(self.prometheus_replicas):
            data = self.workdir / f"prometheus-{i}-data"
            data.mkdir(exist_ok=True)
            self._start(f"prometheus-{i}", [
                _tool("prometheus"), f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{self.ports[f'prometheus-{i}']}",
                "--enable-feature=expand-external-labels", "--web.enable-lifecycle",
            ], env={"POD_NAME": f"prometheus-{i}"})

        self._wait_ready(timeout)
        self.events["started"] = time.time()

    def _start(self, name: str, argv: list[str], env: Optional[dict] = None) -> Process:
        proc = Process(name, argv, self.workdir, env).start()
        self.processes[name] = proc
        return proc

    def _start_node_exporter(self) -> Process:
        return self._start("node-exporter", [_tool("node_exporter"),
                                             f"--web.listen-address=127.0.0.1:{self.ports['node-exporter']}"])

    def _start_alertmanager(self, i: int, mesh: list[str]) -> Process:
        data = self.workdir / f"alertmanager-{i}-data"
        data.mkdir(exist_ok=True)
        web = self.ports[f"alertmanager-{i}"]
        argv = [_tool("alertmanager"), f"--config.file={self.alertmanager_yml_path}",
                f"--storage.path={data}", f"--web.listen-address=127.0.0.1:{web}",
                f"--web.external-url=http://127.0.0.1:{web}/", "--web.route-prefix=/"]
        if self.alertmanager_replicas > 1:
            own = self.ports[f"alertmanager-{i}-mesh"]
            argv += [f"--cluster.listen-address=127.0.0.1:{own}", f"--cluster.advertise-address=127.0.0.1:{own}",
                     "--cluster.reconnect-timeout=5m"]
            argv += [f"--cluster.peer={peer}" for peer in mesh]
        else:
            argv.append("--cluster.listen-address=")
        return self._start(f"alertmanager-{i}", argv)

    def _write_configs(self) -> None:
        g, work = self.generated, self.workdir
        rules = work / "rules"
        templates = work / "alertmanager-templates"
        credentials = work / "alertmanager-credentials"
        for directory, files in ((rules, g.rule_files), (templates, g.templates), (credentials, g.credentials)):
            directory.mkdir(exist_ok=True)
            for name, text in files.items():
                (directory / name).write_text(text)
        (work / "blackbox.yml").write_text(g.blackbox_yml)

        text = g.alertmanager_yml.replace(am_config.TEMPLATES_DIR, str(templates))
        text = text.replace(am_config.CREDENTIALS_DIR, str(credentials))
        # The DingTalk relay is an in-cluster service; its URL's path is kept, the host is the capture server.
        text = re.sub(r"http://dingtalk-relay\.[a-z0-9.-]+:\d+", f"http://127.0.0.1:{self.capture.port}", text)
        self.alertmanager_yml_path = work / "alertmanager.yml"
        self.alertmanager_yml_path.write_text(text)

        source = yaml.safe_load(g.prometheus_yml)
        jobs = {job["job_name"]: job for job in source["scrape_configs"]}
        ns = g.result.outputs["namespace"]
        targets = {
            "node-exporter": [simulated_pod(jobs["node-exporter"], address=f"127.0.0.1:{self.ports['node-exporter']}",
                                            pod="node-exporter-e2e", node=NODE, namespace=ns)],
            "blackbox-exporter": [simulated_pod(jobs["blackbox-exporter"],
                                                address=f"127.0.0.1:{self.ports['blackbox']}",
                                                pod="blackbox-exporter-e2e", node=NODE, namespace=ns)],
            "prometheus": [simulated_pod(jobs["prometheus"], address=f"127.0.0.1:{self.ports[f'prometheus-{i}']}",
                                         pod=f"prometheus-{i}", node=NODE, namespace=ns)
                           for i in range(self.prometheus_replicas)],
            "alertmanager": [simulated_pod(jobs["alertmanager"],
                                           address=f"127.0.0.1:{self.ports[f'alertmanager-{i}']}",
                                           pod=f"alertmanager-{i}", node=NODE, namespace=ns)
                             for i in range(self.alertmanager_replicas)],
            # The application pods opt in through prometheus.io/* annotations (kubernetes-pods job);
            # its relabelling turns app.kubernetes.io/name into the job label.
            "kubernetes-pods": [
                simulated_pod(jobs["kubernetes-pods"], address="127.0.0.1:1", pod=f"{app}-e2e", node=NODE,
                              namespace=NAMESPACE_APP, extra={
                                  "__meta_kubernetes_pod_annotation_prometheus_io_port": str(fake.port),
                                  "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
                                  "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
                                  "__meta_kubernetes_pod_container_name": container})
                for app, fake, container in (("football-prediction-api", self.api, "api"),
                                             ("football-prediction-worker", self.worker, "worker"))],
        }
        doc = static_prometheus_config(
            g.prometheus_yml, rules_dir=rules,
            alertmanagers=[f"127.0.0.1:{self.ports[f'alertmanager-{i}']}" for i in range(self.alertmanager_replicas)],
            targets=targets, blackbox_address=f"127.0.0.1:{self.ports['blackbox']}")
        (work / "prometheus.yml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def _wait_ready(self, timeout: float) -> None:
        checks = {"node-exporter": f"http://127.0.0.1:{self.ports['node-exporter']}/metrics",
                  "blackbox": f"http://127.0.0.1:{self.ports['blackbox']}/-/healthy"}
        for i in range(self.prometheus_replicas):
            checks[f"prometheus-{i}"] = f"{self.prometheus_url(i)}/-/ready"
        for i in range(self.alertmanager_replicas):
            checks[f"alertmanager-{i}"] = f"{self.alertmanager_url(i)}/-/ready"
        for name, url in checks.items():
            proc = self.processes[name]

            def ready() -> bool:
                if not proc.alive:
                    raise RuntimeError(f"{name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
                return http_get(url, timeout=2)[0] == 200

            wait_until(ready, timeout, 0.2, f"{name} at {url}")
        if self.alertmanager_replicas > 1:
            wait_until(lambda: all(len(self.alertmanager_status(i)["cluster"]["peers"]) == self.alertmanager_replicas
                                   for i in range(self.alertmanager_replicas)),
                       timeout, 0.5, "the Alertmanager cluster to form")

    def close(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop(timeout=5)
        for component in ("api", "worker", "capture", "smtp"):
            thing = getattr(self, component, None)
            if thing is not None:
                try:
                    thing.stop()
                except Exception:  # noqa: BLE001 - teardown must go on
                    pass

    def logs(self, lines: int = 20) -> str:
        return "\n".join(f"--- {name} ---\n{proc.log_tail(lines)}" for name, proc in self.processes.items())

    # ------------------------------------------------------------------ URLs and APIs
    def prometheus_url(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[f'prometheus-{i}']}"

    def alertmanager_url(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[f'alertmanager-{i}']}"

    def _json(self, url: str) -> Any:
        status, body = http_get(url, timeout=5)
        if status != 200:
            raise OSError(f"GET {url}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def query(self, expr: str, replica: int = 0) -> list[dict]:
        url = f"{self.prometheus_url(replica)}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return self._json(url)["data"]["result"]

    def prometheus_alerts(self, replica: int = 0) -> list[dict]:
        return self._json(f"{self.prometheus_url(replica)}/api/v1/alerts")["data"]["alerts"]

    def targets(self, replica: int = 0) -> list[dict]:
        return self._json(f"{self.prometheus_url(replica)}/api/v1/targets")["data"]["activeTargets"]

    def alertmanager_status(self, i: int = 0) -> dict:
        return self._json(f"{self.alertmanager_url(i)}/api/v2/status")

    def alertmanager_alerts(self, i: int = 0) -> list[dict]:
        return self._json(f"{self.alertmanager_url(i)}/api/v2/alerts")

    def route_receivers(self, labels: dict[str, str]) -> list[str]:
        """Receivers that amtool says the generated routing tree sends ``labels`` to."""
        argv = [_tool("amtool"), "config", "routes", "test", f"--config.file={self.alertmanager_yml_path}"]
        argv += [f"{k}={v}" for k, v in sorted(labels.items())]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"amtool failed: {out.stderr}")
        return [r.strip() for r in out.stdout.strip().split(",") if r.strip()]

    def receiver_destinations(self, receiver: str) -> set[tuple[str, str, str]]:
        """(integration, destination, receiver) keys a receiver of the running config notifies."""
        config = yaml.safe_load(self.alertmanager_yml_path.read_text())
        spec = next(r for r in config["receivers"] if r["name"] == receiver)
        keys = set()
        for hook in spec.get("webhook_configs", []):
            # A secret URL is the content of its credential file, as Alertmanager reads it.
            target = hook["url"] if "url" in hook else Path(hook["url_file"]).read_text().strip()
            url = urllib.parse.urlsplit(target)
            assert url.hostname == "127.0.0.1" and url.port == self.capture.port, target
            keys.add(("webhook", url.path, receiver))
        for slack in spec.get("slack_configs", []):
            keys.add(("slack", slack["channel"], ""))
        for mail in spec.get("email_configs", []):
            keys.add(("email", mail["to"], ""))
        return keys

    # ------------------------------------------------------------------ faults
    def mark(self, event: str) -> float:
        self.events[event] = time.time()
        self.log(f"[{time.strftime('%H:%M:%S')}] {event}")
        return self.events[event]

    def stop_node_exporter(self) -> None:
        self.processes["node-exporter"].stop()

    def start_node_exporter(self) -> None:
        self._start_node_exporter()
        port = self.ports["node-exporter"]
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200, 30, 0.2, "node-exporter restart")

    def stop_alertmanager(self, i: int) -> None:
        self.processes[f"alertmanager-{i}"].stop()

    def alertmanager_index(self, external_url: str) -> Optional[int]:
        for i in range(self.alertmanager_replicas):
            if external_url.rstrip("/") == self.alertmanager_url(i):
                return i
        return None

    # ------------------------------------------------------------------ notifications
    def notifications(self) -> list[Notification]:
        found: list[Notification] = []
        for post in self.capture.posts():
            body = post.body if isinstance(post.body, dict) else {}
            if post.path == "/slack":
                for attachment in body.get("attachments", []):
                    match = _TITLE.match(attachment.get("title", ""))
                    if match:
                        found.append(Notification("slack", body.get("channel", ""), "", match["status"].lower(),
                                                  match["alertname"], _labels_from_text(attachment.get("text", "")),
                                                  post.time))
                continue
            if "alerts" not in body:
                continue
            alertname = (body.get("groupLabels") or {}).get("alertname") or \
                (body.get("commonLabels") or {}).get("alertname", "")
            found.append(Notification("webhook", post.path, body.get("receiver", ""), body.get("status", ""),
                                      alertname, [a.get("labels", {}) for a in body["alerts"]], post.time,
                                      body.get("externalURL", "")))
        for mail in (self.smtp.mails() if self.smtp else []):
            match = _TITLE.match(mail.subject)
            if not match:
                continue
            for rcpt in mail.recipients:
                found.append(Notification("email", rcpt, "", match["status"].lower(), match["alertname"], [],
                                          mail.time))
        return sorted(found, key=lambda n: n.time)

    def notified(self, alertname: str, status: str = "firing", since: float = 0.0) -> list[Notification]:
        return [n for n in self.notifications() if n.alertname == alertname and n.status == status and n.time >= since]


def expected_destinations(pipeline: Pipeline, labels: dict[str, str]) -> tuple[list[str], set[tuple[str, str, str]]]:
    receivers = pipeline.route_receivers(labels)
    keys: set = set()
    for receiver in receivers:
        keys |= pipeline.receiver_destinations(receiver)
    return receivers, keys


def rule_labels(rule_files: dict[str, str], alertname: str) -> dict[str, str]:
    for text in rule_files.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alertname:
                    return dict(rule.get("labels") or {})
    raise KeyError(alertname)


def rule_for_seconds(rule_files: dict[str, str], alertname: str) -> float:
    from tests.rules_support import parse_duration

    for text in rule_files.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alertname:
                    return parse_duration(rule.get("for"))
    raise KeyError(alertname)


# --------------------------------------------------------------------------- the scenario

@dataclass
class Fault:
    alertname: str
    inject: Callable[[Pipeline], None]
    recover: Callable[[Pipeline], None]
    check_resolved: bool = True  # error-ratio alerts resolve only after their 5m rate window


def standard_faults() -> list[Fault]:
    def app(attr: str, value: bool) -> Callable[[Pipeline], None]:
        return lambda p: setattr(p.api, attr, value)

    return [
        Fault("NodeDown", lambda p: p.stop_node_exporter(), lambda p: p.start_node_exporter()),
        Fault("FootballApiHighErrorRatio", app("errors", True), app("errors", False), check_resolved=False),
        Fault("FootballApiHealthProbeFailing", app("healthy", False), app("healthy", True)),
    ]


def host_state_alerts(rule_files: dict[str, str]) -> set[str]:
    """Warnings about the node itself (service=node, except NodeDown).

    The real node-exporter reports the machine running the test: its CPU load (other jobs
    share it), clock discipline (a VM without NTP), disks. Those warnings may pend in the
    healthy baseline without saying anything about the stack; critical ones still count.
    """
    names = set()
    for text in rule_files.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                labels = rule.get("labels") or {}
                if ("alert" in rule and rule["alert"] != "NodeDown" and labels.get("service") == "node"
                        and labels.get("severity") != "critical"):
                    names.add(rule["alert"])
    return names


@dataclass
class ScenarioResult:
    faults: list[Fault]
    expected: dict[str, set]  # alertname -> expected (integration, destination, receiver) keys
    receivers: dict[str, list[str]]  # alertname -> receivers amtool names
    t_start: float = 0.0
    t_baseline: float = 0.0  # end of the healthy baseline
    baseline_alerts: list[dict] = field(default_factory=list)  # pending/firing in every Prometheus
    baseline_notifications: list[Notification] = field(default_factory=list)
    t_fault: float = 0.0
    first_notified: dict[str, float] = field(default_factory=dict)  # alertname -> first firing notification
    all_delivered: dict[str, float] = field(default_factory=dict)  # alertname -> last expected destination
    fired_alerts_per_am: dict[int, dict[str, int]] = field(default_factory=dict)
    killed_alertmanager: Optional[int] = None
    t_kill: float = 0.0
    t_recover: float = 0.0
    resolved_at: dict[str, float] = field(default_factory=dict)
    survivor_heartbeat: Optional[float] = None
    t_end: float = 0.0
    final_alerts: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # timeouts met on the way (the tests report them)

    def surviving(self, pipeline: Pipeline) -> list[int]:
        return [i for i in range(pipeline.alertmanager_replicas) if i != self.killed_alertmanager]


def _active_alerts(pipeline: Pipeline) -> list[dict]:
    found = []
    for i in range(pipeline.prometheus_replicas):
        for alert in pipeline.prometheus_alerts(i):
            found.append(dict(alert, prometheus=i))
    return found


def run_scenario(pipeline: Pipeline, faults: Optional[list[Fault]] = None, *, baseline: float = 10,
                 dedup_settle: float = 20, kill_alertmanager: bool = True, survivor_heartbeat: bool = True,
                 fire_timeout_extra: float = 60) -> ScenarioResult:
    """Healthy baseline, every fault at once, then (optionally) kill the sending Alertmanager and recover.

    Waits are bounded; a wait that times out is recorded in ``errors`` and the scenario goes
    on, so the assertions can say precisely what did not happen.
    """
    faults = faults or standard_faults()
    env = pipeline.generated.result.outputs["environment"]
    expected, receivers = {}, {}
    for fault in faults:
        labels = dict(rule_labels(pipeline.generated.rule_files, fault.alertname), alertname=fault.alertname,
                      environment=env)
        receivers[fault.alertname], expected[fault.alertname] = expected_destinations(pipeline, labels)
    result = ScenarioResult(faults, expected, receivers, t_start=pipeline.events.get("started", time.time()))

    def guarded(what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        try:
            return wait_until(condition, timeout, interval, what)
        except TimeoutError as error:
            result.errors.append(str(error))
            pipeline.log(f"!! {error}")
            return None

    # 1. warm-up: every target up in every Prometheus, enough API traffic for the error-ratio floor.
    def warm() -> bool:
        for i in range(pipeline.prometheus_replicas):
            targets = pipeline.targets(i)
            if not targets or any(t["health"] != "up" for t in targets):
                return False
        traffic = pipeline.query('job:http_requests:rate5m{job="football-prediction-api"} > 0.3')
        return bool(traffic)

    guarded("all targets up and API traffic above the alert floor", warm, 60)
    pipeline.mark("warm")
    # 2. healthy baseline: nothing but the Watchdog pends or fires. (The first heartbeat comes
    # about 1m after Prometheus starts: its first Watchdog is sent before the notifier has
    # discovered the Alertmanagers, is dropped, and is resent after --rules.alert.resend-delay.)
    time.sleep(baseline)
    result.baseline_alerts = [a for a in _active_alerts(pipeline) if a["labels"].get("alertname") != "Watchdog"]
    result.baseline_notifications = pipeline.notifications()
    result.t_baseline = pipeline.mark("baseline done")

    # 3. every fault at once
    for fault in faults:
        fault.inject(pipeline)
    result.t_fault = pipeline.mark("faults injected: " + ", ".join(f.alertname for f in faults))
    longest_for = max(rule_for_seconds(pipeline.generated.rule_files, f.alertname) for f in faults)

    def delivered(status: str, since: float, names: list[str], record: dict) -> bool:
        done = True
        for name in names:
            got = {n.key for n in pipeline.notified(name, status, since)}
            if expected[name] <= got:
                record.setdefault(name, max(n.time for n in pipeline.notified(name, status, since)))
            else:
                done = False
        return done

    names = [f.alertname for f in faults]
    guarded("firing notifications at every expected destination",
            lambda: delivered("firing", result.t_fault, names, result.all_delivered),
            longest_for + fire_timeout_extra, 0.25)
    for name in names:
        firing = pipeline.notified(name, "firing", result.t_fault)
        if firing:
            result.first_notified[name] = min(n.time for n in firing)
    pipeline.mark("fired: " + ", ".join(f"{n} +{result.first_notified[n] - result.t_fault:.1f}s"
                                        for n in names if n in result.first_notified))

    # 4. both Alertmanagers stay up past the peer timeout: a second copy would arrive now.
    if dedup_settle:
        time.sleep(dedup_settle)
    for i in range(pipeline.alertmanager_replicas):
        counts: dict[str, int] = {}
        for alert in pipeline.alertmanager_alerts(i):
            if alert["status"]["state"] == "active":
                counts[alert["labels"]["alertname"]] = counts.get(alert["labels"]["alertname"], 0) + 1
        result.fired_alerts_per_am[i] = counts

    # 5. kill the Alertmanager that sent the notifications, then recover everything.
    if kill_alertmanager and pipeline.alertmanager_replicas > 1:
        senders = [pipeline.alertmanager_index(n.sender) for n in pipeline.notifications()
                   if n.sender and n.alertname in names]
        victim = max(set(senders), key=senders.count) if senders and None not in senders else 0
        pipeline.stop_alertmanager(victim)
        result.killed_alertmanager = victim
        result.t_kill = pipeline.mark(f"stopped alertmanager-{victim} (the one that sent the notifications)")
    for fault in faults:
        fault.recover(pipeline)
    result.t_recover = pipeline.mark("recovered")

    resolving = [f.alertname for f in faults if f.check_resolved]
    guarded("resolved notifications at every expected destination",
            lambda: delivered("resolved", result.t_recover, resolving, result.resolved_at), 60, 0.25)
    pipeline.mark("resolved: " + ", ".join(f"{n} +{t - result.t_recover:.1f}s" for n, t in result.resolved_at.items()))
    if kill_alertmanager and survivor_heartbeat and pipeline.alertmanager_replicas > 1:
        def survivor_beat() -> Optional[float]:
            for n in pipeline.notified("Watchdog", "firing", result.t_kill):
                if pipeline.alertmanager_index(n.sender) != result.killed_alertmanager:
                    return n.time
            return None

        # the heartbeat route repeats every 1m (hard-coded); the survivor sends once that much
        # time has passed since the last heartbeat in the shared notification log
        result.survivor_heartbeat = guarded("a heartbeat from the surviving Alertmanager", survivor_beat, 135, 1)
        if result.survivor_heartbeat:
            pipeline.mark(f"heartbeat from the survivor {result.survivor_heartbeat - result.t_kill:.0f}s after the stop")
    time.sleep(3)  # a late duplicate would arrive within a few group intervals
    result.final_alerts = _active_alerts(pipeline)
    result.t_end = pipeline.mark("scenario done")
    return result


# --------------------------------------------------------------------------- latency bound

def route_group_wait(alertmanager_yml: str, severity: str) -> float:
    """The longest group_wait an alert of ``severity`` can meet in its branch of the route tree."""
    from tests.rules_support import parse_duration

    route = yaml.safe_load(alertmanager_yml)["route"]
    branch = next(r for r in route.get("routes", []) if f'severity="{severity}"' in r.get("matchers", []))
    waits = [parse_duration(branch.get("group_wait", route.get("group_wait", "30s")))]
    for child in branch.get("routes", []):
        waits.append(parse_duration(child.get("group_wait", branch.get("group_wait", route.get("group_wait")))))
    return max(waits)


def notification_bound(prometheus_yml: str, alertmanager_yml: str, for_seconds: float,
                       severity: str = "critical") -> dict[str, float]:
    """Worst case from fault to notification: for + scrape interval + evaluation interval + group_wait.

    The scrape interval is the longest of the global one and any job's own.
    """
    from tests.rules_support import parse_duration

    doc = yaml.safe_load(prometheus_yml)
    scrape = max([parse_duration(doc["global"]["scrape_interval"])] +
                 [parse_duration(j["scrape_interval"]) for j in doc["scrape_configs"] if "scrape_interval" in j])
    evaluation = parse_duration(doc["global"]["evaluation_interval"])
    wait = route_group_wait(alertmanager_yml, severity)
    return {"for": for_seconds, "scrape_interval": scrape, "evaluation_interval": evaluation, "group_wait": wait,
            "total": for_seconds + scrape + evaluation + wait}
