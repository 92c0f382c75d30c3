"""The dev stack on a single Docker host: same services, same renderers, Docker's hardening."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import subprocess
import time

import pytest
import yaml

from components.platform import docker as docker_platform
from tools import offline
from tools import render
from components.settings import DEFAULT_IMAGES, PROJECT, Resources
from components.platform.workload import InitStep, Port, ServiceSpec
from tests.config_checks import run
from tests import promql_names as pn
from tests.conftest import KUBERNETES, ROOT, require_tool

PUBLISHED = {"grafana": 3000, "prometheus": 9090, "alertmanager": 9093, "jaeger": 16686, "kibana": 5601}
LOGGING = {"elasticsearch", "elasticsearch-exporter", "logstash", "logstash-exporter", "kibana", "filebeat",
           "filebeat-exporter", "logging-bootstrap"}
SIDECARS = {"logstash-exporter": "logstash", "filebeat-exporter": "filebeat"}
ELASTIC = {"elasticsearch", "logstash", "kibana", "filebeat"}  # images with curl and no wget
# Images without any HTTP client (FROM scratch): Prometheus' `up` is their health signal.
NO_HEALTHCHECK = {"redis-exporter", "logstash-exporter"}
DEMO = {"football-prediction-api", "football-prediction-worker"}  # built FROM python: no wget, no curl


def uploads(container) -> dict[str, str]:
    return {u["file"]: u["content"] for u in container.inputs.get("uploads", [])}


def test_network_volumes_and_containers(docker_dev):
    names = {c.name for c in docker_dev.containers()}
    assert names == {"prometheus", "alertmanager", "grafana", "node-exporter", "cadvisor", "blackbox-exporter",
                     "postgres-exporter", "redis-exporter", "jaeger"} | LOGGING | DEMO | {"service-level-report"}
    # Jaeger all-in-one (tracing.enabled); the report waits for its schedule (report.enabled)
    network = [r for r in docker_dev.resources if r.type == "docker:index/network:Network"]
    assert [n.inputs["name"] for n in network] == ["fm-dev"]
    volumes = {r.inputs["name"] for r in docker_dev.resources if r.type == "docker:index/volume:Volume"}
    assert volumes == {"fm-dev-prometheus-data", "fm-dev-alertmanager-data", "fm-dev-grafana-data",
                       "fm-dev-jaeger-data",  # Jaeger's Badger store
                       "fm-dev-elasticsearch-data", "fm-dev-logstash-data",  # indices; Logstash's persistent queue
                       "fm-dev-filebeat-state-0",  # Filebeat's registry (a host directory on Kubernetes)
                       "fm-dev-service-level-report-data"}  # the reports
    images = {r.inputs["name"] for r in docker_dev.resources if r.type == "docker:index/remoteImage:RemoteImage"}
    assert images == {DEFAULT_IMAGES[k] for k in ("prometheus", "alertmanager", "grafana", "nodeExporter", "cadvisor",
                                                  "blackboxExporter", "postgresExporter", "redisExporter",
                                                  "jaeger", "elasticsearch", "elasticsearchExporter", "logstash",
                                                  "logstashExporter", "kibana", "filebeat", "beatExporter", "curl")}
    prometheus = docker_dev.container("prometheus").inputs
    assert {"volumeName": "fm-dev-prometheus-data", "containerPath": "/prometheus"} in prometheus["volumes"]
    assert "retention:\n      time: 3d" in uploads(docker_dev.container("prometheus"))["/etc/prometheus/config/prometheus.yml"]


def test_hardening_on_docker(docker_dev):
    for c in docker_dev.containers():
        i = c.inputs
        assert i["readOnly"] is True, c.name
        assert i["capabilities"] == {"drops": ["ALL"]}, c.name
        assert i["securityOpts"] == ["no-new-privileges:true"], c.name
        assert i["restart"] == ("on-failure" if c.name == "logging-bootstrap" else "unless-stopped"), c.name
        assert i["memory"] > 0 and i["memoryReservation"] > 0, c.name
        assert i["logOpts"] == {"max-size": "10m", "max-file": "3"}, c.name
        assert "privileged" not in i, c.name
        assert all("noexec" in options or path == "/tmp" and c.name in ("elasticsearch", "logstash")
                   for path, options in i.get("tmpfs", {}).items()), c.name
        if c.name in ("cadvisor", "filebeat"):
            assert i["user"] == "0:0"  # the listed HOST_ACCESS exceptions
        else:
            assert not i["user"].startswith("0:"), c.name
        check = i.get("healthcheck", {}).get("tests", [])
        if c.name in NO_HEALTHCHECK or c.name in ("logging-bootstrap", "service-level-report"):  # serve nothing
            assert "healthcheck" not in i, c.name
        elif c.name == "elasticsearch":
            assert check[:3] == ["CMD", "/bin/sh", "-c"] and "_cluster/health" in check[3]  # the readiness probe
        elif c.name in ELASTIC:
            assert check[:3] == ["CMD", "curl", "--fail"], c.name
        elif c.name in DEMO:
            assert check[:3] == ["CMD", "python", "-c"] and check[-1].endswith("/health"), c.name
        else:
            assert check[:3] == ["CMD", "wget", "-q"], c.name


def test_only_the_uis_are_published_on_localhost(docker_dev):
    for c in docker_dev.containers():
        ports = c.inputs.get("ports", [])
        if c.name in PUBLISHED or c.name == "elasticsearch":  # its HTTPS API, for verification
            port = PUBLISHED.get(c.name, 9200)
            assert ports == [{"internal": port, "external": port, "ip": "127.0.0.1", "protocol": "tcp"}]
        else:
            assert ports == [], c.name
    assert docker_dev.outputs["grafanaExternalUrl"] == "http://localhost:3000"
    assert docker_dev.outputs["prometheusExternalUrl"] == "http://localhost:9090"
    assert docker_dev.outputs["jaegerExternalUrl"] == "http://localhost:16686"
    assert docker_dev.outputs["kibanaExternalUrl"] == "http://localhost:5601"
    assert docker_dev.outputs["grafanaUrl"] == "http://grafana:3000"
    assert docker_dev.outputs["elasticsearchUrl"] == "https://elasticsearch:9200"
    assert docker_dev.outputs["elasticsearchExternalUrl"] == "https://localhost:9200"


def test_host_access_only_for_node_container_and_log_collection(docker_dev):
    for c in docker_dev.containers():
        i = c.inputs
        if c.name == "node-exporter":
            assert i["networkMode"] == "host" and i["pidMode"] == "host"
            assert {m["source"] for m in i["mounts"]} == {"/proc", "/sys", "/"}
        elif c.name == "cadvisor":
            assert all(m["readOnly"] for m in i["mounts"])
        elif c.name == "filebeat":
            assert {(m["source"], m["target"], m["readOnly"]) for m in i["mounts"]} == {
                ("/var/lib/docker/containers", "/var/lib/docker/containers", True),
                ("/var/run", "/host/var/run", True)}
            assert "pidMode" not in i and "devices" not in i
            assert {"volumeName": "fm-dev-filebeat-state-0", "containerPath": "/usr/share/filebeat/data"} in i["volumes"]
        elif c.name in SIDECARS:
            # In the service container's network namespace, as in a pod.
            assert i["networkMode"] == f"container:{offline.mock_id(SIDECARS[c.name])}", c.name
            assert "networksAdvanced" not in i and "mounts" not in i, c.name
        else:
            assert "mounts" not in i and "networkMode" not in i and "pidMode" not in i, c.name
            assert i["networksAdvanced"] == [{"name": "fm-dev", "aliases": [c.name]}]


def test_config_files_come_from_the_same_renderers_as_on_kubernetes(docker_dev, dev):
    files = {c.name: uploads(c) for c in docker_dev.containers()}
    same = {
        ("blackbox-exporter", "/etc/blackbox/blackbox.yml"): dev.one("ConfigMap", "blackbox-exporter-config")["data"]["blackbox.yml"],
        ("alertmanager", "/etc/alertmanager/config/alertmanager.yml"): dev.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"],
        ("grafana", "/etc/grafana/provisioning/dashboards/football-monitoring.yaml"):
            dev.one("ConfigMap", "grafana-dashboard-provider")["data"]["football-monitoring.yaml"],
        ("elasticsearch", "/mnt/elasticsearch/config/elasticsearch.yml"):
            dev.one("ConfigMap", "elasticsearch-config")["data"]["elasticsearch.yml"],
        ("logging-bootstrap", "/etc/logging-bootstrap/script/bootstrap.sh"):
            dev.one("ConfigMap", "logging-bootstrap-script")["data"]["bootstrap.sh"],
    }
    for (name, path), text in same.items():
        assert files[name][path] == text, path
    for container, directory, config_map in (("logstash", "/etc/logstash-pipeline", "logstash-pipeline"),
                                             ("logstash", "/etc/logstash", "logstash-settings"),
                                             ("logging-bootstrap", "/etc/logging-bootstrap/policies",
                                              "logging-bootstrap-policies")):
        assert {p.rsplit("/", 1)[1]: t for p, t in files[container].items() if p.rsplit("/", 1)[0] == directory} \
            == dev.one("ConfigMap", config_map)["data"], config_map
    rules = dev.one("ConfigMap", "prometheus-rules")["data"]
    assert {p.rsplit("/", 1)[1]: t for p, t in files["prometheus"].items() if "/rules/" in p} == rules
    dashboards = {f: t for o in dev.find("ConfigMap") if o["metadata"]["name"].startswith("grafana-dashboards-")
                  for f, t in o["data"].items()}
    assert {p.rsplit("/", 1)[1]: t for p, t in files["grafana"].items() if "dashboards/" in p and p.endswith(".json")} == dashboards
    # Only the addresses differ: service names on the Docker network instead of cluster DNS.
    kube_ds = dev.one("ConfigMap", "grafana-datasources")["data"]["datasources.yaml"]
    assert files["grafana"]["/etc/grafana/provisioning/datasources/datasources.yaml"] == \
        kube_ds.replace(".monitoring-dev.svc", "")
    assert {d["uid"] for d in yaml.safe_load(kube_ds)["datasources"]} >= {"prometheus", "logs", "traces"}
    kibana = yaml.safe_load(files["kibana"]["/etc/kibana/config/kibana.yml"])
    kube_kibana = yaml.safe_load(dev.one("ConfigMap", "kibana-config")["data"]["kibana.yml"])
    assert kibana.pop("server.publicBaseUrl") == "http://localhost:5601"  # no ingress for dev on Kubernetes
    assert kibana["elasticsearch.hosts"] == ["https://elasticsearch:9200"]
    assert {**kibana, "elasticsearch.hosts": kube_kibana["elasticsearch.hosts"]} == kube_kibana
    docker_prom = yaml.safe_load(files["prometheus"]["/etc/prometheus/config/prometheus.yml"])
    kube_prom = yaml.safe_load(dev.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    assert docker_prom["global"] == kube_prom["global"] and docker_prom["rule_files"] == kube_prom["rule_files"]
    assert docker_prom["storage"] == kube_prom["storage"]
    # Filebeat differs where the logs are: the same file but for its input.
    filebeat = yaml.safe_load(files["filebeat"]["/etc/filebeat/filebeat.yml"])
    kube_filebeat = yaml.safe_load(dev.one("ConfigMap", "filebeat-config")["data"]["filebeat.yml"])
    docker_input, kube_input = filebeat.pop("filebeat.inputs")[0], kube_filebeat.pop("filebeat.inputs")[0]
    assert filebeat == {**kube_filebeat, "output.logstash": {**kube_filebeat["output.logstash"],
                                                               "hosts": ["logstash:5044"]}}
    assert docker_input["id"] == kube_input["id"] and docker_input["paths"] == ["/var/lib/docker/containers/*/*-json.log"]
    assert docker_input["processors"] == [{"add_docker_metadata": {
        "host": "unix:///host/var/run/docker.sock", "match_source": True, "match_source_index": 4,
        "labels.dedot": True}}]


def test_prometheus_finds_targets_by_address(docker_dev, tmp_path):
    text = uploads(docker_dev.container("prometheus"))["/etc/prometheus/config/prometheus.yml"]
    config = yaml.safe_load(text)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "alertmanager", "grafana", "node-exporter", "cadvisor", "blackbox-exporter",
                         "postgres-exporter", "redis-exporter", "blackbox-http", "jaeger",
                         "elasticsearch-exporter", "logstash", "filebeat"} | DEMO  # dev: probes.tcp is empty
    assert not any("kubernetes_sd_configs" in j for j in jobs.values())
    assert jobs["node-exporter"]["static_configs"][0]["targets"] == ["host.docker.internal:9100"]
    assert jobs["postgres-exporter"]["static_configs"][0]["targets"] == ["postgres-exporter:9187"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # The exporter sidecars answer at their service's address (one network namespace).
    assert jobs["logstash"]["static_configs"][0]["targets"] == ["logstash:9198"]
    assert jobs["filebeat"]["static_configs"][0] == {"targets": ["filebeat:9479"],
                                                     "labels": {"instance": "dev-docker-host", "node": "dev-docker-host"}}
    assert jobs["elasticsearch-exporter"]["static_configs"][0]["targets"] == ["elasticsearch-exporter:9114"]
    # No Kubernetes discovery here, so Debian's promtool checks this file exactly as deployed.
    rules = tmp_path / "rules"
    rules.mkdir()
    for path, body in uploads(docker_dev.container("prometheus")).items():
        if path.startswith("/etc/prometheus/rules/"):
            (rules / path.rsplit("/", 1)[1]).write_text(body)
    assert len(list(rules.iterdir())) >= 1
    path = tmp_path / "prometheus.yml"
    path.write_text(text.replace("/etc/prometheus/rules/", str(rules) + "/"))
    proc = run([require_tool("promtool"), "check", "config", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_static_targets_from_settings_on_both_platforms():
    targets = [{"job": "football-prediction-api", "target": "10.0.0.5:8000"}]
    for overrides in ({"staticTargets": targets}, {"staticTargets": targets, **KUBERNETES}):
        result = offline.run("dev", overrides)
        text = (uploads(result.container("prometheus"))["/etc/prometheus/config/prometheus.yml"]
                if result.containers() else result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
        jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
        assert jobs["football-prediction-api"]["static_configs"] == [{"targets": ["10.0.0.5:8000"]}]


def test_no_secret_in_plain_container_inputs():
    sentinels = {"alertmanagerWebhookUrl": "https://hooks.example.org/docker-sentinel-1",
                 "postgresDsn": "postgresql://m:docker-sentinel-pg@db:5432/f",
                 "redisUrl": "redis://:docker-sentinel-redis@redis:6379"}
    config, secret_keys = offline.stack_config("dev")
    for key, value in sentinels.items():
        config[f"{PROJECT}:{key}"] = value
    result = offline.run("dev", config=config, secret_keys=secret_keys)
    needles = list(sentinels.values()) + [offline.GENERATED_SECRET]
    reached = set()
    for r in result.resources:
        for key, value in r.inputs.items():
            hits = {n for n in needles if n in json.dumps(value)}
            if hits:
                assert key in r.secret_inputs, f"{r.type} {r.name}.{key} holds a secret that is not marked secret"
                reached |= hits
    assert reached == set(needles)
    listing = render.compose_view(result, set(needles))
    assert not any(n in json.dumps(listing) for n in needles)


def test_render_writes_a_container_listing(tmp_path):
    render.write(offline.run("dev"), tmp_path)
    listing = yaml.safe_load((tmp_path / "docker" / "containers.yaml").read_text())
    assert listing["services"]["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    assert (tmp_path / "config" / "prometheus" / "etc" / "prometheus" / "config" / "prometheus.yml").exists()
    assert "postgres-exporter" in listing["services"]
    assert all("[secret]" in e for e in listing["services"]["postgres-exporter"]["environment"])


def test_render_lists_sidecars_init_and_run_once_containers(tmp_path):
    render.write(offline.run("dev"), tmp_path)
    services = yaml.safe_load((tmp_path / "docker" / "containers.yaml").read_text())["services"]
    assert services["logstash-exporter"]["network_mode"] == "service:logstash"
    assert services["elasticsearch"]["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert services["elasticsearch"]["command"] == ["/bin/tini", "--", "/usr/local/bin/docker-entrypoint.sh",
                                                    "eswrapper"]
    assert services["logging-bootstrap"]["restart"] == "on-failure"
    assert "/tmp:rw,nosuid,size=256m" in services["elasticsearch"]["tmpfs"]
    text = (tmp_path / "docker" / "containers.yaml").read_text()
    assert offline.GENERATED_SECRET not in text and "PRIVATE KEY-----\nplaceholder" not in text


# ------------------------------------------------- Kubernetes features, Docker's means

def _spec(**overrides) -> ServiceSpec:
    values = dict(name="svc", component="test", image="example.org/svc:1.0", ports=[Port("http", 8080)],
                  resources=Resources.of(cpu_request="10m", memory_request="32Mi", memory_limit="64Mi"),
                  run_as_user=65534)
    return ServiceSpec(**{**values, **overrides})


def _start(spec: ServiceSpec, tmp_path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run what Docker would run for ``spec`` (entrypoint + command), with the system shell."""
    entrypoint, command = docker_platform.start_command(spec)
    return subprocess.run((entrypoint or []) + (command or []), capture_output=True, text=True, timeout=30,
                          cwd=tmp_path, env={"PATH": os.environ["PATH"], **(env or {})})


