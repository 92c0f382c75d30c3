"""alertmanager.yml routing, receivers and inhibitions, checked with the real amtool."""

from __future__ import annotations

import re

import pytest
import yaml

from tools import offline
from components.configs import alertmanager as am
from tests.config_checks import run
from tests.conftest import require_tool, run_on_kubernetes


def write_config(result, tmp_path):
    """alertmanager.yml as the pod sees it, with templates and credentials at local paths."""
    templates = tmp_path / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    for name, text in am.templates().items():
        (templates / name).write_text(text)
    credentials = tmp_path / "credentials"
    credentials.mkdir(exist_ok=True)
    secret = result.find("Secret", "alertmanager-credentials")
    for name, value in (secret[0]["stringData"].items() if secret else []):
        (credentials / name).write_text(value)
    text = result.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"]
    text = text.replace(am.TEMPLATES_DIR, str(templates)).replace(am.CREDENTIALS_DIR, str(credentials))
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    return path


def routes_for(amtool, path, labels: str) -> str:
    proc = run([amtool, "config", "routes", "test", f"--config.file={path}"] + labels.split())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_config_and_templates_pass_amtool(runs, stack, tmp_path):
    amtool = require_tool("amtool")
    proc = run([amtool, "check-config", str(write_config(runs[stack], tmp_path))])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " - 1 templates" in proc.stdout
    assert f" - {len(am.inhibitions())} inhibit rules" in proc.stdout


@pytest.mark.parametrize("stack, labels, receivers", [
    ("prod", "alertname=Watchdog severity=info team=platform", "heartbeat"),
    ("prod", "alertname=PostgresDown severity=critical team=backend", "escalation,backend-critical"),
    ("prod", "alertname=NodeDown severity=critical team=platform", "escalation,platform-critical"),
    ("prod", "alertname=FootballDataStale severity=warning team=data", "data-warning"),
    ("prod", "alertname=Anything severity=info team=data", "default-webhook"),
    ("prod", "alertname=NoTeam severity=critical", "escalation,default-webhook"),
    ("dev", "alertname=Watchdog severity=info team=platform", "watchdog-drop"),
    ("dev", "alertname=PostgresDown severity=critical team=backend", "backend-critical"),
    ("dev", "alertname=FootballDataStale severity=warning team=data", "default-webhook"),
])
def test_routing(runs, stack, labels, receivers, tmp_path):
    amtool = require_tool("amtool")
    assert routes_for(amtool, write_config(runs[stack], tmp_path), labels) == receivers


def test_receivers_per_severity_in_prod(prod):
    config = yaml.safe_load(prod.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"])
    receivers = {r["name"]: r for r in config["receivers"]}
    critical = receivers["backend-critical"]
    assert critical["slack_configs"][0]["api_url_file"] == am.SLACK_URL_FILE
    assert critical["slack_configs"][0]["channel"] == "#fp-backend-alerts"
    assert critical["email_configs"][0]["to"] == "backend-oncall@football-prediction.example.org"
    targets = [w.get("url") or w["url_file"] for w in critical["webhook_configs"]]
    assert targets == [f"{am.CREDENTIALS_DIR}/webhook-url",
                       "http://dingtalk-relay.monitoring.svc:8060/dingtalk/football/send"]
    assert all(c["send_resolved"] for c in critical["webhook_configs"] + critical["slack_configs"])
    warning = receivers["backend-warning"]
    assert "email_configs" not in warning and "slack_configs" in warning
    assert config["global"]["smtp_auth_password_file"] == am.SMTP_PASSWORD_FILE
    assert config["route"]["group_by"] == ["alertname", "environment", "service"]
    branches = {r["matchers"][0]: r for r in config["route"]["routes"]}
    assert branches['severity="critical"']["repeat_interval"] == "1h"
    assert branches['severity="info"']["repeat_interval"] == "24h"
    assert branches['alertname="Watchdog"']["repeat_interval"] == "1m"


def test_credentials_are_files_from_a_secret(prod):
    credentials = prod.one("Secret", "alertmanager-credentials")
    assert set(credentials["stringData"]) == {"webhook-url", "heartbeat-url", "escalation-url", "slack-api-url",
                                              "smtp-password"}
    pod = prod.one("StatefulSet", "alertmanager")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts[am.CREDENTIALS_DIR]["readOnly"] is True
    config = prod.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"]
    stack_config = offline.stack_config("prod")[0]
    for key in ("slackApiUrl", "alertmanagerWebhookUrl", "heartbeatUrl", "escalationWebhookUrl"):
        assert stack_config[f"football-monitoring:{key}"] not in config, key
    # Every file the config names is in the Secret, and nothing in the Secret goes unread.
    named = set(re.findall(rf"{am.CREDENTIALS_DIR}/([\w-]+)", config))
    assert named == set(credentials["stringData"])


def test_a_stack_without_heartbeat_or_escalation_mounts_only_what_it_names():
    result = run_on_kubernetes("dev")
    credentials = set(result.one("Secret", "alertmanager-credentials")["stringData"])
    config = result.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"]
    assert set(re.findall(rf"{am.CREDENTIALS_DIR}/([\w-]+)", config)) == credentials
    assert "webhook-url" in credentials


def test_timings_come_from_settings():
    result = run_on_kubernetes("dev", {"alerting": {"quiet": True, "critical": {"groupWait": "1s", "groupInterval": "2s",
                                                                           "repeatInterval": "1m"}}})
    config = yaml.safe_load(result.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"])
    critical = [r for r in config["route"]["routes"] if r["matchers"] == ['severity="critical"']][0]
    assert (critical["group_wait"], critical["group_interval"], critical["repeat_interval"]) == ("1s", "2s", "1m")


def test_inhibitions_are_data(prod):
    config = yaml.safe_load(prod.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"])
    assert config["inhibit_rules"] == am.inhibitions()
    assert {"source_matchers": ['severity="critical"'], "target_matchers": ['severity=~"warning|info"'],
            "equal": ["alertname", "environment", "service"]} in config["inhibit_rules"]


def test_dingtalk_relay_holds_the_robot_url(prod):
    relay = prod.one("Secret", "dingtalk-relay-config")["stringData"]["config.yml"]
    assert yaml.safe_load(relay)["targets"]["football"]["url"].startswith("https://secret.invalid/dingtalkWebhookUrl")
    assert prod.one("Deployment", "dingtalk-relay")
