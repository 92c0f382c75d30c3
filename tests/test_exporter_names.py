"""Every metric name the rules and dashboards read of the monitoring stack's own programs, read from
those programs at their pinned releases.

Started on loopback with prod's generated command lines (tests/command_lines.py prepare(): only
listen addresses, dialled addresses and mount paths change): Prometheus (its generated config and
rule files, so that its rule groups exist), Alertmanager, the config reloader beside each of them,
node-exporter (reading this machine's /proc and /sys, read-only, as its hostPath mounts do) and the
blackbox exporter. The Kubernetes API server is the real one of tests/kube_cluster.py, read with a
token of prod's Prometheus ServiceAccount (its generated ClusterRole grants the nonResource
/metrics). A second, reading Prometheus scrapes them all with prod's generated jobs: the pod
discovery replaced by one static target per pod carrying the labels Kubernetes' pod discovery would
attach (the jobs' own relabelling decides), the probe jobs' targets moved to loopback servers and
the probe exporter's Service address to the loopback exporter. What it scraped is the reading
(tests/exporter_readings.py): every name and label the generated rules and the dashboards use of
these programs must be in it, and each metrics/exporters.yaml section must match it and name the
release it was read from.

Series a program creates only after an event are provoked, not listed: a probe of a closed loopback
port (tcp and http), an HTTPS probe of a loopback server whose certificate the exporter trusts
(probe_ssl_*: blackbox registers them only for a response over TLS, prober/http.go), an ICMP probe
(the blackbox-icmp job, on in prod with `probes.icmp`; taken from such a run). Alertmanager needs
no event: notify/metrics.go InitializeFor creates every notification series of every integration
at start.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from components.settings.images import DEFAULT_IMAGES
from scripts import dashboard_query_benchmark as bench
from tests import command_lines as cl
from tests import exporter_readings as er
from tests import kube_cluster as kc
from tests.conftest import ROOT, require_tool
from tests.kube_cluster import kube_cluster  # noqa: F401 (the fixture)
from tests.test_database_servers import rule_and_dashboard_exprs
from tests.discovery_run import pod_port_labels
from tests.ports import free_port

SCRAPE = 2  # seconds, the reading Prometheus' interval
SCRAPES = 3  # each target read at least this often: counters and probes settle
WAIT = 45.0


@dataclass(frozen=True)
class Program:
    jobs: tuple[str, ...]
    image: str | None  # key of DEFAULT_IMAGES; None: the API server (TEST_TOOLS["kubernetes"])
    build_info: str
    prefixes: tuple[str, ...]  # names of these prefixes are the program's wherever they are used


# metrics/exporters.yaml section -> the program that exposes it.
PROGRAMS = {
    "prometheus": Program(("prometheus",), "prometheus", "prometheus_build_info", ("prometheus_",)),
    "alertmanager": Program(("alertmanager",), "alertmanager", "alertmanager_build_info", ("alertmanager_",)),
    "config-reloader": Program(("config-reloader",), "configReloader",
                               "prometheus_config_reloader_build_info", ("reloader_",)),
    "node-exporter": Program(("node-exporter",), "nodeExporter", "node_exporter_build_info", ("node_",)),
    "blackbox": Program(("blackbox-exporter", "blackbox-http", "blackbox-tcp", "blackbox-icmp"), "blackboxExporter",
                        "blackbox_exporter_build_info", ("probe_", "blackbox_")),
    "apiserver": Program(("apiserver",), None, "kubernetes_build_info", ("apiserver_",)),
}
# The Go/process collector's names, on every job of its section that runs here.
PROCESS = "process"
# Sections read from the real programs by other modules.
VERIFIED_ELSEWHERE = {
    "postgres_exporter": "tests/test_database_servers.py",
    "redis_exporter": "tests/test_database_servers.py",
    "kube-state-metrics": "tests/test_kube_state_metrics.py",
    "jaeger": "tests/test_trace_pipeline.py",
    "thanos-sidecar": "tests/test_thanos_e2e.py",
    "thanos-compactor": "tests/test_thanos_e2e.py",
    "thanos-store": "tests/test_thanos_e2e.py",
    "thanos-query": "tests/test_thanos_e2e.py",
    "thanos-rule": "tests/test_thanos_rule_e2e.py",
}
# Sections whose program cannot run here: their names are held against nothing but the upstream
# source; docs/test-tools.md names each one.
UNVERIFIED = {
    "grafana": "Grafana is not built (AGPL-licensed)",
    "cadvisor": "no kubelet runs here (cAdvisor is the kubelet's /metrics/cadvisor)",
    "kubelet": "no kubelet runs here (tests/kube_cluster.py runs no node agent)",
    "elasticsearch-exporter": "needs a running Elasticsearch (Java, Elastic License), which the tests do not run",
    "logstash-exporter": "not built, and needs a running Logstash (Elastic License)",
    "beat-exporter": "not built, and needs a running Filebeat (Elastic License)",
}
# Jobs of the process section whose programs run elsewhere or not at all.
PROCESS_ELSEWHERE = {"grafana": UNVERIFIED["grafana"],
                     "postgres-exporter": "read by tests/test_database_servers.py's Prometheus",
                     "redis-exporter": "read by tests/test_database_servers.py's Prometheus"}
# Prometheus' own series: the reading Prometheus makes up/scrape_* for every target.
SYNTHETIC = "prometheus-synthetic"
# Prometheus' own series that only its rule evaluation writes, read from the Prometheus under test
# (the generated rules at the generated evaluation_interval). After a start it restores the for:
# state of its alerts (rules/group.go: RestoreForState after the group's second evaluation) and
# writes no ALERTS/ALERTS_FOR_STATE sample before (rules/alerting.go: only once restored), so the
# first appear at the third evaluation, up to three intervals after the start.
ALERT_SERIES = ("ALERTS", "ALERTS_FOR_STATE")
# The workloads started here: (kind, name) -> the containers run (a pod's others, Thanos' sidecar,
# are no source of these names).
WORKLOADS = {("StatefulSet", "prometheus"): ("prometheus", "config-reloader"),
             ("StatefulSet", "alertmanager"): ("alertmanager", "config-reloader"),
             ("DaemonSet", "node-exporter"): ("node-exporter",),
             ("Deployment", "blackbox-exporter"): ("blackbox-exporter",)}
# Scrape job -> (workload, container) of its targets.
POD_JOBS = {"prometheus": [(("StatefulSet", "prometheus"), "prometheus")],
            "alertmanager": [(("StatefulSet", "alertmanager"), "alertmanager")],
            "config-reloader": [(("StatefulSet", "prometheus"), "config-reloader"),
                                (("StatefulSet", "alertmanager"), "config-reloader")],
            "node-exporter": [(("DaemonSet", "node-exporter"), "node-exporter")],
            "blackbox-exporter": [(("Deployment", "blackbox-exporter"), "blackbox-exporter")]}
PROBE_JOBS = ("blackbox-http", "blackbox-tcp", "blackbox-icmp")
NODE = "node-0"


def catalog() -> dict:
    return yaml.safe_load((ROOT / "metrics" / "exporters.yaml").read_text())["exporters"]


def pod_discovery_labels(result, workload: tuple[str, str], container_name: str, port: dict) -> dict[str, str]:
    """What Kubernetes' pod discovery attaches to one port of one container of the workload's pod."""
    obj = result.find(*workload)[0]
    template = obj["spec"]["template"]
    return pod_port_labels(obj["metadata"]["namespace"], f"{workload[1]}-0", NODE, template, container_name, port)


def listen_addresses(started: cl.Started) -> dict[int, str]:
    """The container's port as generated -> where it listens here."""
    before = {**cl.DEFAULTS.get(started.container.tool, {}),
              **dict(cl._split(a) for a in started.container.args if cl._split(a)[0])}
    out = {}
    for arg in started.argv:
        flag, value = cl._split(arg)
        if flag in cl.LISTEN_FLAGS:
            out[int(before[flag].rsplit(":", 1)[1])] = value
    return out