def test_init_steps_run_in_order_before_the_service_command(tmp_path):
    spec = _spec(init=[InitStep("first", ["/bin/sh", "-c", 'echo one >> "$OUT"']),
                       InitStep("second", ["/bin/sh", "-c", 'echo "two $0" >> "$OUT"', "it's quoted"])],
                 command=["/bin/sh", "-c", 'echo "service $1" >> "$OUT"; exit 7', "sh"], args=["with args"])
    out = tmp_path / "out"
    proc = _start(spec, tmp_path, {"OUT": str(out)})
    # The service's exit status is the container's (exec: the shell is gone once the service runs).
    assert proc.returncode == 7, proc.stderr
    assert out.read_text() == "one\ntwo it's quoted\nservice with args\n"
    assert "init step first" in proc.stderr and "init step second" in proc.stderr


def test_a_failing_init_step_keeps_the_service_from_starting(tmp_path):
    spec = _spec(init=[InitStep("broken", ["/bin/sh", "-c", "exit 3"]),
                       InitStep("later", ["/bin/sh", "-c", 'echo later >> "$OUT"'])],
                 command=["/bin/sh", "-c", 'echo service >> "$OUT"'])
    out = tmp_path / "out"
    proc = _start(spec, tmp_path, {"OUT": str(out)})
    assert proc.returncode == 3 and not out.exists()  # the restart policy starts the container again


