"""The logging stack as dev (1 node) and prod (3 nodes) declare it, under Pulumi's mock runtime.

Node counts, discovery and the first-bootstrap guard, anti-affinity and the disruption budget,
heap against the memory limit, TLS and security, secrets only in Secrets, lifecycle and
snapshot policies per environment, the bootstrap Job, Kibana's service token, Filebeat's
registry and RBAC, network flows, the Grafana datasource, settings validation, and that the
checks that matter catch a broken copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools import offline
from components.logging import configs
from components.settings import PROJECT, SettingsError
from tests.conftest import KUBERNETES, run_on_kubernetes

NODES = {"dev": 1, "prod": 3}
HEAP_MB = {"dev": 512, "prod": 4096}  # half of 1Gi and of 8Gi (Pulumi.<stack>.yaml)


def es_yml(result) -> dict:
    return yaml.safe_load(result.one("ConfigMap", "elasticsearch-config")["data"]["elasticsearch.yml"])


def pod(result, kind: str, name: str) -> dict:
    return result.one(kind, name)["spec"]["template"]["spec"]


def main(result, kind: str, name: str) -> dict:
    return pod(result, kind, name)["containers"][0]


def env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def init_script(result) -> str:
    return pod(result, "StatefulSet", "elasticsearch")["initContainers"][0]["command"][2]


def policies(result) -> dict:
    return result.one("ConfigMap", "logging-bootstrap-policies")["data"]


# ------------------------------------------------------------------ Elasticsearch


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_node_count_and_discovery(runs, stack):
    result, nodes = runs[stack], NODES[stack]
    sts = result.one("StatefulSet", "elasticsearch")
    assert sts["spec"]["replicas"] == nodes
    config = es_yml(result)
    assert config["node.roles"] == ["master", "data", "ingest"]
    assert "cluster.initial_master_nodes" not in config  # only ever added by the init step, see below
    if nodes == 1:
        assert config["discovery.type"] == "single-node" and "discovery.seed_hosts" not in config
        assert "initial_master_nodes" not in init_script(result)
    else:
        assert "discovery.type" not in config
        assert config["discovery.seed_hosts"] == [f"elasticsearch-headless.{result.outputs['namespace']}.svc"]
        assert "cluster.initial_master_nodes: [elasticsearch-0, elasticsearch-1, elasticsearch-2]" in init_script(result)
    headless = result.one("Service", "elasticsearch-headless")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["ports"]} == {9200, 9300}


def run_init_step(script: str, tmp_path: Path, *, existing_state: bool, max_map_count: int = 262144,
                  expect_success: bool = True) -> str:
    """Run the init step's script with sh against a fake image, data directory and kernel setting;
    return the elasticsearch.yml it leaves for Elasticsearch (or, failing, what it said)."""
    root = tmp_path / ("with-state" if existing_state else "empty") / str(max_map_count)
    es_home, mnt = root / "es", root / "mnt"
    for d in (es_home / "config", es_home / "bin", es_home / "config-runtime", es_home / "data", mnt / "config",
              mnt / "secrets"):
        d.mkdir(parents=True)
    (es_home / "config" / "jvm.options").write_text("-Xss1m\n")
    keystore = es_home / "bin" / "elasticsearch-keystore"
    keystore.write_text('#!/bin/sh\necho "$@" >> "$ES_PATH_CONF/keystore.log"\ncat > /dev/null\n')
    keystore.chmod(0o755)
    (mnt / "config" / "elasticsearch.yml").write_text("cluster.name: test\n")
    for name in ("ca.crt", "http.crt", "http.key", "transport.crt", "transport.key", "elastic-password",
                 "service_tokens", "s3-access-key", "s3-secret-key"):
        (mnt / "secrets" / name).write_text("x\n")
    if existing_state:
        (es_home / "data" / "_state").mkdir()
    (root / "max_map_count").write_text(f"{max_map_count}\n")
    script = script.replace(configs.ES_HOME, str(es_home)).replace("/mnt/elasticsearch", str(mnt)) \
        .replace("/proc/sys/vm/max_map_count", str(root / "max_map_count"))
    proc = subprocess.run([shutil.which("dash") or "sh", "-c", script], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "ES_PATH_CONF": str(es_home / "config-runtime")})
    if not expect_success:
        assert proc.returncode != 0
        return proc.stderr
    assert proc.returncode == 0, proc.stderr
    return (es_home / "config-runtime" / "elasticsearch.yml").read_text()


def test_initial_master_nodes_only_on_the_first_start(prod, tmp_path):
    script = init_script(prod)
    first = run_init_step(script, tmp_path, existing_state=False)
    assert "cluster.initial_master_nodes: [elasticsearch-0, elasticsearch-1, elasticsearch-2]" in first
    restart = run_init_step(script, tmp_path, existing_state=True)
    assert "initial_master_nodes" not in restart and restart.startswith("cluster.name: test")


def test_bootstrap_guard_check_catches_a_script_without_it(prod, tmp_path):
    broken = init_script(prod).replace("[ -e /usr/share/elasticsearch/data/_state ]", "false")
    assert broken != init_script(prod)
    assert "initial_master_nodes" in run_init_step(broken, tmp_path, existing_state=True)


def test_init_step_fills_keystore_and_config(prod, dev, tmp_path):
    run_init_step(init_script(prod), tmp_path, existing_state=False)
    log = (tmp_path / "empty" / "262144" / "es" / "config-runtime" / "keystore.log").read_text().split("\n")
    assert log[:4] == ["create", "add --stdin bootstrap.password", "add --stdin s3.client.default.access_key",
                       "add --stdin s3.client.default.secret_key"]
    assert "s3.client" not in init_script(dev)  # no snapshots in dev
    for name in ("certs/http.key", "certs/transport.crt", "service_tokens", "jvm.options"):
        assert (tmp_path / "empty" / "262144" / "es" / "config-runtime" / name).exists(), name


def test_anti_affinity_and_disruption_budget(dev, prod):
    spec = pod(prod, "StatefulSet", "elasticsearch")
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == "elasticsearch"
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert prod.one("PodDisruptionBudget", "elasticsearch")["spec"]["maxUnavailable"] == 1
    assert "affinity" not in pod(dev, "StatefulSet", "elasticsearch")
    assert not dev.find("PodDisruptionBudget", "elasticsearch")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_heap_is_half_the_memory_limit(runs, stack):
    container = main(runs[stack], "StatefulSet", "elasticsearch")
    limit = configs.quantity_bytes(container["resources"]["limits"]["memory"])
    heap = HEAP_MB[stack]
    assert env(container)["ES_JAVA_OPTS"].startswith(f"-Xms{heap}m -Xmx{heap}m ")
    assert heap * 2**20 == limit / 2
    assert container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"]
    jvm = runs[stack].one("ConfigMap", "logstash-settings")["data"]["jvm.options"]
    ls_limit = configs.quantity_bytes(main(runs[stack], "StatefulSet", "logstash")["resources"]["limits"]["memory"])
    assert f"-Xmx{int(ls_limit / 2 // 2**20)}m" in jvm


def test_heap_follows_the_setting():
    # (an override replaces the stack file's whole logging section)
    result = run_on_kubernetes("dev", {"logging": {"elasticsearch": {"heapPercent": 40, "resources": {
        "requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}}}}})
    assert env(main(result, "StatefulSet", "elasticsearch"))["ES_JAVA_OPTS"].startswith("-Xms409m -Xmx409m ")


@pytest.mark.parametrize("stack, size, queue", [("dev", "5Gi", "2Gi"), ("prod", "200Gi", "20Gi")])
def test_volume_sizes_from_settings(runs, stack, size, queue):
    for name, expected in (("elasticsearch", size), ("logstash", queue)):
        sts = runs[stack].one("StatefulSet", name)
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == expected
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_security_and_tls(runs, stack):
    config = es_yml(runs[stack])
    assert config["xpack.security.enabled"] is True
    for layer in ("http", "transport"):
        assert config[f"xpack.security.{layer}.ssl.enabled"] is True
        assert config[f"xpack.security.{layer}.ssl.key"] == f"certs/{layer}.key"
        assert config[f"xpack.security.{layer}.ssl.certificate_authorities"] == ["certs/ca.crt"]
    assert config["node.store.allow_mmap"] is (stack == "prod")  # dev turns it off for hosts left at 65530
    secret = runs[stack].one("Secret", "elasticsearch-secrets")["stringData"]
    assert {"ca.crt", "http.crt", "http.key", "transport.crt", "transport.key", "elastic-password",
            "service_tokens"} <= set(secret)
    assert secret["http.key"] == offline.PLACEHOLDER_KEY_PEM
    assert runs[stack].outputs["elasticsearchUrl"] == f"https://elasticsearch.{runs[stack].outputs['namespace']}.svc:9200"


def test_certificates_name_every_service_and_node(prod):
    requests = {r.name: r.inputs for r in prod.resources if r.type == "tls:index/certRequest:CertRequest"}
    assert set(requests) == {"elasticsearch-http-csr", "elasticsearch-transport-csr"}
    names = requests["elasticsearch-http-csr"]["dnsNames"]
    for name in ("elasticsearch.monitoring.svc", "elasticsearch-headless.monitoring.svc",
                 "elasticsearch-2.elasticsearch-headless.monitoring.svc", "localhost"):
        assert name in names
    ca = [r.inputs for r in prod.resources if r.type == "tls:index/selfSignedCert:SelfSignedCert"]
    assert len(ca) == 1 and ca[0]["isCaCertificate"] is True
    # Every private key is a secret input wherever it goes.
    for r in prod.resources:
        if r.type.startswith("tls:") and "privateKeyPem" in r.inputs:
            assert "privateKeyPem" in r.secret_inputs, r.name


def test_readiness_password_stays_off_the_command_line(prod):
    container = main(prod, "StatefulSet", "elasticsearch")
    ready = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "--config -" in ready and "-u " not in ready  # the password reaches curl on stdin, not argv
    alive = " ".join(container["livenessProbe"]["exec"]["command"])
    assert "_cluster/health" not in alive


def secret_hits(objects: list, needles: list) -> tuple[set, list]:
    """(needles found in Secrets, 'Kind name: needles' for every other object that holds one)."""
    found, leaks = set(), []
    for obj in objects:
        hits = {n for n in needles if n in json.dumps(obj)}
        if obj["kind"] == "Secret":
            found |= hits
        elif hits:
            leaks.append(f"{obj['kind']} {obj['metadata']['name']}: {sorted(hits)}")
    return found, leaks


def test_secret_check_catches_a_key_in_a_config_map(prod):
    objects = prod.kubernetes_objects()
    leaked = json.loads(json.dumps(prod.one("ConfigMap", "elasticsearch-config")))
    leaked["data"]["http.key"] = offline.PLACEHOLDER_KEY_PEM
    _, leaks = secret_hits(objects + [leaked], ["BEGIN PRIVATE KEY"])
    assert leaks == ["ConfigMap elasticsearch-config: ['BEGIN PRIVATE KEY']"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_secret_outside_kubernetes_secrets(stack):
    sentinels = {"loggingSnapshotAccessKey": "sentinel-s3-access-9f1d", "loggingSnapshotSecretKey": "sentinel-s3-secret-7c0b"}
    config, secret_keys = offline.stack_config(stack, KUBERNETES)
    for key, value in sentinels.items():
        config[f"{PROJECT}:{key}"] = value
    result = offline.run(stack, config=config, secret_keys=secret_keys)
    token = configs.service_token(offline.GENERATED_SECRET)
    needles = [offline.GENERATED_SECRET, token, "BEGIN PRIVATE KEY", *sentinels.values()]
    found, leaks = secret_hits(result.kubernetes_objects(), needles)
    assert leaks == []
    used = {offline.GENERATED_SECRET, token, "BEGIN PRIVATE KEY"}
    assert found >= (used | set(sentinels.values()) if stack == "prod" else used)
    assert "sentinel-s3" not in json.dumps(result.one("Secret", "kibana-secrets"))  # only where it is needed
    for key, value in result.outputs.items():
        if key not in result.secret_outputs:
            assert not any(n in json.dumps(value) for n in needles), key
    assert "elasticsearchPassword" in result.secret_outputs


# ------------------------------------------------------------------ retention and backups


def test_lifecycle_policy_per_environment(dev, prod):
    for result, days, replicas in ((dev, "3d", 0), (prod, "30d", 1)):
        files = policies(result)
        phases = json.loads(files["ilm-policy.json"])["policy"]["phases"]
        assert phases["hot"]["actions"]["rollover"] == {"max_age": "1d", "max_primary_shard_size": "25gb"}
        assert phases["delete"]["min_age"] == days and "delete" in phases["delete"]["actions"]
        template = json.loads(files["index-template.json"])
        assert template["index_patterns"] == ["logs-football-*"] and template["data_stream"] == {}
        assert template["template"]["settings"]["index.lifecycle.name"] == configs.ILM_POLICY
        assert template["template"]["settings"]["index.number_of_replicas"] == replicas
    # prod: no index is deleted before the nightly snapshot has it.
    delete = json.loads(policies(prod)["ilm-policy.json"])["policy"]["phases"]["delete"]["actions"]
    assert delete["wait_for_snapshot"] == {"policy": configs.SLM_POLICY}
    assert "wait_for_snapshot" not in json.loads(policies(dev)["ilm-policy.json"])["policy"]["phases"]["delete"]["actions"]


def test_snapshots_in_prod_only(dev, prod):
    assert "slm-policy.json" not in policies(dev) and "snapshot-repository.json" not in policies(dev)
    files = policies(prod)
    slm = json.loads(files["slm-policy.json"])
    assert slm["schedule"] == "0 30 1 * * ?" and slm["repository"] == "football-logs"
    # (max_count against the schedule: tests/test_logging_snapshots.py)
    assert slm["retention"]["expire_after"] == "90d" and slm["retention"]["min_count"] == 5
    assert slm["config"]["indices"] == ["logs-football-*"] and slm["config"]["include_global_state"] is False
    repository = json.loads(files["snapshot-repository.json"])
    assert repository == {"type": "s3", "settings": {"bucket": "football-prediction-log-snapshots", "client": "default",
                                                       "compress": True, "base_path": "prod"}}
    # S3 credentials: keystore entries from the Secret, never elasticsearch.yml.
    assert "s3.client.default.access_key" not in json.dumps(es_yml(prod))
    assert "s3-access-key" in prod.one("Secret", "elasticsearch-secrets")["stringData"]


def test_filesystem_snapshots_on_a_shared_claim():
    result = offline.run("prod", {"logging": {"snapshot": {"enabled": True, "type": "fs", "claimName": "log-snapshots"}}})
    spec = pod(result, "StatefulSet", "elasticsearch")
    assert {"name": "shared-0", "persistentVolumeClaim": {"claimName": "log-snapshots"}} in spec["volumes"]
    assert {"name": "shared-0", "mountPath": configs.ES_SNAPSHOTS} in spec["containers"][0]["volumeMounts"]
    assert es_yml(result)["path.repo"] == [configs.ES_SNAPSHOTS]
    assert json.loads(policies(result)["snapshot-repository.json"])["type"] == "fs"
    assert "s3-access-key" not in result.one("Secret", "elasticsearch-secrets")["stringData"]


def test_s3_endpoint_reaches_config_and_network_policy():
    result = offline.run("prod", {"logging": {"snapshot": {"enabled": True, "bucket": "logs",
                                                                  "endpoint": "minio.storage.svc:9000"}}})
    assert es_yml(result)["s3.client.default.endpoint"] == "minio.storage.svc:9000"
    egress = result.one("NetworkPolicy", "elasticsearch")["spec"]["egress"]
    assert {"ports": [{"port": 9000, "protocol": "TCP"}]} in egress


# ------------------------------------------------------------------ the bootstrap Job


def job(result) -> dict:
    jobs = result.find("Job")
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return jobs[0]


def test_bootstrap_job_is_hardened_and_runs_once(dev, prod):
    for result in (dev, prod):
        obj = job(result)
        assert obj["metadata"]["name"].startswith("logging-bootstrap-")
        spec = obj["spec"]["template"]["spec"]
        assert spec["restartPolicy"] == "OnFailure" and obj["spec"]["ttlSecondsAfterFinished"] > 0
        container = spec["containers"][0]
        assert container["image"].startswith("docker.io/curlimages/curl:") and container["args"][0] == "sh"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
        assert set(env(container)) == {"ELASTICSEARCH_URL", "KIBANA_URL"}  # credentials only as Secret files
        secret = result.one("Secret", "logging-bootstrap-secrets")["stringData"]
        # prod keeps its spans in this Elasticsearch (tracing.storage elasticsearch): fm-jaeger's password
        # too; dev's Jaeger keeps them in Badger and has no user here.
        jaeger = {"jaeger-password"} if result is prod else set()
        assert set(secret) == {"ca.crt", "elastic-password", "logstash-password", "exporter-password",
                               "grafana-password"} | jaeger
    resources = [r for r in prod.resources if r.type == "kubernetes:batch/v1:Job"]
    assert resources[0].inputs["metadata"]["name"] == resources[0].name


def test_bootstrap_job_reruns_only_when_its_data_changes(dev):
    same = run_on_kubernetes("dev")
    changed = run_on_kubernetes("dev", {"logging": {"retentionDays": 5}})
    assert job(same)["metadata"]["name"] == job(dev)["metadata"]["name"]
    assert job(changed)["metadata"]["name"] != job(dev)["metadata"]["name"]
    assert json.loads(policies(changed)["ilm-policy.json"])["policy"]["phases"]["delete"]["min_age"] == "5d"


def test_bootstrap_script_is_valid_sh_and_idempotent(tmp_path):
    script = configs.bootstrap_script()
    path = tmp_path / "bootstrap.sh"
    path.write_text(script)
    assert subprocess.run([shutil.which("dash") or "sh", "-n", str(path)]).returncode == 0
    calls = [line.split()[1:3] for line in script.splitlines() if line.strip().startswith("es ")]
    # Everything is a whole-object PUT (or a POST that is safe to repeat).
    assert {method for method, _ in calls} <= {"PUT", "POST"}
    assert [path for method, path in calls if method == "POST"] == ["/_nodes/reload_secure_settings"]
    assert "_import?overwrite=true" in script and "-u " not in script and "--user" not in script
    broken = tmp_path / "broken.sh"
    broken.write_text(script.replace("fi\n", "", 1))
    assert subprocess.run([shutil.which("dash") or "sh", "-n", str(broken)], capture_output=True).returncode != 0


def test_kibana_objects_are_provisioned(prod):
    objects = [json.loads(line) for line in policies(prod)["kibana-objects.ndjson"].splitlines()]
    by_type = {o["type"]: o for o in objects}
    assert by_type["index-pattern"]["attributes"]["title"] == "logs-football-*"
    search = json.loads(by_type["search"]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert "log.level" in search["query"]["query"] and "error" in search["query"]["query"]
    assert by_type["search"]["attributes"]["sort"][0] == ["service.name", "asc"]
    refs = {r["id"] for r in by_type["dashboard"]["references"]}
    assert refs == {"football-errors-by-service", "football-errors-by-service-table"}
    roles = {name for name in policies(prod) if name.startswith("role-")}
    # fm_jaeger_writer: prod's Jaeger keeps its spans here (tracing.storage elasticsearch).
    assert roles == {"role-fm_logstash_writer.json", "role-fm_metrics_reader.json", "role-fm_logs_reader.json",
                     "role-fm_jaeger_writer.json"}
    writer = json.loads(policies(prod)["role-fm_logstash_writer.json"])
    assert writer["indices"] == [{"names": ["logs-football-*"], "privileges": ["create_doc", "auto_configure"]}]


# ------------------------------------------------------------------ Kibana's service token


def test_service_token_format_matches_elasticsearch():
    # Elasticsearch's own test vector (ServiceAccountSingleNodeTests / file realm tests).
    assert configs.service_token("r5wdbdboQSe9vGOKwaJGAw", "token1", "elastic/fleet") == \
        "AAEAAWVsYXN0aWMvZmxlZXQvdG9rZW4xOnI1d2RiZGJvUVNlOXZHT0t3YUpHQXc"
    salt = __import__("base64").b64decode("8QN+eThJEaCd18sCP0nfzxJq2D9yhmSZgI20TDooYcE=")
    assert configs.service_token_hash("r5wdbdboQSe9vGOKwaJGAw", salt) == \
        "{PBKDF2_STRETCH}10000$8QN+eThJEaCd18sCP0nfzxJq2D9yhmSZgI20TDooYcE=$+0ELfqW4D2+/SlHvm/885dzv67qO2SMJg32Mv/9epXk="
    assert configs.service_token_hash("r5wdbdboQSe9vGOKwaJGAx", salt).split("$")[2] != \
        "+0ELfqW4D2+/SlHvm/885dzv67qO2SMJg32Mv/9epXk="  # the check can fail


def test_kibana_uses_the_service_token_not_a_superuser(prod):
    kibana_yml = yaml.safe_load(prod.one("ConfigMap", "kibana-config")["data"]["kibana.yml"])
    assert "elasticsearch.username" not in kibana_yml and "elasticsearch.password" not in kibana_yml
    assert kibana_yml["elasticsearch.hosts"] == ["https://elasticsearch.monitoring.svc:9200"]
    assert kibana_yml["elasticsearch.ssl.verificationMode"] == "full"
    assert kibana_yml["server.publicBaseUrl"] == "https://kibana.football-prediction.example.org"
    credentials = yaml.safe_load(prod.one("Secret", "kibana-secrets")["stringData"]["credentials.yml"])
    assert credentials["elasticsearch.serviceAccountToken"] == configs.service_token(offline.GENERATED_SECRET)
    tokens = prod.one("Secret", "elasticsearch-secrets")["stringData"]["service_tokens"]
    assert tokens == configs.service_tokens_file(offline.GENERATED_SECRET)
    assert tokens.startswith("elastic/kibana/football-monitoring:{PBKDF2_STRETCH}10000$")
    args = main(prod, "Deployment", "kibana")["args"]
    assert args.count("--config") == 2
    assert prod.outputs["kibanaExternalUrl"] == "https://kibana.football-prediction.example.org"
    assert prod.outputs["kibanaUrl"] == "http://kibana.monitoring.svc:5601"


# ------------------------------------------------------------------ Logstash and Filebeat


def test_logstash_queue_and_pipeline(prod):
    settings = yaml.safe_load(prod.one("ConfigMap", "logstash-settings")["data"]["logstash.yml"])
    # (how big: tests/test_logging_queue.py)
    assert settings["queue.type"] == "persisted" and settings["dead_letter_queue.enable"] is True
    assert settings["config.support_escapes"] is False
    from components.logging import pipeline
    assert prod.one("ConfigMap", "logstash-pipeline")["data"] == pipeline.pipeline_files()
    container = main(prod, "StatefulSet", "logstash")
    assert container["command"] == ["/usr/share/logstash/bin/logstash"]
    assert env(container)["ELASTICSEARCH_PASSWORD"] == {"secretKeyRef": {"name": "logstash-env",
                                                                           "key": "elasticsearch-password"}}
    assert prod.one("StatefulSet", "logstash")["spec"]["replicas"] == 2
    sidecar = pod(prod, "StatefulSet", "logstash")["containers"][1]
    assert sidecar["ports"] == [{"name": "exporter", "containerPort": 9198, "protocol": "TCP"}]


def test_filebeat_input_registry_and_rbac(prod):
    config = yaml.safe_load(prod.one("ConfigMap", "filebeat-config")["data"]["filebeat.yml"])
    inputs = config["filebeat.inputs"]
    assert [i["type"] for i in inputs] == ["filestream"] and inputs[0]["id"] == "football-container-logs"
    assert len({i["id"] for i in inputs}) == len(inputs)
    assert "add_kubernetes_metadata" in inputs[0]["processors"][0]
    assert config["output.logstash"]["hosts"] == ["logstash.monitoring.svc:5044"]
    spec = pod(prod, "DaemonSet", "filebeat")
    registry = [v for v in spec["volumes"] if v.get("hostPath", {}).get("type") == "DirectoryOrCreate"]
    assert registry == [{"name": "host-rw-0", "hostPath": {"path": "/var/lib/football-monitoring/filebeat",
                                                           "type": "DirectoryOrCreate"}}]
    container = spec["containers"][0]
    assert "/usr/share/filebeat/data/monitoring" in container["args"]  # one registry per stack namespace
    read_only = {m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")}
    assert {"/var/log/pods", "/var/log/containers"} <= read_only
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["tolerations"] == [{"operator": "Exists"}]
    role = prod.one("ClusterRole", "monitoring-filebeat")["rules"]
    assert role == [{"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["get", "list", "watch"]}]


def kubernetes_metadata_reads(processor: dict) -> set[tuple[str, str]]:
    """(API group, resource) that Filebeat 8.19's add_kubernetes_metadata reads with these settings
    (libbeat/processors/add_kubernetes_metadata, its documented defaults): the pods, their node and
    namespace unless disabled, the ReplicaSets behind a Deployment and the Jobs behind a CronJob
    unless disabled, and with use_kubeadm (default true) kube-system's kubeadm-config ConfigMap."""
    reads = {("", "pods")}
    extra = processor.get("add_resource_metadata") or {}
    for key, resource in (("node", ("", "nodes")), ("namespace", ("", "namespaces"))):
        if (extra.get(key) or {}).get("enabled", True):
            reads.add(resource)
    for key, resource in (("deployment", ("apps", "replicasets")), ("cronjob", ("batch", "jobs"))):
        if extra.get(key, True):
            reads.add(resource)
    if processor.get("use_kubeadm", True):
        reads.add(("", "configmaps"))
    return reads


