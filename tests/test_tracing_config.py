"""The stack's own rules for its collector and Jaeger configs (tests/otel_policy.py) can fail.

The checked configs are the renderers' own output (components/configs/jaeger.py and
otel_collector.py), for every role and storage. Each mutation breaks one rule, the policy
must name it, and the real program must still accept the mutated config: a rule the program
itself enforces belongs to tests/test_otel_validate.py, not here.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from components.configs import jaeger as jaeger_config
from components.configs import otel_collector as gateway_config
from tests import otel_policy
from tests.conftest import require_tool

ES = jaeger_config.ElasticsearchStorage(urls=["https://elasticsearch.monitoring.svc:9200"], index_prefix="jaeger",
                                        retention_days=7, username="jaeger",
                                        password_file="/etc/jaeger/es-credentials/password",
                                        ca_file="/etc/jaeger/es-ca/ca.crt")
RENDERED = {
    "all-in-one-badger": ("jaeger", jaeger_config.JaegerConfig(
        "all-in-one", jaeger_config.BadgerStorage("/tmp/badger", 3))),
    "all-in-one-memory": ("jaeger", jaeger_config.JaegerConfig("all-in-one", jaeger_config.MemoryStorage(1000))),
    "collector": ("jaeger", jaeger_config.JaegerConfig("collector", ES, service_name="jaeger-collector")),
    "query": ("jaeger", jaeger_config.JaegerConfig("query", ES)),
    "gateway-tail": ("contrib", gateway_config.GatewayConfig(
        "dns:///jaeger-collector-headless.monitoring.svc:4317", "tail", 10)),
    # Tail sampling on two replicas: the routing tier in front of the sampling one.
    "gateway-tail-routed": ("contrib", gateway_config.GatewayConfig(
        "dns:///jaeger-collector-headless.monitoring.svc:4317", "tail", 10, replicas=2,
        peers_host="otel-gateway-headless.monitoring.svc")),
    "gateway-probabilistic": ("contrib", gateway_config.GatewayConfig("jaeger:4317", "probabilistic", 25)),
    "gateway-keep-all": ("contrib", gateway_config.GatewayConfig("jaeger:4317", "probabilistic", 100)),
}


def render(name: str) -> str:
    distribution, cfg = RENDERED[name]
    return (gateway_config if distribution == "contrib" else jaeger_config).render(cfg)


def rendered(name: str) -> tuple[str, dict]:
    return RENDERED[name][0], otel_policy.parse(render(name))


def program(distribution: str) -> str:
    return require_tool("otelcol" if distribution == "contrib" else "jaeger")


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_rendered_configs_keep_the_policy(name):
    _, config = rendered(name)
    assert otel_policy.check(config) == []


def test_ports_of_the_renderers_are_the_ports_the_configs_open():
    for name, (distribution, cfg) in RENDERED.items():
        _, config = rendered(name)
        expected = (gateway_config if distribution == "contrib" else jaeger_config).ports(cfg)
        assert set(otel_policy.listening_ports(config).values()) == set(expected.values()), name


def _pipeline(c):
    return c["service"]["pipelines"]["traces"]


def _backends(c):
    return c["extensions"]["jaeger_storage"]["backends"]


# name: (config it breaks, mutation, substring of the expected problem)
MUTATIONS = {
    "binds_localhost": ("collector", lambda c: c["receivers"]["otlp"]["protocols"]["grpc"].update(
        endpoint="localhost:4317"), "listens on 'localhost:4317'"),
    "metrics_bind_localhost": ("gateway-tail", lambda c: c["service"]["telemetry"]["metrics"]["readers"][0]["pull"][
        "exporter"]["prometheus"].update(host="127.0.0.1"), "listens on '127.0.0.1:8888'"),
    "memory_limiter_not_first": ("gateway-tail", lambda c: _pipeline(c).update(
        processors=["tail_sampling", "memory_limiter", "batch"]), "memory_limiter must come first"),
    "batch_not_last": ("gateway-tail", lambda c: _pipeline(c).update(
        processors=["memory_limiter", "batch", "tail_sampling"]), "batch must come last"),
    "extension_not_enabled": ("all-in-one-badger", lambda c: c["service"]["extensions"].remove("healthcheckv2"),
                              "extensions.healthcheckv2: defined but not enabled"),
    "password_in_file": ("collector", lambda c: _backends(c)["traces"]["elasticsearch"]["auth"]["basic"].update(
        password="changeme"), "a password in the config file"),
    "unbounded_memory": ("all-in-one-memory", lambda c: _backends(c)["traces"]["memory"].pop("max_traces"),
                         "grows without bound"),
    "ephemeral_badger": ("all-in-one-badger", lambda c: _backends(c)["traces"]["badger"].update(ephemeral=True),
                         "expected ephemeral false"),
    "storage_exporter_backend": ("collector", lambda c: c["exporters"]["jaeger_storage_exporter"].update(
        trace_storage="es"), "'es' is not a jaeger_storage backend"),
    "query_backend": ("query", lambda c: c["extensions"]["jaeger_query"]["storage"].update(traces="archive"),
                      "'archive' is not a jaeger_storage backend"),
    "unused_backend": ("collector", lambda c: _backends(c).update(archive={"memory": {"max_traces": 10}}),
                       "archive: defined but nothing reads or writes it"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_policy_catches_what_the_program_accepts(mutation, tmp_path):
    name, mutate, expected = MUTATIONS[mutation]
    distribution, config = rendered(name)
    mutate(config)
    problems = otel_policy.check(config)
    assert any(expected in p for p in problems), f"{mutation}: {problems}"
    path = tmp_path / "mutated.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([program(distribution), "validate", f"--config={path}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (f"{mutation}: the program now refuses this itself; move the case to "
                                  f"tests/test_otel_validate.py and drop the rule: {proc.stdout + proc.stderr}")
