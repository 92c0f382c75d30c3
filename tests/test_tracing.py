"""Tracing (Jaeger v2, the OpenTelemetry Collector gateway) under Pulumi's mock runtime, dev and prod.

Both stacks' files switch tracing on (`tracing.enabled: true`); these tests run each stack with its
own tracing values (Pulumi.<stack>.yaml), varied where a test needs it, and with tracing switched
off for what must not be there without it. Prod keeps its spans in the logging stack's
Elasticsearch (components/stack.py:tracing_elasticsearch); one test replaces that connection by
a stand-in with a sentinel password to follow the password exactly.
"""

from __future__ import annotations

import copy
import json
import re

import kubernetes_validate
import promql_parser
import pulumi
import pytest
import yaml

from components import stack as stack_module
from components.demo import demo_apps
from tools import offline
from components.logging import CA_SECRET
from components.configs import jaeger as jaeger_config
from components.settings import DEFAULT_IMAGES, SettingsError
from components.settings.types import quantity_bytes
from components.tracing import ElasticsearchConnection
from tests import grafana_expansion, otel_policy
from tests import promql_names as pn
from tests.test_otel_validate import validate
from tests.conftest import KUBERNETES, ROOT, run_on_kubernetes
from tests.test_hardening import EXACT_IMAGE, SCHEMA_VERSION

ES_URL = "https://elasticsearch.monitoring.svc:9200"
ES_USER = "fm-jaeger"  # the logging stack's user for Jaeger (index privileges on jaeger-*)
ES_PASSWORD = "sentinel-es-pass-3c9e"


def tracing_values(stack: str, **changes) -> dict:
    """The tracing section of Pulumi.<stack>.yaml, switched on, with changes merged in."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    values = copy.deepcopy(document["config"]["football-monitoring:tracing"])
    values["enabled"] = True
    for key, value in changes.items():
        if isinstance(value, dict):
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    return values


def es_connection(settings, stack) -> ElasticsearchConnection:
    return ElasticsearchConnection(url=ES_URL, username=ES_USER, password=pulumi.Output.secret(ES_PASSWORD),
                                   ca_secret_name=CA_SECRET, ca_key="ca.crt", peer="elasticsearch")


def run_prod_with_sentinel(overrides: dict | None = None) -> offline.RunResult:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack_module, "tracing_elasticsearch", es_connection)
        return offline.run("prod", {"tracing": tracing_values("prod"), **(overrides or {})})


@pytest.fixture(scope="module")
def dev_k8s() -> offline.RunResult:
    return run_on_kubernetes("dev", {"tracing": tracing_values("dev")})


@pytest.fixture(scope="module")
def dev_memory() -> offline.RunResult:
    return run_on_kubernetes("dev", {"tracing": tracing_values("dev", storage="memory")})


@pytest.fixture(scope="module")
def dev_docker() -> offline.RunResult:
    return offline.run("dev", {"tracing": tracing_values("dev")})


@pytest.fixture(scope="module")
def prod_tracing() -> offline.RunResult:
    """prod as its file has it, tracing on: the logging stack's Elasticsearch, wired by the stack."""
    return offline.run("prod", {"tracing": tracing_values("prod")})


@pytest.fixture(scope="module")
def tracing_off() -> list[offline.RunResult]:
    """dev (Kubernetes and Docker) and prod with tracing off: the section not set at all (the default),
    and the stack's own tracing values with `enabled: false`."""
    results = []
    for stack, run in (("dev", run_on_kubernetes), ("prod", offline.run), ("dev", offline.run)):
        for tracing in (None, tracing_values(stack, enabled=False)):
            results.append(run(stack, {"tracing": tracing}))
    return results


@pytest.fixture(scope="module")
def prod_sentinel() -> offline.RunResult:
    return run_prod_with_sentinel()


@pytest.fixture(scope="module")
def prod_probabilistic() -> offline.RunResult:
    return offline.run("prod", {"tracing": tracing_values(
        "prod", gateway={"replicas": 2}, sampling={"mode": "probabilistic", "percentage": 25})})


def containers(obj: dict) -> list[dict]:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]["containers"]


def pod(obj: dict) -> dict:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]


def config_of(result, name: str) -> dict:
    return yaml.safe_load(result.one("ConfigMap", f"{name}-config")["data"]["config.yaml"])


def tracing_workloads(result) -> list[dict]:
    return [o for o in result.kubernetes_objects()
            if o["kind"] in ("Deployment", "StatefulSet", "CronJob")
            and o["metadata"]["labels"].get("app.kubernetes.io/component") == "tracing"]


def container_ports(obj: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in containers(obj)[0].get("ports", [])}


def allowed_from(policy: dict) -> dict:
    """peer -> set of ports allowed in."""
    peers: dict = {}
    for rule in policy["spec"].get("ingress", []):
        ports = {p["port"] for p in rule.get("ports", [])}
        for peer in rule.get("from", [{"anywhere": True}]):
            namespaces = peer.get("namespaceSelector", {})
            name = (peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                    or ("ns:" + namespaces["matchLabels"]["kubernetes.io/metadata.name"] if "matchLabels" in namespaces
                        else "other namespaces" if "matchExpressions" in namespaces else "anywhere"))
            peers.setdefault(name, set()).update(ports)
    return peers


def allowed_to(policy: dict) -> dict:
    peers: dict = {}
    for rule in policy["spec"]["egress"][1:]:  # [0] is DNS
        ports = {p["port"] for p in rule.get("ports", [])}
        for peer in rule.get("to", [{"anywhere": True}]):
            name = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name", "anywhere")
            peers.setdefault(name, set()).update(ports)
    return peers


# ---------------------------------------------------------------- dev: one all-in-one Jaeger