def granted(result, namespace: str, account: str) -> set[tuple[str, str]]:
    """(API group, resource) a service account may get, list and watch through its bindings."""
    rules = []
    for binding in result.find("ClusterRoleBinding") + result.find("RoleBinding"):
        if any(s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace", namespace) == namespace
               for s in binding.get("subjects") or []):
            role = result.one(binding["roleRef"]["kind"], binding["roleRef"]["name"])
            rules += role["rules"]
    return {(group, resource) for rule in rules if {"get", "list", "watch"} <= set(rule["verbs"])
            for group in rule["apiGroups"] for resource in rule["resources"]}


def test_filebeat_reads_only_what_its_rbac_grants(runs):
    """Every Kubernetes read the metadata processors of the generated filebeat.yml make is granted to
    Filebeat's service account: a refused read is retried and logged forever, and the events lack it."""
    for result in runs.values():
        daemonset = result.one("DaemonSet", "filebeat")
        account = daemonset["spec"]["template"]["spec"]["serviceAccountName"]
        config = yaml.safe_load(result.one("ConfigMap", "filebeat-config")["data"]["filebeat.yml"])
        processors = [p["add_kubernetes_metadata"] for i in config["filebeat.inputs"] for p in i.get("processors", [])
                      if "add_kubernetes_metadata" in p]
        processors += [p["add_kubernetes_metadata"] for p in config.get("processors") or []
                       if "add_kubernetes_metadata" in p]
        assert processors, result.stack
        allowed = granted(result, daemonset["metadata"]["namespace"], account)
        for processor in processors:
            assert kubernetes_metadata_reads(processor) <= allowed, (result.stack, processor, allowed)


