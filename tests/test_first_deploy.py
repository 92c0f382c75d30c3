"""dev deploys without a single secret; prod still demands every one of its receivers.

Without alertmanagerWebhookUrl on a stack that does not require it, Alertmanager's routes end in
``ui-only``, a receiver with no integration (the alerts stay visible in its UI); the generated
alertmanager.yml is checked by the real amtool and started with the real Alertmanager, with the
container's own command line. Without postgresDsn / redisUrl the exporters are left out, with a
warning in the preview and the stack output notDeployed.
"""

from __future__ import annotations

import pulumi
import pytest
import yaml

from components.configs import alertmanager as am
from components.settings import PROJECT, AlertingSettings, SettingsError, TeamContact
from tests import command_lines as cl
from tests.config_checks import run
from tests.conftest import require_tool
from tools import offline


def without_secrets(stack: str, overrides: dict | None = None) -> tuple[offline.RunResult, list[str]]:
    """The stack run under mocks with no secret set; (result, the warnings it logged)."""
    warnings: list[str] = []
    original = pulumi.log.warn
    pulumi.log.warn = lambda message, *args, **kwargs: warnings.append(message)
    try:
        config, secret_keys = offline.stack_config(stack, overrides, secrets=())
        return offline.run(stack, config=config, secret_keys=secret_keys), warnings
    finally:
        pulumi.log.warn = original


@pytest.fixture(scope="module")
def bare_dev():
    return without_secrets("dev")


def alertmanager_yml(result: offline.RunResult) -> str:
    container = result.container("alertmanager")
    return next(u["content"] for u in container.inputs["uploads"] if u["file"].endswith("/alertmanager.yml"))


def test_dev_deploys_with_no_secret_and_says_what_is_off(bare_dev):
    result, warnings = bare_dev
    names = {c.name for c in result.containers()}
    assert "postgres-exporter" not in names and "redis-exporter" not in names
    assert {"prometheus", "alertmanager", "grafana"} <= names
    assert set(result.outputs["notDeployed"]) == {"postgres-exporter", "redis-exporter"}
    assert "postgresDsn secret is not set" in result.outputs["notDeployed"]["postgres-exporter"]
    assert result.outputs["alertDelivery"].startswith("nothing is delivered")
    assert "http://localhost:9093" in result.outputs["alertDelivery"]
    assert any(w.startswith("postgres-exporter is left out: the postgresDsn secret is not set") for w in warnings)
    assert any(w.startswith("redis-exporter is left out") for w in warnings)
    assert any(w.startswith("Alertmanager: nothing is delivered") for w in warnings)
    prometheus_yml = next(u["content"] for u in result.container("prometheus").inputs["uploads"]
                          if u["file"].endswith("/prometheus.yml"))
    assert "postgres-exporter" not in prometheus_yml and "redis-exporter" not in prometheus_yml


def test_dev_with_its_secrets_set_deploys_them(docker_dev):
    assert {"postgres-exporter", "redis-exporter"} <= {c.name for c in docker_dev.containers()}
    assert "notDeployed" not in docker_dev.outputs
    assert docker_dev.outputs["alertDelivery"] == "delivered to the default webhook"
    assert "default-webhook" in alertmanager_yml(docker_dev)


def test_the_receivers_without_a_webhook_deliver_nothing(bare_dev):
    config = yaml.safe_load(alertmanager_yml(bare_dev[0]))
    assert config["receivers"] == [{"name": am.UI_ONLY}, {"name": "watchdog-drop"}]
    assert config["route"]["receiver"] == am.UI_ONLY
    assert "url_file" not in alertmanager_yml(bare_dev[0])
    assert not [c for c in bare_dev[0].containers() for u in c.inputs.get("uploads") or []
                if am.CREDENTIALS_DIR in u["file"]]


def write_for_amtool(text: str, tmp_path) -> str:
    templates = tmp_path / "templates"
    templates.mkdir()
    for name, body in am.templates().items():
        (templates / name).write_text(body)
    path = tmp_path / "alertmanager.yml"
    path.write_text(text.replace(am.TEMPLATES_DIR, str(templates)))
    return str(path)


