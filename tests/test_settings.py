"""Settings: defaults, per-stack overrides, and one clear message per bad value."""

from __future__ import annotations

import json

import pytest

from tools import offline
from components.settings import PROJECT, SettingsError


def fail_with(overrides: dict, stack: str = "dev", secrets_as_plain: tuple = ()) -> str:
    config, secret_keys = offline.stack_config(stack, overrides)
    for key in secrets_as_plain:
        secret_keys.remove(f"{PROJECT}:{key}")
    with pytest.raises(SettingsError) as info:
        offline.run(stack, config=config, secret_keys=secret_keys)
    return str(info.value)


def test_defaults_apply_and_stack_files_override(dev, prod, docker_dev):
    assert docker_dev.containers() and not docker_dev.kubernetes_objects()
    assert dev.outputs["namespace"] == "monitoring-dev"
    assert prod.outputs["namespace"] == "monitoring"
    assert dev.one("StatefulSet", "prometheus")["spec"]["replicas"] == 1
    assert prod.one("StatefulSet", "prometheus")["spec"]["replicas"] == 2


@pytest.mark.parametrize("overrides, expected", [
    ({"prometheus": {"retention": "abc"}},
     "football-monitoring:prometheus.retention = 'abc' is not valid: expected a Prometheus duration such as 30s, 5m, 36h or 15d"),
    ({"prometheus": {"replicas": 0}},
     "football-monitoring:prometheus.replicas = 0 is not valid: expected a whole number from 1 to 4"),
    ({"alertmanager": {"replicas": "three"}},
     "football-monitoring:alertmanager.replicas = 'three' is not valid: expected a whole number from 1 to 5"),
    ({"prometheus": {"storageSize": "10 potatoes"}},
     "football-monitoring:prometheus.storageSize = '10 potatoes' is not valid: expected a Kubernetes storage quantity with a unit, such as 512Mi, 20Gi or 1Ti"),
    ({"prometheus": {"retentionSize": "lots"}},
     "football-monitoring:prometheus.retentionSize = 'lots' is not valid: expected a size in Prometheus units"),
    ({"prometheus": {"retension": "30d"}},
     "football-monitoring:prometheus.retension is not a known setting; did you mean prometheus.retention?"),
    ({"grafanna": {"storageSize": "1Gi"}},
     "football-monitoring:grafanna is not a known setting; did you mean grafana?"),
    ({"namespace": "Monitoring_Prod"},
     "football-monitoring:namespace = 'Monitoring_Prod' is not valid: expected a DNS label"),
    ({"images": {"prometheus": "quay.io/prometheus/prometheus:latest"}},
     "football-monitoring:images.prometheus = 'quay.io/prometheus/prometheus:latest' is not valid: expected an image reference"),
    ({"images": {"grafana": "grafana/grafana"}},
     "football-monitoring:images.grafana = 'grafana/grafana' is not valid"),
    ({"prometheus": {"resources": {"requests": {"cpu": "lots"}}}},
     "football-monitoring:prometheus.resources.requests.cpu = 'lots' is not valid: expected a Kubernetes CPU quantity"),
    ({"prometheus": {"retentionSize": "9GB", "storageSize": "10Gi"}},
     "football-monitoring:prometheus.retentionSize = '9GB' is not valid: expected at most 85% of prometheus.storageSize"),
    ({"prometheus": {"scrapeInterval": "15s", "scrapeTimeout": "20s"}},
     "football-monitoring:prometheus.scrapeTimeout = '20s' is not valid: expected at most prometheus.scrapeInterval (15s)"),
    ({"grafana": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}}},
     "football-monitoring:grafana.resources.requests.memory = '1Gi' is not valid: expected at most grafana.resources.limits.memory (512Mi)"),
    ({"probes": {"http": [{"name": "api", "target": "not a url"}]}},
     "football-monitoring:probes.http = "),
    ({"protectData": "yes"},
     "football-monitoring:protectData = 'yes' is not valid: expected true or false"),
    ({"platform": "nomad"},
     "football-monitoring:platform = 'nomad' is not valid: expected one of kubernetes, docker"),
    ({"platform": "docker", "prometheus": {"replicas": 2}},
     "football-monitoring:prometheus.replicas = 2 is not valid on platform docker: expected 1"),
    ({"docker": {"bindAddress": "localhost"}},
     "football-monitoring:docker.bindAddress = 'localhost' is not valid: expected an IPv4 address"),
    ({"staticTargets": [{"job": "api", "target": "no-port"}]},
     "football-monitoring:staticTargets = "),
    ({"alerting": {"teams": {"marketing": {"email": "m@example.org"}}}},
     "football-monitoring:alerting.teams = "),
    ({"alerting": {"slack": {"enabled": True}}},
     "expected at least one team with slackChannel when alerting.slack.enabled is true"),
    ({"alerting": {"email": {"enabled": True}}},
     "football-monitoring:alerting.email.smarthost is not set: expected a value when alerting.email.enabled is true"),
])
def test_bad_value_fails_with_key_value_and_what_is_allowed(overrides, expected):
    message = fail_with(overrides)
    assert expected in message
    assert "invalid settings for stack 'dev'" in message


