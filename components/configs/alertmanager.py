"""alertmanager.yml from settings and the data files in alerting/.

Route tree: the Watchdog goes to the heartbeat receiver; then one branch per
severity, and under it one route per team. Critical reaches every channel the
team has (Slack, e-mail, DingTalk) plus the default webhook, and, with
escalation on, the paging webhook too; warnings reach Slack and the webhook;
info only the webhook. A quiet environment (dev) sends warnings to the webhook
alone. Every receiver credential is a mounted file that Alertmanager reads at
notification time (webhook and Slack URLs through ``url_file``/``api_url_file``,
the SMTP password through ``smtp_auth_password_file``), so the config itself holds
no secret. Only the DingTalk relay's in-cluster address is written inline.

Without the default webhook (``webhook`` false: a stack that does not require
alertmanagerWebhookUrl and has none), its place is taken by ``ui-only``, a receiver
with no integration: the alerts are still grouped, routed and shown in Alertmanager's
UI, and nothing is sent. A team receiver left without any integration is then not
made at all, so that its alerts visibly land in ``ui-only`` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import yaml

from components.settings import EmailSettings, TeamContact, Timings

ALERTING_DIR = Path(__file__).resolve().parent.parent.parent / "alerting"
TEMPLATES_DIR = "/etc/alertmanager/templates"
CREDENTIALS_DIR = "/etc/alertmanager/credentials"
SLACK_URL_FILE = f"{CREDENTIALS_DIR}/slack-api-url"
SMTP_PASSWORD_FILE = f"{CREDENTIALS_DIR}/smtp-password"
# The credential file of each secret webhook URL, by its name in the credentials directory.
WEBHOOK_URL_FILES = {"webhook": "webhook-url", "heartbeat": "heartbeat-url", "escalation": "escalation-url"}
SEVERITIES = ("critical", "warning", "info")
DEFAULT_WEBHOOK = "default-webhook"
UI_ONLY = "ui-only"  # the default receiver without a webhook: nothing is delivered


@dataclass(frozen=True)
class AlertmanagerConfig:
    environment: str
    timings: Mapping[str, Timings]
    teams: Mapping[str, TeamContact] = field(default_factory=dict)
    quiet: bool = False
    slack: bool = False
    email: Optional[EmailSettings] = None
    dingtalk_url: Optional[str] = None  # the relay's in-cluster URL (not a secret)
    heartbeat: bool = False  # a heartbeat URL file is mounted
    escalation: bool = False  # an escalation URL file is mounted
    webhook: bool = True  # the default webhook's URL file is mounted
    templates_dir: str = TEMPLATES_DIR
    credentials_dir: str = CREDENTIALS_DIR


def templates() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((ALERTING_DIR / "templates").glob("*.tmpl"))}


def inhibitions() -> list[dict]:
    rules = yaml.safe_load((ALERTING_DIR / "inhibitions.yaml").read_text())
    return [{k: v for k, v in rule.items() if k != "name"} for rule in rules]


def _webhook(url: str, send_resolved: bool = True) -> dict:
    return {"url": url, "send_resolved": send_resolved, "max_alerts": 50}


def _secret_webhook(cfg: "AlertmanagerConfig", which: str, send_resolved: bool = True) -> dict:
    return {"url_file": f"{cfg.credentials_dir}/{WEBHOOK_URL_FILES[which]}", "send_resolved": send_resolved,
            "max_alerts": 50}


def default_receiver(cfg: "AlertmanagerConfig") -> str:
    return DEFAULT_WEBHOOK if cfg.webhook else UI_ONLY


def _team_receiver(cfg: AlertmanagerConfig, team: str, severity: str) -> Optional[dict]:
    """The receiver of one team's alerts of one severity; None when it would deliver nothing."""
    contact = cfg.teams.get(team, TeamContact())
    receiver: dict = {"name": f"{team}-{severity}",
                      "webhook_configs": [_secret_webhook(cfg, "webhook")] if cfg.webhook else []}
    if cfg.slack and contact.slack_channel:
        receiver["slack_configs"] = [{
            "api_url_file": f"{cfg.credentials_dir}/slack-api-url",
            "channel": contact.slack_channel,
            "send_resolved": True,
            "title": '{{ template "football.title" . }}',
            "text": '{{ template "football.text" . }}',
            "color": '{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}',
        }]
    if severity == "critical" and cfg.email and cfg.email.enabled and contact.email:
        receiver["email_configs"] = [{
            "to": contact.email,
            "send_resolved": True,
            "headers": {"Subject": '{{ template "football.email.subject" . }}'},
            "html": '{{ template "football.email.html" . }}',
        }]
    if severity == "critical" and cfg.dingtalk_url:
        receiver["webhook_configs"].append(_webhook(cfg.dingtalk_url))
    if not receiver["webhook_configs"]:
        del receiver["webhook_configs"]
    return receiver if len(receiver) > 1 else None


