"""What each stack's program declares, checked under Pulumi's mock runtime."""

from __future__ import annotations

import json
import re
from typing import Optional

import pytest
import yaml

from tools import offline
from components.settings import PROJECT, SECRETS, SettingsError
from tests import command_lines, grafana_expansion
from tests.conftest import KUBERNETES, run_on_kubernetes

COMPONENT_TYPES = {
    "football-monitoring:stack:MonitoringStack",
    "football-monitoring:prometheus:Prometheus",
    "football-monitoring:alertmanager:Alertmanager",
    "football-monitoring:grafana:Grafana",
    "football-monitoring:exporters:NodeExporter",
    "football-monitoring:exporters:KubeStateMetrics",
    "football-monitoring:exporters:BlackboxExporter",
    "football-monitoring:exporters:PostgresExporter",
    "football-monitoring:exporters:RedisExporter",
    # The logging stack (on by default on Kubernetes).
    "football-monitoring:logging:Elasticsearch",
    "football-monitoring:logging:ElasticsearchExporter",
    "football-monitoring:logging:Logstash",
    "football-monitoring:logging:Kibana",
    "football-monitoring:logging:Filebeat",
    "football-monitoring:logging:LoggingBootstrap",
    # Tracing (tracing.enabled in both stacks' files).
    "football-monitoring:tracing:Jaeger",
}
# DingTalk relay (prod's receivers); the OTel gateway (tracing.gateway.enabled, prod only).
OPTIONAL_COMPONENT_TYPES = {"football-monitoring:dingtalk:DingTalkRelay", "football-monitoring:tracing:OtelGateway",
                            "football-monitoring:demo:Demo", "football-monitoring:report:ReportJob",
                            "football-monitoring:thanos:Thanos"}


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def args_of(obj: dict) -> list[str]:
    return containers(obj)[0]["args"]


def workloads(result) -> list[dict]:
    return [o for o in result.kubernetes_objects() if o["kind"] in ("StatefulSet", "Deployment", "DaemonSet")]


def test_components_and_parenting(runs):
    for result in runs.values():
        types = {r.type for r in result.resources}
        assert COMPONENT_TYPES <= types
        for r in result.resources:
            if r.type == "football-monitoring:stack:MonitoringStack":
                assert r.parent_type == "pulumi:pulumi:Stack"
            else:
                # Everything hangs under one of our components, never loose at the stack root.
                assert r.parent_type.startswith("football-monitoring:"), (r.type, r.name, r.parent_type)
        kube_children = {r.parent_type for r in result.resources if r.type.startswith("kubernetes:")}
        assert kube_children <= COMPONENT_TYPES | OPTIONAL_COMPONENT_TYPES


@pytest.mark.parametrize("stack, prometheus, alertmanager", [("dev", 1, 1), ("prod", 2, 3)])
def test_replicas(runs, stack, prometheus, alertmanager):
    result = runs[stack]
    assert result.one("StatefulSet", "prometheus")["spec"]["replicas"] == prometheus
    assert result.one("StatefulSet", "alertmanager")["spec"]["replicas"] == alertmanager
    assert result.one("StatefulSet", "grafana")["spec"]["replicas"] == 1