def test_dev_runs_one_all_in_one_jaeger_with_badger_on_a_volume(dev_k8s):
    sts = dev_k8s.one("StatefulSet", "jaeger")
    assert sts["spec"]["replicas"] == 1
    assert [o["metadata"]["name"] for o in tracing_workloads(dev_k8s)] == ["jaeger"]
    # No index cleaner (badger keeps no indices); dev's only CronJob is the service level report.
    assert [c["metadata"]["name"] for c in dev_k8s.find("CronJob")] == ["service-level-report"]
    assert not dev_k8s.find("Deployment", "otel-gateway")
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "2Gi"  # tracing.storageSize of Pulumi.dev.yaml
    main = containers(sts)[0]
    assert main["image"] == DEFAULT_IMAGES["jaeger"]
    assert main["args"] == ["--config=/etc/jaeger/config.yaml"]
    assert {"name": "data", "mountPath": "/tmp"} in main["volumeMounts"]
    assert container_ports(sts) == {"query": 16686, "query-grpc": 16685, "otlp-grpc": 4317, "otlp-http": 4318,
                                    "metrics": 8888, "health": 13133}
    assert main["readinessProbe"]["httpGet"] == {"path": "/status", "port": "health"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/status", "port": "health"}
    service = dev_k8s.one("Service", "jaeger")["spec"]
    assert {p["name"]: p["port"] for p in service["ports"]} == container_ports(sts)

    backend = config_of(dev_k8s, "jaeger")["extensions"]["jaeger_storage"]["backends"]["traces"]
    assert backend == {"badger": {"directories": {"keys": "/tmp/badger/keys", "values": "/tmp/badger/values"},
                                  "ephemeral": False, "ttl": {"spans": "72h"}, "maintenance_interval": "5m"}}


def test_dev_memory_store_is_bounded_and_needs_no_volume(dev_memory):
    deployment = dev_memory.one("Deployment", "jaeger")
    assert deployment["spec"]["replicas"] == 1
    assert not dev_memory.find("StatefulSet", "jaeger")
    assert {"name": "scratch-0", "emptyDir": {"sizeLimit": "256Mi"}} in pod(deployment)["volumes"]
    backend = config_of(dev_memory, "jaeger")["extensions"]["jaeger_storage"]["backends"]["traces"]
    assert backend == {"memory": {"max_traces": 50000}}


def test_config_change_rolls_jaeger(dev_k8s):
    after = run_on_kubernetes("dev", {"tracing": tracing_values("dev", retentionDays=5)})

    def checksum(result):
        return result.one("StatefulSet", "jaeger")["spec"]["template"]["metadata"]["annotations"][
            "checksum.football-monitoring/jaeger-config"]

    assert checksum(dev_k8s) != checksum(after)
    assert config_of(after, "jaeger")["extensions"]["jaeger_storage"]["backends"]["traces"]["badger"]["ttl"] == \
        {"spans": "120h"}


# ---------------------------------------------------------------- prod: collectors, query, Elasticsearch


def test_prod_scales_collectors_behind_one_service(prod_tracing):
    collector = prod_tracing.one("Deployment", "jaeger-collector")
    assert collector["spec"]["replicas"] == 3
    assert containers(collector)[0]["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                                     "limits": {"memory": "1Gi"}}
    assert container_ports(collector) == {"otlp-grpc": 4317, "otlp-http": 4318, "metrics": 8888, "health": 13133}
    service = prod_tracing.one("Service", "jaeger-collector")["spec"]
    assert service["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in service["ports"]} == container_ports(collector)
    budget = prod_tracing.one("PodDisruptionBudget", "jaeger-collector")["spec"]
    assert budget["maxUnavailable"] == 1
    assert pod(collector)["affinity"]["podAntiAffinity"]
    query = prod_tracing.one("Deployment", "jaeger")
    assert query["spec"]["replicas"] == 1
    assert container_ports(query) == {"query": 16686, "query-grpc": 16685, "metrics": 8888, "health": 13133}
    # Stateless: spans live in Elasticsearch, nothing in the pods.
    assert not [o for o in tracing_workloads(prod_tracing) if o["kind"] == "StatefulSet"]


def test_prod_stores_spans_in_daily_elasticsearch_indices(prod_tracing):
    for name, role_has_query in (("jaeger-collector", False), ("jaeger", True)):
        config = config_of(prod_tracing, name)
        es = config["extensions"]["jaeger_storage"]["backends"]["traces"]["elasticsearch"]
        assert es["server_urls"] == [ES_URL]
        assert es["indices"]["index_prefix"] == "jaeger"
        for index in ("spans", "services", "dependencies", "sampling"):
            assert es["indices"][index] == {"date_layout": "2006-01-02", "rollover_frequency": "day",
                                            "shards": 1, "replicas": 1}
        assert es["max_span_age"] == "168h"  # 7 retention days
        assert es["auth"] == {"basic": {"username": ES_USER, "password_file": "/etc/jaeger/es-credentials/password"}}
        assert es["tls"] == {"ca_file": "/etc/jaeger/es-ca/ca.crt"}
        assert ("jaeger_query" in config["extensions"]) is role_has_query
        deployment = prod_tracing.one("Deployment", name)
        volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in containers(deployment)[0]["volumeMounts"]}
        assert volumes[mounts["/etc/jaeger/es-ca"]]["secret"]["secretName"] == CA_SECRET
        assert volumes[mounts["/etc/jaeger/es-credentials"]]["secret"]["secretName"] == f"{name}-es-credentials"
        # The logging stack's generated password for Jaeger (a fixed marker under the mocks).
        assert prod_tracing.one("Secret", f"{name}-es-credentials")["stringData"] == {
            "password": offline.GENERATED_SECRET}
    # The logging stack's CA Secret that Jaeger mounts by name exists, with the key Jaeger reads.
    assert "ca.crt" in prod_tracing.one("Secret", CA_SECRET)["stringData"]


def test_prod_deletes_indices_older_than_the_retention(prod_tracing):
    cron = prod_tracing.one("CronJob", "jaeger-es-index-cleaner")
    assert cron["spec"]["schedule"] == "15 0 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod(cron)["restartPolicy"] == "OnFailure"
    main = containers(cron)[0]
    assert main["image"] == DEFAULT_IMAGES["jaegerIndexCleaner"]
    assert main["args"] == ["7", ES_URL, "--index-prefix=jaeger", f"--es.username={ES_USER}",
                            "--es.tls.enabled=true", "--es.tls.ca=/etc/jaeger/es-ca/ca.crt"]
    assert main["env"] == [{"name": "ES_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "jaeger-es-index-cleaner-env", "key": "es-password"}}}]
    assert not prod_tracing.find("Service", "jaeger-es-index-cleaner")


# ---------------------------------------------------------------- ingestion and sampling


def test_dev_keeps_every_trace_without_a_gateway(dev_k8s, dev_docker):
    assert dev_k8s.outputs["otlpGrpcEndpoint"] == "http://jaeger.monitoring-dev.svc:4317"
    assert dev_k8s.outputs["otlpHttpEndpoint"] == "http://jaeger.monitoring-dev.svc:4318"
    processors = config_of(dev_k8s, "jaeger")["service"]["pipelines"]["traces"]["processors"]
    assert processors == ["memory_limiter", "batch"]  # no sampler anywhere: 100%
    assert dev_docker.outputs["otlpGrpcEndpoint"] == "http://jaeger:4317"


def test_prod_tail_samples_ten_percent_and_keeps_errors_and_slow_traces(prod_tracing):
    gateway = prod_tracing.one("Deployment", "otel-gateway")
    assert containers(gateway)[0]["image"] == DEFAULT_IMAGES["otelCollector"]
    config = config_of(prod_tracing, "otel-gateway")
    # The applications' spans are routed by trace id; the peers' pipeline samples them.
    assert config["service"]["pipelines"] == {
        "traces": {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["load_balancing"]},
        "traces/sampling": {"receivers": ["otlp/peers"], "processors": ["memory_limiter/peers", "tail_sampling", "batch"],
                            "exporters": ["otlp_grpc/jaeger"]}}
    policies = {p["name"]: p for p in config["processors"]["tail_sampling"]["policies"]}
    assert policies["errors"]["status_code"] == {"status_codes": ["ERROR"]}
    assert policies["slow"]["latency"] == {"threshold_ms": 2000}
    assert policies["baseline"]["probabilistic"] == {"sampling_percentage": 10}
    assert config["exporters"]["otlp_grpc/jaeger"]["endpoint"] == "dns:///jaeger-collector-headless.monitoring.svc:4317"
    assert prod_tracing.outputs["otlpGrpcEndpoint"] == "http://otel-gateway.monitoring.svc:4317"
    assert prod_tracing.outputs["otlpHttpEndpoint"] == "http://otel-gateway.monitoring.svc:4318"


@pytest.mark.parametrize("memory", [None, "384Mi"])
def test_the_gateway_gives_go_its_memory_limiters_hard_limit(prod_tracing, memory):
    """GOMEMLIMIT is the limiter's hard limit of the container's memory, whatever the setting: without
    it a push took a replica past its limit (tests/test_gateway_memory_limit.py)."""
    result = prod_tracing if memory is None else offline.run("prod", {"tracing": tracing_values(
        "prod", gateway={"resources": {"limits": {"memory": memory}}})})
    [container] = containers(result.one("Deployment", "otel-gateway"))
    limit = quantity_bytes(container["resources"]["limits"]["memory"])
    assert memory in (None, container["resources"]["limits"]["memory"])
    limiters = {name: p for name, p in config_of(result, "otel-gateway")["processors"].items()
                if name.split("/")[0] == "memory_limiter"}
    [percentage] = {p["limit_percentage"] for p in limiters.values()}
    go = {e["name"]: e.get("value") for e in container["env"] if e["name"].startswith("GO")}
    assert go == {"GOMEMLIMIT": f"{int(limit * percentage / 100) // 2**20}MiB"}, go


def jaeger_processes(result) -> list[tuple[str, dict, float, dict[str, str]]]:
    """(name, config, memory limit in bytes, Go runtime environment) of every Jaeger container the
    stack runs: the Kubernetes workloads of the jaeger image, or the Docker containers given a Jaeger
    config (where the image is a pulled image's id)."""
    found = []
    for obj in result.kubernetes_objects():
        if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "CronJob"):
            continue
        for container in containers(obj):
            if container["image"] == DEFAULT_IMAGES["jaeger"]:
                go = {e["name"]: e.get("value") for e in container.get("env", []) if e["name"].startswith("GO")}
                found.append((obj["metadata"]["name"], config_of(result, obj["metadata"]["name"]),
                              quantity_bytes(container["resources"]["limits"]["memory"]), go))
    for recorded in result.containers():
        uploads = {u["file"]: u["content"] for u in recorded.inputs.get("uploads") or []}
        if "/etc/jaeger/config.yaml" in uploads:
            envs = dict(e.split("=", 1) for e in recorded.inputs.get("envs") or [])
            found.append((recorded.name, yaml.safe_load(uploads["/etc/jaeger/config.yaml"]),
                          recorded.inputs["memory"] * 2**20, {k: v for k, v in envs.items() if k.startswith("GO")}))
    return found


@pytest.fixture(scope="module")
def resized_jaeger() -> list[offline.RunResult]:
    """Every Jaeger shape with memory limits other than the stack files': GOMEMLIMIT must follow."""
    return [run_on_kubernetes("dev", {"tracing": tracing_values(
                "dev", storage="memory", collector={"resources": {"limits": {"memory": "700Mi"}}})}),
            offline.run("dev", {"tracing": tracing_values(
                "dev", collector={"resources": {"limits": {"memory": "1536Mi"}}})}),
            offline.run("prod", {"tracing": tracing_values(
                "prod", collector={"resources": {"limits": {"memory": "3Gi"}}},
                query={"resources": {"limits": {"memory": "300Mi"}}})})]


def test_every_jaeger_gives_go_a_memory_limit_below_its_containers(dev_k8s, dev_docker, prod_tracing,
                                                                      resized_jaeger):
    """Jaeger sets no Go memory limit itself (components/configs/jaeger.py:go_memory_limit): each
    container's GOMEMLIMIT is its memory limiter's hard limit (limit_percentage of the container's
    memory, where the limiter also forces a collection), or, for the query without a limiter, the
    share Prometheus and Thanos give Go, on Kubernetes and on a Docker host."""
    seen = {}
    for result in (dev_k8s, dev_docker, prod_tracing, *resized_jaeger):
        processes = jaeger_processes(result)
        assert processes, result.stack
        for name, config, limit, go in processes:
            limiters = [config["processors"][p] for p in config["service"]["pipelines"]["traces"].get("processors", [])
                        if p.split("/")[0] == "memory_limiter"]
            [percentage] = {p["limit_percentage"] for p in limiters} or {jaeger_config.GO_MEMORY_LIMIT_PERCENTAGE}
            assert go == {"GOMEMLIMIT": f"{int(limit * percentage / 100) // 2**20}MiB"}, (result.stack, name, go)
            assert int(go["GOMEMLIMIT"].removesuffix("MiB")) * 2**20 < limit
            seen.setdefault(name, set()).add((limit, bool(limiters)))
    # Each shape: the all-in-one (both platforms), the collectors and the query, at two sizes each.
    assert {name: {has for _, has in shapes} for name, shapes in seen.items()} == {
        "jaeger": {True, False}, "jaeger-collector": {True}}, seen
    assert all(len({limit for limit, _ in shapes}) >= 2 for shapes in seen.values()), seen


def headless_target(result, host: str, port: int) -> tuple[dict, dict, str]:
    """(the Service a cluster name <service>.<namespace>.svc names, the workload it selects, the
    name of the container port behind `port`), asserting the Service is headless."""
    name, namespace, svc = host.split(".")
    assert svc == "svc", host
    service = result.one("Service", name)
    assert service["metadata"]["namespace"] == namespace
    spec = service["spec"]
    # Headless: the name resolves to every ready pod, not to one virtual IP in front of them.
    assert spec["clusterIP"] == "None" and spec["publishNotReadyAddresses"] is False, name
    workloads = [o for o in result.kubernetes_objects() if o["kind"] in ("Deployment", "StatefulSet")
                 and spec["selector"].items() <= pod_labels(o).items()]
    assert len(workloads) == 1, name
    port_name = next(p["targetPort"] for p in spec["ports"] if p["port"] == port)
    assert container_ports(workloads[0])[port_name] == port
    return service, workloads[0], port_name


def test_prod_gateway_balances_over_every_jaeger_collector(prod_tracing):
    """One gRPC connection to the collectors' Service would pin to one pod: the gateway resolves a
    headless Service instead and keeps a sub-connection per pod, requests round robin."""
    exporter = config_of(prod_tracing, "otel-gateway")["exporters"]["otlp_grpc/jaeger"]
    assert exporter["balancer_name"] == "round_robin"
    scheme, target = exporter["endpoint"].split(":///", 1)
    assert scheme == "dns"
    host, port = target.rsplit(":", 1)
    _, collector, port_name = headless_target(prod_tracing, host, int(port))
    assert collector["metadata"]["name"] == "jaeger-collector" and collector["spec"]["replicas"] == 3
    assert port_name == "otlp-grpc"
    # The collectors close connections after a while, so the gateway looks the name up again and
    # finds collectors added since.
    receiver = config_of(prod_tracing, "jaeger-collector")["receivers"]["otlp"]["protocols"]["grpc"]
    assert receiver["keepalive"]["server_parameters"]["max_connection_age"] == "5m"


def test_prod_gateway_replicas_share_tail_sampling_by_trace_id(prod_tracing):
    gateway = prod_tracing.one("Deployment", "otel-gateway")
    assert gateway["spec"]["replicas"] >= 2
    budget = prod_tracing.one("PodDisruptionBudget", "otel-gateway")["spec"]
    assert budget == {"maxUnavailable": 1, "selector": gateway["spec"]["selector"]}
    assert pod(gateway)["affinity"]["podAntiAffinity"]
    config = config_of(prod_tracing, "otel-gateway")
    balancer = config["exporters"]["load_balancing"]
    assert balancer["routing_key"] == "traceID"
    dns = balancer["resolver"]["dns"]
    # The resolver's name lists every gateway pod, on the port of the peers' receiver ...
    _, workload, port_name = headless_target(prod_tracing, dns["hostname"], int(dns["port"]))
    assert workload is gateway or workload["metadata"]["name"] == "otel-gateway"
    peer_port = container_ports(gateway)[port_name]
    receiver = next(rid for rid, r in config["receivers"].items()
                    if r["protocols"]["grpc"]["endpoint"] == f"0.0.0.0:{peer_port}")
    # ... which feeds the only pipeline that samples; the applications' pipeline only routes.
    pipelines = config["service"]["pipelines"]
    sampling = [name for name, p in pipelines.items() if "tail_sampling" in p["processors"]]
    assert sampling == [name for name, p in pipelines.items() if receiver in p["receivers"]]
    assert pipelines[sampling[0]]["receivers"] == [receiver]
    for name, p in pipelines.items():
        if name not in sampling:
            assert p["exporters"] == ["load_balancing"], name
    # Only the gateway's own pods reach the peer port, and the gateway sends there only to itself.
    assert allowed_from(prod_tracing.one("NetworkPolicy", "otel-gateway"))["otel-gateway"] == {peer_port}
    assert allowed_to(prod_tracing.one("NetworkPolicy", "otel-gateway"))["otel-gateway"] == {peer_port}


def receiver_aggregations(expr: str) -> list[tuple[str, object, dict]]:
    """(name, innermost aggregation over it or None, matchers) for each selector of the
    collector's receiver counters."""
    found = []

    def visit(node, aggregation):
        if isinstance(node, promql_parser.AggregateExpr):
            aggregation = node
        if isinstance(node, promql_parser.VectorSelector):
            if (node.name or "").startswith("otelcol_receiver_"):
                found.append((node.name, aggregation, {m.name: pn._op(m) for m in node.matchers.matchers}))
            return
        for child in ("expr", "lhs", "rhs", "param", "vector_selector"):
            inner = getattr(node, child, None)
            if isinstance(inner, promql_parser.Expr):
                visit(inner, aggregation)
        for arg in getattr(node, "args", None) or []:
            visit(arg, aggregation)

    visit(pn.parse(expr), None)
    return found


def test_receiver_counts_are_never_summed_across_receivers(prod_tracing):
    """A span reaches several receivers on its way: the gateway's otlp, then the otlp/peers of the
    replica that samples its trace, then the Jaeger collector's otlp. A sum over receivers, or over
    the jobs that run them, counts it up to three times, and a refused share computed from such a
    sum is diluted as much. Every rule and panel that aggregates the receiver counters keeps job and
    receiver apart, or selects one receiver (receiver="...") of chosen jobs (job="..." or a regex
    of alternatives)."""
    gateway = config_of(prod_tracing, "otel-gateway")
    receivers = {r for p in gateway["service"]["pipelines"].values() for r in p["receivers"]}
    assert len(receivers) >= 2, receivers  # the premise: a span passes more than one gateway receiver
    items = [(f"{r['_file']} {r.get('alert') or r.get('record')}", r["expr"]) for r in pn.iter_rules(ROOT)]
    for path in pn.dashboard_files(ROOT):
        items += [(f"{path.name} {where}", e) for where, e in pn.iter_dashboard_exprs(pn.load_dashboard(path))]
    checked, problems = 0, []
    for where, expr in items:
        for name, aggregation, matchers in receiver_aggregations(expr):
            checked += 1
            if aggregation is None:
                continue  # every label kept
            modifier = aggregation.modifier
            labels = set(modifier.labels) if modifier else set()
            without = modifier is not None and str(modifier.type).endswith("Without")
            for label, pinned in (("receiver", {"="}), ("job", {"=", "=~"})):
                apart = label not in labels if without else label in labels
                if not apart and matchers.get(label) not in pinned:
                    problems.append(f"{where}: {name} under {aggregation.op}({modifier or ''}) merges {label}s")
    assert checked >= 5, checked
    assert not problems, "\n".join(problems)


def test_one_gateway_replica_samples_without_routing():
    result = offline.run("prod", {"tracing": tracing_values("prod", gateway={"replicas": 1})})
    config = config_of(result, "otel-gateway")
    assert set(config["service"]["pipelines"]) == {"traces"}
    assert config["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "tail_sampling", "batch"]
    assert "load_balancing" not in config["exporters"] and set(config["receivers"]) == {"otlp"}
    assert not result.find("Service", "otel-gateway-headless")
    assert not result.find("PodDisruptionBudget", "otel-gateway")
    assert "otel-gateway" not in allowed_from(result.one("NetworkPolicy", "otel-gateway"))
    # Still every collector, round robin.
    assert config["exporters"]["otlp_grpc/jaeger"]["endpoint"] == "dns:///jaeger-collector-headless.monitoring.svc:4317"


def test_probabilistic_sampling_scales_the_gateway(prod_probabilistic):
    assert prod_probabilistic.one("Deployment", "otel-gateway")["spec"]["replicas"] == 2
    config = config_of(prod_probabilistic, "otel-gateway")
    assert config["processors"]["probabilistic_sampler"] == {"sampling_percentage": 25, "hash_seed": 22}
    assert "tail_sampling" not in config["processors"]
    # Every replica keeps the same traces by their id: nothing to route.
    assert "load_balancing" not in config["exporters"] and set(config["service"]["pipelines"]) == {"traces"}


# ---------------------------------------------------------------- sender bytes against receiver limits

MIB = 1024 * 1024
# configgrpc v0.140.0 (the collector core of Jaeger 2.14) passes grpc.MaxRecvMsgSize only when
# max_recv_msg_size_mib > 0 (ServerConfig.ToServer); grpc-go v1.76.0 then keeps its own default,
# defaultServerMaxReceiveMessageSize = 4 MiB (server.go), checked after decompression as well
# (rpc_util.go), so gzip on the wire buys nothing.
GRPC_DEFAULT_MAX_RECV_BYTES = 4 * MIB
OTLP_EXPORTERS = ("otlp", "otlp_grpc")


def collector_configs(result) -> dict[str, tuple[dict, dict]]:
    """workload name -> (its config, the workload) for every program started with --config=<file>."""
    found = {}
    for obj in result.kubernetes_objects():
        if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        spec = pod(obj)
        container = spec["containers"][0]
        path = next((a.split("=", 1)[1] for a in container.get("args") or [] if a.startswith("--config=")), None)
        if not path:
            continue
        directory, file = path.rsplit("/", 1)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        text = result.one("ConfigMap", volume["configMap"]["name"])["data"][file]
        found[obj["metadata"]["name"]] = (yaml.safe_load(text), obj)
    return found


def worst_case_export_bytes(exporter: dict) -> tuple[float, str]:
    """The largest message an OTLP exporter of collector 0.161 sends, and why.

    Only exporterhelper's queue batching with the `bytes` sizer bounds a request's size; a batch
    counted in spans (the batch processor, or an `items` sizer) has no bound in bytes, since a span's
    attributes do not (the OpenTelemetry SDKs limit their count, not their length, by default)."""
    queue = exporter.get("sending_queue") or {}
    batch = queue.get("batch")
    if not queue.get("enabled", True) or not batch:
        return float("inf"), "no batching in the exporter's queue: requests go out as the processors built them"
    # queuebatch.Config.Unmarshal: the batch inherits the queue's sizer when it names none; the
    # default batch counts items.
    sizer = batch.get("sizer") or queue.get("sizer") or "items"
    if sizer != "bytes" or not batch.get("max_size"):
        return float("inf"), f"the queue batches by {sizer} without a maximum in bytes"
    return batch["max_size"], f"sending_queue.batch.max_size {batch['max_size']} bytes"


def receiver_limit_bytes(config: dict, port: int) -> tuple[str, int]:
    """(receiver id, the largest message it accepts) of the OTLP gRPC receiver listening on port."""
    for rid, receiver in (config.get("receivers") or {}).items():
        grpc = (((receiver or {}).get("protocols") or {}).get("grpc")) or {}
        if rid.split("/")[0] == "otlp" and str(grpc.get("endpoint", "")).endswith(f":{port}"):
            mib = grpc.get("max_recv_msg_size_mib") or 0
            return rid, mib * MIB if mib > 0 else GRPC_DEFAULT_MAX_RECV_BYTES
    raise LookupError(f"no OTLP gRPC receiver on port {port}")


def export_target(eid: str, exporter: dict) -> tuple[str, int] | None:
    """(host, port) an OTLP gRPC exporter sends to: its endpoint (a gRPC target, `dns:///` or
    plain host:port), or for the load-balancing exporter the name its DNS resolver looks up."""
    kind = eid.split("/")[0]
    if kind == "load_balancing":
        dns = exporter["resolver"]["dns"]
        return dns["hostname"], int(dns.get("port", 4317))
    if kind not in OTLP_EXPORTERS:
        return None
    target = exporter["endpoint"].split(":///", 1)[-1]
    host, port = target.rsplit(":", 1)
    return host, int(port)


def otlp_links(result) -> list[tuple[str, dict, str, dict, int]]:
    """(sender workload, exporter, receiver workload, receiver config, container port) of every OTLP
    gRPC exporter a collector config of the run has, followed through the Service its endpoint names.
    The load-balancing exporter's requests are split by its own queue before they are routed, so
    its bound is that queue's (a routed part is never larger than the request it came from)."""
    configs = collector_configs(result)
    links = []
    for sender, (config, _) in configs.items():
        for eid, exporter in (config.get("exporters") or {}).items():
            target = export_target(eid, exporter)
            if target is None:
                continue
            host, port = target
            service = result.one("Service", host.split(".")[0])["spec"]
            target_port = next(p.get("targetPort", p["port"]) for p in service["ports"] if p["port"] == port)
            receivers = [(name, cfg, obj) for name, (cfg, obj) in configs.items()
                         if service["selector"].items() <= pod_labels(obj).items()]
            assert receivers, f"{sender}: {host}:{port} selects no collector"
            for name, cfg, obj in receivers:
                container_port = target_port if isinstance(target_port, int) else container_ports(obj)[target_port]
                links.append((f"{sender} exporters.{eid}", exporter, name, cfg, container_port))
    return links


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"]["labels"]


def test_no_gateway_export_is_larger_than_its_receiver_accepts(prod_tracing, prod_probabilistic):
    for result, hops in ((prod_tracing, [("otel-gateway", "otel-gateway"), ("otel-gateway", "jaeger-collector")]),
                         (prod_probabilistic, [("otel-gateway", "jaeger-collector")])):
        links = otlp_links(result)
        assert [(s.split()[0], r) for s, _, r, _, _ in links] == hops
        for sender, exporter, receiver, config, port in links:
            worst, why = worst_case_export_bytes(exporter)
            rid, limit = receiver_limit_bytes(config, port)
            assert worst <= limit, (f"{sender} sends up to {worst} bytes ({why}); {receiver} receivers.{rid} "
                                    f"accepts {limit}: a larger export is refused and dropped")


def test_the_export_bound_is_exporterhelpers_own_rule():
    assert worst_case_export_bytes({"sending_queue": {"batch": {"sizer": "bytes", "max_size": 5}}})[0] == 5
    assert worst_case_export_bytes({"sending_queue": {"sizer": "bytes", "batch": {"max_size": 5}}})[0] == 5
    for unbounded in ({}, {"sending_queue": {"queue_size": 10}}, {"sending_queue": {"batch": {"max_size": 5}}},
                      {"sending_queue": {"enabled": False, "batch": {"sizer": "bytes", "max_size": 5}}},
                      {"sending_queue": {"batch": {"sizer": "bytes", "max_size": 0}}}):
        assert worst_case_export_bytes(unbounded)[0] == float("inf"), unbounded
    grpc = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}}}
    assert receiver_limit_bytes(grpc, 4317) == ("otlp", 4 * MIB)


# ---------------------------------------------------------------- the generated configs


def all_configs(*results) -> list[tuple[str, str, dict, dict]]:
    """(stack, distribution, config, workload) of every Jaeger and gateway config a run declares."""
    found = []
    for result in results:
        for obj in tracing_workloads(result):
            name = obj["metadata"]["name"]
            if obj["kind"] == "CronJob":
                continue
            distribution = "contrib" if name == "otel-gateway" else "jaeger"
            found.append((f"{result.stack}/{name}", distribution, config_of(result, name), obj))
    return found


def test_every_generated_config_passes_the_program_and_the_policy(dev_k8s, dev_memory, prod_tracing,
                                                                  prod_probabilistic, tmp_path):
    checked = all_configs(dev_k8s, dev_memory, prod_tracing, prod_probabilistic)
    assert len(checked) == 8
    for where, distribution, config, _ in checked:
        assert otel_policy.check(config) == [], where
        proc = validate(distribution, yaml.safe_dump(config), tmp_path)
        assert proc.returncode == 0, f"{where}: {proc.stdout + proc.stderr}"


def test_listening_ports_match_container_and_service_ports(dev_k8s, prod_tracing, prod_probabilistic):
    for result in (dev_k8s, prod_tracing, prod_probabilistic):
        for where, _, config, obj in all_configs(result):
            listening = set(otel_policy.listening_ports(config).values())
            declared = set(container_ports(obj).values())
            assert listening == declared, where
            service = result.one("Service", obj["metadata"]["name"])["spec"]
            assert {p["port"] for p in service["ports"]} == declared, where


def test_the_gateway_exports_to_a_port_the_collector_service_has(prod_tracing):
    exporters = config_of(prod_tracing, "otel-gateway")["exporters"]
    for eid, exporter in exporters.items():
        host, port = export_target(eid, exporter)
        name, namespace = host.split(".")[:2]
        service = prod_tracing.one("Service", name)
        assert service["metadata"]["namespace"] == namespace, eid
        assert port in {p["port"] for p in service["spec"]["ports"]}, eid


def test_the_renderer_refuses_a_split_without_shared_storage():
    with pytest.raises(ValueError, match="shared store"):
        jaeger_config.document(jaeger_config.JaegerConfig(role="collector",
                                                          storage=jaeger_config.MemoryStorage(1000)))


# ---------------------------------------------------------------- secrets, schemas, hardening, isolation


def test_the_elasticsearch_password_stays_in_secrets(prod_sentinel, prod_tracing):
    holders = set()
    for obj in prod_sentinel.kubernetes_objects():
        if ES_PASSWORD in json.dumps(obj):
            assert obj["kind"] == "Secret", f"{obj['kind']} {obj['metadata']['name']} holds the password"
            holders.add(obj["metadata"]["name"])
    assert holders == {"jaeger-collector-es-credentials", "jaeger-es-credentials", "jaeger-es-index-cleaner-env"}
    for resource in prod_sentinel.resources:
        if ES_PASSWORD in json.dumps(resource.inputs):
            assert resource.type == "kubernetes:core/v1:Secret" and "stringData" in resource.secret_inputs
    assert not any(ES_PASSWORD in json.dumps(v) for v in prod_sentinel.outputs.values())
    # With the real wiring: no generated password outside a Secret in any tracing object.
    for obj in prod_tracing.kubernetes_objects():
        if obj["kind"] != "Secret" and ("jaeger" in obj["metadata"]["name"] or "otel" in obj["metadata"]["name"]):
            assert offline.GENERATED_SECRET not in json.dumps(obj), obj["metadata"]["name"]


def test_every_tracing_object_validates_against_kubernetes_schemas(dev_k8s, dev_memory, prod_tracing):
    for result in (dev_k8s, dev_memory, prod_tracing):
        kinds = set()
        for obj in result.kubernetes_objects():
            try:
                kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
            kinds.add(obj["kind"])
    assert "CronJob" in kinds


def test_schema_validation_catches_a_broken_cronjob(prod_tracing):
    cron = copy.deepcopy(prod_tracing.one("CronJob", "jaeger-es-index-cleaner"))
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = ["OnFailure"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cron, SCHEMA_VERSION, strict=True)


def waits_for_room(result, obj: dict) -> bool:
    split = any(o["metadata"]["name"] == "jaeger-collector" for o in result.kubernetes_objects())
    return obj["kind"] in ("Job", "CronJob") or (split and obj["metadata"]["name"] == "jaeger")


def test_every_tracing_container_is_hardened(dev_k8s, prod_tracing):
    checked = 0
    for result in (dev_k8s, prod_tracing):
        for obj in tracing_workloads(result):
            spec = pod(obj)
            assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
            assert spec["automountServiceAccountToken"] is False
            # The query UI and the index cleaner wait for room; the span path may evict to run.
            assert spec["priorityClassName"].endswith("-monitoring-waiting" if waits_for_room(result, obj) else "-monitoring")
            for c in spec["containers"]:
                assert EXACT_IMAGE.match(c["image"]), c["image"]
                assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                                "seccompProfile": {"type": "RuntimeDefault"}}
                assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
                if obj["kind"] != "CronJob":
                    assert "livenessProbe" in c and "readinessProbe" in c and "startupProbe" in c
                checked += 1
    assert checked == 5  # jaeger (dev); jaeger-collector, jaeger, cleaner, otel-gateway (prod)


