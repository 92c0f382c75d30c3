"""The database alerts and dashboards against real servers, the pinned exporters and a real Prometheus.

PostgreSQL and Redis from Debian's packages run on loopback (tests/db_servers.py) as the
application's database and cache. postgres_exporter and redis_exporter (built at the images'
pins) run with the arguments and environment prod generates, with only the addresses changed:
their listen address to a free loopback port, and the server's host:port inside the connection
string to the loopback server; the role, password and database of the connection string are the
generated ones, and the servers are set up to accept exactly those. A real Prometheus scrapes
them with prod's generated scrape jobs (the pod discovery replaced by one static target that
carries the labels Kubernetes' pod discovery would attach to the exporter's pod, so that the
jobs' own relabelling decides) and evaluates copies of the generated rule files in which only
`for:` is shortened (the expressions are compared with the deployed ones).

Each fault is driven for real, the alert awaited (bounded) in Prometheus' /api/v1/alerts, the
fault ended and the resolution awaited. Two alerts look back over a window (PostgresDeadlocks
10 minutes, RedisEvictingKeys 5 minutes): they resolve only once the window has passed without
events. For those, the module checks that the real counter holds still after the fault, then
replays the real scraped samples, held at their last value, through promtool with the same rule
copy, which must fire on the real samples and resolve once the window has passed. The
long-transaction alert wants a transaction older than 300 s (its threshold, which stays as
deployed), then 5 minutes of it: one is opened when the servers start and held, idle in it, while
the other faults run; its scraped age must grow with the clock, and those real samples, continued
at the rate they grew and followed by the real ones after the rollback, go through promtool with
the deployed rule file, which must fire only once threshold and for: have passed and resolve
after the rollback (ten minutes of waiting, not spent). PostgreSQL's own stop comes after that.

What Prometheus scraped from the exporters checks the metric contract: every name of these
exporters that the generated rules and the dashboards use must be exposed, with every label they
select or group on, and metrics/exporters.yaml's sections for the two exporters must match those
readings and name the version they were read from.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import socket
import subprocess
import threading
import time
import urllib.parse
from typing import Optional
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from components.metrics.exporters import DatabaseExporter
from components.settings import duration_seconds
from components.settings.images import DEFAULT_IMAGES
from scripts import dashboard_query_benchmark as bench
from tests import command_lines as cl
from tests import exporter_readings as er
from tests import promql_names as pn
from tests.conftest import ROOT, require_tool
from tests.db_servers import Postgres, Redis
from tests.discovery_run import pod_port_labels
from tests.ports import free_port

KINDS = ("postgres", "redis")
JOBS = {"postgres": "postgres-exporter", "redis": "redis-exporter"}
TOOLS = {"postgres": "postgres_exporter", "redis": "redis_exporter"}
SECTIONS = {"postgres": "postgres_exporter", "redis": "redis_exporter"}  # of metrics/exporters.yaml
PREFIXES = {"postgres": "pg_", "redis": "redis_"}
BUILD_INFO = {"postgres": "postgres_exporter_build_info", "redis": "redis_exporter_build_info"}
# The generated rule files whose expressions read these exporters (recording.yaml: the cache
# recording rules CacheHitRatioLow reads).
RULE_FILES = ("database.yaml", "cache.yaml", "recording.yaml")
# Seconds. postgres_exporter answers a scrape in 1-2 s while PostgreSQL is down (prod's jobs allow
# 10 s): shorter scrapes would time out and lose the pg_up = 0 that PostgresDown reads.
SCRAPE = 3
EVALUATION = 1
FOR = "2s"  # every `for:` of the rule copies: still a pending phase of two evaluations
FIRE_WAIT = 40.0
RESOLVE_WAIT = 40.0
LONG_TRANSACTION = 300  # seconds: PostgresLongRunningTransaction's threshold, as deployed
LONG_TRANSACTION_HELD = 20  # seconds of real samples of the transaction's age, at least

# The servers' settings that the faults need. Connections: 25 slots, 3 of them reserved for
# superusers (PostgreSQL's default). Deadlocks: detected after 100 ms instead of 1 s. Autovacuum:
# each database looked at every second instead of every minute, so that a worker starts at once.
POSTGRES_SETTINGS = {"max_connections": "25", "superuser_reserved_connections": "3", "deadlock_timeout": "100ms",
                     "autovacuum_naptime": "1s",
                     "fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
# Redis as a cache: a small maxmemory with an LRU eviction policy.
REDIS_SETTINGS = {"maxmemory": "8mb", "maxmemory-policy": "allkeys-lru"}
APP_ROLE, APP_DATABASE = "football", "football"


# --------------------------------------------------------------------------- what prod generates

@dataclass
class ExporterCommand:
    kind: str
    argv: list[str]
    env: dict[str, str]
    listen: str
    generated: cl.Container
    connection: urllib.parse.SplitResult  # the generated connection string, parsed
    changes: list[str] = field(default_factory=list)


def generated_exporters(prod) -> dict[str, cl.Container]:
    pods, _ = cl.pods(prod, "prod")
    found = {c.tool: c for pod in pods for c in pod.containers if c.tool in TOOLS.values()}
    assert set(found) == set(TOOLS.values()), f"prod runs {sorted(found)} of {sorted(TOOLS.values())}"
    return {kind: found[TOOLS[kind]] for kind in KINDS}


def exporter_command(kind: str, container: cl.Container, server_port: int) -> ExporterCommand:
    """The container's command line with its listen address and the server's address moved to loopback."""
    env_name = DatabaseExporter.KINDS[kind][3]
    connection = urllib.parse.urlsplit(container.env[env_name])
    argv, env, changes, listen = [], {}, [], None
    for arg in container.args:
        flag, value = cl._split(arg)
        if flag == "--web.listen-address":
            listen = f"127.0.0.1:{free_port()}"
            arg = f"{flag}={listen}"
            changes.append(f"{flag}: {value} -> {listen}")
        argv.append(arg)
    assert listen, f"{container.where}: no --web.listen-address to move to loopback"
    for key, value in container.env.items():
        match = cl.URL.match(value)
        if match and not cl.is_loopback(match.group("host")):
            new = f"{match.group('scheme')}://{match.group('user') or ''}127.0.0.1:{server_port}{match.group('rest') or ''}"
            changes.append(f"${key}: host {match.group('host')}:{match.group('port')} -> 127.0.0.1:{server_port}")
            value = new
        env[key] = value
    assert not cl.unrewritten(argv, env), cl.unrewritten(argv, env)
    return ExporterCommand(kind, argv, env, listen, container, connection, changes)


def generated_rules(prod) -> dict[str, str]:
    data = prod.find("ConfigMap", "prometheus-rules")[0]["data"]
    return {name: data[name] for name in RULE_FILES}


def shortened(text: str) -> str:
    document = yaml.safe_load(text)
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    return yaml.safe_dump(document, sort_keys=False)


def generated_prometheus_config(prod) -> dict:
    return yaml.safe_load(prod.find("ConfigMap", "prometheus-config")[0]["data"]["prometheus.yml"])


def pod_discovery_labels(prod, job: dict, kind: str) -> dict[str, str]:
    """What Kubernetes' pod discovery attaches to the exporter pod's metrics port."""
    deployment = prod.find("Deployment", JOBS[kind])[0]
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    port = next(p for p in container["ports"] if p["containerPort"] == DatabaseExporter.KINDS[kind][1])
    labels = pod_port_labels(deployment["metadata"]["namespace"], f"{JOBS[kind]}-0", "node-0", template,
                             container["name"], port)
    # The discovery a job names must be the pod discovery of the Deployment's namespace.
    [sd] = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod" and labels["__meta_kubernetes_namespace"] in sd["namespaces"]["names"], sd
    return labels


def loopback_job(prod, job: dict, kind: str, address: str) -> dict:
    out = {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
    out["static_configs"] = [{"targets": [address], "labels": pod_discovery_labels(prod, job, kind)}]
    return out


# --------------------------------------------------------------------------- the running stack

class Stack:
    def __init__(self, prod, work: Path):
        self.work, self.prod = work, prod
        self.timeline: list[str] = []
        self.began = time.monotonic()
        self.generated = generated_exporters(prod)
        self.rules = generated_rules(prod)
        self.rule_copies = {name: shortened(text) for name, text in self.rules.items()}
        self.config = generated_prometheus_config(prod)
        self.postgres: Postgres | None = None
        self.redis: Redis | None = None
        self.processes: list[subprocess.Popen] = []
        self.prometheus = None
        self.commands: dict[str, ExporterCommand] = {}
        self.long_transaction: psycopg.Connection | None = None
        self.long_transaction_began = 0.0
        self.started_at = time.time()

    def start(self) -> None:
        # Redis' password is the one the generated REDIS_ADDR carries.
        redis_url = urllib.parse.urlsplit(self.generated["redis"].env[DatabaseExporter.KINDS["redis"][3]])
        self.postgres = Postgres(POSTGRES_SETTINGS)
        self.redis = Redis(redis_url.password or "", REDIS_SETTINGS)
        self.commands = {kind: exporter_command(kind, self.generated[kind], server.port)
                         for kind, server in (("postgres", self.postgres), ("redis", self.redis))}
        self.postgres.start()
        self.set_up_postgres()
        self.redis.start()
        for kind, command in self.commands.items():
            log = open(self.work / f"{TOOLS[kind]}.log", "ab")
            cwd = self.work / TOOLS[kind]
            cwd.mkdir()
            self.processes.append(subprocess.Popen(
                [require_tool(TOOLS[kind]), *command.argv], cwd=cwd,
                env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **command.env}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        rules_dir = self.work / "rules"
        rules_dir.mkdir()
        for name, text in self.rule_copies.items():
            (rules_dir / name).write_text(text)
        jobs = {j["job_name"]: j for j in self.config["scrape_configs"]}
        config = {
            "global": {**self.config["global"], "scrape_interval": f"{SCRAPE}s", "scrape_timeout": f"{SCRAPE}s",
                       "evaluation_interval": f"{EVALUATION}s"},
            "rule_files": [str(rules_dir / name) for name in RULE_FILES],
            # No Alertmanager here: the alerts are read from Prometheus itself.
            "scrape_configs": [loopback_job(self.prod, jobs[JOBS[kind]], kind, self.commands[kind].listen)
                               for kind in KINDS],
        }
        self.prometheus = bench.Prometheus(require_tool("prometheus"), self.work / "tsdb", self.work, [])
        self.prometheus.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.prometheus.start(timeout=60)
        self.await_scraped()
        # The transaction test_a_transaction_held_open ends: open from here on, idle in it.
        self.long_transaction = self.app(autocommit=False)
        self.long_transaction.execute("SELECT score FROM fixtures WHERE id = 1").fetchone()
        self.long_transaction_began = time.time()
        self.note("transaction opened")

    def set_up_postgres(self) -> None:
        """The roles the generated connection string names (pg_monitor: other sessions' transactions,
        which postgres_exporter reads, are hidden from a role without it), and the app's database."""
        dsn = self.commands["postgres"].connection
        database = dsn.path.lstrip("/") or "postgres"
        with self.postgres.connect() as admin:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_monitor").format(
                sql.Identifier(dsn.username), sql.Literal(dsn.password)))
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_ROLE), sql.Literal(self.postgres.password)))
            for name, owner in ((APP_DATABASE, APP_ROLE), (database, "postgres")):
                if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                    admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(owner)))
        with self.app() as app:
            app.execute("CREATE TABLE fixtures (id int PRIMARY KEY, score int NOT NULL)")
            app.execute("INSERT INTO fixtures VALUES (1, 0), (2, 0)")

    def await_scraped(self, timeout: float = 30.0) -> None:
        """Both jobs scraped, both exporters connected to their servers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = {r["metric"]["job"]: r["value"][1] for r in self.query('up{job=~"postgres-exporter|redis-exporter"}')}
            servers = {r["metric"]["__name__"]: r["value"][1] for r in self.query("pg_up or redis_up")}
            if up == {"postgres-exporter": "1", "redis-exporter": "1"} and servers == {"pg_up": "1", "redis_up": "1"}:
                return
            time.sleep(0.5)
        pytest.fail(f"scrapes: {up}, servers: {servers}\n{self.debug()}", pytrace=False)

    def app(self, autocommit: bool = True) -> psycopg.Connection:
        return self.postgres.connect(APP_ROLE, self.postgres.password, APP_DATABASE, autocommit=autocommit)

    def note(self, text: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.began:7.1f}s  {text}")

    def close(self) -> None:
        if self.long_transaction:
            self.long_transaction.close()
        if self.prometheus:
            self.prometheus.stop()
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for server in (self.redis, self.postgres):
            if server:
                server.close()

    # ---- Prometheus
    def query(self, expr: str) -> list[dict]:
        data = self.prometheus.get("/api/v1/query", {"query": expr}, timeout=30)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def alerts(self, name: str) -> list[dict]:
        data = self.prometheus.get("/api/v1/alerts", {}, timeout=30)
        return [a for a in data["data"]["alerts"] if a["labels"]["alertname"] == name]

    def await_firing(self, name: str, labels: dict | None = None, timeout: float = FIRE_WAIT) -> dict:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            for alert in self.alerts(name):
                if alert["state"] == "firing" and all(alert["labels"].get(k) == v for k, v in (labels or {}).items()):
                    self.note(f"{name} firing after {time.monotonic() - start:.1f}s: {alert['labels']}")
                    return alert
            time.sleep(0.25)
        pytest.fail(f"{name} {labels or ''} did not fire within {timeout} s; active alerts: "
                    f"{self.alerts(name)}\n{self.debug()}", pytrace=False)

    def await_resolved(self, name: str, timeout: float = RESOLVE_WAIT) -> None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.alerts(name):
                self.note(f"{name} resolved after {time.monotonic() - start:.1f}s")
                return
            time.sleep(0.25)
        pytest.fail(f"{name} still active {timeout} s after the fault ended: {self.alerts(name)}", pytrace=False)

    def assert_quiet(self, *names: str) -> None:
        active = {n: self.alerts(n) for n in names}
        assert not any(active.values()), f"active before the fault: {active}"

    def debug(self) -> str:
        targets = self.prometheus.get("/api/v1/targets", {}, timeout=30)["data"]["activeTargets"]
        return "targets: " + json.dumps([(t["labels"].get("job"), t["health"], t["lastError"]) for t in targets])

    def target_labels(self, kind: str) -> set[str]:
        targets = self.prometheus.get("/api/v1/targets", {}, timeout=30)["data"]["activeTargets"]
        [target] = [t for t in targets if t["labels"]["job"] == JOBS[kind]]
        return set(target["labels"])


@pytest.fixture(scope="module")
def stack(prod, tmp_path_factory):
    running = Stack(prod, tmp_path_factory.mktemp("database-servers"))
    try:
        running.start()
        yield running
    finally:
        running.close()
        print("\n".join(["", "timeline:"] + running.timeline))


def exposed(stack, kind: str) -> er.Reading:
    """Every series Prometheus scraped from the exporter since the stack started, and its types."""
    job = f'{{job="{JOBS[kind]}"}}'
    series = stack.prometheus.get("/api/v1/series", {"match[]": job, "start": stack.started_at}, timeout=60)
    metadata = stack.prometheus.get("/api/v1/targets/metadata", {"match_target": job}, timeout=60)
    assert series["status"] == metadata["status"] == "success"
    return er.reading(series["data"], metadata["data"], BUILD_INFO[kind])


# --------------------------------------------------------------------------- what is run

def test_the_exporters_run_the_generated_command_lines_with_only_addresses_changed(stack):
    for kind, command in stack.commands.items():
        generated = command.generated
        assert [a for a in command.argv if not a.startswith("--web.listen-address=")] == \
            [a for a in generated.args if not a.startswith("--web.listen-address=")]
        assert command.env.keys() == generated.env.keys()
        for key, value in command.env.items():
            before, after = urllib.parse.urlsplit(generated.env[key]), urllib.parse.urlsplit(value)
            assert (after.scheme, after.username, after.password, after.path, after.query) == \
                (before.scheme, before.username, before.password, before.path, before.query), key
            assert after.hostname == "127.0.0.1"
        assert len(command.changes) == 2, command.changes


def test_the_rule_copies_change_only_for(stack):
    for name, deployed_text in stack.rules.items():
        deployed, copy = yaml.safe_load(deployed_text), yaml.safe_load(stack.rule_copies[name])
        pairs = [(a, b) for ga, gb in zip(deployed["groups"], copy["groups"]) for a, b in zip(ga["rules"], gb["rules"])]
        assert len(pairs) == sum(len(g["rules"]) for g in deployed["groups"]) == \
            sum(len(g["rules"]) for g in copy["groups"])
        for a, b in pairs:
            assert b["expr"] == a["expr"]  # the text Prometheus parses, byte for byte
            assert {k: v for k, v in a.items() if k != "for"} == {k: v for k, v in b.items() if k != "for"}
            assert ("for" in a) == ("for" in b)


def test_prometheus_scrapes_both_exporters_with_the_generated_jobs(stack):
    up = {r["metric"]["job"]: r["value"][1] for r in stack.query('up{job=~"postgres-exporter|redis-exporter"}')}
    servers = {r["metric"]["__name__"]: r["value"][1] for r in stack.query("pg_up or redis_up")}
    assert up == {"postgres-exporter": "1", "redis-exporter": "1"} and servers == {"pg_up": "1", "redis_up": "1"}
    for kind in KINDS:
        labels = stack.target_labels(kind)
        # What the generated relabelling adds to a pod's target, on the scraped series too.
        assert {"job", "instance", "environment", "namespace", "pod", "node"} <= labels, labels
    [series] = stack.query('pg_up{job="postgres-exporter"}')
    assert series["metric"]["environment"] == "prod" and series["metric"]["namespace"] == "monitoring"


# --------------------------------------------------------------------------- PostgreSQL

POSTGRES_ALERTS = ("PostgresDown", "PostgresConnectionsNearMax", "PostgresConnectionsExhausted",
                   "PostgresDeadlocks", "PostgresLongRunningTransaction")


def counted_connections(stack) -> Optional[int]:
    """Client sessions, as the connection alerts count them (autovacuum workers come and go beside);
    None when the last scrape had no count: with every slot taken the exporter's own connection
    can fail, and that scrape reports pg_up 0 without pg_stat_activity."""
    counted = stack.query('sum(pg_stat_activity_count{job="postgres-exporter", backend_type="client backend"})')
    return int(float(counted[0]["value"][1])) if counted else None


def open_until_counted(stack, target: int, connect, held: list, timeout: float = 30.0) -> int:
    """Open sessions until the exporter counts at least target, as Prometheus last scraped it. The
    count is not one's own tally: sessions just closed linger for a moment, and postgres_exporter's
    collectors open a connection of their own at every scrape (collector/collector.go Collect ->
    instance.setup()), which the count sees whenever the two overlap."""
    deadline = time.monotonic() + timeout
    while (count := counted_connections(stack)) is None or count < target:
        assert time.monotonic() < deadline, f"{count} of {target} connections counted after {timeout} s"
        for _ in range(0 if count is None else target - count):
            try:
                held.append(connect())
            except psycopg.OperationalError as error:
                # The exporter's per-scrape connection may hold the last slot for a moment.
                assert "too many clients" in str(error), error
                break
        time.sleep(SCRAPE + EVALUATION)  # a scrape after the last session opened
    return count


def test_connections_near_and_at_max_connections(stack):
    stack.assert_quiet("PostgresConnectionsNearMax", "PostgresConnectionsExhausted")
    max_connections = int(POSTGRES_SETTINGS["max_connections"])
    # The thresholds of the two alerts, as deployed: above 80% and above 95% of max_connections.
    near, exhausted = math.floor(0.8 * max_connections) + 1, math.floor(0.95 * max_connections) + 1
    held: list[psycopg.Connection] = []
    try:
        # The application's role, as many as its slots allow (3 are reserved for superusers).
        open_until_counted(stack, near, stack.app, held)
        alert = stack.await_firing("PostgresConnectionsNearMax", {"environment": "prod", "job": "postgres-exporter"})
        assert 0.8 < float(alert["value"]) <= 0.95 and not stack.alerts("PostgresConnectionsExhausted"), alert
        # The rest as superusers, in the reserved slots.
        open_until_counted(stack, exhausted, stack.postgres.connect, held)
        alert = stack.await_firing("PostgresConnectionsExhausted")
        assert float(alert["value"]) > 0.95
        # The dashboard's gauge reads the exporter's persistent connection, which stays while a
        # scrape's second connection is refused: it shows the exhaustion instead of going blank.
        assert connections_used(stack) > 0.95
        stack.note(f"{len(held)} sessions held")
    finally:
        for connection in held:
            connection.close()
    stack.await_resolved("PostgresConnectionsExhausted")
    stack.await_resolved("PostgresConnectionsNearMax")


def session_selectors(stack) -> list[tuple[str, str]]:
    """Every selector of a pg_stat_activity_* series in the rules and dashboards, as PromQL without
    the matchers on Grafana's variables (whose values the dashboards choose)."""
    found = []
    for where, expr in rule_and_dashboard_exprs(stack):
        for selector in pn.selectors(expr):
            if (selector.name or "").startswith("pg_stat_activity_"):
                matchers = [f"{label}{op}{json.dumps(value)}" for label, op, value in selector.matchers
                            if label != "__name__" and not value.startswith(pn.var_placeholder(""))]
                found.append((where, f"{selector.name}{{{', '.join(matchers)}}}"))
    return found


