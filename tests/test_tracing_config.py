"""tests/otel_config_check.py can fail: each broken copy of a generated config is caught.

The checked configs are the renderers' own output (components/configs/jaeger.py and
otel_collector.py), for every role and storage; each mutation breaks one rule the
collector (or Jaeger) enforces at start-up, and the check must name it.
"""

from __future__ import annotations

import copy

import pytest

from components.configs import jaeger as jaeger_config
from components.configs import otel_collector as gateway_config
from tests import otel_config_check as occ

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
    "gateway-tail": ("contrib", gateway_config.GatewayConfig("jaeger-collector.monitoring.svc:4317", "tail", 10)),
    "gateway-probabilistic": ("contrib", gateway_config.GatewayConfig("jaeger:4317", "probabilistic", 25)),
    "gateway-keep-all": ("contrib", gateway_config.GatewayConfig("jaeger:4317", "probabilistic", 100)),
}


def rendered(name: str) -> tuple[str, dict]:
    distribution, cfg = RENDERED[name]
    module = gateway_config if distribution == "contrib" else jaeger_config
    return distribution, occ.parse(module.render(cfg))


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_rendered_configs_pass(name):
    distribution, config = rendered(name)
    assert occ.check(config, distribution) == []


def test_ports_of_the_renderers_are_the_ports_the_configs_open():
    for name, (distribution, cfg) in RENDERED.items():
        _, config = rendered(name)
        expected = gateway_config.ports() if distribution == "contrib" else jaeger_config.ports(cfg)
        assert set(occ.listening_ports(config).values()) == set(expected.values()), name


def _pipeline(c):
    return c["service"]["pipelines"]["traces"]


def _es(c):
    return c["extensions"]["jaeger_storage"]["backends"]["traces"]["elasticsearch"]