# --------------------------------------------------------------------------- the running programs

class World:
    def __init__(self, prod, every_part, cluster, work: Path):
        self.prod, self.every_part, self.cluster, self.work = prod, every_part, cluster, work
        self.processes: list[cl._Process] = []
        self.stand_ins: list[cl.StandIn] = []
        self.started: dict[tuple[tuple[str, str], str], cl.Started] = {}
        self.reader: bench.Prometheus | None = None
        self.config: dict = {}
        self.started_at = time.time()
        self.timeline: list[str] = []
        self.began = time.monotonic()

    def note(self, text: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.began:6.1f}s  {text}")

    def start(self) -> None:
        credentials = cl.Credentials.create(self.work, require_tool("openssl"))
        environment = cl.Environment(credentials, self._keep(cl.elasticsearch_stand_in(credentials)),
                                     self._keep(cl.kubernetes_stand_in()))
        pods, _ = cl.pods(self.prod, "prod")
        for (kind, name), containers in WORKLOADS.items():
            [pod] = [p for p in pods if p.where == f"prod {kind}/{name}"]
            for started in cl.prepare(pod, self.work / name, environment):
                if started.container.name in containers:
                    self.started[((kind, name), started.container.name)] = started
        self.closed = free_port()
        self._receivers_to_closed_port()
        # The probe of the HTTPS server succeeds only if the exporter trusts its certificate, as
        # it trusts a public one: Go's crypto/x509 reads the roots from $SSL_CERT_FILE.
        self.started[(("Deployment", "blackbox-exporter"), "blackbox-exporter")].env["SSL_CERT_FILE"] = \
            str(credentials.cert)
        logs = self.work / "logs"
        logs.mkdir()
        for (workload, name), started in self.started.items():
            self.processes.append(cl._Process(started, require_tool(started.container.tool),
                                              logs / f"{workload[1]}-{name}.log"))
        self.http = self._keep(cl.StandIn({"/health": {"status": "ok"}}))
        self.https = self._keep(cl.StandIn({"/health": {"status": "ok"}}, credentials=credentials))
        self.token = self.work / "token"
        self._apply_prometheus_rbac()
        self.config = self.reader_config()
        self.reader = bench.Prometheus(require_tool("prometheus"), self.work / "reader-tsdb", self.work, [])
        self.reader.config.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.reader.start(timeout=60)
        self.note("programs and the reading Prometheus started")
        self.await_scraped()
        self.await_first_append()

    def _keep(self, stand_in: cl.StandIn) -> cl.StandIn:
        self.stand_ins.append(stand_in)
        return stand_in

    def _receivers_to_closed_port(self) -> None:
        """Alertmanager's receivers read their URLs from files (url_file), which prepare() leaves as
        generated (https://secret.invalid/...): here they name a closed loopback port."""
        started = self.started[(("StatefulSet", "alertmanager"), "alertmanager")]
        for path, volume in started.container.mounts.items():
            for name, content in volume.files.items():
                if cl.URL.match(content.strip()) and not cl.is_loopback(cl.URL.match(content.strip()).group("host")):
                    (started.root / path.lstrip("/") / name).write_text(f"http://127.0.0.1:{self.closed}/{name}")

    def _apply_prometheus_rbac(self) -> None:
        """prod's Prometheus ServiceAccount and what binds it, as generated; a token of it for the
        apiserver job (what the kubelet hands the Prometheus pod)."""
        objects = self.prod.kubernetes_objects()
        [account] = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "prometheus"]
        bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding"
                    and {"kind": "ServiceAccount", **{k: account["metadata"][k] for k in ("name", "namespace")}}
                    in [{k: s.get(k) for k in ("kind", "name", "namespace")} for s in o.get("subjects", [])]]
        roles = [o for o in objects if o["kind"] == "ClusterRole"
                 and o["metadata"]["name"] in {b["roleRef"]["name"] for b in bindings}]
        [namespace] = [o for o in objects if o["kind"] == "Namespace"
                       and o["metadata"]["name"] == account["metadata"]["namespace"]]
        assert bindings and roles
        for obj in [namespace, account, *roles, *bindings]:
            self.cluster.apply(obj, kc.MANAGER + "-exporter-names")
        self.token.write_text(self.cluster.service_account_token(account["metadata"]["namespace"], "prometheus"))

    def address(self, workload, container: str, port: dict) -> str:
        return listen_addresses(self.started[(workload, container)])[port["containerPort"]]

    def reader_config(self) -> dict:
        jobs = {j["job_name"]: j for j in generated_config(self.prod)["scrape_configs"]}
        jobs["blackbox-icmp"] = {j["job_name"]: j for j in generated_config(self.every_part)["scrape_configs"]}[
            "blackbox-icmp"]
        out = []
        for name, targets in POD_JOBS.items():
            job = {k: v for k, v in jobs[name].items() if k != "kubernetes_sd_configs"}
            static = []
            for workload, container in targets:
                spec = next(c for c in self.prod.find(*workload)[0]["spec"]["template"]["spec"]["containers"]
                            if c["name"] == container)
                for port in spec.get("ports", []):
                    if port.get("protocol", "TCP") == "TCP":
                        static.append({"targets": [self.address(workload, container, port)],
                                       "labels": pod_discovery_labels(self.prod, workload, container, port)})
            job["static_configs"] = static
            out.append(job)
        blackbox = self.address(("Deployment", "blackbox-exporter"), "blackbox-exporter",
                                {"containerPort": 9115})
        for name in PROBE_JOBS:
            out.append(self.probe_job(jobs[name], blackbox))
        out.append(self.apiserver_job(jobs["apiserver"]))
        return {"global": {"scrape_interval": f"{SCRAPE}s", "scrape_timeout": f"{SCRAPE}s"}, "scrape_configs": out}

    def probe_job(self, job: dict, blackbox: str) -> dict:
        """The probe job with its targets on loopback servers, one provoked failure added (and for
        HTTP one HTTPS success), and the exporter's Service address the loopback exporter's."""
        job = copy.deepcopy(job)
        module = job["params"]["module"][0]
        for relabel in job["relabel_configs"]:
            if relabel.get("target_label") == "__address__":
                assert relabel["replacement"] == "blackbox-exporter.monitoring.svc:9115", relabel
                relabel["replacement"] = blackbox
        http_target = f"127.0.0.1:{self.http.server.server_address[1]}"
        for group in job["static_configs"]:
            group["targets"] = [
                (f"http://{http_target}{cl.URL.match(t).group('rest') or '/'}" if module.startswith("http")
                 else "127.0.0.1" if module == "icmp" else http_target) for t in group["targets"]]
        closed = f"127.0.0.1:{self.closed}"
        provoked = {"http_2xx": [f"http://{closed}/health",
                                 f"https://127.0.0.1:{self.https.server.server_address[1]}/health"],
                    "tcp_connect": [closed], "icmp": []}[module]
        if provoked:
            job["static_configs"].append({"targets": provoked, "labels": {"probe": "provoked"}})
        return job

    def apiserver_job(self, job: dict) -> dict:
        """The apiserver job with one static target: the API server, with the labels its EndpointSlice
        discovery would attach (the API server refuses a loopback EndpointSlice, so none is found)."""
        job = {k: v for k, v in copy.deepcopy(job).items() if k != "kubernetes_sd_configs"}
        job["tls_config"]["ca_file"] = str(self.cluster.ca_file)
        job["authorization"]["credentials_file"] = str(self.token)
        job["static_configs"] = [{"targets": [f"{self.cluster.host}:{self.cluster.port}"], "labels": {
            "__meta_kubernetes_namespace": "default", "__meta_kubernetes_service_name": "kubernetes",
            "__meta_kubernetes_endpointslice_port_name": "https"}}]
        return job

    def query(self, expr: str, prometheus: str | None = None) -> list[dict]:
        data = bench_get(prometheus or self.reader.url, "/api/v1/query", {"query": expr})
        assert data["status"] == "success", data
        return data["data"]["result"]

    def await_scraped(self) -> None:
        jobs = {j["job_name"] for j in self.config["scrape_configs"]}
        deadline = time.monotonic() + WAIT
        while True:
            counts = {r["metric"]["job"]: float(r["value"][1])
                      for r in self.query(f"min by (job) (count_over_time(up[{WAIT:.0f}s]))")}
            down = self.query("up == 0")
            if not down and set(counts) == jobs and min(counts.values()) >= SCRAPES:
                self.note(f"every target up, scraped {SCRAPES} times or more")
                return
            if time.monotonic() > deadline:
                pytest.fail(f"targets: {self.debug()}", pytrace=False)
            time.sleep(1)

    def await_first_append(self) -> None:
        """The Prometheus under test creates prometheus_tsdb_head_samples_appended_total at its first
        commit of samples (tsdb/head_append.go: samplesAppended.WithLabelValues on commit): within one
        generated scrape interval (its scrapes of the closed loopback targets append their up = 0),
        then one scrape of the reader."""
        interval = parse_seconds(self.under_test_global["scrape_interval"])
        deadline = time.monotonic() + interval + 2 * SCRAPE + 5
        while not (appended := self.query('prometheus_tsdb_head_samples_appended_total{job="prometheus"}')):
            if time.monotonic() > deadline:
                pytest.fail(f"the Prometheus under test appended nothing within {interval} s\n"
                            f"{self.processes[0].output()[-3000:]}", pytrace=False)
            time.sleep(0.5)
        self.note(f"the Prometheus under test appended its first samples: {len(appended)} series")

    @property
    def under_test_url(self) -> str:
        return "http://" + self.address(("StatefulSet", "prometheus"), "prometheus", {"containerPort": 9090})

    @property
    def under_test_global(self) -> dict:
        return generated_config(self.prod)["global"]

    def debug(self) -> str:
        targets = bench_get(self.reader.url, "/api/v1/targets", {})["data"]["activeTargets"]
        logs = "\n".join(f"--- {p.log.name}\n{p.output()[-1500:]}" for p in self.processes if p.popen.poll() is not None)
        return json.dumps([(t["labels"].get("job"), t["scrapeUrl"], t["health"], t["lastError"]) for t in targets],
                          indent=1) + "\n" + logs

    def reading(self, jobs: tuple[str, ...], build_info: str) -> er.Reading:
        selector = f'{{job=~"{"|".join(jobs)}"}}'
        series = bench_get(self.reader.url, "/api/v1/series", {"match[]": selector, "start": self.started_at})
        metadata = bench_get(self.reader.url, "/api/v1/targets/metadata", {"match_target": selector})
        assert series["status"] == metadata["status"] == "success"
        return er.reading(series["data"], metadata["data"], build_info)

    def close(self) -> None:
        if self.reader:
            self.reader.stop()
        for process in self.processes:
            process.stop()
        for stand_in in self.stand_ins:
            stand_in.close()


