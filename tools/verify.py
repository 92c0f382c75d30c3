"""Post-deploy verification: check the live monitoring system of a stack and report.

    .venv/bin/python -m tools.verify --stack prod
    .venv/bin/python -m tools.verify --outputs outputs.json --prometheus-url http://127.0.0.1:9090 ...

It reads the stack outputs (``pulumi stack output --json --show-secrets``, or a saved copy), finds
each service's URL (an override, else the ``*ExternalUrl`` output, else the in-cluster URL; for an
in-cluster ``*.svc`` address that does not resolve here it prints the ``kubectl port-forward``
command to run), then runs the checks of ``CHECKS`` in order and prints one line per result:
``PASS``/``WARN``/``FAIL``/``SKIP``, the check, the numbers and, for a failure, what to do. The exit
status is 1 when anything failed, 2 when the outputs cannot be read, else 0. See docs/verify.md.

Checks are independent functions registered with ``@check(name, needs=(services...))``; a service's
``*.ready`` check gates the rest of its checks. Optional services (Elasticsearch, Jaeger) are only
checked when their URL output (``elasticsearchUrl``, ``jaegerUrl``) or override exists.

The Alertmanager delivery check POSTs uniquely labelled test alerts (one per receiver with an
integration, labels chosen by walking the route tree), confirms through Alertmanager's own
metrics that every integration delivered and none failed, then resolves the test alerts.

Standard library plus PyYAML only, so it runs wherever the project's venv exists. Every request has
a timeout and every wait is bounded.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TextIO

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "football-monitoring"

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"

# Grafana datasource uids provisioned by components/configs/grafana.py (PROMETHEUS_UID,
# ALERTMANAGER_UID); repeated here so this module needs nothing but the standard library and
# PyYAML (tests/test_verify.py checks that they agree).
GRAFANA_DATASOURCES = (("prometheus", "prometheus"), ("alertmanager", "alertmanager"))  # (uid, type)

TEST_ALERTNAME = "FootballMonitoringVerification"
TEST_SERVICE = "football-monitoring-verify"
PEER_TIMEOUT = 15.0  # Alertmanager's --cluster.peer-timeout default: the wait per cluster position
ROUTE_DEFAULTS = {"group_wait": 30.0, "group_interval": 300.0}  # Alertmanager's route defaults


# --------------------------------------------------------------------------- results and report

@dataclass
class Result:
    status: str  # PASS | WARN | FAIL | SKIP
    check: str  # e.g. prometheus.targets
    summary: str  # what was checked and the numbers, one line
    details: list[str] = field(default_factory=list)  # one item per line (down targets, bad rules...)
    action: str = ""  # what to do (failures and warnings)


class Report:
    """Prints results as they come (one line each, details indented), then a summary."""

    def __init__(self, out: TextIO, *, verbose: bool = False, redact: Iterable[str] = ()) -> None:
        self.out, self.verbose = out, verbose
        self.redact = [s for s in redact if s and len(s) >= 4]
        self.results: list[Result] = []

    def _clean(self, text: str) -> str:
        for secret in self.redact:  # belt and braces: no check ever formats a secret
            text = text.replace(secret, "****")
        return text

    def line(self, text: str = "") -> None:
        self.out.write(self._clean(text) + "\n")
        self.out.flush()

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.line(f"{result.status}  {result.check:<34} {result.summary}")
        if result.status in (FAIL, WARN) or self.verbose:
            for detail in result.details:
                self.line(f"        {detail}")
        if result.action and result.status in (FAIL, WARN):
            self.line(f"        what to do: {result.action}")

    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    def exit_code(self) -> int:
        return 1 if self.counts()[FAIL] else 0

    def summary(self) -> None:
        c = self.counts()
        verdict = "FAILED" if c[FAIL] else "OK"
        self.line()
        self.line(f"{c[PASS]} passed, {c[WARN]} warnings, {c[FAIL]} failed, {c[SKIP]} skipped: {verdict} "
                  f"(exit {self.exit_code()})")


# --------------------------------------------------------------------------- HTTP

class Unreachable(Exception):
    """No HTTP answer at all (DNS, connection refused, timeout, TLS)."""


@dataclass
class Response:
    status: int
    body: bytes
    url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as error:
            raise ValueError(f"{self.url}: not JSON ({error}): {self.body[:120]!r}") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


MAX_BODY = 64 << 20  # /api/v1/targets of a large cluster is tens of MiB; a truncated body would not parse
_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[?::1\]?)$")


class Http:
    """urllib with a timeout on every request; credentials are never forwarded on a redirect."""

    def __init__(self, timeout: float = 10.0, insecure: bool = False, extra_ca_pem: Optional[str] = None) -> None:
        self.timeout = timeout
        self.context = ssl.create_default_context()
        if extra_ca_pem:
            # The stack's own CA (output elasticsearchCaCertificate), trusted besides the system's.
            try:
                self.context.load_verify_locations(cadata=extra_ca_pem)
            except (ssl.SSLError, ValueError) as error:
                raise ValueError(f"elasticsearchCaCertificate is not a PEM certificate: {error}") from None
        if insecure:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        https = urllib.request.HTTPSHandler(context=self.context)
        self._proxied = urllib.request.build_opener(https)
        self._direct = urllib.request.build_opener(https, urllib.request.ProxyHandler({}))

    def request(self, method: str, url: str, *, body: Any = None, auth: Optional[tuple[str, str]] = None,
                timeout: Optional[float] = None) -> Response:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", f"{PROJECT}-verify")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {token}")
        host = urllib.parse.urlsplit(url).hostname or ""
        opener = self._direct if _LOOPBACK.match(host) else self._proxied  # port-forwards bypass proxies
        try:
            with opener.open(request, timeout=timeout or self.timeout) as response:
                return Response(response.status, response.read(MAX_BODY), url)
        except urllib.error.HTTPError as error:
            try:
                payload = error.read(1 << 16)
            except OSError:
                payload = b""
            return Response(error.code, payload, url)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise Unreachable(f"{method} {url}: {reason}") from None

    def get(self, url: str, **kwargs) -> Response:
        return self.request("GET", url, **kwargs)


def join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


# --------------------------------------------------------------------------- endpoints

@dataclass(frozen=True)
class Service:
    name: str
    option: str  # argparse dest of the URL override
    outputs: tuple[str, ...]  # output keys holding its URL, most reachable first
    port: int  # usual port, for port-forward hints
    optional: bool = False  # checked only when one of its outputs (or the override) exists


SERVICES = {
    s.name: s for s in (
        Service("prometheus", "prometheus_url", ("prometheusExternalUrl", "prometheusUrl"), 9090),
        Service("alertmanager", "alertmanager_url", ("alertmanagerExternalUrl", "alertmanagerUrl"), 9093),
        Service("grafana", "grafana_url", ("grafanaExternalUrl", "grafanaUrl"), 3000),
        # Logging (on Kubernetes) and tracing (tracing.enabled) are not in every stack: their checks run
        # where these outputs exist (components/stack.py:outputs).
        Service("elasticsearch", "elasticsearch_url", ("elasticsearchExternalUrl", "elasticsearchUrl"), 9200,
                optional=True),
        Service("jaeger", "jaeger_url", ("jaegerExternalUrl", "jaegerUrl"), 16686, optional=True),
    )
}


@dataclass
class Endpoint:
    service: str
    url: Optional[str]  # None: not usable (see problem) or not deployed
    source: str = ""  # where the URL came from: an option or an output name
    problem: str = ""  # why there is no usable URL, with what to do
    absent: bool = False  # an optional service without any URL output: not deployed


def resolves(host: str, timeout: float = 3.0) -> bool:
    """getaddrinfo with a bound (it has no timeout of its own)."""
    found: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None)
            found.append(True)
        except (OSError, UnicodeError):
            found.append(False)

    worker = threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(found and found[0])


def port_forward_hint(service: Service, url: str, namespace: str) -> Optional[str]:
    """The kubectl port-forward command for an in-cluster ``<svc>.<namespace>.svc`` URL, if it is one."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?", host)
    if not match:
        return None
    svc, ns = match.group(1), match.group(2) or namespace
    port = parts.port or service.port
    option = "--" + service.option.replace("_", "-")
    return (f"{host} is an in-cluster address that does not resolve here; in another terminal run\n"
            f"            kubectl --namespace {ns} port-forward svc/{svc} {port}:{port}\n"
            f"          then add {option} http://127.0.0.1:{port}")