def test_background_processes_are_not_counted_as_sessions(stack):
    """pg_stat_activity lists PostgreSQL's own processes too, and postgres_exporter reports them
    beside the clients (label backend_type): an autovacuum worker runs each table in one
    transaction, state active, for as long as the table takes, and neither it nor any other
    background process holds a slot of max_connections. A real worker is kept busy on a table
    vacuumed slowly (its cost limit at the minimum); every rule and dashboard selector of
    pg_stat_activity_* must read client sessions and nothing else, while the worker is scraped."""
    selectors = session_selectors(stack)
    assert len(selectors) >= 5, selectors
    with stack.app() as app:
        app.execute("CREATE TABLE vacuumed (id int, pad text) WITH (autovacuum_vacuum_cost_delay = 100, "
                    "autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_threshold = 0, "
                    "autovacuum_vacuum_scale_factor = 0)")
        app.execute("INSERT INTO vacuumed SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g")
        app.execute("DELETE FROM vacuumed WHERE id % 2 = 0")
    try:
        worker = (f'pg_stat_activity_max_tx_duration{{job="postgres-exporter", datname="{APP_DATABASE}", '
                  'state="active", backend_type="autovacuum worker"} > 1')
        deadline = time.monotonic() + FIRE_WAIT
        while not stack.query(worker):
            assert time.monotonic() < deadline, f"no autovacuum worker scraped: {stack.query('pg_stat_activity_count')}"
            time.sleep(1)
        stack.note("autovacuum worker scraped")
        for where, selector in selectors:
            read = stack.query(selector)
            assert read, f"{where}: {selector} reads nothing"
            others = sorted({r["metric"].get("backend_type", "") for r in read} - {"client backend"})
            assert not others, f"{where}: {selector} also reads backend_type {others}"
    finally:
        # The worker gives way to the lock DROP TABLE waits for.
        with stack.app() as app:
            app.execute("DROP TABLE vacuumed")