def test_network_flows(dev_k8s, prod_tracing):
    jaeger = allowed_from(dev_k8s.one("NetworkPolicy", "jaeger"))
    # Spans come from the application's namespaces, never from the stack's own pods but the demo's
    # (dev runs it: Pulumi.dev.yaml), which no namespace rule admits; it exports over gRPC only.
    demo = {app: {4317} for app in demo_apps()}
    assert jaeger == {"other namespaces": {4317, 4318}, "grafana": {16686}, "prometheus": {8888},
                      **demo}  # no ingress host in dev
    assert allowed_to(dev_k8s.one("NetworkPolicy", "jaeger")) == {}
    assert allowed_to(dev_k8s.one("NetworkPolicy", "grafana"))["jaeger"] == {16686}

    # The replicas reach each other on the peer port only (the routing tier).
    assert allowed_from(prod_tracing.one("NetworkPolicy", "otel-gateway")) == {"other namespaces": {4317, 4318},
                                                                                "prometheus": {8888},
                                                                                "otel-gateway": {4319}}
    assert allowed_to(prod_tracing.one("NetworkPolicy", "otel-gateway")) == {"jaeger-collector": {4317},
                                                                              "otel-gateway": {4319}}
    # With a gateway, only the gateway may send spans to the collectors.
    assert allowed_from(prod_tracing.one("NetworkPolicy", "jaeger-collector")) == {"otel-gateway": {4317},
                                                                                    "prometheus": {8888}}
    assert allowed_from(prod_tracing.one("NetworkPolicy", "jaeger")) == {"grafana": {16686}, "prometheus": {8888}}
    for name in ("jaeger-collector", "jaeger", "jaeger-es-index-cleaner"):
        assert allowed_to(prod_tracing.one("NetworkPolicy", name)) == {"elasticsearch": {9200}}, name