def find_endpoint(service: Service, outputs: dict, override: Optional[str],
                  resolver: Callable[[str], bool] = resolves) -> Endpoint:
    option = "--" + service.option.replace("_", "-")
    if override:
        return Endpoint(service.name, override.rstrip("/"), option)
    candidates = [(key, outputs[key]) for key in service.outputs if isinstance(outputs.get(key), str)]
    if not candidates:
        if service.optional:
            return Endpoint(service.name, None, absent=True,
                            problem=f"no {' or '.join(service.outputs)} output (not deployed in this stack)")
        return Endpoint(service.name, None, problem=f"the outputs have no {' or '.join(service.outputs)}: "
                                                    f"pass {option} URL")
    for key, url in candidates:
        host = urllib.parse.urlsplit(url).hostname
        if host and resolver(host):
            return Endpoint(service.name, url.rstrip("/"), key)
    key, url = candidates[-1]  # the in-cluster URL
    hint = port_forward_hint(service, url, str(outputs.get("namespace") or ""))
    tried = ", ".join(f"{k}={u}" for k, u in candidates)
    return Endpoint(service.name, None, key,
                    problem=hint or f"no host of {tried} resolves from here: pass {option} with a reachable URL "
                                    f"(on a Docker host the UIs are published on docker.bindAddress)")


# --------------------------------------------------------------------------- context and registry

@dataclass
class Options:
    stack: Optional[str] = None
    alertmanager_replicas: Optional[int] = None
    delivery: bool = True
    delivery_timeout: Optional[float] = None
    receivers: list[str] = field(default_factory=list)  # only these (empty: all)
    skip_receivers: list[str] = field(default_factory=list)
    receiver_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    grafana_password_file: Optional[str] = None
    only: list[str] = field(default_factory=list)  # check name prefixes (empty: all)
    poll_interval: float = 1.0


@dataclass
class Context:
    outputs: dict
    endpoints: dict[str, Endpoint]  # an Endpoints: found on first use
    http: Http
    options: Options
    report: Report
    down: dict[str, str] = field(default_factory=dict)  # service -> why its other checks are skipped
    cache: dict[str, Any] = field(default_factory=dict)

    def url(self, service: str, path: str) -> str:
        endpoint = self.endpoints[service]
        assert endpoint.url, service
        return join(endpoint.url, path)

    def get_json(self, service: str, path: str, *, auth: Optional[tuple[str, str]] = None) -> Any:
        """GET ``path`` of a service; HTTP errors raise with the status and the start of the body."""
        response = self.http.get(self.url(service, path), auth=auth)
        if response.status != 200:
            raise Unreachable(f"GET {path}: HTTP {response.status}: {response.text[:200].strip()}")
        return response.json()

    def api(self, service: str, path: str) -> Any:
        """Prometheus-style API (``{"status": "success", "data": ...}``), memoised per run."""
        key = f"{service}:{path}"
        if key not in self.cache:
            document = self.get_json(service, path)
            if not isinstance(document, dict) or document.get("status") != "success":
                raise Unreachable(f"GET {path}: unexpected answer {str(document)[:200]}")
            self.cache[key] = document["data"]
        return self.cache[key]

    def alertmanager_status(self) -> dict:
        if "am-status" not in self.cache:
            self.cache["am-status"] = self.get_json("alertmanager", "/api/v2/status")
        return self.cache["am-status"]

    def alertmanager_config(self) -> dict:
        if "am-config" not in self.cache:
            original = (self.alertmanager_status().get("config") or {}).get("original") or ""
            self.cache["am-config"] = yaml.safe_load(original) or {}
        return self.cache["am-config"]

    def expected_alertmanagers(self) -> tuple[Optional[int], str]:
        """How many Alertmanager replicas should exist, and where that number comes from."""
        if "am-expected" not in self.cache:
            self.cache["am-expected"] = self._expected_alertmanagers()
        return self.cache["am-expected"]

    def _expected_alertmanagers(self) -> tuple[Optional[int], str]:
        if self.options.alertmanager_replicas:
            return self.options.alertmanager_replicas, "--alertmanager-replicas"
        # Prometheus is configured with every replica by stable name (static targets).
        if self.endpoints["prometheus"].url and "prometheus" not in self.down:
            try:
                config = yaml.safe_load(self.api("prometheus", "/api/v1/status/config")["yaml"]) or {}
                sets = (config.get("alerting") or {}).get("alertmanagers") or []
                if sets and all(set(s) & {"static_configs"} and not any(k.endswith("_sd_configs") for k in s)
                                for s in sets):
                    count = sum(len(sc.get("targets") or []) for s in sets for sc in s.get("static_configs") or [])
                    if count:
                        return count, "the Alertmanager targets in Prometheus' configuration"
            except (Unreachable, ValueError, KeyError, TypeError, yaml.YAMLError):
                pass
        if self.options.stack:
            path = ROOT / f"Pulumi.{self.options.stack}.yaml"
            try:
                config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
                replicas = (config.get(f"{PROJECT}:alertmanager") or {}).get("replicas")
                if isinstance(replicas, int):
                    return replicas, f"alertmanager.replicas in {path.name}"
            except (OSError, yaml.YAMLError, AttributeError):
                pass
        return None, "unknown (pass --alertmanager-replicas)"


@dataclass(frozen=True)
class Check:
    name: str
    needs: tuple[str, ...]
    run: Callable[[Context], Any]
    gate: bool = False  # a failure marks the needed service down for the checks after it


CHECKS: list[Check] = []


def check(name: str, *, needs: tuple[str, ...], gate: bool = False):
    """Register a check function; it returns a Result, a list of them, or None."""
    def register(func: Callable[[Context], Any]) -> Callable[[Context], Any]:
        CHECKS.append(Check(name, needs, func, gate))
        return func
    return register


def select_checks(only: list[str], checks: Iterable[Check] = ()) -> list[Check]:
    return [c for c in (list(checks) or CHECKS) if not only
            or any(c.name == p or c.name.startswith(p.rstrip(".") + ".") for p in only)]


class Endpoints(dict):
    """Service name -> Endpoint, found (and its host resolved) on first use only."""

    def __init__(self, find: Callable[[str], Endpoint]) -> None:
        super().__init__()
        self._find = find

    def __missing__(self, service: str) -> Endpoint:
        self[service] = endpoint = self._find(service)
        return endpoint


def run_checks(ctx: Context, checks: Iterable[Check] = ()) -> None:
    selected = select_checks(ctx.options.only, checks)
    announced: set[str] = set()
    for c in selected:
        for service in c.needs:  # a service without a usable URL: one line, before its first check
            endpoint = ctx.endpoints[service]
            if endpoint.url is None and service not in announced:
                announced.add(service)
                if endpoint.absent:
                    ctx.report.add(Result(SKIP, f"{service}.url", endpoint.problem))
                else:
                    ctx.report.add(Result(FAIL, f"{service}.url", f"no reachable URL for {service}",
                                          action=endpoint.problem))
        missing = [s for s in c.needs if ctx.endpoints[s].url is None]
        if missing:
            if not all(ctx.endpoints[s].absent for s in missing):
                ctx.report.add(Result(SKIP, c.name, f"not run: no URL for {', '.join(missing)} (see above)"))
            continue
        down = [s for s in c.needs if s in ctx.down]
        if down:
            ctx.report.add(Result(SKIP, c.name, f"not run: {ctx.down[down[0]]}"))
            continue
        try:
            produced = c.run(ctx)
        except Unreachable as error:
            produced = Result(FAIL, c.name, f"request failed: {error}",
                              action=f"check that {', '.join(c.needs)} is up and the URL is right")
        except Exception as error:  # noqa: BLE001 - one broken check must not hide the others
            produced = Result(FAIL, c.name, f"check crashed: {type(error).__name__}: {error}",
                              action="report this as a bug of tools/verify.py")
        results = produced if isinstance(produced, list) else [produced] if produced else []
        namespace = ctx.outputs.get("namespace")
        for result in results:
            if isinstance(namespace, str) and namespace:
                result.action = result.action.replace("<namespace>", namespace)
                result.details = [d.replace("<namespace>", namespace) for d in result.details]
            ctx.report.add(result)
        if c.gate and any(r.status == FAIL for r in results):
            for service in c.needs:
                ctx.down.setdefault(service, f"{service} failed {c.name}")