def bench_get(url: str, path: str, params: dict) -> dict:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params, doseq=True)}", timeout=30) as answer:
        return json.load(answer)


def parse_seconds(duration: str) -> int:
    number, unit = duration[:-1], duration[-1]
    assert number.isdigit() and unit in "smh", duration
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def generated_config(result) -> dict:
    return yaml.safe_load(result.find("ConfigMap", "prometheus-config")[0]["data"]["prometheus.yml"])


@pytest.fixture(scope="module")
def world(prod, every_part, kube_cluster, tmp_path_factory):
    running = World(prod, every_part, kube_cluster, tmp_path_factory.mktemp("exporter-names"))
    try:
        running.start()
        yield running
    finally:
        running.close()
        print("\n".join(["", "timeline:"] + running.timeline))


@pytest.fixture(scope="module")
def readings(world) -> dict[str, er.Reading]:
    return {section: world.reading(program.jobs, program.build_info) for section, program in PROGRAMS.items()}


# --------------------------------------------------------------------------- what runs

def test_the_programs_run_the_generated_command_lines_with_only_addresses_and_paths_changed(world):
    for (workload, name), started in world.started.items():
        generated = started.container.args
        assert len(started.argv) >= len(generated), started.argv
        for before, after in zip(generated, started.argv):
            flag, value = cl._split(before)
            if after != before:
                # An address moved to loopback, or a mount path under the throwaway root.
                assert flag is not None and cl._split(after)[0] == flag, (before, after)
                assert "127.0.0.1" in after or str(started.root) in after, (before, after)
        assert all(p.popen.poll() is None for p in world.processes), world.debug()