def test_without_init_steps_the_image_entrypoint_stays(tmp_path):
    assert docker_platform.start_command(_spec(args=["--flag"])) == (None, ["--flag"])
    assert docker_platform.start_command(_spec(command=["/bin/app"], args=["-x"])) == (["/bin/app"], ["-x"])


@pytest.mark.parametrize("spec, problem", [
    (_spec(init=[InitStep("prepare", ["true"])]), "must spell the command out"),
    (_spec(init=[InitStep("prepare", ["true"], image="example.org/other:1")], command=["/bin/app"]),
     "cannot use another image"),
    (_spec(schedule="0 1 * * *"), "need platform kubernetes"),
])
def test_what_one_docker_host_cannot_run_is_refused(spec, problem):
    with pytest.raises(ValueError, match=problem):
        docker_platform._check_realisable(spec)


def test_elasticsearch_runs_its_init_step_then_the_images_own_start(docker_dev, dev):
    es = docker_dev.container("elasticsearch").inputs
    kube = dev.one("StatefulSet", "elasticsearch")["spec"]["template"]["spec"]
    init = kube["initContainers"][0]["command"]
    main = kube["containers"][0]
    assert es["command"] == main["command"] + main["args"]
    assert es["entrypoints"][:2] == ["/bin/sh", "-c"] and shlex.join(init) in es["entrypoints"][2]
    assert es["entrypoints"][2].rstrip().endswith('exec "$@"')
    assert "ES_JAVA_OPTS=-Xms512m -Xmx512m -Xlog:disable" in " ".join(es["envs"]) and es["memory"] == 1024
    assert "POD_NAME=fm-dev-elasticsearch" in es["envs"]  # node.name