def unhardened(objects: list) -> list[str]:
    """Every init, main and sidecar container (Jobs included) that lacks a hardened default."""
    problems = []
    for obj in objects:
        if obj["kind"] not in ("StatefulSet", "Deployment", "DaemonSet", "Job"):
            continue
        spec = obj["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{obj['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities") == {"drop": ["ALL"]} and "privileged" not in sc):
                problems.append(f"{where}: security context")
            if not c.get("resources", {}).get("limits", {}).get("memory"):
                problems.append(f"{where}: no memory limit")
        for c in spec["containers"][1:]:
            if "livenessProbe" not in c or "readinessProbe" not in c:
                problems.append(f"{obj['metadata']['name']}/{c['name']}: probes")
    return problems


def test_every_init_and_sidecar_container_is_hardened(runs):
    for result in runs.values():
        assert unhardened(result.kubernetes_objects()) == []


def test_hardening_check_catches_a_writable_init_container(prod):
    broken = json.loads(json.dumps(prod.one("StatefulSet", "elasticsearch")))
    broken["spec"]["template"]["spec"]["initContainers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    del broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert unhardened([broken]) == ["elasticsearch/prepare-config: security context",
                                    "elasticsearch/elasticsearch: no memory limit"]


# ------------------------------------------------------------------ network, metrics, Grafana