# --------------------------------------------------------------------------- Prometheus

@check("prometheus.ready", needs=("prometheus",), gate=True)
def prometheus_ready(ctx: Context) -> Result:
    return _ready(ctx, "prometheus", "Prometheus",
                  "kubectl -n <namespace> logs statefulset/prometheus (WAL replay can take minutes after a restart)")


def _ready(ctx: Context, service: str, title: str, action: str) -> Result:
    try:
        response = ctx.http.get(ctx.url(service, "/-/ready"))
    except Unreachable as error:
        return Result(FAIL, f"{service}.ready", f"{title} unreachable: {error}",
                      action=f"check the URL ({ctx.endpoints[service].source}) and that the pods run; {action}")
    if response.status == 200:
        return Result(PASS, f"{service}.ready", f"{title} is ready (HTTP 200 from /-/ready)")
    return Result(FAIL, f"{service}.ready", f"{title} is not ready: HTTP {response.status} from /-/ready "
                                           f"{response.text[:100].strip()!r}", action=action)


@check("prometheus.targets", needs=("prometheus",))
def prometheus_targets(ctx: Context) -> Result:
    targets = ctx.api("prometheus", "/api/v1/targets?state=active").get("activeTargets") or []
    health = Counter(t.get("health", "unknown") for t in targets)
    jobs = {t.get("labels", {}).get("job") or t.get("scrapePool") for t in targets}
    numbers = (f"{health['up']}/{len(targets)} active targets up in {len(jobs)} jobs "
               f"({health['down']} down, {health['unknown']} not scraped yet)")
    if not targets:
        return Result(FAIL, "prometheus.targets", "no active targets",
                      action="check the scrape configuration and service discovery (RBAC, namespaces); "
                             "right after a start Prometheus needs a few seconds to publish its targets")
    down = sorted((t for t in targets if t.get("health") == "down"),
                  key=lambda t: (t.get("labels", {}).get("job", ""), t.get("labels", {}).get("instance", "")))
    details = [f"down: job={t.get('labels', {}).get('job') or t.get('scrapePool')} "
               f"instance={t.get('labels', {}).get('instance') or t.get('scrapeUrl')}: "
               f"{(t.get('lastError') or 'no error reported').strip()}" for t in down]
    if down:
        return Result(FAIL, "prometheus.targets", numbers, details,
                      action="open each target's scrape URL from the Prometheus pod (kubectl exec ... wget -qO- URL) "
                             "and see docs/runbooks/TargetDown.md")
    if health["unknown"]:
        pending = [f"not scraped yet: job={t.get('labels', {}).get('job')} "
                   f"instance={t.get('labels', {}).get('instance')}"
                   for t in targets if t.get("health") not in ("up", "down")]
        return Result(WARN, "prometheus.targets", numbers, pending,
                      action="rerun after one scrape interval")
    return Result(PASS, "prometheus.targets", numbers)


def _rules(ctx: Context) -> list[tuple[str, dict]]:
    groups = ctx.api("prometheus", "/api/v1/rules").get("groups") or []
    return [(g.get("name", "?"), rule) for g in groups for rule in g.get("rules") or []]


@check("prometheus.rules", needs=("prometheus",))
def prometheus_rules(ctx: Context) -> Result:
    groups = ctx.api("prometheus", "/api/v1/rules").get("groups") or []
    rules = _rules(ctx)
    health = Counter(rule.get("health", "unknown") for _, rule in rules)
    numbers = f"{len(groups)} rule groups, {len(rules)} rules: {health['ok']} ok, {health['err']} failing, " \
              f"{len(rules) - health['ok'] - health['err']} not evaluated yet"
    if not groups:
        return Result(FAIL, "prometheus.rules", "no rule groups loaded",
                      action="check the prometheus-rules ConfigMap mount and the config reloader's logs")
    bad = [f"{rule.get('health')}: group {group} rule {rule.get('name')}: {(rule.get('lastError') or '').strip()}"
           for group, rule in rules if rule.get("health") not in ("ok", "unknown")]
    if bad:
        return Result(FAIL, "prometheus.rules", numbers, bad,
                      action="fix the expressions (promtool check rules / promtool test rules in rules/tests), "
                             "see docs/runbooks/PrometheusRuleEvaluationFailures.md")
    unknown = [f"not evaluated yet: group {group} rule {rule.get('name')}" for group, rule in rules
               if rule.get("health") not in ("ok", "err")]
    if unknown:
        return Result(WARN, "prometheus.rules", numbers, unknown[:20],
                      action="rerun after one evaluation interval")
    return Result(PASS, "prometheus.rules", numbers)


def checkout_alerting_rules(rules_dir: Path = ROOT / "rules") -> Optional[int]:
    """Alerting rules this checkout deploys (rules/*.yaml), or None when there is no checkout."""
    files = sorted(rules_dir.glob("*.yaml")) if rules_dir.is_dir() else []
    if not files:
        return None
    count = 0
    for path in files:
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return None
        count += sum(1 for g in document.get("groups") or [] for r in g.get("rules") or [] if "alert" in r)
    return count


@check("prometheus.alerting-rules", needs=("prometheus",))
def prometheus_alerting_rules(ctx: Context) -> Result:
    alerting = [rule for _, rule in _rules(ctx) if rule.get("type") == "alerting"]
    firing = sum(1 for rule in alerting if rule.get("state") == "firing")
    pending = sum(1 for rule in alerting if rule.get("state") == "pending")
    numbers = f"{len(alerting)} alerting rules loaded ({firing} firing, {pending} pending)"
    if not alerting:
        return Result(FAIL, "prometheus.alerting-rules", "no alerting rules loaded",
                      action="check the prometheus-rules ConfigMap and rule_files in prometheus.yml")
    expected = checkout_alerting_rules()
    if expected is not None and expected != len(alerting):
        return Result(WARN, "prometheus.alerting-rules", f"{numbers}; this checkout defines {expected}",
                      action="the deployed rules differ from this checkout: deploy this revision, "
                             "or verify from the revision that is deployed")
    suffix = f"; this checkout defines {expected} too" if expected is not None else ""
    return Result(PASS, "prometheus.alerting-rules", numbers + suffix)


@check("prometheus.watchdog", needs=("prometheus",))
def prometheus_watchdog(ctx: Context) -> Result:
    alerts = ctx.api("prometheus", "/api/v1/alerts").get("alerts") or []
    watchdog = [a for a in alerts if (a.get("labels") or {}).get("alertname") == "Watchdog"]
    states = Counter(a.get("state") for a in watchdog)
    if states["firing"]:
        return Result(PASS, "prometheus.watchdog", f"Watchdog is firing ({len(alerts)} alerts active in total): "
                                                   "rules are evaluated")
    rules = [rule for _, rule in _rules(ctx) if rule.get("name") == "Watchdog" and rule.get("type") == "alerting"]
    if not rules:
        return Result(FAIL, "prometheus.watchdog", "no Watchdog alerting rule loaded",
                      action="rules/meta-monitoring.yaml must be deployed: check the prometheus-rules ConfigMap")
    return Result(FAIL, "prometheus.watchdog",
                  f"Watchdog is not firing (states: {dict(states) or 'none'}; rule health "
                  f"{rules[0].get('health')}, last evaluation {rules[0].get('lastEvaluation')})",
                  action="rule evaluation is not working: see docs/runbooks/Watchdog.md and the Prometheus logs")