def test_the_bootstrap_job_runs_once_per_content(docker_dev):
    job = docker_dev.container("logging-bootstrap").inputs
    assert job["restart"] == "on-failure" and job["maxRetryCount"] == docker_platform.RUN_ONCE_RETRIES
    assert job["mustRun"] is False and "healthcheck" not in job and "ports" not in job
    assert job["command"] == ["sh", "/etc/logging-bootstrap/script/bootstrap.sh"]
    assert "ELASTICSEARCH_URL=https://elasticsearch:9200" in job["envs"]
    # A changed policy changes an upload, and Docker replaces (so re-runs) a container whose uploads change.
    changed = offline.run("dev", {"logging": {"retentionDays": 9}}).container("logging-bootstrap").inputs
    policy = "/etc/logging-bootstrap/policies/ilm-policy.json"
    assert uploads(docker_dev.container("logging-bootstrap"))[policy] != {u["file"]: u["content"] for u in changed["uploads"]}[policy]


def test_exporter_sidecars_share_their_services_network_and_hardening(docker_dev):
    for sidecar, service in SIDECARS.items():
        i = docker_dev.container(sidecar).inputs
        assert i["name"] == f"fm-dev-{sidecar}" and i["user"] == "65534:65534"
        assert i["networkMode"] == f"container:{offline.mock_id(service)}"
        assert {"label": "app.kubernetes.io/name", "value": sidecar} in i["labels"]
    labels = {label["label"]: label["value"] for label in docker_dev.container("logstash-exporter").inputs["labels"]}
    assert labels["app.kubernetes.io/version"] == DEFAULT_IMAGES["logstashExporter"].rsplit(":", 1)[1]
    assert labels["app.kubernetes.io/component"] == "logs-pipeline"  # the service it belongs to
    assert docker_dev.container("logstash-exporter").inputs["envs"] == ["LOGSTASH_URL=http://127.0.0.1:9600",
                                                                        "PORT=9198"]
    assert docker_dev.container("filebeat-exporter").inputs["healthcheck"]["tests"] == [
        "CMD", "wget", "-q", "--spider", "http://127.0.0.1:9479/"]