def test_prometheus_scrapes_every_tracing_service(dev_k8s, prod_tracing, dev_docker):
    for result, jobs in ((dev_k8s, {"jaeger"}), (prod_tracing, {"jaeger", "jaeger-collector", "otel-gateway"})):
        config = yaml.safe_load(result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
        found = {j["job_name"]: j for j in config["scrape_configs"] if j["job_name"] in jobs}
        assert set(found) == jobs
        for job in found.values():
            assert {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics",
                    "action": "keep"} in job["relabel_configs"]
    docker_prom = [c for c in dev_docker.containers() if c.name == "prometheus"][0]
    text = {u["file"]: u["content"] for u in docker_prom.inputs["uploads"]}["/etc/prometheus/config/prometheus.yml"]
    jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    assert jobs["jaeger"]["static_configs"][0]["targets"] == ["jaeger:8888"]


# ---------------------------------------------------------------- Grafana


def datasources(result) -> dict:
    """The provisioned datasources as Grafana reads them (after its `$` expansion, no environment)."""
    if result.containers():
        grafana = result.container("grafana")
        text = {u["file"]: u["content"] for u in grafana.inputs["uploads"]}[
            "/etc/grafana/provisioning/datasources/datasources.yaml"]
    else:
        text = result.one("ConfigMap", "grafana-datasources")["data"]["datasources.yaml"]
    return {d["uid"]: d for d in grafana_expansion.as_read(yaml.safe_load(text))["datasources"]}


def test_grafana_gets_a_jaeger_datasource_linked_to_metrics_and_logs(prod_tracing, dev_docker):
    jaeger = datasources(prod_tracing)["traces"]
    assert jaeger["type"] == "jaeger" and jaeger["url"] == "http://jaeger.monitoring.svc:16686"
    metrics = jaeger["jsonData"]["tracesToMetrics"]
    assert metrics["datasourceUid"] == "prometheus"
    assert metrics["tags"] == [{"key": "service.name", "value": "job"}]
    recorded = {r["record"] for path in (ROOT / "rules").glob("*.yaml")
                for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "record" in r}
    for query in metrics["queries"]:
        name = query["query"].split("(", 1)[1].split("{", 1)[0]
        assert name in recorded, query
    # prod runs the logging stack (on by default on Kubernetes): trace -> logs by trace_id.
    logs = jaeger["jsonData"]["tracesToLogsV2"]
    assert logs["datasourceUid"] == "logs" and logs["filterByTraceID"] is True
    assert re.fullmatch(r'trace[._]id:"\$\{__trace\.traceId\}"', logs["query"]), logs["query"]
    assert "logs" in datasources(prod_tracing)  # the datasource the link points at is provisioned
    # The same on a Docker host; without a logging stack, no link to a datasource that does not exist.
    docker_jaeger = datasources(dev_docker)["traces"]
    assert docker_jaeger["url"] == "http://jaeger:16686"
    assert docker_jaeger["jsonData"]["tracesToLogsV2"] == logs and "logs" in datasources(dev_docker)
    without_logging = datasources(offline.run("dev", {"logging": {"enabled": False}}))
    assert "tracesToLogsV2" not in without_logging["traces"]["jsonData"] and "logs" not in without_logging


def test_no_jaeger_datasource_without_tracing(tracing_off):
    for result in tracing_off:
        assert "traces" not in datasources(result)


# ---------------------------------------------------------------- Docker host and outputs


def test_dev_on_a_docker_host(dev_docker, dev_k8s):
    jaeger = dev_docker.container("jaeger").inputs
    assert {"volumeName": "fm-dev-jaeger-data", "containerPath": "/tmp"} in jaeger["volumes"]
    assert jaeger["ports"] == [{"internal": 16686, "external": 16686, "ip": "127.0.0.1", "protocol": "tcp"}]
    assert jaeger["healthcheck"]["tests"] == ["CMD", "wget", "-q", "--spider", "http://127.0.0.1:13133/status"]
    assert jaeger["user"] == "10001:10001" and jaeger["readOnly"] is True
    assert jaeger["networksAdvanced"] == [{"name": "fm-dev", "aliases": ["jaeger"]}]
    uploads = {u["file"]: u["content"] for u in jaeger["uploads"]}
    assert uploads["/etc/jaeger/config.yaml"] == dev_k8s.one("ConfigMap", "jaeger-config")["data"]["config.yaml"]
    assert dev_docker.outputs["jaegerUrl"] == "http://jaeger:16686"
    assert dev_docker.outputs["jaegerExternalUrl"] == "http://localhost:16686"


def test_outputs(dev_k8s, prod_tracing):
    assert dev_k8s.outputs["jaegerUrl"] == "http://jaeger.monitoring-dev.svc:16686"
    assert "jaegerExternalUrl" not in dev_k8s.outputs
    assert prod_tracing.outputs["jaegerUrl"] == "http://jaeger.monitoring.svc:16686"
    for result in (dev_k8s, prod_tracing):
        assert not {"jaegerUrl", "otlpGrpcEndpoint", "otlpHttpEndpoint"} & result.secret_outputs


def test_jaeger_ui_exposed_only_behind_authentication():
    with pytest.raises(SettingsError) as info:
        run_prod_with_sentinel({"ingress": {"jaegerHost": "jaeger.example.org"}})
    assert "football-monitoring:ingress.jaegerHost = 'jaeger.example.org' is not valid without ingress.authUrl" \
        in str(info.value)
    result = run_prod_with_sentinel({"ingress": {"jaegerHost": "jaeger.example.org", "className": "nginx",
                                   "authUrl": "https://auth.example.org/oauth2/auth"}})
    ingress = result.one("Ingress", "jaeger")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {"name": "jaeger",
                                                                                       "port": {"name": "query"}}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-url"] == \
        "https://auth.example.org/oauth2/auth"
    # prod's ingress settings (TLS secret) apply to the added host too.
    assert result.outputs["jaegerExternalUrl"] == "https://jaeger.example.org"
    assert "ns:ingress-nginx" in allowed_from(result.one("NetworkPolicy", "jaeger"))


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize("stack, changes, overrides, expected", [
    ("prod", {}, {"logging": {"enabled": False}},
     "football-monitoring:tracing.storage = 'elasticsearch' needs the logging stack's Elasticsearch: expected "
     "logging.enabled = true"),
    ("dev", {"storage": "elasticsearch"}, {},
     "football-monitoring:tracing.storage = 'elasticsearch' is not valid on platform docker"),
    ("dev", {"collector": {"replicas": 2}}, KUBERNETES,
     "football-monitoring:tracing.collector.replicas = 2 is not valid with tracing.storage 'badger': expected 1"),
    ("dev", {"gateway": {"enabled": True}}, {},
     "football-monitoring:tracing.gateway.enabled = true is not valid on platform docker"),
    ("dev", {"sampling": {"percentage": 10}}, KUBERNETES,
     "football-monitoring:tracing.sampling.percentage = 10 is not valid without tracing.gateway.enabled"),
    ("dev", {"sampling": {"percentage": 0}}, {},
     "football-monitoring:tracing.sampling.percentage = 0 is not valid: expected a percentage above 0"),
    ("dev", {"storage": "cassandra"}, {},
     "football-monitoring:tracing.storage = 'cassandra' is not valid: expected one of memory, badger, elasticsearch"),
    ("dev", {"retentionDays": 0}, {},
     "football-monitoring:tracing.retentionDays = 0 is not valid: expected a whole number from 1 to 90"),
])
def test_bad_tracing_settings_fail_with_a_clear_message(stack, changes, overrides, expected):
    with pytest.raises(SettingsError) as info:
        offline.run(stack, {"tracing": tracing_values(stack, **changes), **overrides})
    assert expected in str(info.value)
    assert offline.LAST_RECORDER.resources == []


def test_tracing_is_off_unless_enabled(tracing_off):
    for result in tracing_off:
        assert not any("jaeger" in r.name or "otel-gateway" in r.name for r in result.resources)
        assert not {"jaegerUrl", "otlpGrpcEndpoint", "otlpHttpEndpoint"} & set(result.outputs)


def test_checkov_on_the_tracing_manifests(dev_k8s, prod_tracing, tmp_path):
    """The rendered manifests of both shapes pass checkov, failures only where the skip list says why."""
    from tools import render
    from tests.test_security_scan import failed_checks, skip_for

    unexplained = []
    for result in (dev_k8s, prod_tracing):
        out = tmp_path / result.stack
        render.write(result, out)
        # Only the tracing objects: the rest of the stack is test_security_scan's.
        found = [f for f in failed_checks(out / "kubernetes")
                 if re.search(r"\.(jaeger[\w-]*|otel-gateway)$", f["resource"])]
        unexplained += [f"{result.stack}: {f['check_id']} {f['check_name']} on {f['resource']}"
                        for f in found if not skip_for(f)]
        if result is prod_tracing:
            assert any(f["check_id"] == "CKV_K8S_35" and "jaeger-es-index-cleaner" in f["resource"] for f in found)
    assert unexplained == [], "\n".join(unexplained)


def test_readme_documents_the_tracing_outputs(dev_docker, prod_tracing):
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", readme, flags=re.M))
    with_ingress = run_prod_with_sentinel({"ingress": {"jaegerHost": "jaeger.example.org",
                                                       "authUrl": "https://auth.example.org/oauth2/auth"}})
    tracing_outputs = {k for r in (dev_docker, prod_tracing, with_ingress) for k in r.outputs
                       if k.startswith(("jaeger", "otlp"))}
    assert tracing_outputs == {"jaegerUrl", "jaegerExternalUrl", "otlpGrpcEndpoint", "otlpHttpEndpoint"}
    assert tracing_outputs <= documented