@check("prometheus.alertmanagers", needs=("prometheus",))
def prometheus_alertmanagers(ctx: Context) -> Result:
    data = ctx.api("prometheus", "/api/v1/alertmanagers")
    active = [a.get("url", "?") for a in data.get("activeAlertmanagers") or []]
    dropped = [a.get("url", "?") for a in data.get("droppedAlertmanagers") or []]
    expected, source = ctx.expected_alertmanagers()
    details = [f"active: {url}" for url in active] + [f"dropped: {url}" for url in dropped]
    numbers = f"connected to {len(active)} Alertmanager(s)" + (f", expected {expected} ({source})" if expected else
                                                                f"; expected count {source}")
    action = ("check that every Alertmanager pod runs and that Prometheus resolves each "
              "alertmanager-N.alertmanager-headless address; "
              "see docs/runbooks/PrometheusNotConnectedToAlertmanagers.md")
    if not active or (expected and len(active) < expected):
        return Result(FAIL, "prometheus.alertmanagers", numbers, details, action=action)
    if expected and len(active) > expected:
        return Result(WARN, "prometheus.alertmanagers", numbers, details,
                      action="more Alertmanagers than expected: check --alertmanager-replicas and the stack settings")
    return Result(PASS, "prometheus.alertmanagers", numbers, details)


# --------------------------------------------------------------------------- Alertmanager

@check("alertmanager.ready", needs=("alertmanager",), gate=True)
def alertmanager_ready(ctx: Context) -> Result:
    return _ready(ctx, "alertmanager", "Alertmanager", "kubectl -n <namespace> logs statefulset/alertmanager")


@check("alertmanager.cluster", needs=("alertmanager",))
def alertmanager_cluster(ctx: Context) -> Result:
    status = ctx.alertmanager_status()
    cluster = status.get("cluster") or {}
    state = cluster.get("status", "?")
    peers = cluster.get("peers") or []
    expected, source = ctx.expected_alertmanagers()
    version = (status.get("versionInfo") or {}).get("version", "?")
    details = [f"peer: {p.get('name')} {p.get('address')}" for p in peers]
    action = ("see docs/runbooks/AlertmanagerClusterMembersMissing.md: check that every alertmanager-N pod runs "
              "and reaches the others on the mesh port 9094 (TCP and UDP)")
    if state == "disabled":
        if expected and expected > 1:
            return Result(FAIL, "alertmanager.cluster", f"clustering is disabled but {expected} replicas are expected "
                                                        f"({source})", action=action)
        return Result(PASS, "alertmanager.cluster", f"single Alertmanager, clustering disabled (version {version})")
    numbers = f"cluster {state}, {len(peers)} peer(s)" + (f" of {expected} expected ({source})" if expected else
                                                           f"; expected count {source}")
    if state != "ready":
        return Result(FAIL, "alertmanager.cluster", numbers, details,
                      action="the gossip has not settled: rerun in a minute; if it stays, " + action)
    if expected and len(peers) != expected:
        return Result(FAIL, "alertmanager.cluster", f"cluster incomplete: {numbers}", details, action=action)
    return Result(PASS, "alertmanager.cluster", f"{numbers} (version {version})", details)


def receiver_integrations(receiver: dict) -> dict[str, int]:
    """{integration: how many} of one receiver, e.g. {"webhook": 2, "slack": 1}."""
    return {key[:-len("_configs")]: len(value) for key, value in receiver.items()
            if key.endswith("_configs") and isinstance(value, list) and value}


@check("alertmanager.receivers", needs=("alertmanager",))
def alertmanager_receivers(ctx: Context) -> Result:
    receivers = ctx.alertmanager_config().get("receivers") or []
    used = Counter(i for r in receivers for i, n in receiver_integrations(r).items() for _ in range(n))
    empty = [r.get("name") for r in receivers if not receiver_integrations(r)]
    numbers = (f"{len(receivers)} receivers, {sum(used.values())} integrations "
               f"({', '.join(f'{n} {i}' for i, n in sorted(used.items())) or 'none'})"
               + (f"; without integrations (drop): {', '.join(empty)}" if empty else ""))
    if not receivers or not used:
        return Result(FAIL, "alertmanager.receivers", numbers,
                      action="Alertmanager runs without a usable configuration: check the alertmanager-config Secret")
    return Result(PASS, "alertmanager.receivers", numbers)


# ----- the route tree, walked the way Alertmanager's dispatcher walks it

_NAME = r'[a-zA-Z_:][a-zA-Z0-9_:.]*|"(?:[^"\\]|\\.)*"'
_VALUE = r'"(?:[^"\\]|\\.)*"|[^,}"]*'
_MATCHER_RE = re.compile(rf'\s*({_NAME})\s*(=~|!~|!=|=)\s*({_VALUE})\s*(?:,|$)')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        try:
            hit = re.fullmatch(f"(?:{self.value})", value, re.DOTALL) is not None
        except re.error:
            hit = False
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def _unquote(text: str) -> str:
    text = text.strip()
    if text.startswith('"'):
        return json.loads(text)  # Alertmanager's escapes (\" \\ \n) are JSON's
    return text


