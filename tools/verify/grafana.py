"""The Grafana checks: health, and each provisioned datasource reaching its backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from tools.verify.checks import Context, check
from tools.verify.http import Unreachable
from tools.verify.report import FAIL, PASS, Result

# Grafana datasource uids provisioned by components/configs/grafana.py (PROMETHEUS_UID,
# ALERTMANAGER_UID); repeated here so this module needs nothing but the standard library and
# PyYAML (tests/test_verify.py checks that they agree).
GRAFANA_DATASOURCES = (("prometheus", "prometheus"), ("alertmanager", "alertmanager"))  # (uid, type)


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
