"""Posting the report's summary to the stack's default webhook (the secret alertmanagerWebhookUrl).

That webhook takes what Alertmanager's default route sends, so the summary goes as Alertmanager's
webhook message (version 4, the fields of notify/webhook.Message and template.Data at the pinned
v0.35.0) holding one ``info`` alert, ``ServiceLevelReport``, whose annotations carry the summary; a
top-level ``text`` holds it too, for chat hooks that read only that field.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from components.report.source import Http

ALERTNAME = "ServiceLevelReport"
RECEIVER = "service-level-report"


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(labels: dict) -> str:
    """Alertmanager's alert fingerprint (prometheus/common model.LabelSet.Fingerprint): FNV-1a 64 over
    the sorted names and values, each followed by the separator byte 255, in 16 hex digits."""
    h = 0xcbf29ce484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def message(summary: str, environment: str, period: str, generated: float, link: str = "") -> dict:
    labels = {"alertname": ALERTNAME, "severity": "info", "environment": environment, "period": period}
    annotations = {"summary": summary.splitlines()[0], "description": summary}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{ALERTNAME}"}}',
        "truncatedAlerts": 0,
        "receiver": RECEIVER,
        "status": "firing",
        "alerts": [{"status": "firing", "labels": labels, "annotations": annotations, "startsAt": _rfc3339(generated),
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": link, "fingerprint": fingerprint(labels)}],
        "notification_reason": "first notification",
        "groupLabels": {"alertname": ALERTNAME},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "routeLabels": {},
        "externalURL": link,
        "text": summary,
    }


def post(url: str, body: dict, timeout: float = 30.0) -> str | None:
    """None when the webhook took it (2xx), else what went wrong (the URL is a secret: never shown)."""
    try:
        status, _ = Http(timeout).call(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    except ConnectionError as error:
        return f"the webhook is unreachable: {error}"
    if not 200 <= status < 300:
        return f"the webhook answered HTTP {status}"
    return None