def parse_matchers(text: str) -> list[Matcher]:
    """One entry of a route's ``matchers`` list: ``a="b"``, ``a=~"x|y"``, or ``{a="b", c!="d"}``."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers, position = [], 0
    while position < len(body) and body[position:].strip():
        found = _MATCHER_RE.match(body, position)
        if not found or found.end() == position:
            raise ValueError(f"cannot parse matcher {text!r}")
        name, op, value = found.groups()
        matchers.append(Matcher(_unquote(name), op, _unquote(value)))
        position = found.end()
    return matchers


def parse_duration(text: Any, default: float) -> float:
    """A Prometheus duration (``30s``, ``1h30m``) in seconds."""
    if text in (None, ""):
        return default
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        return default
    return float(sum(int(n) * units[u] for n, u in parts))


@dataclass
class Route:
    id: str  # position in the tree ("root", "root.1.0")
    receiver: str
    matchers: list[Matcher]
    continue_: bool
    group_by: list[str]
    group_wait: float
    group_interval: float
    routes: list["Route"]
    parent: Optional["Route"] = None

    def path(self) -> list["Route"]:
        node, nodes = self, []
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def walk(self) -> Iterable["Route"]:
        yield self
        for child in self.routes:
            yield from child.walk()


def build_route(doc: dict, parent: Optional[Route] = None, id: str = "root") -> Route:
    """A route with what it inherits from its parent (receiver, group_by, timings) made explicit."""
    matchers: list[Matcher] = []
    for text in doc.get("matchers") or []:
        matchers += parse_matchers(text)
    matchers += [Matcher(k, "=", str(v)) for k, v in (doc.get("match") or {}).items()]
    matchers += [Matcher(k, "=~", str(v)) for k, v in (doc.get("match_re") or {}).items()]
    inherited = parent or Route("", "", [], False, [], ROUTE_DEFAULTS["group_wait"],
                                ROUTE_DEFAULTS["group_interval"], [])
    route = Route(
        id=id,
        receiver=doc.get("receiver") or inherited.receiver,
        matchers=matchers,
        continue_=bool(doc.get("continue")),
        group_by=list(doc["group_by"]) if doc.get("group_by") is not None else list(inherited.group_by),
        group_wait=parse_duration(doc.get("group_wait"), inherited.group_wait),
        group_interval=parse_duration(doc.get("group_interval"), inherited.group_interval),
        routes=[],
        parent=parent,
    )
    route.routes = [build_route(child, route, f"{id}.{i}") for i, child in enumerate(doc.get("routes") or [])]
    return route


def match_routes(route: Route, labels: dict[str, str]) -> list[Route]:
    """The routes an alert ends in (dispatch.Route.Match): depth first, ``continue`` goes on to siblings."""
    if not all(m.matches(labels) for m in route.matchers):
        return []
    matched: list[Route] = []
    for child in route.routes:
        found = match_routes(child, labels)
        matched += found
        if found and not child.continue_:
            break
    return matched or [route]


def group_key(route: Route, labels: dict[str, str]) -> tuple:
    if "..." in route.group_by:
        return (route.id, tuple(sorted(labels.items())))
    return (route.id, tuple(labels.get(name, "") for name in route.group_by))


def _regex_examples(pattern: str) -> Iterable[str]:
    body = pattern.strip()
    body = body[1:] if body.startswith("^") else body
    body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
    for opener in ("(?:", "("):
        if body.startswith(opener) and body.endswith(")"):
            body = body[len(opener):-1]
            break
    depth, alternative, alternatives = 0, "", []
    for char in body:  # split on top-level |
        depth += char in "([" and 1 or (char in ")]" and -1 or 0)
        if char == "|" and depth == 0:
            alternatives.append(alternative)
            alternative = ""
        else:
            alternative += char
    alternatives.append(alternative)
    for alternative in alternatives:
        yield re.sub(r"\\(.)", r"\1", alternative)
    yield "verify"
    yield re.sub(r"\\(.)", r"\1", pattern)


def labels_for_receiver(root: Route, receiver: str, base: dict[str, str],
                        finish: Callable[[dict[str, str], set[str]], None] = lambda labels, fixed: None,
                        ) -> Optional[tuple[dict[str, str], list[str]]]:
    """Labels that the route tree sends to ``receiver``, and every receiver they reach.

    For each route using the receiver, the matchers on its path are satisfied one by one (``=`` sets
    the value, ``=~`` picks a value matching the regex, ``!=``/``!~`` drop or change the label);
    the candidate is then routed through the whole tree, which also accounts for earlier siblings
    and ``continue``. Of the candidates that reach the receiver, the one reaching the fewest other
    receivers wins (a test of a team receiver should not page more people than it must).
    """
    candidates = []
    for node in root.walk():
        if node.receiver != receiver:
            continue
        labels, fixed, ok = dict(base), set(), True
        for matcher in (m for step in node.path() for m in step.matchers):
            ok = ok and _satisfy(labels, fixed, matcher)
        if not ok:
            continue
        finish(labels, fixed)
        reached = [r.receiver for r in match_routes(root, labels)]
        if receiver in reached:
            candidates.append((len(set(reached)), len(node.path()), labels, list(dict.fromkeys(reached))))
    if not candidates:
        return None
    best = min(candidates, key=lambda c: (c[0], c[1]))
    return best[2], best[3]


def _satisfy(labels: dict[str, str], fixed: set[str], matcher: Matcher) -> bool:
    name = matcher.name
    if matcher.matches(labels):
        if matcher.op in ("=", "=~"):
            fixed.add(name)
        return True
    if name in fixed:
        return False  # an earlier matcher on the path wants another value
    if matcher.op == "=":
        labels[name] = matcher.value
    elif matcher.op == "=~":
        for example in _regex_examples(matcher.value):
            if Matcher(name, "=~", matcher.value).matches({name: example}):
                labels[name] = example
                break
        else:
            return False
    else:  # != or !~: try without the label, then with a neutral value
        labels.pop(name, None)
        if not matcher.matches(labels):
            labels[name] = "verify"
    fixed.add(name)
    return matcher.matches(labels)


# ----- the delivery test

METRICS = ("alertmanager_notifications_total", "alertmanager_notifications_failed_total",
           "alertmanager_notification_requests_total", "alertmanager_notification_requests_failed_total")
_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, names: Iterable[str] = METRICS) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of the named metrics from the Prometheus text format."""
    wanted = set(names)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in wanted}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE_RE.match(line)
        if not found or found.group(1) not in wanted:
            continue
        try:
            value = float(found.group(3))
        except ValueError:
            continue
        labels = {k: json.loads(f'"{v}"') for k, v in _LABEL_RE.findall(found.group(2) or "")}
        samples[found.group(1)].append((labels, value))
    return samples


@dataclass
class Counters:
    """Alertmanager's notification counters per (receiver, integration); receiver None when the
    metrics do not carry the receiver (Alertmanager < 0.28 without receiver-name-in-metrics)."""

    values: dict[str, Counter]
    per_receiver: bool

    @classmethod
    def parse(cls, text: str) -> "Counters":
        samples = parse_metrics(text)
        per_receiver = any("receiver_name" in labels for name in METRICS for labels, _ in samples[name])
        values: dict[str, Counter] = {}
        for name in METRICS:
            counter: Counter = Counter()
            for labels, value in samples[name]:
                key = (labels.get("receiver_name") if per_receiver else None, labels.get("integration", ""))
                counter[key] += value
            values[name] = counter
        return cls(values, per_receiver)

    def has_requests(self) -> bool:
        return bool(self.values["alertmanager_notification_requests_total"])

    def delta(self, before: "Counters", metric: str, key: tuple) -> float:
        return self.values[metric][key] - before.values[metric][key]


@dataclass
class Outcome:
    key: tuple  # (receiver or None, integration)
    expected: int
    attempted: float = 0  # notifications_total increase
    delivered: float = 0  # successful requests
    failed: float = 0  # failed requests + notifications given up

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.delivered >= self.expected

    @property
    def settled(self) -> bool:
        return self.failed > 0 or self.delivered >= self.expected