@pytest.mark.parametrize("labels, receiver", [
    ("alertname=PostgresDown severity=critical team=backend", am.UI_ONLY),
    ("alertname=FootballDataStale severity=warning team=data", am.UI_ONLY),
    ("alertname=Anything severity=info", am.UI_ONLY),
    ("alertname=Watchdog severity=none", "watchdog-drop"),
])
def test_amtool_accepts_the_config_and_routes_everything_to_the_ui(bare_dev, tmp_path, labels, receiver):
    amtool = require_tool("amtool")
    path = write_for_amtool(alertmanager_yml(bare_dev[0]), tmp_path)
    check = run([amtool, "check-config", path])
    assert check.returncode == 0, check.stdout + check.stderr
    routes = run([amtool, "config", "routes", "test", f"--config.file={path}"] + labels.split())
    assert routes.returncode == 0 and routes.stdout.strip() == receiver, routes.stdout + routes.stderr


def test_a_team_with_slack_keeps_its_receiver_without_the_webhook(tmp_path):
    text = am.render(am.AlertmanagerConfig(environment="x", timings=AlertingSettings().timings, webhook=False,
                                           slack=True, teams={"backend": TeamContact.model_validate({"slackChannel": "#be"})}))
    config = yaml.safe_load(text)
    receivers = {r["name"]: r for r in config["receivers"]}
    assert "webhook_configs" not in receivers["backend-critical"] and receivers["backend-critical"]["slack_configs"]
    assert "platform-critical" not in receivers  # no channel of its own: its alerts land in ui-only
    amtool = require_tool("amtool")
    path = write_for_amtool(text, tmp_path)
    proc = run([amtool, "config", "routes", "test", f"--config.file={path}", "severity=critical", "team=backend"])
    assert proc.stdout.strip() == "backend-critical", proc.stdout + proc.stderr


def test_the_real_alertmanager_starts_with_it(bare_dev, tmp_path):
    """The container's own command line and files, on loopback (tests/command_lines.py)."""
    pods, _ = cl.pods(bare_dev[0], "dev-without-secrets")
    pod = next(p for p in pods if [c.tool for c in p.containers] == ["alertmanager"])
    (tmp_path / "credentials").mkdir()
    credentials = cl.Credentials.create(tmp_path / "credentials", require_tool("openssl"))
    elasticsearch, kubernetes = cl.elasticsearch_stand_in(credentials), cl.kubernetes_stand_in()
    try:
        started = cl.prepare(pod, tmp_path / "pod", cl.Environment(credentials, elasticsearch, kubernetes))
        (tmp_path / "logs").mkdir()
        outcomes = cl.run_together(started, require_tool, tmp_path / "logs")
    finally:
        elasticsearch.close()
        kubernetes.close()
    assert len(outcomes) == 1 and outcomes[0].passed, outcomes[0].describe()


@pytest.mark.parametrize("missing", ["alertmanagerWebhookUrl", "postgresDsn", "redisUrl", "slackApiUrl"])
def test_prod_still_demands_every_receiver_and_exporter_secret(missing):
    config, secret_keys = offline.stack_config("prod")
    del config[f"{PROJECT}:{missing}"]
    with pytest.raises(SettingsError) as info:
        offline.run("prod", config=config, secret_keys=secret_keys)
    assert (f"{PROJECT}:{missing} is not set: expected a secret" in str(info.value)
            and f"`pulumi config set --secret {PROJECT}:{missing} <value>`" in str(info.value))


def test_dev_can_require_them_too():
    with pytest.raises(SettingsError) as info:
        without_secrets("dev", {"alerting": {"webhook": {"required": True}}, "exporters": {"redis": {"required": True}}})
    message = str(info.value)
    assert "alertmanagerWebhookUrl is not set" in message and "redisUrl is not set" in message
    assert "postgresDsn" not in message


def with_warnings(stack: str, overrides: dict | None = None) -> list[str]:
    """The warnings a run with the test secrets logs."""
    warnings: list[str] = []
    original = pulumi.log.warn
    pulumi.log.warn = lambda message, *args, **kwargs: warnings.append(message)
    try:
        offline.run(stack, overrides)
    finally:
        pulumi.log.warn = original
    return warnings


def test_notifications_without_a_public_url_for_their_links_are_warned_of():
    """prod delivers notifications, and neither Prometheus nor Alertmanager has an ingress: their
    links (graph, silence) would open only inside the cluster unless an externalUrl is set."""
    unset = [w for w in with_warnings("prod") if "has no public URL" in w]
    assert [w.split()[0] for w in unset] == ["Prometheus", "Alertmanager"], unset
    assert f"{PROJECT}:alertmanager.externalUrl" in unset[1] and ".svc" in unset[1]
    public = with_warnings("prod", {"prometheus": {"externalUrl": "https://prometheus.example.org"},
                                    "alertmanager": {"externalUrl": "https://alertmanager.example.org"}})
    assert not [w for w in public if "has no public URL" in w]