def allowed_from(result, name) -> set:
    peers = set()
    for rule in result.one("NetworkPolicy", name)["spec"].get("ingress", []):  # absent: nothing in
        for peer in rule.get("from", [{}]):
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
            peers.add(labels.get("app.kubernetes.io/name") or "ns:" + namespace.get("kubernetes.io/metadata.name", "*"))
    return peers


def test_network_flows(prod):
    # The Jaeger collectors, query service and index cleaner: prod keeps its spans in this Elasticsearch.
    assert allowed_from(prod, "elasticsearch") == {"elasticsearch", "kibana", "logstash", "elasticsearch-exporter",
                                                   "logging-bootstrap", "grafana", "jaeger-collector", "jaeger",
                                                   "jaeger-es-index-cleaner"}
    assert allowed_from(prod, "logstash") == {"filebeat", "prometheus"}
    assert allowed_from(prod, "kibana") == {"ns:ingress-nginx", "logging-bootstrap"}
    assert allowed_from(prod, "filebeat") == {"prometheus"}
    assert allowed_from(prod, "logging-bootstrap") == set()
    out = prod.one("NetworkPolicy", "filebeat")["spec"]["egress"]
    # Filebeat runs in the node namespace: the peer names Logstash's namespace too.
    assert out[1] == {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "logstash",
                                                              "app.kubernetes.io/part-of": "football-monitoring"}},
                              "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                      "ports": [{"port": 5044, "protocol": "TCP"}]}