def measure(before: Counters, now: Counters, expected: dict[tuple, int]) -> list[Outcome]:
    outcomes = []
    requests = now.has_requests()
    for key, count in sorted(expected.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        attempted = now.delta(before, "alertmanager_notifications_total", key)
        given_up = now.delta(before, "alertmanager_notifications_failed_total", key)
        if requests:  # per HTTP/SMTP attempt: a failure shows at once, not after the retry deadline
            sent = now.delta(before, "alertmanager_notification_requests_total", key)
            failed_requests = now.delta(before, "alertmanager_notification_requests_failed_total", key)
            delivered, failed = sent - failed_requests, failed_requests + given_up
        else:
            delivered, failed = attempted - given_up, given_up
        outcomes.append(Outcome(key, count, attempted, delivered, failed))
    return outcomes


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class TestAlert:
    receiver: str
    labels: dict[str, str]
    reaches: list[str]  # every receiver the route tree sends it to


@check("alertmanager.delivery", needs=("alertmanager",))
def alertmanager_delivery(ctx: Context) -> list[Result]:
    """A test alert to every receiver that has an integration, confirmed by Alertmanager's metrics."""
    name = "alertmanager.delivery"
    config = ctx.alertmanager_config()
    integrations = {r.get("name"): receiver_integrations(r) for r in config.get("receivers") or []}
    wanted = [r for r, i in integrations.items() if i
              and (not ctx.options.receivers or r in ctx.options.receivers) and r not in ctx.options.skip_receivers]
    unknown = sorted(set(ctx.options.receivers) - set(integrations))
    results: list[Result] = []
    if unknown:
        results.append(Result(FAIL, f"{name}.receivers", f"no such receiver(s): {', '.join(unknown)}",
                              details=[f"configured: {', '.join(integrations)}"], action="fix --receiver"))
    if not ctx.options.delivery:
        return results + [Result(SKIP, name, f"test alerts not sent (--skip-delivery); would test "
                                             f"{len(wanted)} receivers: {', '.join(wanted)}")]
    if not wanted:
        return results + [Result(SKIP, name, "no receiver with an integration selected")]

    root = build_route(config.get("route") or {})
    run_id = str(uuid.uuid4())
    service = f"{TEST_SERVICE}-{run_id[:8]}"  # a new group per run: notified after group_wait, not group_interval
    base = {"alertname": TEST_ALERTNAME, "verification_id": run_id}
    environment = ctx.outputs.get("environment")
    if isinstance(environment, str) and environment:
        base["environment"] = environment

    def finish(labels: dict[str, str], fixed: set[str]) -> None:
        # Critical and warning test alerts must not inhibit each other (equal: alertname, environment, service).
        if "service" not in fixed:
            labels["service"] = f"{service}-{labels['severity']}" if labels.get("severity") else service

    alerts: list[TestAlert] = []
    plan_problems: list[str] = []
    for receiver in wanted:
        given = ctx.options.receiver_labels.get(receiver)
        if given:
            labels = {**base, **given}
            finish(labels, set(given))
            found = (labels, list(dict.fromkeys(r.receiver for r in match_routes(root, labels))))
        else:
            found = labels_for_receiver(root, receiver, base, finish)
        if not found:
            plan_problems.append(f"{receiver}: no label set reaches it through the route tree (unused receiver?); "
                                 f"give labels with --receiver-labels '{receiver}:key=value,...'")
            continue
        labels, reaches = found
        labels["verification_receiver"] = receiver
        alerts.append(TestAlert(receiver, labels, reaches))

    # What Alertmanager will send: one notification per aggregation group and integration.
    groups: dict[tuple, Route] = {}
    for alert in alerts:
        for route in match_routes(root, alert.labels):
            groups[group_key(route, alert.labels)] = route
    per_receiver_expected: Counter = Counter()
    for route in groups.values():
        for integration, count in integrations.get(route.receiver, {}).items():
            per_receiver_expected[(route.receiver, integration)] += count

    status = ctx.alertmanager_status()
    peers = max(1, len((status.get("cluster") or {}).get("peers") or []))
    fresh = {"service", "verification_id", "verification_receiver", "..."}
    longest = max((r.group_wait if fresh & set(r.group_by) else r.group_interval for r in groups.values()),
                  default=0.0)
    timeout = ctx.options.delivery_timeout or longest + (peers - 1) * PEER_TIMEOUT + 20
    tested = sorted({r.receiver for r in groups.values()})
    untargeted = sorted(set(tested) - {a.receiver for a in alerts})
    plan_details = [f"{a.receiver}: " + " ".join(f"{k}={v}" for k, v in sorted(a.labels.items())
                                                  if k not in ("verification_id", "verification_receiver"))
                    + (f"  (also reaches {', '.join(r for r in a.reaches if r != a.receiver)})"
                       if len(a.reaches) > 1 else "")
                    for a in alerts]
    if not alerts:
        return results + [Result(FAIL, f"{name}.routing", "no test alert could be routed", plan_problems,
                                 action="see the lines above")]

    ctx.report.line(f"....  {name:<34} posting {len(alerts)} test alerts (verification_id={run_id}), "
                    f"waiting up to {timeout:.0f}s for {sum(per_receiver_expected.values())} notifications "
                    f"to {len(tested)} receivers")
    metrics_url = ctx.url("alertmanager", "/metrics")

    def counters() -> Counters:
        response = ctx.http.get(metrics_url)
        if response.status != 200:
            raise Unreachable(f"GET /metrics: HTTP {response.status}")
        return Counters.parse(response.text)

    before = counters()
    expected: dict[tuple, int] = dict(per_receiver_expected)
    if not before.per_receiver:
        merged: Counter = Counter()
        for (_, integration), count in per_receiver_expected.items():
            merged[(None, integration)] += count
        expected = dict(merged)
    now = datetime.now(timezone.utc)
    starts = _iso(now)
    # endsAt in the future: Alertmanager resolves them by itself even if this run dies before resolving.
    ends = _iso(now + timedelta(seconds=timeout + 120))
    payload = [{"labels": a.labels, "startsAt": starts, "endsAt": ends, "generatorURL": "",
                "annotations": {"summary": f"football-monitoring post-deploy verification of receiver {a.receiver}",
                                "description": f"Test alert sent by `python -m tools.verify` (run {run_id}) "
                                               "to prove delivery; it is resolved within minutes. No action needed."}}
               for a in alerts]
    response = ctx.http.request("POST", ctx.url("alertmanager", "/api/v2/alerts"), body=payload)
    if response.status != 200:
        return results + [Result(FAIL, f"{name}.post", f"Alertmanager refused the test alerts: HTTP "
                                                       f"{response.status} {response.text[:200].strip()}",
                                 action="check the Alertmanager version (API v2) and its logs")]
    try:
        results.append(_confirm_routing(ctx, run_id, alerts, plan_details, plan_problems, untargeted))
        outcomes = _wait_for_delivery(ctx, counters, before, expected, timeout)
        results += _delivery_results(outcomes, integrations, groups, timeout, before.per_receiver)
    except (Unreachable, ValueError) as error:
        results.append(Result(FAIL, name, f"lost Alertmanager during the test: {error}",
                              action="check the Alertmanager pod and rerun"))
    finally:  # also on Ctrl-C: nobody stays paged
        results.append(_resolve(ctx, payload, starts))
    return results


def _confirm_routing(ctx: Context, run_id: str, alerts: list[TestAlert], plan: list[str], problems: list[str],
                     untargeted: list[str]) -> Result:
    """Alertmanager's own routing of the test alerts (the ``receivers`` field), and their state."""
    query = urllib.parse.urlencode({"filter": f'verification_id="{run_id}"'})
    seen: dict[str, dict] = {}
    for _ in range(10):  # the API answers at once; a few tries cover a slow ingestion
        listed = ctx.get_json("alertmanager", f"/api/v2/alerts?{query}")
        seen = {a["labels"].get("verification_receiver", ""): a for a in listed if isinstance(a, dict)}
        if len(seen) >= len(alerts):
            break
        time.sleep(0.5)
    wrong = list(problems)
    for alert in alerts:
        got = seen.get(alert.receiver)
        if got is None:
            wrong.append(f"{alert.receiver}: the test alert is not listed by Alertmanager")
            continue
        routed = [r.get("name") for r in got.get("receivers") or []]
        state = got.get("status") or {}
        if alert.receiver not in routed:
            wrong.append(f"{alert.receiver}: Alertmanager routed the test alert to {', '.join(routed) or 'nothing'}")
        if state.get("state") == "suppressed":
            wrong.append(f"{alert.receiver}: the test alert is suppressed (silenced by {state.get('silencedBy')}, "
                         f"inhibited by {state.get('inhibitedBy')}), so it is not delivered")
    extra = f"; also reached: {', '.join(untargeted)}" if untargeted else ""
    if wrong:
        bad = {line.split(":", 1)[0] for line in wrong}
        routed_ok = sum(1 for alert in alerts if alert.receiver not in bad)
        return Result(FAIL, "alertmanager.delivery.routing",
                      f"{routed_ok} of {len(alerts) + len(problems)} test alerts routed to their receiver{extra}",
                      wrong + plan,
                      action="check the route tree (amtool config routes test ...) and active silences")
    return Result(PASS, "alertmanager.delivery.routing",
                  f"{len(alerts)} test alerts routed to their receivers by Alertmanager{extra}", plan)


def _wait_for_delivery(ctx: Context, counters: Callable[[], Counters], before: Counters,
                       expected: dict[tuple, int], timeout: float) -> list[Outcome]:
    deadline = time.monotonic() + timeout
    interval = max(0.2, ctx.options.poll_interval)
    outcomes = measure(before, before, expected)
    for _ in range(int(timeout / interval) + 2):
        try:
            outcomes = measure(before, counters(), expected)
        except (Unreachable, ValueError):
            pass  # a missed poll; the deadline still holds
        if all(o.settled for o in outcomes) or time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    return outcomes


def _delivery_results(outcomes: list[Outcome], integrations: dict[str, dict[str, int]], groups: dict[tuple, Route],
                      timeout: float, per_receiver: bool) -> list[Result]:
    results = []
    for outcome in outcomes:
        receiver, integration = outcome.key
        users = sorted({r.receiver for r in groups.values() if integration in integrations.get(r.receiver, {})
                        and (receiver is None or r.receiver == receiver)})
        label = f"{receiver}/{integration}" if receiver else integration
        numbers = (f"{integration}: {outcome.delivered:.0f} delivered ({outcome.expected} expected for the test "
                   f"alerts), {outcome.failed:.0f} failed attempts, {outcome.attempted:.0f} notifications started; "
                   f"receivers {', '.join(users)}")
        check_name = f"alertmanager.delivery[{label}]"
        if outcome.ok:
            results.append(Result(PASS, check_name, numbers))
        elif outcome.failed:
            who = (f"receiver {receiver}" if receiver else
                   f"one of the receivers using {integration} ({', '.join(users)})")
            results.append(Result(FAIL, check_name, f"{integration} unreachable: {numbers}",
                                  [f"Alertmanager could not deliver through {who}; its log names the receiver and "
                                   "the error: kubectl -n <namespace> logs alertmanager-0 "
                                   "| grep 'Notify attempt failed'"]
                                  + ([] if per_receiver else
                                     [f"this Alertmanager's metrics carry no receiver name, so a failure of any "
                                      f"{integration} notification during the test counts (including retries of "
                                      "earlier failed notifications)"]),
                                  action="fix the receiver's URL or credentials (stack secrets), or its network "
                                         "egress; see docs/runbooks/AlertmanagerNotificationsFailing.md"))
        else:
            results.append(Result(FAIL, check_name, f"{integration}: not delivered within {timeout:.0f}s: {numbers}",
                                  [f"Alertmanager had not delivered all {integration} notifications when the wait "
                                   "ended (group_wait, cluster position wait, or a slow receiver)",
                                   "behind a load balancer the metrics may come from another replica than the one "
                                   "that got the alerts: use kubectl port-forward (one pod)"],
                                  action="rerun with a longer --delivery-timeout; check the Alertmanager logs"))
    return results


def _resolve(ctx: Context, payload: list[dict], starts: str) -> Result:
    ends = _iso(datetime.now(timezone.utc))
    resolved = [{**alert, "startsAt": starts, "endsAt": ends} for alert in payload]
    try:
        response = ctx.http.request("POST", ctx.url("alertmanager", "/api/v2/alerts"), body=resolved)
        if response.status == 200:
            return Result(PASS, "alertmanager.delivery.resolve",
                          f"{len(payload)} test alerts resolved (receivers with send_resolved get a resolved message)")
        problem = f"HTTP {response.status}"
    except Unreachable as error:
        problem = str(error)
    return Result(FAIL, "alertmanager.delivery.resolve", f"could not resolve the test alerts: {problem}",
                  action=f"they resolve by themselves at {payload[0]['endsAt']}; or expire them with "
                         f"amtool alert add ... --end=now for alertname={TEST_ALERTNAME}")


# --------------------------------------------------------------------------- Grafana

@check("grafana.health", needs=("grafana",), gate=True)
def grafana_health(ctx: Context) -> Result:
    try:
        response = ctx.http.get(ctx.url("grafana", "/api/health"))
    except Unreachable as error:
        return Result(FAIL, "grafana.health", f"Grafana unreachable: {error}",
                      action=f"check the URL ({ctx.endpoints['grafana'].source}) and the grafana pod")
    body: dict = {}
    try:
        body = response.json() if response.body else {}
    except ValueError:
        pass
    numbers = f"HTTP {response.status}, database {body.get('database', '?')}, version {body.get('version', '?')}"
    if response.status == 200 and body.get("database") == "ok":
        return Result(PASS, "grafana.health", f"Grafana is healthy ({numbers})")
    return Result(FAIL, "grafana.health", f"Grafana is not healthy ({numbers})",
                  action="kubectl -n <namespace> logs deployment/grafana (database on its volume, migrations)")


def _grafana_auth(ctx: Context) -> tuple[Optional[tuple[str, str]], str]:
    user = ctx.outputs.get("grafanaAdminUser") or "admin"
    password: Any = None
    if ctx.options.grafana_password_file:
        try:
            password = Path(ctx.options.grafana_password_file).read_text().strip()
        except OSError as error:
            return None, f"cannot read --grafana-password-file: {error.strerror}"
    else:
        password = ctx.outputs.get("grafanaAdminPassword")
    if not isinstance(password, str) or not password or password == "[secret]":
        return None, ("no grafanaAdminPassword in the outputs (read them with --show-secrets, or pass "
                      "--grafana-password-file)")
    return (str(user), password), ""


# Frontend-only datasource plugins (Alertmanager) have no backend health check
# ("Plugin unavailable"); their test in the UI is a request through Grafana's proxy.
_PROXY_PROBES = {"prometheus": "api/v1/status/buildinfo", "alertmanager": "api/v2/status"}


@check("grafana.datasources", needs=("grafana",))
def grafana_datasources(ctx: Context) -> list[Result]:
    auth, problem = _grafana_auth(ctx)
    if auth is None:
        return [Result(FAIL, "grafana.datasources", f"cannot check the datasources: {problem}",
                       action="pulumi stack output --show-secrets grafanaAdminPassword is the generated password")]
    results = []
    for uid, kind in GRAFANA_DATASOURCES:
        name = f"grafana.datasource.{uid}"
        response = ctx.http.get(ctx.url("grafana", f"/api/datasources/uid/{uid}/health"), auth=auth)
        body: dict = {}
        try:
            body = response.json() if response.body else {}
        except ValueError:
            pass
        message = str(body.get("message") or response.text[:160]).strip()
        if response.status in (401, 403):
            results.append(Result(FAIL, name, f"Grafana refused the admin credentials (HTTP {response.status})",
                                  action="the admin password was changed in Grafana: pass --grafana-password-file, "
                                         "or reset it (grafana cli admin reset-admin-password)"))
            continue
        if response.status == 200 and str(body.get("status", "")).upper() == "OK":
            results.append(Result(PASS, name, f"datasource {uid} healthy: {message}"))
            continue
        unsupported = (body.get("messageId") == "plugin.unavailable" or "plugin unavailable" in message.lower()
                       or "not implemented" in message.lower()
                       or (response.status == 404 and "data source not found" not in message.lower()))
        if response.status == 404 and not unsupported:
            results.append(Result(FAIL, name, f"datasource {uid} does not exist in Grafana (HTTP 404)",
                                  action="check Grafana's provisioning (grafana-datasources ConfigMap) and its logs"))
            continue
        if unsupported:
            probe = ctx.http.get(ctx.url("grafana", f"/api/datasources/proxy/uid/{uid}/{_PROXY_PROBES[kind]}"),
                                 auth=auth)
            if probe.status == 200:
                results.append(Result(PASS, name, f"datasource {uid} reaches {kind} through Grafana's proxy "
                                                  f"(HTTP 200 from {_PROXY_PROBES[kind]}; the plugin has no "
                                                  "health endpoint)"))
            else:
                results.append(Result(FAIL, name, f"datasource {uid}: Grafana's proxy to {kind} answers HTTP "
                                                  f"{probe.status} {probe.text[:120].strip()!r}",
                                      action=f"check that Grafana reaches the {kind} URL of its datasource"))
            continue
        results.append(Result(FAIL, name, f"datasource {uid} unhealthy (HTTP {response.status}): {message}",
                              action=f"Grafana cannot query {kind}: check the datasource URL (in-cluster service) "
                                     "and network policies"))
    return results


# --------------------------------------------------------------------------- optional: logging and tracing

@check("elasticsearch.health", needs=("elasticsearch",))
def elasticsearch_health(ctx: Context) -> Result:
    """GET /_cluster/health (documented Elasticsearch cluster health API): green, yellow or red."""
    user, password = ctx.outputs.get("elasticsearchUser"), ctx.outputs.get("elasticsearchPassword")
    auth = (user, password) if isinstance(user, str) and isinstance(password, str) else None
    response = ctx.http.get(ctx.url("elasticsearch", "/_cluster/health?timeout=5s"), auth=auth)
    if response.status in (401, 403):
        return Result(FAIL, "elasticsearch.health", f"Elasticsearch refused the request (HTTP {response.status})",
                      action="provide elasticsearchUser/elasticsearchPassword outputs")
    health = response.json() if response.status in (200, 408) else {}
    state = health.get("status", "?")
    numbers = (f"cluster {health.get('cluster_name', '?')} {state}: {health.get('number_of_nodes', '?')} nodes, "
               f"{health.get('active_shards_percent_as_number', '?')}% shards active, "
               f"{health.get('unassigned_shards', '?')} unassigned")
    if response.status not in (200, 408):
        return Result(FAIL, "elasticsearch.health", f"HTTP {response.status} from /_cluster/health",
                      action="check the Elasticsearch pods and logs")
    if state == "green":
        return Result(PASS, "elasticsearch.health", numbers)
    if state == "yellow":
        return Result(WARN, "elasticsearch.health", numbers,
                      action="replica shards are unassigned: GET /_cluster/allocation/explain")
    return Result(FAIL, "elasticsearch.health", numbers,
                  action="primary shards are unassigned: GET /_cluster/allocation/explain and the node logs")


@check("jaeger.traces", needs=("jaeger",))
def jaeger_traces(ctx: Context) -> Result:
    """GET /api/services of jaeger-query (the HTTP JSON API its UI uses): services that sent traces."""
    services = ctx.get_json("jaeger", "/api/services").get("data") or []
    if not services:
        return Result(FAIL, "jaeger.traces", "Jaeger knows no service: no trace has arrived",
                      action="check the collector endpoint configured in the applications (OTLP) and the "
                             "collector's logs")
    recent = []
    for name in sorted(services)[:5]:
        query = urllib.parse.urlencode({"service": name, "lookback": "1h", "limit": 1})
        try:
            if ctx.get_json("jaeger", f"/api/traces?{query}").get("data"):
                recent.append(name)
        except (Unreachable, ValueError):
            pass
    numbers = f"{len(services)} services have sent traces ({', '.join(sorted(services)[:8])}); " \
              f"{len(recent)} of the first {min(5, len(services))} have traces in the last hour"
    if not recent:
        return Result(WARN, "jaeger.traces", numbers, action="traces stopped arriving: check the collector")
    return Result(PASS, "jaeger.traces", numbers)


# --------------------------------------------------------------------------- command line

def read_outputs(args: argparse.Namespace) -> dict:
    if args.outputs:
        return json.loads(Path(args.outputs).read_text())
    command = ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", args.stack]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SystemExit("the pulumi CLI is not installed: install it, or pass --outputs FILE.json "
                         "(pulumi stack output --json --show-secrets --stack STACK > FILE.json)") from None
    except subprocess.TimeoutExpired:
        raise SystemExit("pulumi stack output did not answer within 120s (backend login? passphrase?)") from None
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def _receiver_labels(values: list[str]) -> dict[str, dict[str, str]]:
    parsed: dict[str, dict[str, str]] = {}
    for value in values:
        receiver, _, pairs = value.partition(":")
        labels = dict(pair.split("=", 1) for pair in pairs.split(",") if "=" in pair)
        if not receiver or not labels:
            raise argparse.ArgumentTypeError(f"--receiver-labels {value!r}: expected RECEIVER:key=value,...")
        parsed[receiver] = {k.strip(): v.strip() for k, v in labels.items()}
    return parsed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.verify",
                                description="Check a deployed football-monitoring stack (see docs/verify.md).")
    source = p.add_argument_group("outputs")
    source.add_argument("--stack", help="stack whose outputs to read with pulumi stack output")
    source.add_argument("--outputs", metavar="FILE.json", help="saved `pulumi stack output --json --show-secrets`")
    urls = p.add_argument_group("URLs (override the outputs; use them with kubectl port-forward)")
    for service in SERVICES.values():
        urls.add_argument("--" + service.option.replace("_", "-"), dest=service.option, metavar="URL")
    p.add_argument("--alertmanager-replicas", type=int, metavar="N",
                   help="expected Alertmanager replicas (default: Prometheus' Alertmanager targets, "
                        "else Pulumi.<stack>.yaml)")
    p.add_argument("--skip-delivery", action="store_true", help="do not send test alerts")
    p.add_argument("--delivery-timeout", type=float, metavar="SECONDS",
                   help="how long to wait for the test notifications (default: from the route timings)")
    p.add_argument("--receiver", action="append", default=[], metavar="NAME", help="test only these receivers")
    p.add_argument("--skip-receiver", action="append", default=[], metavar="NAME", help="do not test this receiver")
    p.add_argument("--receiver-labels", action="append", default=[], metavar="NAME:k=v,...",
                   help="labels of the test alert for a receiver (default: found from the route tree)")
    p.add_argument("--grafana-password-file", metavar="FILE", help="Grafana admin password (default: the output)")
    p.add_argument("--only", action="append", default=[], metavar="CHECK",
                   help="run only checks with this name or prefix (prometheus, alertmanager.cluster, ...)")
    p.add_argument("--timeout", type=float, default=10.0, help="timeout of each HTTP request (default 10s)")
    p.add_argument("--insecure-skip-tls-verify", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--json", action="store_true", help="print only a JSON document of the results")
    p.add_argument("-v", "--verbose", action="store_true", help="details of passing checks too")
    return p


def main(argv: Optional[list[str]] = None, out: TextIO = sys.stdout,
         resolver: Callable[[str], bool] = resolves) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.stack and not args.outputs:
        p.error("give --stack STACK or --outputs FILE.json")
    try:
        receiver_labels = _receiver_labels(args.receiver_labels)
    except argparse.ArgumentTypeError as error:
        p.error(str(error))
    try:
        outputs = read_outputs(args)
    except SystemExit as error:
        out.write(f"cannot read the stack outputs: {error}\n")
        return 2
    except (OSError, ValueError) as error:
        out.write(f"cannot read the stack outputs: {error}\n")
        return 2
    if not isinstance(outputs, dict):
        out.write("cannot read the stack outputs: not a JSON object\n")
        return 2

    options = Options(stack=args.stack, alertmanager_replicas=args.alertmanager_replicas,
                      delivery=not args.skip_delivery, delivery_timeout=args.delivery_timeout,
                      receivers=args.receiver, skip_receivers=args.skip_receiver, receiver_labels=receiver_labels,
                      grafana_password_file=args.grafana_password_file, only=args.only)
    secrets = [v for k, v in outputs.items() if "password" in k.lower() and isinstance(v, str)]
    report = Report(io.StringIO() if args.json else out, verbose=args.verbose, redact=secrets)
    endpoints = Endpoints(lambda name: find_endpoint(SERVICES[name], outputs, getattr(args, SERVICES[name].option),
                                                     resolver))
    ca = outputs.get("elasticsearchCaCertificate")
    try:
        http = Http(args.timeout, args.insecure_skip_tls_verify, ca if isinstance(ca, str) else None)
    except ValueError as error:
        out.write(f"cannot read the stack outputs: {error}\n")
        return 2
    ctx = Context(outputs, endpoints, http, options, report)

    title = args.stack or Path(args.outputs).name
    report.line(f"football-monitoring verify: {title} (environment {outputs.get('environment', '?')}), "
                f"{_iso(datetime.now(timezone.utc))}")
    for service in dict.fromkeys(s for c in select_checks(options.only) for s in c.needs):
        endpoint = endpoints[service]
        if endpoint.url:
            report.line(f"  {endpoint.service:<14} {endpoint.url}  ({endpoint.source})")
    report.line()
    run_checks(ctx)
    report.summary()
    if args.json:  # only the JSON document on stdout
        document = {"exit": report.exit_code(), "results": [r.__dict__ for r in report.results]}
        out.write(report._clean(json.dumps(document, indent=2)) + "\n")
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