def test_every_job_is_read_with_its_targets_up(world):
    expected = {job for program in PROGRAMS.values() for job in program.jobs}
    up = {r["metric"]["job"] for r in world.query("up == 1")}
    assert up == expected, world.debug()
    # The relabelling of the generated jobs ran: pod jobs carry what it adds.
    [series] = world.query('up{job="prometheus"}')
    assert {"namespace", "pod", "node", "environment"} <= set(series["metric"]), series
    [series] = world.query('up{job="node-exporter"}')
    assert series["metric"]["instance"] == NODE


# --------------------------------------------------------------------------- the metric contract

def is_ours(section: str):
    names = set(catalog()[section]["metrics"])
    prefixes = PROGRAMS[section].prefixes if section in PROGRAMS else ("process_",)
    return lambda name: name in names or name.startswith(prefixes)


@pytest.fixture(scope="module")
def exprs(prod) -> list[tuple[str, str]]:
    return rule_and_dashboard_exprs(type("Generated", (), {"prod": prod}))  # it reads .prod only


@pytest.mark.parametrize("section", sorted(PROGRAMS))
def test_every_name_and_label_the_rules_and_dashboards_use_is_exposed(readings, exprs, section):
    found = er.uses(exprs, is_ours(section))
    assert found, f"nothing reads {section}: drop it from this module and exporters.yaml"
    problems = er.problems(found, readings[section])
    assert not problems, "\n".join(problems)


