"""Settings: defaults, per-stack overrides, and one clear message per bad value."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from tools import offline
from components.settings import PROJECT, SECRETS, SettingsError
from scripts import settings_reference
from tests.conftest import KUBERNETES, ROOT


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
     "football-monitoring:probes.http[0].target = 'not a url' is not valid: expected an http(s) URL such as "
     "http://football-prediction-api.app.svc:8000/health"),
    ({"protectData": "yes"},
     "football-monitoring:protectData = 'yes' is not valid: expected true or false"),
    ({"platform": "kubernetes", "thanos": {"enabled": True, "objstore": {"bucket": "b"}, "retentionRaw": "200d"}},
     "football-monitoring:thanos.retentionRaw, thanos.retention5m and thanos.retention1h = '200d', '180d', '2y' are "
     "not valid: expected each at least the one before"),
    ({"platform": "kubernetes", "thanos": {"enabled": True, "objstore": {"bucket": "b"}, "retentionRaw": "2d"}},
     "football-monitoring:thanos.retentionRaw = '2d' is not valid: expected at least 3d (the compactor makes the 5m "
     "blocks only from blocks compacted to 2 days"),
    ({"platform": "kubernetes",
      "thanos": {"enabled": True, "objstore": {"bucket": "b"}, "retention5m": "7d", "retentionRaw": "7d"}},
     "football-monitoring:thanos.retention5m = '7d' is not valid: expected at least 15d (the compactor makes the 1h "
     "blocks only from blocks compacted to 14 days"),
    ({"platform": "nomad"},
     "football-monitoring:platform = 'nomad' is not valid: expected one of kubernetes, docker"),
    ({"platform": "docker", "prometheus": {"replicas": 2}},
     "football-monitoring:prometheus.replicas = 2 is not valid on platform docker: expected 1"),
    ({"docker": {"bindAddress": "localhost"}},
     "football-monitoring:docker.bindAddress = 'localhost' is not valid: expected an IPv4 address"),
    ({"staticTargets": [{"job": "api", "target": "no-port"}]},
     "football-monitoring:staticTargets[0].target = 'no-port' is not valid: expected host:port such as "
     "api.football-prediction.svc:8000"),
    ({"alerting": {"teams": {"marketing": {"email": "m@example.org"}}}},
     "football-monitoring:alerting.teams.marketing is not a known key: expected a team: one of platform, backend, "
     "data, security"),
    ({"alerting": {"slack": {"enabled": True}}},
     "expected at least one team with slackChannel when alerting.slack.enabled is true"),
    ({"alerting": {"email": {"enabled": True}}},
     "football-monitoring:alerting.email.smarthost is not set: expected a value when alerting.email.enabled is true"),
    ({"docker": {"grafanaPort": 9090}},
     "football-monitoring:docker.prometheusPort = 9090 is not valid: expected another port than docker.grafanaPort's"),
    ({"prometheus": {"storageSize": "1Gi", "retentionSize": "900MB"}},
     "football-monitoring:prometheus.retentionSize = '900MB' is not valid: expected at most 85% of "
     "prometheus.storageSize (1Gi, so at most 870MB)"),
])
def test_bad_value_fails_with_key_value_and_what_is_allowed(overrides, expected):
    message = fail_with(overrides)
    assert expected in message
    assert "invalid settings for stack 'dev'" in message


# Values that used to be accepted as written: the loader and the JSON Schema refuse each (and so does an
# editor: tests/test_stack_file_editor.py).
REFUSED_FORMS = [
    ({"staticTargets": [{"job": "api", "target": "a.svc:99999"}]},
     "football-monitoring:staticTargets[0].target = 'a.svc:99999' is not valid: expected host:port"),
    ({"staticTargets": [{"job": "api", "target": "host:0"}]},
     "football-monitoring:staticTargets[0].target = 'host:0' is not valid: expected host:port"),
    ({"probes": {"tcp": [{"name": "db", "target": "db.svc:65536"}]}},
     "football-monitoring:probes.tcp[0].target = 'db.svc:65536' is not valid: expected host:port"),
    ({"probes": {"http": [{"name": "api", "target": "http://api.svc:0/health"}]}},
     "football-monitoring:probes.http[0].target = 'http://api.svc:0/health' is not valid: expected an http(s) URL"),
    ({"alerting": {"email": {"smarthost": "smtp.example.org:100000"}}},
     "football-monitoring:alerting.email.smarthost = 'smtp.example.org:100000' is not valid: expected host:port"),
    ({"logging": {"snapshot": {"endpoint": "minio.svc:0"}}},
     "football-monitoring:logging.snapshot.endpoint = 'minio.svc:0' is not valid: expected a host or host:port"),
    ({"ingress": {"authUrl": "/oauth2/auth"}},
     "football-monitoring:ingress.authUrl = '/oauth2/auth' is not valid: expected an absolute http(s) URL"),
    ({"ingress": {"authUrl": "oauth2-proxy.auth.svc/oauth2/auth"}},
     "football-monitoring:ingress.authUrl = 'oauth2-proxy.auth.svc/oauth2/auth' is not valid: expected an absolute"),
    ({"ingress": {"className": "Nginx"}},
     "football-monitoring:ingress.className = 'Nginx' is not valid: expected a Kubernetes object name"),
    ({"ingress": {"tlsSecretName": "monitoring_tls"}},
     "football-monitoring:ingress.tlsSecretName = 'monitoring_tls' is not valid: expected a Kubernetes object name"),
    ({"ingress": {"clusterIssuer": "letsencrypt prod", "tlsSecretName": "tls"}},
     "football-monitoring:ingress.clusterIssuer = 'letsencrypt prod' is not valid: expected a Kubernetes object name"),
    ({"storageClass": "-fast"},
     "football-monitoring:storageClass = '-fast' is not valid: expected a Kubernetes object name"),
    # Alertmanager parses --data.retention with str2duration, which has no y: the pods would crash-loop.
    ({"alertmanager": {"retention": "1y"}},
     "football-monitoring:alertmanager.retention = '1y' is not valid: expected a Prometheus duration such as 30s, "
     "5m, 36h or 15d (in weeks, days or smaller units: no y)"),
    ({"images": {"grafana": "docker.io/grafana/grafana:latest@sha256:" + "a" * 64}},
     "football-monitoring:images.grafana = 'docker.io/grafana/grafana:latest@sha256:"),
    ({"demo": {"image": "football-demo:latest"}},
     "football-monitoring:demo.image = 'football-demo:latest' is not valid: expected an image reference"),
    ({"report": {"image": "registry.example.org/report:1 "}},
     "football-monitoring:report.image = 'registry.example.org/report:1 ' is not valid: expected an image reference"),
    ({"logging": {"snapshot": {"claimName": "My_Claim "}}},
     "football-monitoring:logging.snapshot.claimName = 'My_Claim ' is not valid: expected a Kubernetes object name"),
    ({"tracing": {"sampling": {"percentage": "1e1"}}},
     "football-monitoring:tracing.sampling.percentage = '1e1' is not valid: expected a percentage"),
]


@pytest.mark.parametrize("overrides, expected", REFUSED_FORMS)
def test_values_out_of_range_or_form_are_refused(overrides, expected, schema_validator):
    message = fail_with(overrides)
    assert expected in message and message.count("\n  - ") == 1
    assert not schema_validator.is_valid({"config": {f"{PROJECT}:{key}": value for key, value in overrides.items()}})


def test_a_final_newline_is_not_part_of_a_valid_value():
    # Python's $ matches before a final newline; the value would reach the configs with it.
    assert ("football-monitoring:staticTargets[0].target = 'host:8000\\n' is not valid: expected host:port"
            in fail_with({"staticTargets": [{"job": "api", "target": "host:8000\n"}]}))
    for key, value in (("retention", "3d\n"), ("storageSize", "5Gi\n"), ("retentionSize", "4GB\n")):
        assert f"football-monitoring:prometheus.{key} = {value!r} is not valid" in fail_with({"prometheus": {key: value}})
    assert ("football-monitoring:prometheus.resources.requests.cpu = '1\\n' is not valid: expected a Kubernetes CPU "
            "quantity" in fail_with({"prometheus": {"resources": {"requests": {"cpu": "1\n"}}}}))


# Values at the edges of what is allowed: the loader, the JSON Schema and an editor take each.
TAKEN_EDGES = [
    {"staticTargets": [{"job": "api", "target": "a.svc:65535"}, {"job": "db", "target": "b.svc:1"}]},
    {"ingress": {"authUrl": "https://$host/oauth2/auth?rd=$escaped_request_uri"}},
    {"ingress": {"authUrl": "http://oauth2-proxy.auth.svc:4180/oauth2/auth", "className": "nginx.internal",
                 "tlsSecretName": "monitoring-tls", "clusterIssuer": "letsencrypt-prod"}},
    {"storageClass": "fast-ssd.example.org"},
    {"alertmanager": {"retention": "52w"}},
    {"tracing": {"sampling": {"percentage": "100"}}},
    {"logging": {"snapshot": {"schedule": " 0 30 1 * * ? "}}},
    # Written with nothing under them: the defaults (as the loader reads a section or list left null or empty).
    {"alerting": {"slack": None, "webhook": None}},
    {"probes": {"http": None, "tcp": ""}},
    {"prometheus": {"resources": None}},
    {"staticTargets": ""},
]


@pytest.mark.parametrize("overrides", TAKEN_EDGES)
def test_values_at_the_edges_are_taken(overrides, schema_validator):
    offline.run("prod", overrides)
    assert schema_validator.is_valid({"config": {f"{PROJECT}:{key}": value for key, value in overrides.items()}})


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


MARKER = "Hunter2_Password"


def fail_with_encrypted(overrides: dict, encrypted: tuple) -> str:
    """The report for ``overrides`` where the top-level keys ``encrypted`` were set with --secret."""
    config, secret_keys = offline.stack_config("dev", overrides)
    secret_keys += [f"{PROJECT}:{key}" for key in encrypted]
    with pytest.raises(SettingsError) as info:
        offline.run("dev", config=config, secret_keys=secret_keys)
    return str(info.value)


@pytest.mark.parametrize("overrides, encrypted, expected", [
    ({"namespace": MARKER}, ("namespace",),
     "football-monitoring:namespace is stored encrypted but is not a secret setting; set it without --secret"),
    ({"prometheus": {"retention": MARKER}}, ("prometheus",),
     "football-monitoring:prometheus is stored encrypted but is not a secret setting; set it without --secret"),
    ({"environment": MARKER}, ("environment",),
     "football-monitoring:environment is stored encrypted but is not a secret setting"),
    ({"namespac": MARKER}, ("namespac",),
     "football-monitoring:namespac is not a known setting; did you mean namespace?"),
    # A value that would be valid in clear is refused too: it would land in the state unencrypted.
    ({"namespace": "monitoring"}, ("namespace",),
     "football-monitoring:namespace is stored encrypted but is not a secret setting"),
])
def test_an_encrypted_value_of_a_plain_setting_is_refused_without_showing_it(overrides, encrypted, expected):
    message = fail_with_encrypted(overrides, encrypted)
    assert expected in message
    assert MARKER not in message


def test_no_message_shows_the_value_of_an_encrypted_key():
    config, secret_keys = offline.stack_config("dev", {
        "namespace": MARKER, "grafana": {"storageSize": MARKER}, "prometheus": {"retention": "abc"}})
    config[f"{PROJECT}:slackApiUrl"] = MARKER
    config[f"{PROJECT}:postgresDsn"] = MARKER
    secret_keys += [f"{PROJECT}:namespace", f"{PROJECT}:grafana"]
    with pytest.raises(SettingsError) as info:
        offline.run("dev", config=config, secret_keys=secret_keys)
    message = str(info.value)
    assert "football-monitoring:prometheus.retention = 'abc' is not valid" in message
    assert message.count("is stored encrypted but is not a secret setting") == 2
    assert MARKER not in message


@pytest.mark.parametrize("key, value, expected", [
    ("slackApiUrl", "", "football-monitoring:slackApiUrl is set but empty"),
    ("postgresDsn", "  ", "football-monitoring:postgresDsn is set but empty"),
    ("dingtalkSecret", "", "football-monitoring:dingtalkSecret is set but empty"),
    *[(key, value, f"football-monitoring:{key} is not valid: expected an http(s) URL")
      for key, spec in SECRETS.items() if spec.url
      for value in (f"hooks.example.org/{MARKER}", f"ftp://example.org/{MARKER}", f"https://example.org/{MARKER}\n",
                    f"https:///{MARKER}")],
])
def test_a_bad_secret_is_refused_without_showing_it(key, value, expected):
    config, secret_keys = offline.stack_config("prod")
    config[f"{PROJECT}:{key}"] = value
    with pytest.raises(SettingsError) as info:
        offline.run("prod", config=config, secret_keys=secret_keys)
    message = str(info.value)
    assert expected in message and message.count("\n  - ") == 1
    assert MARKER not in message and (not value.strip() or value not in message)


def test_missing_required_secret_says_how_to_set_it():
    config, secret_keys = offline.stack_config("dev", {"exporters": {"postgres": {"required": True}}})
    del config[f"{PROJECT}:postgresDsn"]
    with pytest.raises(SettingsError) as info:
        offline.run("dev", config=config, secret_keys=secret_keys)
    assert "football-monitoring:postgresDsn is not set: expected a secret" in str(info.value)
    assert "pulumi config set --secret football-monitoring:postgresDsn" in str(info.value)


def test_exporter_secret_not_needed_when_exporter_disabled():
    config, secret_keys = offline.stack_config("dev", {**KUBERNETES,
                                                       "exporters": {"postgres": {"enabled": False}}})
    del config[f"{PROJECT}:postgresDsn"]
    result = offline.run("dev", config=config, secret_keys=secret_keys)
    assert not result.find("Deployment", "postgres-exporter")
    assert "postgres-exporter" not in result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]


def loaded_settings(stack: str, monkeypatch: pytest.MonkeyPatch):
    """The Settings the program gets for ``stack``."""
    import components.stack
    loaded = []
    monkeypatch.setattr(components.stack, "build", lambda settings: loaded.append(settings) or {})
    offline.run(stack)
    return loaded[0]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_loaded_settings_hold_no_mutable_container(stack, monkeypatch):
    from pydantic import BaseModel, ValidationError
    settings = loaded_settings(stack, monkeypatch)

    def walk(value, where):
        assert not isinstance(value, (dict, list, set, bytearray)), f"{where} is a mutable {type(value).__name__}"
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{where}.{name}")
        elif isinstance(value, (tuple, frozenset)):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")
        elif hasattr(value, "items"):
            for key, item in value.items():
                walk(item, f"{where}.{key}")

    walk(settings, "settings")
    assert settings.alerting.teams  # the walk went through the teams
    with pytest.raises(TypeError):
        settings.alerting.teams["platform"] = None
    with pytest.raises(AttributeError):
        settings.probes.tcp.append(None)
    with pytest.raises(ValidationError):
        settings.alerting.teams["platform"].email = "someone@example.org"


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
    prometheus_yml = result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    assert "retention:\n      time: 30d" in prometheus_yml
    assert "scrape_interval: 15s" in prometheus_yml
    # Lists are replaced whole, not appended to.
    probes = offline.stack_config("prod", {"probes": {"tcp": []}})[0]["football-monitoring:probes"]
    assert json.loads(probes)["tcp"] == [] and json.loads(probes)["http"]


# ------------------------------------------------------------------ inside lists, several at once

@pytest.mark.parametrize("overrides, expected", [
    ({"staticTargets": [{"job": "api", "target": "api.svc:8000"}, {"job": "db", "target": 5432}]},
     "football-monitoring:staticTargets[1].target = 5432 is not valid: expected host:port such as "
     "api.football-prediction.svc:8000"),
    ({"staticTargets": [{"job": "api"}]},
     "football-monitoring:staticTargets[0].target is not set: expected host:port such as "
     "api.football-prediction.svc:8000"),
    ({"probes": {"tcp": [{"name": "db", "target": "db.svc:5432", "port": 5432}]}},
     "football-monitoring:probes.tcp[0].port is not a known setting"),
    ({"probes": {"tcp": ["db.svc:5432"]}},
     "football-monitoring:probes.tcp[0] = 'db.svc:5432' is not valid: expected an object with keys name, target"),
    ({"probes": {"http": [None]}},
     "football-monitoring:probes.http[0] = null is not valid: expected an object with keys name, target"),
    ({"probes": {"tcp": [{"name": "db", "target": "a.svc:1"}, {"name": "db", "target": "b.svc:2"}]}},
     "football-monitoring:probes.tcp[1].name = 'db' is not valid: expected a name unique within probes.tcp "
     "(probes.tcp[0] has it)"),
    ({"alerting": {"teams": {"platform": {"email": "oncall"}}}},
     "football-monitoring:alerting.teams.platform.email = 'oncall' is not valid: expected an e-mail address"),
    ({"tracing": {"sampling": "tail"}},
     "football-monitoring:tracing.sampling = 'tail' is not valid: expected an object with keys mode, percentage, "
     "slowTraceThreshold"),
    ({"exporters": {"postgres": {"enabled": "yes"}}},
     "football-monitoring:exporters.postgres.enabled = 'yes' is not valid: expected true or false"),
])
def test_a_bad_value_inside_a_list_or_object_is_named_by_its_place(overrides, expected):
    message = fail_with(overrides)
    assert expected in message
    assert message.count("\n  - ") == 1, message


# Each line names one place and shows the value there, never the list or map around it.
@pytest.mark.parametrize("overrides, lines", [
    ({"probes": {"http": [{"name": "ok", "target": "http://a.svc/x"}, {"name": "ftp", "target": "ftp://x"}]}},
     ["football-monitoring:probes.http[1].target = 'ftp://x' is not valid: expected an http(s) URL"]),
    ({"alerting": {"teams": {"platform": {"email": "oncall", "slackChannel": "#ok-channel"},
                             "data": {"email": "data@example.org", "slackChannel": "general"}}}},
     ["football-monitoring:alerting.teams.platform.email = 'oncall' is not valid",
      "football-monitoring:alerting.teams.data.slackChannel = 'general' is not valid"]),
    ({"alerting": {"teams": {"platform": {"email": "a@example.org"}, "data": "#data"}}},
     ["football-monitoring:alerting.teams.data = '#data' is not valid: expected an object with keys slackChannel, "
      "email"]),
    ({"probes": {"http": [None, {"name": "x"}]}},
     ["football-monitoring:probes.http[0] = null is not valid: expected an object",
      "football-monitoring:probes.http[1].target is not set: expected an http(s) URL"]),
])
def test_a_problem_inside_a_container_shows_only_its_own_value(overrides, lines):
    problems = fail_with(overrides).split("\n  - ")[1:]
    assert len(problems) == len(lines)
    for line, problem in zip(lines, problems):
        assert problem.startswith(line)
    for echoed in ('"http://a.svc/x"', "#ok-channel", "data@example.org"):
        assert not any(echoed in problem for problem in problems)


@pytest.mark.parametrize("overrides, unknown, meant", [
    ({"alerting": {"critical": {"repeat": "1h"}}}, "alerting.critical.repeat", "alerting.critical.repeatInterval"),
    ({"alerting": {"email": {"sender": "a@example.org"}}}, "alerting.email.sender", "alerting.email.from"),
    ({"prometheus": {"retension": "30d"}}, "prometheus.retension", "prometheus.retention"),
    ({"prometheus": {"retention_size": "1GB"}}, "prometheus.retention_size", "prometheus.retentionSize"),
    ({"prometheus": {"ScrapeInterval": "15s"}}, "prometheus.ScrapeInterval", "prometheus.scrapeInterval"),
    ({"prometheus": {"resources": {"cpu_limit": "2"}}}, "prometheus.resources.cpu_limit",
     "prometheus.resources.limits.cpu"),
    ({"grafana": {"resources": {"memoryRequest": "1Gi"}}}, "grafana.resources.memoryRequest",
     "grafana.resources.requests.memory"),
    ({"prometheus": {"adminUser": "root"}}, "prometheus.adminUser", "grafana.adminUser"),
    ({"adminUser": "root"}, "adminUser", "grafana.adminUser"),
    ({"grafanna": {"storageSize": "1Gi"}}, "grafanna", "grafana"),
    ({"slackApiURL": "x"}, "slackApiURL", "slackApiUrl"),
    ({"staticTargets": [{"job": "api", "target": "api.svc:8000", "jobs": "x"}]}, "staticTargets[0].jobs",
     "staticTargets[0].job"),
    ({"alerting": {"teams": {"platform": {"mail": "a@example.org"}}}}, "alerting.teams.platform.mail",
     "alerting.teams.platform.email"),
    ({"prometheus": {"retentionTime": "30d"}}, "prometheus.retentionTime", "prometheus.retention"),
    ({"thanos": {"storageSize": "1Gi"}}, "thanos.storageSize",
     "thanos.storeStorageSize, thanos.compactorStorageSize or thanos.ruleStorageSize"),
    ({"thanos": {"objstore": {"accessKey": "x"}}}, "thanos.objstore.accessKey",
     "the secret thanosObjstoreAccessKey, a top-level key: `pulumi config set --secret "
     "football-monitoring:thanosObjstoreAccessKey <value>`"),
    ({"alerting": {"slack": {"apiUrl": "x"}}}, "alerting.slack.apiUrl",
     "the secret slackApiUrl, a top-level key: `pulumi config set --secret football-monitoring:slackApiUrl <value>`"),
    ({"prometheus": {"foo": 1}}, "prometheus.foo", None),
    ({"tracing": {"sampling": {"foo": 1}}}, "tracing.sampling.foo", None),
    ({"staticTargets": [{"job": "api", "target": "api.svc:8000", "port": 1}]}, "staticTargets[0].port", None),
])
def test_an_unknown_key_suggests_the_key_meant(overrides, unknown, meant):
    message = fail_with(overrides)
    line = next(p for p in message.split("\n  - ") if p.startswith(f"football-monitoring:{unknown} "))
    if meant is None:
        # Nothing close: no guess, and never the section the key is in.
        assert line == f"football-monitoring:{unknown} is not a known setting (see docs/settings.md)"
    else:
        assert line == f"football-monitoring:{unknown} is not a known setting; did you mean {meant}? " \
                       "(see docs/settings.md)"


def test_several_problems_in_one_section_are_reported_together():
    message = fail_with({"prometheus": {"replicas": 9, "retention": "forever", "storageSize": "big",
                                        "scrapeInterval": "1h", "evaluationInterva": "1m"}})
    problems = message.split("\n  - ")[1:]
    assert len(problems) == 5
    for key in ("replicas = 9", "retention = 'forever'", "storageSize = 'big'", "scrapeInterval = '1h'",
                "evaluationInterva is not a known setting; did you mean prometheus.evaluationInterval?"):
        assert any(p.startswith(f"football-monitoring:prometheus.{key}") for p in problems), key


def test_every_item_of_a_list_is_checked():
    message = fail_with({"staticTargets": [{"job": "Bad_Job", "target": "a.svc:1"}, {"job": "b", "target": "no-port"},
                                           7]})
    assert message.count("\n  - ") == 3
    assert "[0].job = 'Bad_Job'" in message and "[1].target = 'no-port'" in message and "[2] = 7" in message


def test_broken_rules_of_several_sections_and_a_missing_secret_are_reported_together():
    config, secret_keys = offline.stack_config("dev", {
        "grafana": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}},
        "prometheus": {"scrapeTimeout": "1m"}, "ingress": {"clusterIssuer": "letsencrypt"},
        "exporters": {"postgres": {"required": True}}})
    del config[f"{PROJECT}:postgresDsn"]
    with pytest.raises(SettingsError) as info:
        offline.run("dev", config=config, secret_keys=secret_keys)
    message = str(info.value)
    assert message.count("\n  - ") == 4
    for expected in ("football-monitoring:grafana.resources.requests.memory = '1Gi' is not valid",
                     "football-monitoring:prometheus.scrapeTimeout = '1m' is not valid",
                     "football-monitoring:ingress.clusterIssuer = 'letsencrypt' is not valid",
                     "football-monitoring:postgresDsn is not set: expected a secret"):
        assert expected in message
    assert offline.LAST_RECORDER.resources == []


# A rule broken inside a section must not hide the stack's rules across sections, nor the other way round.
@pytest.mark.parametrize("overrides, section_rule, stack_rule", [
    ({"prometheus": {"replicas": 2, "retentionSize": "50GB"}},
     "football-monitoring:prometheus.retentionSize = '50GB' is not valid: expected at most 85% of "
     "prometheus.storageSize",
     "football-monitoring:prometheus.replicas = 2 is not valid on platform docker: expected 1"),
    ({"logging": {"elasticsearch": {"nodes": 3, "resources": {"requests": {"memory": "2Gi"}}}}},
     "football-monitoring:logging.elasticsearch.resources.requests.memory = '2Gi' is not valid: expected at most "
     "logging.elasticsearch.resources.limits.memory (1Gi)",
     "football-monitoring:logging.elasticsearch.nodes = 3 is not valid on platform docker: expected 1"),
    ({"tracing": {"storage": "elasticsearch", "sampling": {"percentage": 10}}},
     "football-monitoring:tracing.sampling.percentage = 10 is not valid without tracing.gateway.enabled",
     "football-monitoring:tracing.storage = 'elasticsearch' is not valid on platform docker"),
    ({"alertmanager": {"replicas": 3}, "alerting": {"email": {"enabled": True}}},
     "football-monitoring:alerting.email.smarthost is not set: expected a value when alerting.email.enabled is true",
     "football-monitoring:alertmanager.replicas = 3 is not valid on platform docker: expected 1"),
])
def test_a_section_rule_and_a_stack_rule_are_reported_together(overrides, section_rule, stack_rule):
    message = fail_with(overrides)
    assert section_rule in message and stack_rule in message


@pytest.mark.parametrize("overrides, bad_field, rule", [
    # The bad field sits in the same section as what the rules read, or elsewhere.
    ({"prometheus": {"retention": "5min", "replicas": 2, "retentionSize": "50GB"}},
     "football-monitoring:prometheus.retention = '5min' is not valid",
     "football-monitoring:prometheus.replicas = 2 is not valid on platform docker"),
    ({"prometheus": {"retention": "5min", "retentionSize": "50GB"}},
     "football-monitoring:prometheus.retention = '5min' is not valid",
     "football-monitoring:prometheus.retentionSize = '50GB' is not valid"),
    ({"grafana": {"storageSize": "big"}, "logging": {"logstash": {"replicas": 2}}},
     "football-monitoring:grafana.storageSize = 'big' is not valid",
     "football-monitoring:logging.logstash.replicas = 2 is not valid on platform docker"),
    ({"logging": {"elasticsearch": {"nodes": 30}, "logstash": {"replicas": 2}}},
     "football-monitoring:logging.elasticsearch.nodes = 30 is not valid: expected a whole number from 1 to 9",
     "football-monitoring:logging.logstash.replicas = 2 is not valid on platform docker"),
    # One bad key of a component's resources: its other keys keep their defaults and rules.
    ({"logging": {"elasticsearch": {"resources": {"requests": {"cpu": "lots"}, "limits": {"memory": "512Mi"}}}}},
     "football-monitoring:logging.elasticsearch.resources.requests.cpu = 'lots' is not valid",
     "football-monitoring:logging.elasticsearch.resources.limits.memory = '512Mi' is not valid: expected at least 1Gi"),
])
def test_a_bad_value_hides_only_the_rules_that_read_it(overrides, bad_field, rule):
    message = fail_with(overrides)
    assert bad_field in message and rule in message
    assert "nodes = 30 is not valid on platform docker" not in message


def test_a_bad_value_does_not_hide_a_missing_secret():
    config, secret_keys = offline.stack_config("prod", {"prometheus": {"retention": "5min"}})
    del config[f"{PROJECT}:slackApiUrl"]
    with pytest.raises(SettingsError) as info:
        offline.run("prod", config=config, secret_keys=secret_keys)
    message = str(info.value)
    assert "football-monitoring:prometheus.retention = '5min' is not valid" in message
    assert "football-monitoring:slackApiUrl is not set: expected a secret" in message
    # Whether a secret is needed may hang on the bad value itself: then only the value is reported.
    config, secret_keys = offline.stack_config("prod", {"alerting": {"slack": {"enabled": "maybe"}}})
    del config[f"{PROJECT}:slackApiUrl"]
    with pytest.raises(SettingsError) as info:
        offline.run("prod", config=config, secret_keys=secret_keys)
    assert "slackApiUrl" not in str(info.value) and "alerting.slack.enabled = 'maybe'" in str(info.value)


def test_a_request_above_its_limit_is_refused_in_code_too():
    from components.settings import Resources
    with pytest.raises(ValueError, match="requests.memory = '128Mi' is not valid"):
        Resources.of(cpu_request="10m", memory_request="128Mi", memory_limit="64Mi")
    with pytest.raises(ValueError, match="requests.cpu = '2' is not valid"):
        Resources.of(cpu_request="2", memory_request="32Mi", memory_limit="64Mi", cpu_limit="1")
    with pytest.raises(ValueError):
        Resources.of(cpu_request="lots", memory_request="32Mi", memory_limit="64Mi")
    assert Resources.of(cpu_request="10m", memory_request="32Mi", memory_limit="64Mi").to_kubernetes() \
        == {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}


@pytest.mark.parametrize("resources, unknown", [
    # The names of the flat form in code are not keys of the stack file: they must not stand in for
    # requests and limits, nor wipe them out.
    ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}, "cpu_limit": "2"}, "cpu_limit"),
    ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}, "memory_request": "1Gi"},
     "memory_request"),
    ({"cpu_request": "1", "memory_request": "1Gi", "memory_limit": "2Gi"}, "cpu_request"),
])
def test_the_flat_form_of_resources_in_code_is_unknown_in_the_stack_file(resources, unknown):
    message = fail_with({"prometheus": {"resources": resources}})
    assert f"football-monitoring:prometheus.resources.{unknown} is not a known setting" in message
    assert "null" not in message


# ------------------------------------------------------------------ the stack file schema

@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(settings_reference.SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", sorted(ROOT.glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_stack_files_name_the_schema_and_match_it(path, schema_validator):
    text = path.read_text()
    assert text.splitlines()[0] == settings_reference.SCHEMA_COMMENT
    assert [e.message for e in schema_validator.iter_errors(yaml.safe_load(text))] == []


@pytest.mark.parametrize("config", [
    {"football-monitoring:prometheus": {"retension": "30d"}},
    {"football-monitoring:grafanna": {"storageSize": "1Gi"}},
    {"football-monitoring:platform": "nomad"},
    {"football-monitoring:protectData": "yes"},
    {"football-monitoring:prometheus": {"replicas": 9}},
    {"football-monitoring:staticTargets": [{"job": "api", "target": 5432}]},
    {"football-monitoring:probes": {"tcp": [{"name": "db"}]}},
    {"football-monitoring:alerting": {"teams": {"marketing": {"email": "m@example.org"}}}},
    {"football-monitoring:images": {"grafana": "docker.io/grafana/grafana:latest"}},
    {"football-monitoring:images": {"grafana": "grafana/grafana:12.1.1"}},
    {"football-monitoring:prometheus": {"resources": {"requests": {"cpu": "lots"}}}},
])
def test_the_schema_refuses_what_the_loader_refuses(config, schema_validator):
    assert not schema_validator.is_valid({"config": config})


def test_the_schema_takes_encrypted_secrets_other_namespaces_and_what_pulumi_config_set_writes(schema_validator):
    document = {
        "secretsprovider": "passphrase",
        "encryptionsalt": "v1:c2FsdA==:v1:aXY=:dGFn",
        "config": {
            "football-monitoring:postgresDsn": {"secure": "v1:AAAA"},
            "kubernetes:context": "kind-dev",
            "kubernetes:token": {"secure": "v1:BBBB"},
            # `pulumi config set` writes top-level values as strings.
            "football-monitoring:protectData": "true",
            "football-monitoring:prometheus": {"replicas": "2", "resources": {"requests": {"cpu": 1}}},
        },
    }
    assert [e.message for e in schema_validator.iter_errors(document)] == []
    assert not schema_validator.is_valid({"config": {}, "configs": {}})


@pytest.mark.parametrize("key, value", [
    # As the loader: a secret in clear is refused, and so is a plain setting stored encrypted.
    ("slackApiUrl", "https://hooks.slack.com/services/T/B/X"),
    ("postgresDsn", ""),
    ("namespace", {"secure": "v1:AAAA"}),
    ("alerting", {"secure": "v1:BBBB"}),
    ("protectData", {"secure": "v1:CCCC"}),
])
def test_the_schema_takes_secrets_only_encrypted_and_nothing_else_encrypted(key, value, schema_validator):
    assert not schema_validator.is_valid({"config": {f"{PROJECT}:{key}": value}})


def test_the_schema_documents_every_secret_as_encrypted_and_gives_it_no_default():
    keys = json.loads(settings_reference.SCHEMA.read_text())["properties"]["config"]["properties"]
    for key, spec in SECRETS.items():
        entry = keys[f"{PROJECT}:{key}"]
        assert entry["description"].startswith("secret: ") and spec.doc in entry["description"]
        assert entry["$ref"] == "#/$defs/encrypted" and set(entry) == {"description", "$ref"}
        assert '"default":' not in json.dumps(entry)


# ------------------------------------------------------------------ Pulumi.yaml's declarations

def project_declarations() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]


def test_project_file_declares_every_top_level_setting():
    declared = project_declarations()
    from components.settings import StackConfig
    assert list(declared) == [field.alias for field in StackConfig.model_fields.values()]
    assert not set(declared) & set(SECRETS)
    # What the CLI makes of them (types, defaults, `pulumi config`): tests/test_pulumi_project.py.
    for key, declaration in declared.items():
        assert ":" not in key and declaration["description"]


def test_every_section_is_described_once_by_its_docstring():
    # A section described in its field and again in its class drifted apart: the schema's editors and
    # `pulumi config` showed one text, the section's own schema entry another.
    from components.settings.models import Resources, StackConfig, keys_of, section_type
    # A component's resources are one section described per component ("CPU and memory of Grafana").
    resources = {f"{key}." for key, field in keys_of(StackConfig) if section_type(field.annotation) is Resources}
    sections = [(key, field) for key, field in keys_of(StackConfig)
                if section_type(field.annotation) and f"{key}." not in resources and not key.startswith(tuple(resources))]
    assert len(sections) > 30
    for key, field in sections:
        model = section_type(field.annotation)
        assert model.__doc__ and field.description == " ".join(model.__doc__.split()), key
    schema = json.loads(settings_reference.SCHEMA.read_text())
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("description"), f"section {name} has no description"


def test_a_nested_key_set_without_path_says_how_to_set_it():
    message = fail_with({"prometheus.retention": "30d"})
    assert ("football-monitoring:prometheus.retention is not a known setting: a key inside a section is set with "
            "--path, `pulumi config rm football-monitoring:prometheus.retention` then `pulumi config set --path "
            "'football-monitoring:prometheus.retention' <value>`") in message


def test_one_bad_item_does_not_hide_a_rule_across_the_others():
    message = fail_with({"probes": {"http": [{"name": "a", "target": "bad"}, {"name": "b", "target": "http://x.svc/"},
                                             {"name": "b", "target": "http://y.svc/"}]}})
    assert message.count("\n  - ") == 2
    assert "football-monitoring:probes.http[0].target = 'bad' is not valid" in message
    assert ("football-monitoring:probes.http[2].name = 'b' is not valid: expected a name unique within probes.http "
            "(probes.http[1] has it)") in message