# name: (config it breaks, mutation, substring of the expected problem)
MUTATIONS = {
    "unknown_top_level_key": ("collector", lambda c: c.update(pipelines={}), "unknown top-level key 'pipelines'"),
    "unknown_service_key": ("collector", lambda c: c["service"].update(extension=[]), "service: unknown key"),
    "undefined_receiver": ("collector", lambda c: _pipeline(c)["receivers"].append("zipkin"),
                           "'zipkin' is not defined in receivers"),
    "undefined_processor": ("gateway-tail", lambda c: _pipeline(c)["processors"].insert(1, "attributes/env"),
                            "'attributes/env' is not defined in processors"),
    "undefined_exporter": ("gateway-tail", lambda c: _pipeline(c).update(exporters=["otlp/tempo"]),
                           "'otlp/tempo' is not defined in exporters"),
    "unused_processor": ("collector", lambda c: c["processors"].update({"batch/big": {"send_batch_size": 10}}),
                         "'batch/big' is defined but no pipeline uses it"),
    "unused_exporter": ("gateway-tail", lambda c: c["exporters"].update({"debug": {}}),
                        "'debug' is defined but no pipeline uses it"),
    "no_exporters": ("collector", lambda c: _pipeline(c).pop("exporters"), "needs at least one of exporters"),
    "no_pipelines": ("collector", lambda c: c["service"].update(pipelines={}), "at least one pipeline"),
    "bad_signal": ("collector", lambda c: c["service"].update(pipelines={"trace": _pipeline(c)}),
                   "the pipeline type must be one of"),
    "listed_twice": ("collector", lambda c: _pipeline(c)["processors"].append("batch"), "'batch' listed twice"),
    "extension_not_defined": ("collector", lambda c: c["service"]["extensions"].append("zpages"),
                              "'zpages' is not defined in extensions"),
    "extension_not_enabled": ("all-in-one-badger", lambda c: c["service"]["extensions"].remove("jaeger_query"),
                              "'jaeger_query' is defined but not enabled"),
    "unknown_component_type": ("collector", lambda c: c["exporters"].update(
        {"jaeger_storage_exporterr": c["exporters"].pop("jaeger_storage_exporter")}),
        "type 'jaeger_storage_exporterr' is not a exporter of the jaeger distribution"),
    "contrib_component_in_jaeger": ("collector", lambda c: (
        c["processors"].update({"tail_sampling": {"policies": []}}),
        _pipeline(c)["processors"].insert(1, "tail_sampling")),
        "type 'tail_sampling' is not a processor of the jaeger distribution"),
    "jaeger_component_in_contrib": ("gateway-tail", lambda c: c["exporters"].update(
        {"jaeger_storage_exporter": {"trace_storage": "traces"}}),
        "type 'jaeger_storage_exporter' is not a exporter of the contrib distribution"),
    "bad_component_id": ("collector", lambda c: c["receivers"].update({"OTLP": {}}), "is not a component id"),
    "wrong_signal": ("collector", lambda c: c["service"]["pipelines"].update(
        {"metrics": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}}),
        "'jaeger_storage_exporter' does not handle metrics"),
    "memory_limiter_not_first": ("gateway-tail", lambda c: _pipeline(c).update(
        processors=["tail_sampling", "memory_limiter", "batch"]), "memory_limiter must come first"),
    "batch_not_last": ("gateway-tail", lambda c: _pipeline(c).update(
        processors=["memory_limiter", "batch", "tail_sampling"]), "batch must come last"),
    "unknown_component_key": ("gateway-tail", lambda c: c["processors"]["batch"].update(send_batch_sise=10),
                              "unknown key 'send_batch_sise'"),
    "memory_limiter_without_limit": ("collector", lambda c: c["processors"]["memory_limiter"].pop("limit_percentage"),
                                     "exactly one of limit_mib, limit_percentage"),
    "sampling_out_of_range": ("gateway-probabilistic", lambda c: c["processors"]["probabilistic_sampler"].update(
        sampling_percentage=150), "expected a percentage in (0, 100]"),
    "tail_policy_type": ("gateway-tail", lambda c: c["processors"]["tail_sampling"]["policies"][0].update(
        type="errors"), "type 'errors' is not one of"),
    "tail_policy_status": ("gateway-tail", lambda c: c["processors"]["tail_sampling"]["policies"][0].update(
        status_code={"status_codes": ["FAILED"]}), "expected some of OK, ERROR, UNSET"),
    "tail_policy_duplicate": ("gateway-tail", lambda c: c["processors"]["tail_sampling"]["policies"].append(
        copy.deepcopy(c["processors"]["tail_sampling"]["policies"][0])), "name 'errors' used twice"),
    "exporter_endpoint_url": ("gateway-tail", lambda c: c["exporters"]["otlp/jaeger"].update(
        endpoint="http://jaeger:4317/v1/traces"), "expected host:port"),
    "storage_exporter_backend": ("collector", lambda c: c["exporters"]["jaeger_storage_exporter"].update(
        trace_storage="es"), "'es' is not a jaeger_storage backend"),
    "query_backend": ("query", lambda c: c["extensions"]["jaeger_query"]["storage"].update(traces="archive"),
                      "'archive' is not a jaeger_storage backend"),
    "query_without_storage_extension": ("all-in-one-memory", lambda c: (
        c["extensions"].pop("jaeger_storage"), c["service"]["extensions"].remove("jaeger_storage")),
        "needs the jaeger_storage extension"),
    "backend_two_kinds": ("all-in-one-memory", lambda c: c["extensions"]["jaeger_storage"]["backends"]["traces"].update(
        badger={"ephemeral": True}), "expected exactly one of"),
    "unused_backend": ("collector", lambda c: c["extensions"]["jaeger_storage"]["backends"].update(
        archive={"memory": {"max_traces": 10}}), "archive: defined but nothing reads or writes it"),
    "unbounded_memory": ("all-in-one-memory", lambda c: c["extensions"]["jaeger_storage"]["backends"]["traces"][
        "memory"].pop("max_traces"), "grows without bound"),
    "ephemeral_badger": ("all-in-one-badger", lambda c: c["extensions"]["jaeger_storage"]["backends"]["traces"][
        "badger"].update(ephemeral=True), "expected ephemeral false"),
    "password_in_file": ("collector", lambda c: _es(c)["auth"]["basic"].update(password="changeme"),
                         "a password in the config file"),
    "es_unknown_key": ("collector", lambda c: _es(c).update(index_prefix="jaeger"), "unknown key 'index_prefix'"),
    "es_rollover_week": ("collector", lambda c: _es(c)["indices"]["spans"].update(rollover_frequency="week"),
                         "expected hour or day"),
    "es_no_urls": ("collector", lambda c: _es(c).update(server_urls=["elasticsearch:9200"]),
                   "expected a list of http(s) URLs"),
    "binds_localhost": ("collector", lambda c: c["receivers"]["otlp"]["protocols"]["grpc"].update(
        endpoint="localhost:4317"), "listens on 'localhost:4317'"),
    "telemetry_level": ("collector", lambda c: c["service"]["telemetry"]["metrics"].update(level="verbose"),
                        "'verbose' is not one of"),
    "telemetry_reader": ("collector", lambda c: c["service"]["telemetry"]["metrics"]["readers"][0]["pull"][
        "exporter"].update(prometheus={"host": "0.0.0.0", "port": "8888"}), "expected a port number"),
    "healthcheck_legacy": ("collector", lambda c: c["extensions"]["healthcheckv2"].update(use_v2=False),
                           "expected true"),
    "connector_one_sided": ("gateway-tail", lambda c: (
        c.update(connectors={"forward": {}}), _pipeline(c)["exporters"].append("forward")),
        "'forward' must be an exporter of one pipeline and a receiver of another"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_check_catches_broken_config(mutation):
    name, mutate, expected = MUTATIONS[mutation]
    distribution, config = rendered(name)
    assert occ.check(config, distribution) == []
    mutate(config)
    problems = occ.check(config, distribution)
    assert any(expected in p for p in problems), f"{mutation}: {problems}"


def test_a_connector_used_on_both_sides_passes():
    distribution, config = rendered("gateway-tail")
    config["connectors"] = {"forward": {}}
    config["service"]["pipelines"]["traces"]["exporters"].append("forward")
    config["service"]["pipelines"]["traces/copy"] = {"receivers": ["forward"], "exporters": ["otlp/jaeger"]}
    assert occ.check(config, distribution) == []