def version_problems(section: str, listed: dict, pinned: str, build_info: dict[str, str]) -> list[str]:
    out = []
    if listed.get("version") != pinned:
        out.append(f"{section}: version {listed.get('version')!r}, the pin is {pinned}")
    exposed = build_info.get("version") or build_info.get("git_version") or ""
    if exposed.lstrip("v") != pinned.lstrip("v"):
        out.append(f"{section}: the program read reports version {exposed!r}, the pin is {pinned} ({build_info})")
    return out


def pinned(program: Program) -> str:
    return DEFAULT_IMAGES[program.image].rsplit(":", 1)[1] if program.image else kc.release_version("pinned")


@pytest.mark.parametrize("section", sorted(PROGRAMS))
def test_exporters_yaml_matches_the_readings_and_names_their_version(readings, section):
    listed = catalog()[section]
    program = PROGRAMS[section]
    assert set(listed["jobs"]) == set(program.jobs), (listed["jobs"], program.jobs)
    problems = version_problems(section, listed, pinned(program), readings[section].build_info)
    problems += er.catalog_problems(listed["metrics"], readings[section])
    assert not problems, f"metrics/exporters.yaml {section}:\n" + "\n".join(problems)


def test_the_process_metrics_are_on_every_job_that_runs_here(world, exprs):
    section = catalog()[PROCESS]
    here = {job for program in PROGRAMS.values() for job in program.jobs}
    assert set(section["jobs"]) <= here | set(PROCESS_ELSEWHERE), set(section["jobs"]) - here - set(PROCESS_ELSEWHERE)
    problems = []
    union = er.Reading()
    for job in sorted(set(section["jobs"]) & here):
        reading = world.reading((job,), "")
        problems += [f"job {job}: {p}" for p in er.catalog_problems(section["metrics"], reading)]
        for name, labels in reading.labels.items():
            union.labels.setdefault(name, set()).update(labels)
    problems += er.problems(er.uses(exprs, is_ours(PROCESS)), union)
    assert not problems, "\n".join(problems)


