"""The dev stack on a single Docker host: same services, same renderers, Docker's hardening."""

from __future__ import annotations

import json

import yaml

from components import offline, render
from components.settings import DEFAULT_IMAGES, PROJECT
from tests.config_checks import run
from tests.conftest import require_tool

PUBLISHED = {"grafana": 3000, "prometheus": 9090, "alertmanager": 9093, "jaeger": 16686}


def uploads(container) -> dict[str, str]:
    return {u["file"]: u["content"] for u in container.inputs.get("uploads", [])}


def test_network_volumes_and_containers(docker_dev):
    names = {c.name for c in docker_dev.containers()}
    assert names == {"prometheus", "alertmanager", "grafana", "node-exporter", "cadvisor", "blackbox-exporter",
                     "postgres-exporter", "redis-exporter", "jaeger"}  # Jaeger all-in-one (tracing.enabled)
    network = [r for r in docker_dev.resources if r.type == "docker:index/network:Network"]
    assert [n.inputs["name"] for n in network] == ["fm-dev"]
    volumes = {r.inputs["name"] for r in docker_dev.resources if r.type == "docker:index/volume:Volume"}
    assert volumes == {"fm-dev-prometheus-data", "fm-dev-alertmanager-data", "fm-dev-grafana-data",
                       "fm-dev-jaeger-data"}  # Jaeger's Badger store
    images = {r.inputs["name"] for r in docker_dev.resources if r.type == "docker:index/remoteImage:RemoteImage"}
    assert images == {DEFAULT_IMAGES[k] for k in ("prometheus", "alertmanager", "grafana", "nodeExporter", "cadvisor",
                                                  "blackboxExporter", "postgresExporter", "redisExporter",
                                                  "jaeger")}
    prometheus = docker_dev.container("prometheus").inputs
    assert {"volumeName": "fm-dev-prometheus-data", "containerPath": "/prometheus"} in prometheus["volumes"]
    assert "--storage.tsdb.retention.time=3d" in prometheus["command"]


def test_hardening_on_docker(docker_dev):
    for c in docker_dev.containers():
        i = c.inputs
        assert i["readOnly"] is True, c.name
        assert i["capabilities"] == {"drops": ["ALL"]}, c.name
        assert i["securityOpts"] == ["no-new-privileges:true"], c.name
        assert i["restart"] == "unless-stopped", c.name
        assert i["memory"] > 0 and i["memoryReservation"] > 0, c.name
        assert i["logOpts"] == {"max-size": "10m", "max-file": "3"}, c.name
        assert "privileged" not in i, c.name
        if c.name == "cadvisor":
            assert i["user"] == "0:0"  # the listed HOST_ACCESS exception
        else:
            assert not i["user"].startswith("0:"), c.name
        if c.name == "redis-exporter":
            assert "healthcheck" not in i  # an image without a shell; `up` is its health signal
        else:
            assert i["healthcheck"]["tests"][:3] == ["CMD", "wget", "-q"], c.name


def test_only_the_uis_are_published_on_localhost(docker_dev):
    for c in docker_dev.containers():
        ports = c.inputs.get("ports", [])
        if c.name in PUBLISHED:
            assert ports == [{"internal": PUBLISHED[c.name], "external": PUBLISHED[c.name], "ip": "127.0.0.1",
                              "protocol": "tcp"}]
        else:
            assert ports == [], c.name
    assert docker_dev.outputs["grafanaExternalUrl"] == "http://localhost:3000"
    assert docker_dev.outputs["prometheusExternalUrl"] == "http://localhost:9090"
    assert docker_dev.outputs["jaegerExternalUrl"] == "http://localhost:16686"
    assert docker_dev.outputs["grafanaUrl"] == "http://grafana:3000"


def test_host_access_only_for_node_and_container_metrics(docker_dev):
    for c in docker_dev.containers():
        i = c.inputs
        if c.name == "node-exporter":
            assert i["networkMode"] == "host" and i["pidMode"] == "host"
            assert {m["source"] for m in i["mounts"]} == {"/proc", "/sys", "/"}
        elif c.name == "cadvisor":
            assert all(m["readOnly"] for m in i["mounts"])
        else:
            assert "mounts" not in i and "networkMode" not in i and "pidMode" not in i, c.name
            assert i["networksAdvanced"] == [{"name": "fm-dev", "aliases": [c.name]}]


def test_config_files_come_from_the_same_renderers_as_on_kubernetes(docker_dev, dev):
    files = {c.name: uploads(c) for c in docker_dev.containers()}
    same = {
        ("blackbox-exporter", "/etc/blackbox/blackbox.yml"): dev.one("ConfigMap", "blackbox-exporter-config")["data"]["blackbox.yml"],
        ("alertmanager", "/etc/alertmanager/config/alertmanager.yml"): dev.one("Secret", "alertmanager-config")["stringData"]["alertmanager.yml"],
        ("grafana", "/etc/grafana/provisioning/dashboards/football-monitoring.yaml"):
            dev.one("ConfigMap", "grafana-dashboard-provider")["data"]["football-monitoring.yaml"],
    }
    for (name, path), text in same.items():
        assert files[name][path] == text, path
    rules = dev.one("ConfigMap", "prometheus-rules")["data"]
    assert {p.rsplit("/", 1)[1]: t for p, t in files["prometheus"].items() if "/rules/" in p} == rules
    dashboards = dev.one("ConfigMap", "grafana-dashboards")["data"]
    assert {p.rsplit("/", 1)[1]: t for p, t in files["grafana"].items() if "dashboards/" in p and p.endswith(".json")} == dashboards
    # Only the addresses differ: service names on the Docker network instead of cluster DNS.
    kube_ds = dev.one("ConfigMap", "grafana-datasources")["data"]["datasources.yaml"]
    # ...and the logs datasource, whose logging stack runs on Kubernetes only, with the traces
    # datasource's link to it.
    kube_doc = yaml.safe_load(kube_ds)
    kube_datasources = [d for d in kube_doc["datasources"] if d["uid"] != "logs"]
    traces = next(d for d in kube_datasources if d["uid"] == "traces")
    assert traces["jsonData"].pop("tracesToLogsV2")["datasourceUid"] == "logs"
    kube_ds = yaml.safe_dump({**kube_doc, "datasources": kube_datasources}, sort_keys=False)
    assert files["grafana"]["/etc/grafana/provisioning/datasources/datasources.yaml"] == \
        kube_ds.replace(".monitoring-dev.svc", "")
    docker_prom = yaml.safe_load(files["prometheus"]["/etc/prometheus/config/prometheus.yml"])
    kube_prom = yaml.safe_load(dev.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    assert docker_prom["global"] == kube_prom["global"] and docker_prom["rule_files"] == kube_prom["rule_files"]


def test_prometheus_finds_targets_by_address(docker_dev, tmp_path):
    text = uploads(docker_dev.container("prometheus"))["/etc/prometheus/config/prometheus.yml"]
    config = yaml.safe_load(text)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "alertmanager", "grafana", "node-exporter", "cadvisor", "blackbox-exporter",
                         "postgres-exporter", "redis-exporter", "blackbox-http", "blackbox-tcp", "jaeger"}
    assert not any("kubernetes_sd_configs" in j for j in jobs.values())
    assert jobs["node-exporter"]["static_configs"][0]["targets"] == ["host.docker.internal:9100"]
    assert jobs["postgres-exporter"]["static_configs"][0]["targets"] == ["postgres-exporter:9187"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
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
    for overrides in ({"staticTargets": targets}, {"staticTargets": targets, "platform": "kubernetes"}):
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