def test_filebeat_finds_each_lines_container_from_its_file_path(docker_dev):
    """add_docker_metadata's match_source takes the container id from log.file.path the way Filebeat's
    extract_field does (split on '/', empty parts dropped, then the index): it must land on the id
    directory of every file the input's glob reads."""
    config = yaml.safe_load(uploads(docker_dev.container("filebeat"))["/etc/filebeat/filebeat.yml"])
    source = config["filebeat.inputs"][0]
    index = source["processors"][0]["add_docker_metadata"]["match_source_index"]
    container_id = "4f3c2b1a" * 8
    path = f"/var/lib/docker/containers/{container_id}/{container_id}-json.log"
    assert any(fnmatch.fnmatch(path, pattern) for pattern in source["paths"])
    assert [part for part in path.split("/") if part][index] == container_id
    # ...and the files are where the host's directory is mounted, read-only.
    mounts = {m["target"]: m for m in docker_dev.container("filebeat").inputs["mounts"]}
    assert all(mounts[pattern.split("/*")[0]]["readOnly"] for pattern in source["paths"])


def test_container_panels_read_a_standalone_cadvisor_by_service_name(docker_dev, tmp_path):
    """On a Docker host the panels' `container` label is the service's app.kubernetes.io/name, which a
    standalone cAdvisor (no kubelet) exposes only as container_label_app_kubernetes_io_name beside
    id, name and image (cadvisor metrics/prometheus.go: BaseContainerLabels with the whitelisted
    labels, sanitized). A real Prometheus runs the generated job against such a reading."""
    from scripts import dashboard_query_benchmark as bench
    from tests.loopback_http import metrics_target

    config = yaml.safe_load(uploads(docker_dev.container("prometheus"))["/etc/prometheus/config/prometheus.yml"])
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "cadvisor"]
    line = ('container_memory_working_set_bytes{{container_label_app_kubernetes_io_name="{app}",'
            'container_label_football_monitoring_environment="dev",id="/docker/{id}",image="{image}",'
            'name="football-monitoring-dev-{app}"}} 1.5e+08\n')
    body = "# TYPE container_memory_working_set_bytes gauge\n" + "".join(
        line.format(app=app, id=f"{n:064x}", image=DEFAULT_IMAGES["jaeger"]) for n, app in enumerate(("jaeger", "grafana")))
    target = metrics_target(body.encode())
    server = bench.Prometheus(require_tool("prometheus"), tmp_path / "tsdb", tmp_path, [])
    job = {**job, "scrape_interval": "1s", "static_configs": [{"targets": [target.address]}]}
    server.config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}))
    try:
        server.start()
        [panel] = [t["expr"].replace("$environment", "dev") for p in pn.iter_panels(pn.load_dashboard(
            ROOT / "dashboards" / "tracing.json")) if p.get("title") == "Memory of tracing containers"
            for t in p.get("targets", [])]
        deadline = time.monotonic() + 30
        while not (found := server.query(panel)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [r["metric"] for r in found] == [{"container": "jaeger"}], found
        [series] = server.query('container_memory_working_set_bytes{container="grafana"}')
        assert "container_label_app_kubernetes_io_name" not in series["metric"], series
    finally:
        server.stop()
        target.close()