def _timing(t: Timings) -> dict:
    return {"group_wait": t.group_wait, "group_interval": t.group_interval, "repeat_interval": t.repeat_interval}


def render(cfg: AlertmanagerConfig) -> str:
    teams = sorted(set(cfg.teams) | {"platform", "backend", "data", "security"})
    default = default_receiver(cfg)
    receivers: list[dict] = [{"name": DEFAULT_WEBHOOK, "webhook_configs": [_secret_webhook(cfg, "webhook")]}
                             if cfg.webhook else {"name": UI_ONLY}]
    routes: list[dict] = []

    watchdog = {"receiver": "heartbeat" if cfg.heartbeat else "watchdog-drop",
                "matchers": ['alertname="Watchdog"'],
                # The heartbeat must arrive often and on time, whatever the other groups do.
                "group_wait": "0s", "group_interval": "1m", "repeat_interval": "1m"}
    if cfg.heartbeat:
        receivers.append({"name": "heartbeat",
                          "webhook_configs": [_secret_webhook(cfg, "heartbeat", send_resolved=False)]})
    else:
        receivers.append({"name": "watchdog-drop"})  # no receiver configured: swallow it rather than page
    routes.append(watchdog)

    for severity in SEVERITIES:
        branch: dict = {"receiver": default, "matchers": [f'severity="{severity}"'],
                        **_timing(cfg.timings[severity]), "routes": []}
        people = severity == "critical" or (severity == "warning" and not cfg.quiet)
        if severity == "critical" and cfg.escalation:
            receivers.append({"name": "escalation", "webhook_configs": [_secret_webhook(cfg, "escalation")]})
            branch["routes"].append({"receiver": "escalation", "matchers": ['severity="critical"'], "continue": True})
        if people:
            for team in teams:
                receiver = _team_receiver(cfg, team, severity)
                if receiver:
                    receivers.append(receiver)
                    branch["routes"].append({"receiver": receiver["name"], "matchers": [f'team="{team}"']})
        if branch["routes"]:
            # An alert without a known team still reaches the webhook, even after a
            # `continue` route (escalation) has matched it.
            branch["routes"].append({"receiver": default})
        else:
            del branch["routes"]
        routes.append(branch)

    global_cfg: dict = {"resolve_timeout": "5m"}
    if cfg.email and cfg.email.enabled:
        global_cfg.update({"smtp_smarthost": cfg.email.smarthost, "smtp_from": cfg.email.sender,
                           "smtp_require_tls": cfg.email.require_tls})
        if cfg.email.username:
            global_cfg["smtp_auth_username"] = cfg.email.username
            global_cfg["smtp_auth_password_file"] = f"{cfg.credentials_dir}/smtp-password"

    document = {
        "global": global_cfg,
        "templates": [f"{cfg.templates_dir}/*.tmpl"],
        "route": {
            "receiver": default,
            "group_by": ["alertname", "environment", "service"],
            **_timing(cfg.timings["warning"]),
            "routes": routes,
        },
        "inhibit_rules": inhibitions(),
        "receivers": receivers,
    }
    return "# Generated by football-monitoring; edit the settings and alerting/, not this file.\n" + yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False, width=120)
