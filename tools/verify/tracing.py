"""The tracing check (optional: stacks with a Jaeger output): services that sent traces recently."""

from __future__ import annotations

import urllib.parse

from tools.verify.checks import Context, check
from tools.verify.http import Unreachable
from tools.verify.report import FAIL, PASS, WARN, Result


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