def deadlock(stack) -> None:
    """Two sessions update the same two rows in opposite order: PostgreSQL aborts one of them."""
    first, second = stack.app(autocommit=False), stack.app(autocommit=False)
    errors: list[Exception] = []
    try:
        for session in (first, second):
            session.execute("SET statement_timeout = '15s'")  # a detector that never acts fails, not hangs
        first.execute("UPDATE fixtures SET score = score + 1 WHERE id = 1")
        second.execute("UPDATE fixtures SET score = score + 1 WHERE id = 2")

        def blocked():
            try:
                first.execute("UPDATE fixtures SET score = score + 1 WHERE id = 2")
            except psycopg.errors.DeadlockDetected as error:
                errors.append(error)

        waiter = threading.Thread(target=blocked, daemon=True)
        waiter.start()
        with stack.postgres.connect() as watcher:
            deadline = time.monotonic() + 10
            while not watcher.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND datname = %s", [APP_DATABASE]).fetchone():
                assert time.monotonic() < deadline, "the first session never waited for the second's row"
                time.sleep(0.05)
        try:
            second.execute("UPDATE fixtures SET score = score + 1 WHERE id = 1")
        except psycopg.errors.DeadlockDetected as error:
            errors.append(error)
        waiter.join(timeout=10)
        assert len(errors) == 1, errors
    finally:
        for session in (first, second):
            session.rollback()
            session.close()