def test_prometheus_scrapes_the_logging_exporters(prod):
    config = yaml.safe_load(prod.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for job, port in (("elasticsearch-exporter", "metrics"), ("logstash", "exporter"), ("filebeat", "exporter")):
        keep = [r for r in jobs[job]["relabel_configs"] if r.get("action") == "keep"]
        assert [r["regex"] for r in keep] == [job, port]


def test_grafana_logs_datasource(prod, docker_dev):
    datasources = yaml.safe_load(prod.one("ConfigMap", "grafana-datasources")["data"]["datasources.yaml"])
    logs = {d["uid"]: d for d in datasources["datasources"]}["logs"]
    assert logs["type"] == "elasticsearch" and logs["url"] == "https://elasticsearch.monitoring.svc:9200"
    assert logs["jsonData"]["index"] == "logs-football-*" and logs["basicAuthUser"] == "fm-grafana"
    assert logs["secureJsonData"]["basicAuthPassword"] == "$__file{/etc/grafana/secrets/logs-password}"
    assert {"logs-password", "logs-ca.crt"} <= set(prod.one("Secret", "grafana-admin")["stringData"])
    # On a Docker host the same files arrive as uploads, the password one read-only for Grafana alone.
    grafana = {u["file"]: u for u in docker_dev.container("grafana").inputs["uploads"]}
    password = grafana["/etc/grafana/secrets/logs-password"]
    assert password["permissions"] == "0400" and password["owner"] == "472"
    assert "uploads" in docker_dev.container("grafana").secret_inputs


# ------------------------------------------------------------------ settings


def fail_with(overrides: dict, stack: str = "prod") -> str:
    with pytest.raises(SettingsError) as info:
        offline.run(stack, overrides)
    return str(info.value)


@pytest.mark.parametrize("overrides, expected", [
    ({"logging": {"elasticsearch": {"nodes": 2}}},
     "football-monitoring:logging.elasticsearch.nodes = 2 is not valid: expected 1 (a single node) or 3 or more"),
    ({"logging": {"elasticsearch": {"nodes": 10}}},
     "football-monitoring:logging.elasticsearch.nodes = 10 is not valid: expected a whole number from 1 to 9"),
    ({"logging": {"snapshot": {"enabled": True, "type": "s3", "bucket": None}}},
     "football-monitoring:logging.snapshot.bucket is not set: expected a bucket when logging.snapshot.enabled is true"),
    ({"logging": {"snapshot": {"enabled": True, "type": "fs"}}},
     "football-monitoring:logging.snapshot.claimName is not set: expected an existing ReadWriteMany"),
    ({"logging": {"snapshot": {"type": "nfs"}}},
     "football-monitoring:logging.snapshot.type = 'nfs' is not valid: expected one of s3, fs"),
    ({"logging": {"snapshot": {"schedule": "daily"}}},
     "football-monitoring:logging.snapshot.schedule = 'daily' is not valid: expected an Elasticsearch cron expression"),
    ({"logging": {"snapshot": {"endpoint": "https://minio"}}},
     "football-monitoring:logging.snapshot.endpoint = 'https://minio' is not valid: expected a host or host:port"),
    ({"logging": {"retentionDays": 0}},
     "football-monitoring:logging.retentionDays = 0 is not valid: expected a whole number from 1 to 3650"),
    ({"logging": {"elasticsearch": {"resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "512Mi"}}}}},
     "football-monitoring:logging.elasticsearch.resources.limits.memory = '512Mi' is not valid: expected at least 1Gi"),
    ({"logging": {"logstash": {"resources": {"requests": {"memory": "4Gi"}}}}},
     "football-monitoring:logging.logstash.resources.requests.memory = '4Gi' is not valid: expected at most "
     "logging.logstash.resources.limits.memory (2Gi)"),
    ({"logging": {"enabeld": True}},
     "football-monitoring:logging.enabeld is not a known setting; did you mean logging.enabled?"),
])
def test_bad_logging_settings(overrides, expected):
    assert expected in fail_with(overrides)


@pytest.mark.parametrize("overrides, expected", [
    ({"logging": {"elasticsearch": {"nodes": 3}}},
     "football-monitoring:logging.elasticsearch.nodes = 3 is not valid on platform docker: expected 1"),
    ({"logging": {"logstash": {"replicas": 2}}},
     "football-monitoring:logging.logstash.replicas = 2 is not valid on platform docker: expected 1"),
    ({"logging": {"kibana": {"host": "kibana.example.org"}}},
     "football-monitoring:logging.kibana.host = 'kibana.example.org' is not valid on platform docker: expected empty"),
])
def test_logging_on_a_docker_host_is_one_of_each(overrides, expected):
    assert expected in fail_with(overrides, stack="dev")


def test_logging_can_be_turned_off_on_a_docker_host():
    result = offline.run("dev", {"logging": {"enabled": False}})
    assert not [c for c in result.containers() if c.name in ("elasticsearch", "logstash", "kibana", "filebeat")]
    assert "elasticsearchUrl" not in result.outputs and "kibanaExternalUrl" not in result.outputs
    grafana = {u["file"]: u["content"] for u in result.container("grafana").inputs["uploads"]}
    datasources = yaml.safe_load(grafana["/etc/grafana/provisioning/datasources/datasources.yaml"])["datasources"]
    assert "logs" not in {d["uid"] for d in datasources}


def test_logging_can_be_turned_off_on_kubernetes():
    # prod's tracing keeps its spans in this Elasticsearch, so it goes too (without it the settings are
    # refused: test_tracing.py::test_bad_tracing_settings_fail_with_a_clear_message).
    result = offline.run("prod", {"logging": {"enabled": False}, "tracing": {"enabled": False}})
    assert not result.find("StatefulSet", "elasticsearch") and "kibanaUrl" not in result.outputs
    names = {d["uid"] for d in yaml.safe_load(result.one("ConfigMap", "grafana-datasources")["data"]
                                              ["datasources.yaml"])["datasources"]}
    assert "logs" not in names


def test_s3_credentials_are_required_secrets_in_prod():
    config, secret_keys = offline.stack_config("prod")
    del config[f"{PROJECT}:loggingSnapshotSecretKey"]
    with pytest.raises(SettingsError) as info:
        offline.run("prod", config=config, secret_keys=secret_keys)
    assert "football-monitoring:loggingSnapshotSecretKey is not set: expected a secret" in str(info.value)
    # Not needed where snapshots are off (dev on Kubernetes).
    config, secret_keys = offline.stack_config("dev", KUBERNETES)
    del config[f"{PROJECT}:loggingSnapshotSecretKey"], config[f"{PROJECT}:loggingSnapshotAccessKey"]
    offline.run("dev", config=config, secret_keys=secret_keys)


def test_tracing_can_keep_spans_in_this_elasticsearch(prod, dev):
    tracing = yaml.safe_load((Path(__file__).resolve().parent.parent / "Pulumi.prod.yaml").read_text())["config"][
        "football-monitoring:tracing"]
    result = offline.run("prod", {"tracing": {**tracing, "enabled": True, "storage": "elasticsearch"}})
    assert {"jaeger-collector", "jaeger", "jaeger-es-index-cleaner"} <= allowed_from(result, "elasticsearch")
    role = json.loads(policies(result)["role-fm_jaeger_writer.json"])
    assert role["indices"] == [{"names": ["jaeger-jaeger-*"], "privileges": ["all"]}]
    assert "jaeger-password" in result.one("Secret", "logging-bootstrap-secrets")["stringData"]
    # Only when tracing uses it: not with tracing off, nor where Jaeger keeps spans in Badger (dev).
    off = offline.run("prod", {"tracing": {**tracing, "enabled": False}})
    for without in (off, dev):
        assert "role-fm_jaeger_writer.json" not in policies(without)
        assert "jaeger-password" not in without.one("Secret", "logging-bootstrap-secrets")["stringData"]
        assert not {"jaeger-collector", "jaeger", "jaeger-es-index-cleaner"} & allowed_from(without, "elasticsearch")