def test_prometheus_own_series_exist(world):
    """up and scrape_* on the reader's targets (ALERTS and ALERTS_FOR_STATE: the last test)."""
    names = set(catalog()[SYNTHETIC]["metrics"]) - set(ALERT_SERIES)
    found = {r["__name__"] for r in bench_get(world.reader.url, "/api/v1/series", {
        "match[]": [f'{{__name__="{n}"}}' for n in names], "start": world.started_at})["data"]}
    assert names - found == set(), sorted(names - found)


# --------------------------------------------------------------------------- what stays unverified

def test_every_section_is_read_from_its_program_or_named_unverified():
    sections = set(catalog())
    here = set(PROGRAMS) | {PROCESS, SYNTHETIC}
    assert not here & set(VERIFIED_ELSEWHERE) and not here & set(UNVERIFIED)
    assert sections == here | set(VERIFIED_ELSEWHERE) | set(UNVERIFIED), \
        sorted(sections ^ (here | set(VERIFIED_ELSEWHERE) | set(UNVERIFIED)))
    for section, module in VERIFIED_ELSEWHERE.items():
        assert section in (ROOT / module).read_text() or section.startswith("thanos-"), (section, module)
    assert not unlisted_in_docs((ROOT / "docs" / "test-tools.md").read_text(), UNVERIFIED)