def raw_samples(stack, selector: str, seconds: int) -> list[dict]:
    return stack.query(f"{selector}[{seconds}s]")


def hold_still(stack, selector: str, scrapes: int = 4) -> None:
    """The counter has stopped: its last scrapes all read the same value."""
    deadline = time.monotonic() + scrapes * SCRAPE + 15
    while time.monotonic() < deadline:
        time.sleep(SCRAPE)
        series = raw_samples(stack, selector, scrapes * SCRAPE)
        if series and all(len(s["values"]) >= scrapes and len({v for _, v in s["values"]}) == 1 for s in series):
            stack.note(f"{selector} holds still over {scrapes} scrapes")
            return
    pytest.fail(f"{selector} still moves after the fault: {raw_samples(stack, selector, scrapes * SCRAPE)}")


def replay_resolves(stack, promtool: str, rule_file: str, alert: dict, selector: str, window: int, tmp_path) -> None:
    """The real samples of selector, held at their last value, through promtool with the same rule
    copy: the alert fires at the last real sample and has resolved once the window has passed."""
    series = raw_samples(stack, selector, 900)
    start = min(float(v[0]) for s in series for v in s["values"])
    end = max(float(v[0]) for s in series for v in s["values"])
    steps = round((end - start) / SCRAPE)
    hold = (window + 60) // SCRAPE
    inputs = []
    for s in series:
        grid = ["_"] * (steps + 1)
        for t, value in s["values"]:
            grid[round((float(t) - start) / SCRAPE)] = value
        last = s["values"][-1][1]
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(s["metric"].items()) if k != "__name__")
        inputs.append({"series": f'{s["metric"]["__name__"]}{{{labels}}}', "values": " ".join(grid) + f" {last}x{hold}"})
    firing = ", ".join(f'{k}="{v}"' for k, v in sorted({**alert["labels"], "alertstate": "firing"}.items()))
    query = f'ALERTS{{alertname="{alert["labels"]["alertname"]}", alertstate="firing"}}'
    (tmp_path / rule_file).write_text(stack.rule_copies[rule_file])
    test = {"rule_files": [rule_file], "evaluation_interval": f"{EVALUATION}s", "tests": [{
        "interval": f"{SCRAPE}s", "input_series": inputs,
        "promql_expr_test": [
            {"expr": query, "eval_time": f"{steps * SCRAPE}s", "exp_samples": [{"labels": f"ALERTS{{{firing}}}", "value": 1}]},
            {"expr": query, "eval_time": f"{steps * SCRAPE + window + 30}s", "exp_samples": []},
        ]}]}
    (tmp_path / "replay_test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run([promtool, "test", "rules", "replay_test.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stack.note(f"{alert['labels']['alertname']}: replay of {steps + 1} real scrapes resolves after the {window}s window")


def test_real_deadlocks(stack, tmp_path):
    stack.assert_quiet("PostgresDeadlocks")
    # More than 3 in the window: 5, each aborted by PostgreSQL's deadlock detector.
    for _ in range(5):
        deadlock(stack)
    stack.note("5 deadlocks")
    alert = stack.await_firing("PostgresDeadlocks", {"datname": APP_DATABASE})
    selector = f'pg_stat_database_deadlocks{{job="postgres-exporter", datname="{APP_DATABASE}"}}'
    hold_still(stack, selector)
    replay_resolves(stack, require_tool("promtool"), "database.yaml", alert, selector, 600, tmp_path)


# --------------------------------------------------------------------------- Redis

def test_memory_filled_past_maxmemory(stack, tmp_path):
    stack.assert_quiet("RedisMemoryNearMax", "RedisEvictingKeys")
    value = b"x" * 1024
    with stack.redis.client() as client:
        maxmemory = int(client.config_get("maxmemory")["maxmemory"])
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
        # Twice maxmemory in 1 KiB values: the LRU policy evicts about half of them.
        with client.pipeline(transaction=False) as pipe:
            for i in range(2 * maxmemory // len(value)):
                pipe.set(f"fixture:{i}", value)
                if i % 500 == 499:
                    pipe.execute()
            pipe.execute()
        evicted = client.info("stats")["evicted_keys"]
        assert evicted > 0
        stack.note(f"Redis filled: {evicted} keys evicted")
        stack.await_firing("RedisMemoryNearMax", {"job": "redis-exporter"})
        alert = stack.await_firing("RedisEvictingKeys", {"job": "redis-exporter"})
        client.flushall()
        stack.note("Redis flushed")
    stack.await_resolved("RedisMemoryNearMax")
    selector = 'redis_evicted_keys_total{job="redis-exporter"}'
    hold_still(stack, selector)
    replay_resolves(stack, require_tool("promtool"), "cache.yaml", alert, selector, 300, tmp_path)


def connections_used(stack) -> float:
    """The PostgreSQL dashboard's "Connections used" gauge, as Grafana sends it for prod."""
    [target] = [t for t in bench.dashboard_targets(ROOT / "dashboards" / "postgresql.json")
                if t.panel == "Connections used"]
    result = stack.query(bench.interpolate(target.expr, {"environment": "prod", "instance": ".*"}))
    assert len(result) == 1, (target.expr, result)
    return float(result[0]["value"][1])


def keyspace_hit_ratio(stack) -> float:
    """The Redis dashboard's "Keyspace hit ratio (5m)" panel, as Grafana sends it for prod."""
    [target] = [t for t in bench.dashboard_targets(ROOT / "dashboards" / "redis.json")
                if t.panel == "Keyspace hit ratio (5m)"]
    query = bench.interpolate(target.expr, {"environment": "prod", "instance": ".*"})
    result = stack.query(query)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_a_burst_of_misses(stack):
    """Misses on the real Redis pull the dashboard's keyspace hit ratio under the 60% that
    CacheHitRatioLow names. That alert itself reads the application's per-cache counters
    (cache:cache_hit_ratio:rate5m over cache_hits_total / cache_misses_total), which no Redis
    server exposes: no deployed alert reads redis_keyspace_hits_total / _misses_total."""
    with stack.redis.client() as client:
        client.set("fixture:known", "1")
        for _ in range(50):
            assert client.get("fixture:known") == b"1"
        deadline = time.monotonic() + 20
        while (before := keyspace_hit_ratio(stack)) < 0.6 or math.isnan(before):
            assert time.monotonic() < deadline, before
            time.sleep(SCRAPE)
        with client.pipeline(transaction=False) as pipe:
            for i in range(2000):
                pipe.get(f"fixture:missing:{i}")
            assert set(pipe.execute()) == {None}
    deadline = time.monotonic() + 20
    while (after := keyspace_hit_ratio(stack)) >= 0.6:
        assert time.monotonic() < deadline, after
        time.sleep(SCRAPE)
    stack.note(f"keyspace hit ratio {before:.2f} -> {after:.2f} after 2000 misses")


# --------------------------------------------------------------------------- dashboards

def exporter_names(kind: str) -> set[str]:
    catalog = yaml.safe_load((ROOT / "metrics" / "exporters.yaml").read_text())["exporters"]
    return set(catalog[SECTIONS[kind]]["metrics"])


@pytest.mark.parametrize("dashboard, kind", [("postgresql", "postgres"), ("redis", "redis")])
def test_the_dashboard_queries_return_data_from_the_real_exporter(stack, dashboard, kind):
    """Every panel and variable query that reads only this exporter returns data; the others read
    other jobs (probes, the application's own series) and are named, not run."""
    path = ROOT / "dashboards" / f"{dashboard}.json"
    ours = exporter_names(kind) | {"up"}
    # Over the last 5 minutes, at the stack's 30 s step (its Grafana datasource's interval).
    time_range = bench.TimeRange("5m", 300, int(time.time()))
    results: list[bench.Result] = []
    values = bench.resolve_variables(stack.prometheus, path, time_range, "prod", results)
    checked, others = 0, []
    for target in bench.dashboard_targets(path):
        names = pn.metric_names(target.expr)
        if not names <= ours:
            others.append(f"{target.where}: {sorted(names - ours)}")
            continue
        results.append(bench.run_query(stack.prometheus, target, time_range, values, repeat=1))
        checked += 1
    bad = [f"{r.target.where}: {r.error or 'no data'}: {r.query}" for r in results if r.error or r.empty]
    assert not bad, "\n".join(bad)
    assert checked >= 10 and any(r.target.kind == "variable" for r in results)
    stack.note(f"{dashboard}: {checked} panel queries and {sum(r.target.kind == 'variable' for r in results)} "
               f"variables return data; not from the exporter: {others}")


# --------------------------------------------------------------------------- the metric contract

def rule_and_dashboard_exprs(stack) -> list[tuple[str, str]]:
    """Every expression Prometheus evaluates (every generated rule file) and Grafana sends."""
    data = stack.prod.find("ConfigMap", "prometheus-rules")[0]["data"]
    items = [(f"{name} {rule.get('alert') or rule.get('record')}", rule["expr"])
             for name, text in sorted(data.items()) for group in yaml.safe_load(text)["groups"]
             for rule in group["rules"]]
    for path in pn.dashboard_files(ROOT):
        items += [(f"{path.name} {where}", expr) for where, expr in pn.iter_dashboard_exprs(pn.load_dashboard(path))]
    return items


def is_ours(kind: str):
    names = exporter_names(kind)
    return lambda name: name in names or name.startswith(PREFIXES[kind])


def test_every_name_and_label_the_rules_and_dashboards_use_is_exposed(stack):
    items = rule_and_dashboard_exprs(stack)
    for kind in KINDS:
        found = er.uses(items, is_ours(kind))
        assert len({u.name for u in found}) >= 15, sorted({u.name for u in found})
        problems = er.problems(found, exposed(stack, kind))
        assert not problems, "\n".join(problems)


def test_exporters_yaml_matches_the_readings_and_names_their_version(stack):
    catalog = yaml.safe_load((ROOT / "metrics" / "exporters.yaml").read_text())["exporters"]
    for kind in KINDS:
        reading = exposed(stack, kind)
        section = catalog[SECTIONS[kind]]
        pinned = DEFAULT_IMAGES[DatabaseExporter.KINDS[kind][0]].rsplit(":", 1)[1]
        assert section.get("version") == pinned, f"{SECTIONS[kind]}: read from {section.get('version')}, pinned {pinned}"
        assert reading.build_info["version"].lstrip("v") == pinned.lstrip("v"), reading.build_info
        assert section["jobs"] == [JOBS[kind]]
        problems = er.catalog_problems(section["metrics"], reading)
        assert not problems, f"metrics/exporters.yaml {SECTIONS[kind]} (read from {pinned}):\n" + "\n".join(problems)


# --------------------------------------------------------------------------- the held transaction, then the stops

def unix_time(rfc3339: str) -> float:
    """Prometheus' timestamps (UTC, up to nanoseconds) as Unix seconds."""
    whole, _, fraction = rfc3339.rstrip("Z").partition(".")
    moment = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def parse_seconds(duration: str) -> int:
    """A rule's for: of one unit (the rule files use no other form; anything else fails here)."""
    number, unit = duration[:-1], duration[-1]
    assert number.isdigit() and unit in "smh", duration
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def test_a_transaction_held_open(stack, tmp_path):
    """The transaction opened when the servers started, held while the faults above ran.

    Its age is real: postgres_exporter reads it from pg_stat_activity, and the test checks that the
    scraped value grows with the clock and names the transaction's database and state. What is not
    waited for is the clock itself (the alert wants more than 300 s, then 5 minutes of it): the real
    samples, continued at the rate they grew, then the real samples after the rollback, go through
    promtool with the DEPLOYED rule file (its for: included), which must stay quiet until the
    threshold and the for: have both passed, fire, and resolve after the rollback."""
    selector = (f'pg_stat_activity_max_tx_duration{{job="postgres-exporter", datname="{APP_DATABASE}", '
                f'state="idle in transaction"}}')
    deadline = time.monotonic() + FIRE_WAIT
    while time.time() - stack.long_transaction_began < LONG_TRANSACTION_HELD or len(
            (raw_samples(stack, selector, 900) or [{"values": []}])[0]["values"]) < 4:
        assert time.monotonic() < deadline, raw_samples(stack, selector, 900)
        time.sleep(1)
    # One series per client (application, user, backend type): the transaction's is the oldest.
    held = max(raw_samples(stack, selector, 900), key=lambda x: float(x["values"][-1][1]))
    times = [float(t) for t, _ in held["values"]]
    ages = [float(v) for _, v in held["values"]]
    rate = (ages[-1] - ages[0]) / (times[-1] - times[0])
    assert 0.9 < rate < 1.1, held["values"]  # an age in seconds, read afresh at every scrape
    assert abs(ages[-1] - (times[-1] - stack.long_transaction_began)) < SCRAPE + 2, (held["values"], stack.long_transaction_began)
    stack.long_transaction.rollback()
    stack.note(f"transaction held {ages[-1]:.0f} s, its age growing {rate:.2f} s/s; ended")
    # After the rollback the client's series reads age 0, or is gone with its state, or reads the
    # younger age of another transaction of a session with the same labels (the exporter reports
    # the oldest per database, state, user and application: one of the module's other sessions
    # idle in a transaction of its own); either way no longer the held one's.
    deadline = time.monotonic() + FIRE_WAIT
    while True:
        after = [x for x in raw_samples(stack, selector, 900) if x["metric"] == held["metric"]]
        ended = [(float(t), float(v)) for x in after for t, v in x["values"] if float(t) > times[-1]]
        if len(ended) >= 3 and all(v == 0 or v < ages[-1] - SCRAPE for _, v in ended[-3:]) or (
                not ended and time.time() > times[-1] + 3 * SCRAPE + 2):
            break
        assert time.monotonic() < deadline, after
        time.sleep(1)

    deployed = stack.rules["database.yaml"]
    [rule] = [r for g in yaml.safe_load(deployed)["groups"] for r in g["rules"] if r.get("alert") == "PostgresLongRunningTransaction"]
    hold = parse_seconds(rule["for"])
    # Steps of SCRAPE seconds: the real samples, then the age growing at the real rate until the
    # threshold and the for: have passed (and a minute more), then the real samples after the rollback.
    grown = math.ceil((LONG_TRANSACTION + hold + 60 - ages[-1]) / SCRAPE)
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(held["metric"].items()) if k != "__name__")
    values = " ".join(f"{v:.3f}" for v in ages) + f" {ages[-1] + rate * SCRAPE:.3f}+{rate * SCRAPE:.3f}x{grown - 1}"
    values += (" " + " ".join(f"{v:.0f}" for _, v in ended) + f" 0x{(hold + 60) // SCRAPE}" if ended
               else " stale")
    crossed = len(ages) + math.ceil((LONG_TRANSACTION - ages[-1]) / (rate * SCRAPE))  # first step above 300 s
    last_grown = len(ages) + grown - 1
    expected = {k: held["metric"][k] for k in ("environment", "job", "instance", "datname", "state")}
    expected.update({"alertname": rule["alert"], "alertstate": "firing", **rule["labels"]})
    firing = ", ".join(f'{k}="{v}"' for k, v in sorted(expected.items()))
    query = f'ALERTS{{alertname="{rule["alert"]}", alertstate="firing"}}'
    at = lambda step: f"{step * SCRAPE}s"  # noqa: E731
    (tmp_path / "database.yaml").write_text(deployed)
    test = {"rule_files": ["database.yaml"], "evaluation_interval": "30s", "tests": [{
        "interval": f"{SCRAPE}s",
        "input_series": [{"series": f"{held['metric']['__name__']}{{{labels}}}", "values": values}],
        "promql_expr_test": [
            # Above the threshold, but not yet for the whole of the for:.
            {"expr": query, "eval_time": at(crossed + (hold - 60) // SCRAPE), "exp_samples": []},
            {"expr": query, "eval_time": at(last_grown), "exp_samples": [{"labels": f"ALERTS{{{firing}}}", "value": 1}]},
            # Two rule evaluations (30 s apart) after the rollback was scraped.
            {"expr": query, "eval_time": at(last_grown + 1 + len(ended) + 60 // SCRAPE), "exp_samples": []},
        ]}]}
    (tmp_path / "replay_test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run([require_tool("promtool"), "test", "rules", "replay_test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stack.note(f"{rule['alert']}: the deployed rule on the real ages, continued {grown * SCRAPE} s, fires and resolves")


def test_postgres_stopped(stack):
    stack.assert_quiet("PostgresDown")
    stack.postgres.stop()
    stack.note("PostgreSQL stopped")
    try:
        stack.await_firing("PostgresDown", {"job": "postgres-exporter"})
    finally:
        stack.postgres.start()
        stack.note("PostgreSQL started")
    stack.await_resolved("PostgresDown")


def test_redis_stopped(stack):
    stack.assert_quiet("RedisDown")
    stack.redis.stop()
    stack.note("Redis stopped")
    try:
        stack.await_firing("RedisDown", {"job": "redis-exporter"})
    finally:
        stack.redis.start()
        stack.note("Redis started")
    stack.await_resolved("RedisDown")


class Silent:
    """A server that hangs: it accepts connections and never says a word (a wedged process; an
    address that drops packets keeps the client waiting the same way)."""

    def __enter__(self) -> int:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[1]

    def _accept(self) -> None:
        try:
            while True:
                self.held.append(self.sock.accept()[0])
        except OSError:
            pass  # closed

    def __exit__(self, *_) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_server_that_hangs_reads_as_down_within_the_scrape_timeout(stack):
    """Each exporter, run with its generated command line and connection string (only the
    addresses moved), against a server that hangs: it must answer the scrape within its generated
    job's scrape timeout, with pg_up or redis_up 0. An exporter that waits longer (lib/pq without
    connect_timeout waits for ever, redis_exporter 15 s by default) loses the scrape: up turns 0,
    PostgresDown and RedisDown see nothing, and only TargetDown fires, naming the exporter."""
    jobs = {j["job_name"]: j for j in stack.config["scrape_configs"]}
    with Silent() as port:
        for kind in KINDS:
            budget = duration_seconds(jobs[JOBS[kind]].get("scrape_timeout", stack.config["global"]["scrape_timeout"]))
            command = exporter_command(kind, stack.generated[kind], port)
            log = open(stack.work / f"{TOOLS[kind]}-silent.log", "ab")
            proc = subprocess.Popen([require_tool(TOOLS[kind]), *command.argv], cwd=stack.work,
                                    env={"PATH": "/usr/bin:/bin", "HOME": str(stack.work), **command.env},
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            log.close()
            try:
                deadline = time.monotonic() + 30
                while True:  # its landing page, which asks nothing of the server
                    try:
                        urllib.request.urlopen(f"http://{command.listen}/", timeout=2).read()
                        break
                    except OSError:
                        assert proc.poll() is None and time.monotonic() < deadline, f"{kind} exporter did not start"
                        time.sleep(0.2)
                for _ in range(2):  # the first scrape and one after it
                    began = time.monotonic()
                    try:
                        body = urllib.request.urlopen(f"http://{command.listen}/metrics", timeout=budget).read().decode()
                    except OSError as error:
                        pytest.fail(f"{kind} exporter gave no answer within the scrape timeout ({budget:.0f} s): {error}",
                                    pytrace=False)
                    took = time.monotonic() - began
                    up = re.findall(rf"^{PREFIXES[kind]}up (\S+)$", body, re.M)
                    assert up == ["0"], (kind, up)
                stack.note(f"{kind} exporter: a server that hangs reads {PREFIXES[kind]}up 0 after {took:.1f} s "
                           f"(scrape timeout {budget:.0f} s)")
            finally:
                proc.terminate()
                proc.wait(timeout=10)


# --------------------------------------------------------------------------- the checks can fail

def test_the_contract_checks_fail_on_a_wrong_name_label_or_type(stack):
    reading = exposed(stack, "postgres")
    ours = is_ours("postgres")
    wrong = [("misspelt", 'sum(pg_stat_database_deadlock{job="postgres-exporter"})'),
             ("label", 'sum by (database) (pg_stat_database_deadlocks{job="postgres-exporter"})'),
             ("matcher", 'pg_stat_activity_count{job="postgres-exporter", status="idle"}'),
             ("on", 'pg_up * on (cluster) group_left pg_postmaster_start_time_seconds')]
    for where, expr in wrong:
        assert er.problems(er.uses([(where, expr)], ours), reading), where
    right = [("right", 'sum by (datname, state) (pg_stat_activity_count{job="postgres-exporter", environment="prod"})')]
    assert not er.problems(er.uses(right, ours), reading)
    assert er.catalog_problems({"pg_stat_database_deadlocks": "gauge"}, reading) == \
        ["pg_stat_database_deadlocks: exposed as a counter, listed as a gauge"]
    assert er.catalog_problems({"pg_stat_replication_pg_wal_lsn_diff": "gauge"}, reading) == \
        ["pg_stat_replication_pg_wal_lsn_diff: not exposed"]