def test_every_problem_is_reported_at_once():
    message = fail_with({"prometheus": {"retention": "abc", "replicas": 0}, "namespace": "Bad Name"})
    assert message.count("\n  - ") == 3


def test_bad_settings_declare_no_resource():
    config, secret_keys = offline.stack_config("prod", {"prometheus": {"replicas": 0}})
    with pytest.raises(SettingsError):
        offline.run("prod", config=config, secret_keys=secret_keys)
    assert offline.LAST_RECORDER.resources == []


def test_secret_set_in_plain_text_is_refused():
    message = fail_with({}, secrets_as_plain=("alertmanagerWebhookUrl",))
    assert ("football-monitoring:alertmanagerWebhookUrl is set in plain text: it is a secret, set it with "
            "`pulumi config set --secret football-monitoring:alertmanagerWebhookUrl <value>`") in message


def test_missing_required_secret_says_how_to_set_it():
    config, secret_keys = offline.stack_config("dev")
    del config[f"{PROJECT}:postgresDsn"]
    with pytest.raises(SettingsError) as info:
        offline.run("dev", config=config, secret_keys=secret_keys)
    assert "football-monitoring:postgresDsn is not set: expected a secret" in str(info.value)
    assert "pulumi config set --secret football-monitoring:postgresDsn" in str(info.value)


def test_exporter_secret_not_needed_when_exporter_disabled():
    config, secret_keys = offline.stack_config("dev", {"platform": "kubernetes",
                                                       "exporters": {"postgres": {"enabled": False}}})
    del config[f"{PROJECT}:postgresDsn"]
    result = offline.run("dev", config=config, secret_keys=secret_keys)
    assert not result.find("Deployment", "postgres-exporter")
    assert "postgres-exporter" not in result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]


def test_stack_name_is_the_default_environment():
    config, secret_keys = offline.stack_config("staging")
    result = offline.run("staging", config=config, secret_keys=secret_keys)
    assert result.outputs["environment"] == "staging"
    assert "environment: staging" in result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]


def test_overrides_merge_into_the_stack_files_sections():
    result = offline.run("prod", {"prometheus": {"scrapeInterval": "15s"}})
    sts = result.one("StatefulSet", "prometheus")
    # The one key changes; prod's replicas and retention from Pulumi.prod.yaml stay.
    assert sts["spec"]["replicas"] == 2
    assert "--storage.tsdb.retention.time=30d" in sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "scrape_interval: 15s" in result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    # Lists are replaced whole, not appended to.
    probes = offline.stack_config("prod", {"probes": {"tcp": []}})[0]["football-monitoring:probes"]
    assert json.loads(probes)["tcp"] == [] and json.loads(probes)["http"]