def unlisted_in_docs(text: str, sections) -> list[str]:
    """The unverified sections docs/test-tools.md does not name in its list of them."""
    _, _, part = text.partition("## Metric names read from the real programs")
    return [s for s in sections if f"`{s}`" not in part.split("\n## ")[0]]


# --------------------------------------------------------------------------- the checks can fail

def test_the_checks_fail_on_a_wrong_name_label_type_or_version(readings):
    node = readings["node-exporter"]
    ours = is_ours("node-exporter")
    wrong = [("misspelt", 'rate(node_cpu_second_total{job="node-exporter"}[5m])'),
             ("matcher", 'node_filesystem_avail_bytes{job="node-exporter", mount="/"}'),
             ("by", 'sum by (cpu_mode) (node_cpu_seconds_total{job="node-exporter"})')]
    for where, expr in wrong:
        assert er.problems(er.uses([(where, expr)], ours), node), where
    right = [("right", 'sum by (mode) (rate(node_cpu_seconds_total{job="node-exporter", environment="prod"}[5m]))')]
    assert not er.problems(er.uses(right, ours), node)
    assert er.problems(er.uses([("w", 'probe_success{job="blackbox-http", target="x"}')], is_ours("blackbox")),
                       readings["blackbox"])
    assert er.catalog_problems({"prometheus_tsdb_head_series": "counter"}, readings["prometheus"]) == \
        ["prometheus_tsdb_head_series: exposed as a gauge, listed as a counter"]
    assert er.catalog_problems({"alertmanager_notifications_failed": "counter"}, readings["alertmanager"]) == \
        ["alertmanager_notifications_failed: not exposed"]
    build = readings["prometheus"].build_info
    assert version_problems("prometheus", {"version": "v3.15.0"}, pinned(PROGRAMS["prometheus"]), build)
    assert version_problems("prometheus", {"version": "v3.15.0"}, "v3.15.0", build)
    assert not version_problems("prometheus", {"version": pinned(PROGRAMS["prometheus"])},
                                pinned(PROGRAMS["prometheus"]), build)


def test_the_unverified_list_check_fails_on_a_section_the_docs_leave_out():
    text = (ROOT / "docs" / "test-tools.md").read_text()
    assert unlisted_in_docs(text.replace("`kubelet`", "kubelet"), UNVERIFIED) == ["kubelet"]


# --------------------------------------------------------------------------- last: the alert series

def test_the_prometheus_under_test_writes_the_alert_series_of_its_generated_rules(world):
    """Watchdog fires from the first evaluation of the generated rules; its ALERTS and
    ALERTS_FOR_STATE samples follow the for-state restore (ALERT_SERIES). Last in the module, as
    the wait is up to three evaluation intervals from the start."""
    assert set(ALERT_SERIES) <= set(catalog()[SYNTHETIC]["metrics"])
    under_test = world.under_test_url
    interval = parse_seconds(world.under_test_global["evaluation_interval"])
    deadline = world.began + 3 * interval + 15
    expected = {"ALERTS": {"alertname": "Watchdog", "alertstate": "firing"},
                "ALERTS_FOR_STATE": {"alertname": "Watchdog"}}
    found = {}
    while set(found) != set(expected):
        for name, labels in expected.items():
            matchers = ", ".join(f'{k}="{v}"' for k, v in labels.items())
            if result := world.query(f"{name}{{{matchers}}}", under_test):
                found[name] = result
        if set(found) != set(expected):
            alerts = bench_get(under_test, "/api/v1/alerts", {})["data"]["alerts"]
            assert time.monotonic() < deadline, (
                f"after {time.monotonic() - world.began:.0f} s (evaluation_interval {interval} s) no "
                f"{sorted(set(expected) - set(found))} series, while /api/v1/alerts lists "
                f"{sorted(a['labels']['alertname'] for a in alerts)}")
            time.sleep(1)
    world.note("ALERTS and ALERTS_FOR_STATE of the generated rules appeared")
    [watchdog] = found["ALERTS"]
    # The labels the dashboards group by come from the rule itself, as generated.
    assert {k: watchdog["metric"].get(k) for k in ("severity", "team")} == {"severity": "info", "team": "platform"}, \
        watchdog
    [for_state] = found["ALERTS_FOR_STATE"]
    assert abs(float(for_state["value"][1]) - world.started_at) < 3 * interval + 15, for_state
