"""The check registry and what every check gets: the outputs, the endpoints, HTTP, the options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import yaml

from tools.verify.endpoints import Endpoint
from tools.verify.http import Http, Unreachable, join
from tools.verify.project import PROJECT, ROOT
from tools.verify.report import FAIL, PASS, SKIP, Report, Result


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

    @property
    def rules_service(self) -> str:
        """Where the stack's rules are evaluated: Thanos Ruler with scrape shards (output thanosRuleUrl
        or --rules-url), else Prometheus."""
        return "rules" if self.endpoints["rules"].url else "prometheus"

    @property
    def shards(self) -> Optional[int]:
        """The stack's scrape shards (output prometheusShards); 1 without the output, None when the
        rules are in Thanos Ruler all the same (a stack deployed before the output existed)."""
        value = self.outputs.get("prometheusShards")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        return None if self.rules_service == "rules" else 1

    def active_alerts(self) -> list[dict]:
        """The alerts the rules hold active. Thanos Ruler's API names the list "Alerts"
        (pkg/api/rule/v1.go), Prometheus' "alerts"."""
        data = self.api(self.rules_service, "/api/v1/alerts") or {}
        return data.get("alerts") or data.get("Alerts") or []

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
                              action="report this as a bug of tools/verify")
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


def ready(ctx: Context, service: str, title: str, action: str) -> Result:
    """A service's ``*.ready`` check (Prometheus, Alertmanager): HTTP 200 from ``/-/ready``."""
    try:
        response = ctx.http.get(ctx.url(service, "/-/ready"))
    except Unreachable as error:
        return Result(FAIL, f"{service}.ready", f"{title} unreachable: {error}",
                      action=f"check the URL ({ctx.endpoints[service].source}) and that the pods run; {action}")
    if response.status == 200:
        return Result(PASS, f"{service}.ready", f"{title} is ready (HTTP 200 from /-/ready)")
    return Result(FAIL, f"{service}.ready", f"{title} is not ready: HTTP {response.status} from /-/ready "
                                           f"{response.text[:100].strip()!r}", action=action)