@pytest.mark.parametrize("stack, retention, size, volume", [("dev", "3d", "4GB", "5Gi"), ("prod", "30d", "85GB", "100Gi")])
def test_prometheus_retention_and_volume(runs, stack, retention, size, volume):
    sts = runs[stack].one("StatefulSet", "prometheus")
    args = args_of(sts)
    # Retention lives in prometheus.yml (a reload applies it), not in the deprecated flags.
    assert not [a for a in args if a.startswith("--storage.tsdb.retention")]
    config = yaml.safe_load(runs[stack].one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    assert config["storage"]["tsdb"]["retention"] == {"time": retention, "size": size}
    assert "--web.enable-lifecycle" in args
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == volume
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


@pytest.mark.parametrize("stack, sizes", [
    ("dev", {"alertmanager": "512Mi", "grafana": "1Gi"}),
    ("prod", {"alertmanager": "2Gi", "grafana": "10Gi"}),
])
def test_stateful_volumes(runs, stack, sizes):
    for name, size in sizes.items():
        sts = runs[stack].one("StatefulSet", name)
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == size


def test_prometheus_ha_pair_has_environment_and_replica_labels(prod):
    config = yaml.safe_load(prod.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    assert config["global"]["external_labels"] == {"environment": "prod", "replica": "${POD_NAME}"}
    env = containers(prod.one("StatefulSet", "prometheus"))[0]["env"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env
    # Alerts from both replicas must look identical to Alertmanager.
    assert {"regex": "replica", "action": "labeldrop"} in config["alerting"]["alert_relabel_configs"]


def test_prometheus_sends_to_every_alertmanager_replica(runs):
    for stack, replicas in (("dev", 1), ("prod", 3)):
        result = runs[stack]
        namespace = result.outputs["namespace"]
        config = yaml.safe_load(result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
        targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
        assert targets == [f"alertmanager-{i}.alertmanager-headless.{namespace}.svc:9093" for i in range(replicas)]


def test_alertmanager_cluster_in_prod_and_single_in_dev(dev, prod):
    args = args_of(prod.one("StatefulSet", "alertmanager"))
    peers = [a for a in args if a.startswith("--cluster.peer=")]
    assert peers == [f"--cluster.peer=alertmanager-{i}.alertmanager-headless.monitoring.svc:9094" for i in range(3)]
    assert "--cluster.listen-address=0.0.0.0:9094" in args
    headless = prod.one("Service", "alertmanager-headless")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {p["protocol"] for p in headless["ports"] if p["port"] == 9094} == {"TCP", "UDP"}

    dev_args = args_of(dev.one("StatefulSet", "alertmanager"))
    assert "--cluster.listen-address=" in dev_args
    assert not [a for a in dev_args if a.startswith("--cluster.peer=")]


def test_config_changes_reload_prometheus_and_alertmanager(runs):
    # Not the credentials: Alertmanager reads those files at each notification.
    alertmanager_dirs = {
        "dev": ["/etc/alertmanager/config", "/etc/alertmanager/templates"],
        "prod": ["/etc/alertmanager/config", "/etc/alertmanager/templates"],
    }
    for stack, result in runs.items():
        for name, url, watched in (
                ("prometheus", "http://127.0.0.1:9090/-/reload", ["/etc/prometheus/config", "/etc/prometheus/rules"]),
                ("alertmanager", "http://127.0.0.1:9093/-/reload", alertmanager_dirs[stack])):
            sts = result.one("StatefulSet", name)
            reloader = [c for c in containers(sts) if c["name"] == "config-reloader"]
            assert len(reloader) == 1
            assert f"--reload-url={url}" in reloader[0]["args"]
            assert [a.split("=", 1)[1] for a in reloader[0]["args"] if a.startswith("--watched-dir=")] == watched
            # No checksum annotation: a config change must not restart them (TSDB, silences stay live).
            annotations = sts["spec"]["template"]["metadata"]["annotations"]
            assert not [k for k in annotations if k.endswith(("-config", "-rules", "-templates"))], annotations


def test_config_change_rolls_pods_that_only_read_config_at_start(monkeypatch):
    def checksum(result, kind, name):
        return {k: v for k, v in result.one(kind, name)["spec"]["template"]["metadata"]["annotations"].items()
                if k.startswith("checksum.football-monitoring/")}

    before = run_on_kubernetes("dev")
    after = run_on_kubernetes("dev", {"prometheus": {"scrapeInterval": "15s", "scrapeTimeout": "10s"}})
    # Grafana's datasource file carries the scrape interval: its pods must roll.
    assert checksum(before, "StatefulSet", "grafana") != checksum(after, "StatefulSet", "grafana")
    # Blackbox config did not change: its pods stay.
    assert checksum(before, "Deployment", "blackbox-exporter") == checksum(after, "Deployment", "blackbox-exporter")


def test_rbac_is_read_only_and_limited_to_discovery(prod):
    role = prod.one("ClusterRole", "monitoring-prometheus")
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs <= {"get", "list", "watch"}
    resources = {r for rule in role["rules"] for r in rule.get("resources", [])}
    assert resources == {"nodes", "services", "pods", "endpointslices", "nodes/metrics"}
    assert "secrets" not in resources and "nodes/proxy" not in resources
    ksm = prod.one("ClusterRole", "monitoring-kube-state-metrics")
    assert {verb for rule in ksm["rules"] for verb in rule["verbs"]} == {"list", "watch"}
    ksm_resources = {r for rule in ksm["rules"] for r in rule["resources"]}
    assert "secrets" not in ksm_resources and "configmaps" not in ksm_resources
    ksm_flag = [a for a in args_of(prod.one("Deployment", "kube-state-metrics")) if a.startswith("--resources=")][0]
    assert set(ksm_flag.split("=", 1)[1].split(",")) == ksm_resources
    binding = prod.one("ClusterRoleBinding", "monitoring-prometheus")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]


def test_only_discovery_services_get_api_credentials(prod):
    with_token = {o["metadata"]["name"] for o in workloads(prod)
                  if o["spec"]["template"]["spec"]["automountServiceAccountToken"]}
    assert with_token == {"prometheus", "kube-state-metrics", "filebeat"}  # filebeat: pod metadata of log lines


def test_exporters(prod):
    node = prod.one("DaemonSet", "node-exporter")
    pod = node["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths == {"/proc", "/sys", "/"}
    assert all(m["readOnly"] for m in containers(node)[0]["volumeMounts"])
    assert pod["tolerations"] == [{"operator": "Exists"}]

    blackbox = yaml.safe_load(prod.one("ConfigMap", "blackbox-exporter-config")["data"]["blackbox.yml"])
    assert set(blackbox["modules"]) == {"http_2xx", "tcp_connect", "icmp"}

    for name, env_name in (("postgres-exporter", "DATA_SOURCE_NAME"), ("redis-exporter", "REDIS_ADDR")):
        env = containers(prod.one("Deployment", name))[0]["env"]
        assert env == [{"name": env_name, "valueFrom": {"secretKeyRef": {"name": f"{name}-env",
                                                                           "key": env_name.lower().replace("_", "-")}}}]


def test_probe_targets_from_settings(prod):
    config = yaml.safe_load(prod.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    http = jobs["blackbox-http"]
    assert http["params"] == {"module": ["http_2xx"]}
    assert http["static_configs"] == [{"targets": ["http://football-prediction-api.football-prediction.svc:8000/health"],
                                       "labels": {"probe": "api-health"}}]
    assert [sc["labels"]["probe"] for sc in jobs["blackbox-tcp"]["static_configs"]] == ["postgres", "redis"]
    assert "blackbox-icmp" not in jobs  # no icmp targets configured in prod


def test_every_scrape_job_labels_the_environment(runs):
    for stack, result in runs.items():
        config = yaml.safe_load(result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
        expected = {
            "prometheus", "alertmanager", "grafana", "node-exporter", "kube-state-metrics", "blackbox-exporter",
            "postgres-exporter", "redis-exporter", "apiserver", "kubelet", "cadvisor", "blackbox-http",
            "blackbox-tcp", "kubernetes-pods", "kubernetes-services", "config-reloader",
            "elasticsearch-exporter", "logstash", "filebeat",
            "jaeger",  # dev: the all-in-one; prod: the query service
        }
        if stack == "prod":
            expected |= {"jaeger-collector", "otel-gateway"}  # Elasticsearch storage, and the sampling gateway
            expected |= {"thanos-sidecar", "thanos-query", "thanos-store", "thanos-compactor"}  # thanos.enabled
        else:
            expected -= {"blackbox-tcp"}  # dev watches no database of the service (probes.tcp: [])
        assert {job["job_name"] for job in config["scrape_configs"]} == expected
        for job in config["scrape_configs"]:
            assert {"target_label": "environment", "replacement": stack, "action": "replace"} in job["relabel_configs"]


def test_grafana_provisioning(prod):
    datasources = yaml.safe_load(prod.one("ConfigMap", "grafana-datasources")["data"]["datasources.yaml"])
    by_uid = {d["uid"]: d for d in datasources["datasources"]}
    # prod reads its Prometheus pair through Thanos Query (thanos.enabled), under the same uid.
    assert by_uid["prometheus"]["url"] == "http://thanos-query.monitoring.svc:10902"
    assert by_uid["prometheus"]["jsonData"]["prometheusType"] == "Thanos"
    assert by_uid["alertmanager"]["url"] == "http://alertmanager.monitoring.svc:9093"
    ini = prod.one("ConfigMap", "grafana-config")["data"]["grafana.ini"]
    assert "[auth.anonymous]\nenabled = false" in ini
    assert "allow_sign_up = false" in ini
    assert "root_url = https://grafana.football-prediction.example.org/" in ini
    dashboards = dashboard_files(prod)
    from components import data
    assert dashboards == data.dashboards() and "stack-health.json" in dashboards
    uids = {json.loads(text)["uid"] for text in dashboards.values()}
    assert len(uids) == len(dashboards)


def grafana_containers(result) -> list[command_lines.Container]:
    _, not_built = command_lines.pods(result, result.stack)
    found = [c for c in not_built if command_lines.image_key(c.image) == "grafana"]
    assert found, f"{result.stack}: no Grafana container"
    return found


def container_files(container: command_lines.Container) -> dict[str, str]:
    """Every file the container sees at its path (ConfigMaps, Secrets, uploads)."""
    return {(f"{path.rstrip('/')}/{name}" if name else path): content
            for path, volume in container.mounts.items() for name, content in volume.files.items()}


def unintended_expansions(container: command_lines.Container) -> tuple[list[str], int]:
    """Every `$` Grafana would expand in what it reads at start, other than a $__file{} of a file
    the container has or a $__env{} of a variable it sets; and how many of those references there are."""
    files, env = container_files(container), container.env
    problems, meant = [], 0

    def judge(where: str, found: list[grafana_expansion.Expansion]) -> None:
        nonlocal meant
        for e in found:
            if (e.kind == "file" and e.name in files) or \
                    (e.kind == "env" and e.text.startswith("$__env{") and e.name in env):
                meant += 1
            else:
                problems.append(f"{container.where}: {where}: {e.text!r} would be expanded ({e.kind})")

    # The stack names both paths instead of relying on the image's defaults.
    config_path, provisioning_dir = env["GF_PATHS_CONFIG"], env["GF_PATHS_PROVISIONING"]
    for key, value in grafana_expansion.ini_values(files[config_path]):
        judge(f"{config_path} {key}", grafana_expansion.expand_ini_value(value, env, files)[1])
    for name, value in env.items():  # GF_<SECTION>_<KEY> overrides are expanded like the file's values
        if name.startswith("GF_"):
            judge(f"${name}", grafana_expansion.expand_ini_value(value, env, files)[1])
    documents = list(grafana_expansion.provisioned_documents(files, provisioning_dir))
    assert documents, f"{container.where}: nothing under {provisioning_dir}"
    for path, document in documents:
        for where, value in grafana_expansion.strings_of(document):
            judge(f"{path} {where}", grafana_expansion.expand_provisioned(value, env, files)[1])
    return problems, meant


def test_grafana_expands_only_the_references_we_mean(runs, docker_dev):
    """Grafana expands `$` in grafana.ini and in every provisioned value (tests/grafana_expansion.py):
    a literal `$` that is not written `$$` silently disappears with what follows it."""
    for result in (runs["dev"], runs["prod"], docker_dev):
        for container in grafana_containers(result):
            problems, meant = unintended_expansions(container)
            assert not problems, "\n".join(problems)
            assert meant >= 3  # the admin password, the logs datasource's password and CA: the check sees them


def test_grafana_sees_the_trace_link_queries_as_written(prod):
    (container,) = grafana_containers(prod)
    files = container_files(container)
    text = files[f"{container.env['GF_PATHS_PROVISIONING']}/datasources/datasources.yaml"]
    jaeger = {d["uid"]: d for d in yaml.safe_load(text)["datasources"]}["traces"]["jsonData"]
    seen = {where: grafana_expansion.expand_provisioned(value, container.env, files)[0]
            for where, value in grafana_expansion.strings_of(jaeger)}
    assert seen["tracesToMetrics.queries[0].query"] == "sum(job:http_requests:rate5m{$__tags})"
    assert seen["tracesToLogsV2.query"] == 'trace.id:"${__trace.traceId}"'


@pytest.mark.parametrize("raw, env, files, expected", [
    # Grafana's own cases (pkg/services/provisioning/values/values_test.go)
    ("$STRING", {"STRING": "test"}, {}, "test"),
    ("$EMPTYSTRING", {"EMPTYSTRING": ""}, {}, ""),
    ("$$", {}, {}, "$"),
    ("mY,Passwo$$rd", {}, {}, "mY,Passwo$rd"),
    ("Some text with $STRING\n", {"STRING": "test"}, {}, "Some text with test\n"),
    ("$__file{/f}", {}, {"/f": "hello, world\n"}, "hello, world"),
    # Go's os.Expand: unset names, ${...} with any characters, special one-character names, bad syntax
    ("{$__tags}", {}, {}, "{}"),
    ('"${__trace.traceId}"', {}, {}, '""'),
    ("a$1b", {}, {}, "ab"),
    ("${}x", {}, {}, "x"),
    ("x$", {}, {}, "x$"),
    ("$-", {}, {}, ""),
    ("${HOME}/$$HOME", {"HOME": "/h"}, {}, "/h/$HOME"),
    ("$$$X", {"X": "1"}, {}, "$1"),
    ("${", {}, {}, ""),
    ("a${b", {}, {}, "ab"),
    ("$__env{X}:$__other{y}", {"X": "1"}, {}, "1:{y}"),  # no `other` expander: os.ExpandEnv eats `$__other`
])
def test_grafana_expansion_rule(raw, env, files, expected):
    assert grafana_expansion.expand_provisioned(raw, env, files)[0] == expected


def test_grafana_ini_expansion_rule():
    assert grafana_expansion.expand_ini_value("$__file{/f} ${X} $__env{X} $Y $$ $__vault{a}",
                                              {"X": "1", "Y": "2"}, {"/f": " s "})[0] == \
        "s 1 1 $Y $$ $__vault{a}"


def test_ingress_only_where_a_host_is_set(dev, prod):
    assert not dev.find("Ingress")
    ingress = prod.one("Ingress", "grafana")
    assert ingress["spec"]["tls"] == [{"hosts": ["grafana.football-prediction.example.org"],
                                       "secretName": "monitoring-tls-grafana"}]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt-prod"}
    assert [i["metadata"]["name"] for i in prod.find("Ingress")] == ["grafana", "kibana"]


# What makes cert-manager's ingress-shim issue a Certificate for an Ingress (hasShimAnnotation in
# pkg/controller/certificate-shim/sync.go; kubernetes.io/tls-acme is its default auto annotation).
SHIM_ANNOTATIONS = ("cert-manager.io/issuer", "cert-manager.io/cluster-issuer")
SHIM_AUTO_ANNOTATION = "kubernetes.io/tls-acme"


def shim_certificate_conflicts(result) -> list[str]:
    """TLS Secrets that more than one issuing Ingress (or one Ingress twice) names: the shim makes
    one Certificate per Secret, owned by the first Ingress, and refuses to update it for the others."""
    owners: dict[tuple[str, str], list[str]] = {}
    for ingress in result.find("Ingress"):
        meta = ingress["metadata"]
        annotations = meta.get("annotations") or {}
        if not (any(a in annotations for a in SHIM_ANNOTATIONS)
                or annotations.get(SHIM_AUTO_ANNOTATION, "").lower() in ("1", "t", "true")):
            continue
        for block in ingress["spec"].get("tls") or []:
            owners.setdefault((meta.get("namespace", "default"), block["secretName"]), []).append(meta["name"])
    return [f"{result.stack}: Secret {namespace}/{secret} is named by the issuing Ingresses {names}"
            for (namespace, secret), names in sorted(owners.items()) if len(names) > 1]


def every_ui_exposed(overrides: dict | None = None) -> offline.RunResult:
    hosts = {f"{ui}Host": f"{ui}.football-prediction.example.org" for ui in ("prometheus", "alertmanager", "jaeger")}
    return offline.run("prod", {"ingress": {**hosts, "authUrl": "https://auth.example.org/oauth2/auth",
                                            **(overrides or {})}})


def test_each_issued_certificate_has_one_ingress(runs):
    exposed = every_ui_exposed()
    assert len(exposed.find("Ingress")) == 5  # grafana, prometheus, alertmanager, jaeger, kibana
    for result in (*runs.values(), exposed):
        assert not shim_certificate_conflicts(result), shim_certificate_conflicts(result)
    # Without an issuer the named Secret is the operator's own (a wildcard certificate): shared as named.
    own = every_ui_exposed({"clusterIssuer": None})
    assert {i["spec"]["tls"][0]["secretName"] for i in own.find("Ingress")} == {"monitoring-tls"}
    assert not shim_certificate_conflicts(own)


def _flag(args: list[str], flag: str) -> Optional[str]:
    """The value of --flag=value or of `--flag value`."""
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def _kibana_url(c: command_lines.Container) -> Optional[str]:
    return yaml.safe_load(container_files(c)[_flag(c.args, "--config")]).get("server.publicBaseUrl")


def _grafana_url(c: command_lines.Container) -> Optional[str]:
    return dict(grafana_expansion.ini_values(container_files(c)[c.env["GF_PATHS_CONFIG"]])).get("server.root_url")


# How each program with a UI learns the address it puts in the links it hands out: Alertmanager's in
# every notification (.ExternalURL: Slack's default title_link, the webhook and DingTalk payloads),
# Prometheus's in every alert (generatorURL), Grafana's and Kibana's in shared and alert links.
ANNOUNCED_URL = {
    "prometheus": lambda c: _flag(c.args, "--web.external-url"),
    "alertmanager": lambda c: _flag(c.args, "--web.external-url"),
    "grafana": _grafana_url,
    "kibana": _kibana_url,
    # The Jaeger UI links relative to the page it is opened at, and sends nothing.
    "jaeger": None,
}


def ingress_urls(result) -> dict[str, str]:
    """workload name -> the URL its Ingress serves it at (https when the Ingress has TLS for the host)."""
    workloads = [o for o in result.kubernetes_objects() if o["kind"] in ("StatefulSet", "Deployment", "DaemonSet")]
    found = {}
    for ingress in result.find("Ingress"):
        tls_hosts = {h for block in ingress["spec"].get("tls") or [] for h in block["hosts"]}
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                selector = result.one("Service", path["backend"]["service"]["name"])["spec"]["selector"]
                for w in workloads:
                    if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items():
                        scheme = "https" if rule["host"] in tls_hosts else "http"
                        found[w["metadata"]["name"]] = f"{scheme}://{rule['host']}"
    return found


def announced_urls(result) -> dict[str, tuple[str, Optional[str]]]:
    """workload name -> (program, the URL it announces) for every UI program of the run."""
    pods, not_built = command_lines.pods(result, result.stack)
    found = {}
    for c in [c for pod in pods for c in pod.containers] + not_built:
        key = command_lines.image_key(c.image)
        if key in ANNOUNCED_URL and ANNOUNCED_URL[key]:
            # "<stack> <Kind>/<name> container <c>" or, on a Docker host, "<stack> docker container <name>"
            parts = c.where.split()
            workload = parts[-1] if parts[1] == "docker" else parts[1].split("/", 1)[1]
            found[workload] = (key, ANNOUNCED_URL[key](c))
    return found


def unreachable_links(result) -> list[str]:
    """Every announced URL that is not where the program is opened from outside, where the stack exposes it."""
    announced = announced_urls(result)
    problems = []
    for workload, url in ingress_urls(result).items():
        program = next((p for w, (p, _) in announced.items() if w == workload), None)
        if program is None:
            assert workload in ANNOUNCED_URL and ANNOUNCED_URL[workload] is None, f"{workload}: how does it announce?"
            continue
        if (announced[workload][1] or "").rstrip("/") != url:
            problems.append(f"{result.stack} {workload}: announces {announced[workload][1]!r}, its ingress is {url}")
    return problems


def notification_literal_urls(result) -> list[str]:
    """URLs written into notification texts (templates and the receivers' text fields) that name a
    cluster-internal host: nobody outside can open them."""
    config = yaml.safe_load(result.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"])
    texts = [result.one("ConfigMap", "alertmanager-templates")["data"][name]
             for name in result.one("ConfigMap", "alertmanager-templates")["data"]]
    delivery = {"url", "api_url", "url_file", "api_url_file", "smarthost"}  # where it sends, not what it says
    for receiver in config.get("receivers") or []:
        for kind, configs in receiver.items():
            for entry in configs if isinstance(configs, list) else []:
                texts += [str(v) for k, v in entry.items() if k not in delivery and isinstance(v, str)]
    return [m.group(0) for text in texts for m in re.finditer(r"https?://[^\s\"'<>)]+", text)
            if re.search(r"\.svc(\.|:|/|$)|//(localhost|127\.)", m.group(0))]


def test_links_people_get_open_from_outside(runs):
    """The URL every UI program puts into its links is the one its ingress serves, wherever the stack
    gives it one, and no notification text names a cluster-internal address of its own accord."""
    exposed = every_ui_exposed()
    assert set(ingress_urls(exposed)) == {"grafana", "prometheus", "alertmanager", "jaeger", "kibana"}
    for result in (*runs.values(), exposed):
        assert not unreachable_links(result), unreachable_links(result)
        assert not notification_literal_urls(result), notification_literal_urls(result)


def test_external_urls_without_an_ingress_come_from_the_settings(runs):
    urls = {"prometheus": "https://prometheus.vpn.example.org", "alertmanager": "https://alertmanager.vpn.example.org"}
    for stack in ("prod", "dev"):  # Kubernetes without an ingress for them; a Docker host's published ports
        result = offline.run(stack, {section: {"externalUrl": url} for section, url in urls.items()})
        announced = announced_urls(result)
        assert {w: u for w, (_, u) in announced.items() if w in urls} == urls, stack
        assert not result.find("Ingress", "prometheus") and not result.find("Ingress", "alertmanager")
        for section, url in urls.items():
            assert result.outputs[f"{section}ExternalUrl"] == url
    # Without the setting and without an ingress the internal address is all there is.
    plain = announced_urls(runs["prod"])
    assert {w: u for w, (_, u) in plain.items() if w in urls} == \
        {"prometheus": "http://prometheus.monitoring.svc:9090", "alertmanager": "http://alertmanager.monitoring.svc:9093"}
    assert "prometheusExternalUrl" not in runs["prod"].outputs
    # The ingress wins, and a second address next to it is refused.
    with pytest.raises(SettingsError, match="prometheus.externalUrl"):
        every_ui_exposed_with({"prometheus": {"externalUrl": urls["prometheus"]}})


def every_ui_exposed_with(sections: dict) -> offline.RunResult:
    hosts = {f"{ui}Host": f"{ui}.football-prediction.example.org" for ui in ("prometheus", "alertmanager", "jaeger")}
    return offline.run("prod", {"ingress": {**hosts, "authUrl": "https://auth.example.org/oauth2/auth"}, **sections})


def test_stateful_resources_protected_in_prod_only(dev, prod):
    def flags(result):
        return {(r.name, r.protect, r.retain_on_delete) for r in result.resources if r.type == "kubernetes:apps/v1:StatefulSet"}

    stateful = ("prometheus", "alertmanager", "grafana", "elasticsearch", "logstash")
    # prod's Thanos store gateway and compactor keep their caches and work space on volumes.
    assert flags(prod) - {(name, True, True) for name in stateful} == {("thanos-store", True, True),
                                                                       ("thanos-compactor", True, True)}
    # prod's Jaeger keeps its spans in Elasticsearch (stateless Deployments); dev's keeps them in Badger
    # on a volume: a StatefulSet, protected like the others wherever protectData is set.
    assert flags(prod) >= {(name, True, True) for name in stateful}
    assert flags(dev) == {(name, False, False) for name in stateful + ("jaeger",)}
    assert flags(run_on_kubernetes("dev", {"protectData": True, "demo": {"enabled": False}})) == {(name, True, True)
                                                                      for name in stateful + ("jaeger",)}


def test_outputs(dev, prod):
    assert set(dev.outputs) == {"environment", "namespace", "nodeNamespace", "grafanaUrl", "prometheusUrl", "alertmanagerUrl",
                                "grafanaAdminUser", "grafanaAdminPassword", "elasticsearchUrl", "kibanaUrl",
                                "elasticsearchUser", "elasticsearchPassword", "elasticsearchCaCertificate",
                                "jaegerUrl", "otlpGrpcEndpoint", "otlpHttpEndpoint", "alertDelivery", "demoApiUrl"}
    assert dev.outputs["demoApiUrl"] == "http://football-prediction-api.monitoring-dev.svc:8000"
    assert "demoApiUrl" not in prod.outputs
    assert prod.outputs["alertDelivery"] == ("delivered to the default webhook, Slack, e-mail, DingTalk, the escalation "
                                             "webhook, the heartbeat (Watchdog)")
    # The CA certificate is public (clients trust Elasticsearch with it); its key never leaves a Secret.
    for result in (dev, prod):
        assert result.outputs["elasticsearchCaCertificate"] == \
            result.one("Secret", "elasticsearch-exporter-ca")["stringData"]["ca.crt"] == \
            offline.placeholder_pem("CERTIFICATE", "logging-ca")
    assert prod.outputs["grafanaExternalUrl"] == "https://grafana.football-prediction.example.org"
    assert prod.outputs["prometheusUrl"] == "http://prometheus.monitoring.svc:9090"
    for result in (dev, prod):
        assert result.secret_outputs == {"grafanaAdminPassword", "elasticsearchPassword"}


def test_verify_reads_the_outputs_the_stacks_have(dev, prod, docker_dev):
    """tools.verify finds each service by output name: a renamed output would silently skip its checks."""
    from tools import verify
    sharded = offline.run("prod", {"prometheus": {"shards": 2}})
    for result in (dev, prod, docker_dev, sharded):
        # Every stack runs logging and tracing; Thanos Query only with thanos.enabled (prod), the Ruler
        # only with shards.
        for service in verify.SERVICES.values():
            if (service.name == "rules" and result is not sharded) or \
                    (service.name == "thanos-query" and result.stack != "prod"):
                assert not set(service.outputs) & set(result.outputs), (result.stack, service.outputs)
                continue
            assert set(service.outputs) & set(result.outputs), (result.stack, service.name, service.outputs)


SENTINELS = {
    "alertmanagerWebhookUrl": "https://hooks.example.org/sentinel-webhook-5f1c",
    "postgresDsn": "postgresql://monitor:sentinel-pg-pass-77a2@db.example.org:5432/football",
    "redisUrl": "redis://:sentinel-redis-pass-91bd@redis.example.org:6379",
    "slackApiUrl": "https://hooks.example.org/sentinel-slack-0c3e",
    "smtpPassword": "sentinel-smtp-pass-4d21",
    "dingtalkWebhookUrl": "https://robot.example.org/send?access_token=sentinel-ding-8e7f",
    "dingtalkSecret": "SECsentinel-ding-sign-2b9a",
    "heartbeatUrl": "https://heartbeat.example.org/sentinel-beat-6a0d",
    "escalationWebhookUrl": "https://pager.example.org/sentinel-page-13c5",
    "loggingSnapshotAccessKey": "sentinel-s3-access-5e2a",
    "loggingSnapshotSecretKey": "sentinel-s3-secret-c81f",
    "thanosObjstoreAccessKey": "sentinel-thanos-access-3f9b",
    "thanosObjstoreSecretKey": "sentinel-thanos-secret-a47e",
}
# The secrets each stack uses (the others belong to receivers it does not enable).
USED = {
    "dev": {"alertmanagerWebhookUrl", "postgresDsn", "redisUrl"},  # dev runs no Thanos
    "prod": set(SENTINELS),
}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_secret_outside_kubernetes_secrets(stack):
    config, secret_keys = offline.stack_config(stack, KUBERNETES)
    for key, value in SENTINELS.items():
        config[f"{PROJECT}:{key}"] = value
    assert set(SENTINELS) == set(SECRETS)
    result = offline.run(stack, config=config, secret_keys=secret_keys)
    needles = list(SENTINELS.values()) + ["sentinel-pg-pass-77a2", "sentinel-redis-pass-91bd", offline.GENERATED_SECRET]

    found_in_secrets = set()
    for obj in result.kubernetes_objects():
        text = json.dumps(obj)
        hits = {n for n in needles if n in text}
        if obj["kind"] == "Secret":
            found_in_secrets |= hits
        else:
            assert not hits, f"{obj['kind']} {obj['metadata']['name']} holds a secret"
    # Each secret the stack uses did reach the Secret that delivers it.
    assert found_in_secrets >= {SENTINELS[k] for k in USED[stack]} | {offline.GENERATED_SECRET}
    for key, value in result.outputs.items():
        if key not in result.secret_outputs:
            assert not any(n in json.dumps(value) for n in needles), key
    # No env var carries a value that came from a secret.
    for obj in workloads(result):
        for container in containers(obj):
            for env in container.get("env", []):
                assert "value" not in env or not any(n in env["value"] for n in needles)


def test_thanos_in_prod(prod, dev):
    """prod's Prometheus pods upload 2h blocks through their sidecar; Query dials each replica's
    sidecar by its stable name and the store gateway; the bucket's keys are in Secrets only."""
    prometheus = prod.one("StatefulSet", "prometheus")
    names = [c["name"] for c in containers(prometheus)]
    assert "thanos-sidecar" in names
    assert {"--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h"} <= set(args_of(prometheus))
    endpoints = yaml.safe_load(prod.one("ConfigMap", "thanos-query-endpoints")["data"]["endpoints.yaml"])
    assert [e["address"] for e in endpoints["endpoints"]] == [
        "prometheus-0.prometheus-headless.monitoring.svc:10901", "prometheus-1.prometheus-headless.monitoring.svc:10901",
        "thanos-store.monitoring.svc:10901"]
    query = prod.one("Deployment", "thanos-query")
    assert query["spec"]["replicas"] == 2
    assert "--query.replica-label=replica" in args_of(query)
    compactor = prod.one("StatefulSet", "thanos-compactor")
    assert compactor["spec"]["replicas"] == 1  # a singleton: two compactors on one bucket corrupt it
    assert {"--retention.resolution-raw=30d", "--retention.resolution-5m=180d", "--retention.resolution-1h=2y"} <= \
        set(args_of(compactor))
    for name in ("prometheus-thanos-sidecar-objstore", "thanos-store-objstore", "thanos-compactor-objstore"):
        objstore = yaml.safe_load(prod.one("Secret", name)["stringData"]["objstore.yml"])
        assert objstore["type"] == "S3" and objstore["config"]["bucket"] == "football-monitoring-metrics"
    # dev runs no Thanos component (nor its rules and dashboard: test_thanos_data_files_only_where_thanos_runs).
    assert not [o for o in dev.kubernetes_objects()
                if o["metadata"].get("labels", {}).get("app.kubernetes.io/name", "").startswith("thanos")]
    assert [o for o in prod.kubernetes_objects()
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/name", "").startswith("thanos")]
    assert "thanos-sidecar" not in [c["name"] for c in containers(dev.one("StatefulSet", "prometheus"))]


def dashboard_files(result) -> dict[str, str]:
    return {f: t for o in result.find("ConfigMap") if o["metadata"]["name"].startswith("grafana-dashboards-")
            for f, t in o["data"].items()}


# What a rule or panel of Thanos reads: its metrics, or one of its jobs.
THANOS_READ = re.compile(r'\bthanos_[a-z_]+|job=~?\\?"thanos-')


def test_thanos_data_files_only_where_thanos_runs(prod, dev):
    """Prometheus loads rules/thanos.yaml and Grafana gets dashboards/thanos.json where Thanos runs
    (prod) and nowhere else (dev, whose Docker host gets the same files as dev on Kubernetes:
    tests/test_docker_platform.py): elsewhere they are rules that can never fire and panels that
    can only be empty. Nothing else of Thanos is in any other file."""
    from components import data
    prod_rules = prod.one("ConfigMap", "prometheus-rules")["data"]
    dev_rules = dev.one("ConfigMap", "prometheus-rules")["data"]
    assert prod_rules[data.THANOS_RULE_FILE] == data.rule_files()[data.THANOS_RULE_FILE]
    assert [g["name"] for g in yaml.safe_load(prod_rules[data.THANOS_RULE_FILE])["groups"]] == ["meta.thanos", "meta.thanos-rule"]
    assert set(prod_rules) - set(dev_rules) == {data.THANOS_RULE_FILE}
    prod_dashboards, dev_dashboards = dashboard_files(prod), dashboard_files(dev)
    assert prod_dashboards == data.dashboards()
    assert set(prod_dashboards) - set(dev_dashboards) == {data.THANOS_DASHBOARD}
    for name, text in [*dev_rules.items(), *dev_dashboards.items()]:
        assert not THANOS_READ.search(text), (name, THANOS_READ.search(text).group())
    # The check above finds what the Thanos files read.
    assert THANOS_READ.search(prod_rules[data.THANOS_RULE_FILE]) and THANOS_READ.search(prod_dashboards[data.THANOS_DASHBOARD])


def test_the_store_gateways_memory_pools_fit_its_container(prod):
    """Thanos' store gateway holds a chunk pool and an index cache in memory (upstream defaults: 2 GB
    and 250 MB, more than its container's limit): their sum must leave room for the requests' heap."""
    from components.settings.types import quantity_bytes
    store = prod.one("StatefulSet", "thanos-store")
    [main] = [c for c in containers(store) if c["name"] == "thanos-store"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in main["args"][1:] if "=" in a)
    pools = sum(quantity_bytes(flags[f].replace("MiB", "Mi")) for f in ("chunk-pool-size", "index-cache-size"))
    assert pools <= 0.75 * quantity_bytes(main["resources"]["limits"]["memory"]), (flags, main["resources"])


def test_every_thanos_container_caps_its_go_heap_below_its_memory_limit():
    """The pinned Thanos sets no GOMEMLIMIT unless told (--enable-auto-gomemlimit defaults to false,
    cmd/thanos/config.go), so its heap grows to twice the live set between collections and the
    container is OOM-killed at its limit; each one, the optional query frontend and the Ruler of a
    sharded stack too, must derive it from its own limit."""
    from components.settings.images import DEFAULT_IMAGES
    result = offline.run("prod", {"thanos": {"queryFrontend": True}, "prometheus": {"shards": 2}})
    thanos = [(obj["metadata"]["name"], c) for obj in workloads(result) for c in containers(obj)
              if c["image"] == DEFAULT_IMAGES["thanos"]]
    assert {c["args"][0] for _, c in thanos} == {"sidecar", "query", "store", "compact", "query-frontend", "rule"}
    problems = [f"{name}/{c['name']}: {c['args']} {c['resources']}" for name, c in thanos
                if "--enable-auto-gomemlimit" not in c["args"] or not c["resources"].get("limits", {}).get("memory")]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind, connection, port", [
    ("postgres", "postgresql://monitor:pw@postgres.app.svc:6432/football?sslmode=require", 6432),
    ("postgres", "postgresql://monitor:pw@postgres.app.svc/football", None),
    ("postgres", "host=postgres.app.svc port=6543 user=monitor password='p w' dbname=football", 6543),
    ("postgres", "host=postgres.app.svc user=monitor password=x", None),
    ("redis", "redis://:pw@redis.app.svc:6380", 6380),
    ("redis", "rediss://redis.app.svc", None),
    ("redis", "redis.app.svc:6390", 6390),
])
def test_the_server_port_a_connection_string_names(kind, connection, port):
    from components.metrics.exporters import connection_port
    assert connection_port(kind, connection) == port


def test_a_connection_string_naming_another_port_than_the_egress_allows_is_warned_of_without_the_secret(monkeypatch):
    from components.metrics import exporters
    warned = []
    monkeypatch.setattr(exporters.pulumi.log, "warn", lambda text, *a, **k: warned.append(text))
    assert exporters.warn_on_other_port("postgres", "postgresql://m:s3cret@db:6432/f", 5432) == \
        "postgresql://m:s3cret@db:6432/f"
    assert exporters.warn_on_other_port("postgres", "postgresql://m:s3cret@db:5432/f", 5432)
    assert warned == ["the postgres connection string names port 6432, while exporters.postgres.serverPort is 5432: "
                      "the postgres-exporter NetworkPolicy lets it reach port 5432 only"]
    result = offline.run("prod", {"exporters": {"postgres": {"serverPort": 6432}}})
    [policy] = [o for o in result.kubernetes_objects() if o["kind"] == "NetworkPolicy"
                and o["metadata"]["name"] == "postgres-exporter"]
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])} >= {6432}
    assert 5432 not in {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


@pytest.mark.parametrize("part", ["tracing", "logging"])
def test_an_optional_part_switched_off_takes_its_rules_and_dashboard_with_it(dev, part):
    """Like Thanos': a stack without tracing (or logging) loads no rule that can never fire and no
    dashboard that can only be empty; everything else it ships is as with the part on."""
    from components import data
    from tests.conftest import run_on_kubernetes
    rules, dashboard = data.OPTIONAL_PARTS[part]
    off = run_on_kubernetes("dev", {part: {"enabled": False}})
    on_rules, off_rules = dev.one("ConfigMap", "prometheus-rules")["data"], off.one("ConfigMap", "prometheus-rules")["data"]
    assert on_rules[rules] == data.rule_files()[rules]
    assert set(on_rules) - set(off_rules) == {rules}
    assert {n: t for n, t in on_rules.items() if n != rules} == off_rules
    on_dashboards, off_dashboards = dashboard_files(dev), dashboard_files(off)
    assert set(on_dashboards) - set(off_dashboards) == {dashboard}
    assert {n: t for n, t in on_dashboards.items() if n != dashboard} == off_dashboards
