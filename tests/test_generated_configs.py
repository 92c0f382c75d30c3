"""Generated configs, checked by the real tools (promtool, amtool, blackbox_exporter, built at the images' versions)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from components.configs.grafana import DASHBOARDS_DIR
from tests.config_checks import run
from tests.conftest import require_tool
from tests.test_pod_discovery import prometheus_configs


def prometheus_config(result) -> str:
    return result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]


def check_config(promtool: str, text: str, path) -> subprocess.CompletedProcess:
    """promtool on prometheus.yml exactly as generated, Kubernetes discovery included. The files it
    names (service account token, CA, rule files) exist only in the pod: --syntax-only leaves them
    out; the rule files are checked by promtool check/test rules."""
    path.write_text(text)
    return run([promtool, "check", "config", "--syntax-only", str(path)])


def test_prometheus_config_passes_promtool(runs, every_part, tmp_path):
    promtool = require_tool("promtool")
    # The every-part stack has scrape shards (prometheus.shards): each shard's own prometheus.yml.
    configs = {stack: [prometheus_config(result)] for stack, result in runs.items()}
    configs["prod-every-part"] = prometheus_configs(every_part)
    assert len(configs["prod-every-part"]) > 1
    for stack, texts in configs.items():
        for shard, text in enumerate(texts):
            assert "kubernetes_sd_configs" in text, stack
            proc = check_config(promtool, text, tmp_path / f"{stack}-{shard}.yml")
            assert proc.returncode == 0, f"{stack} shard {shard}: {proc.stdout}{proc.stderr}"
            assert "SUCCESS" in proc.stdout + proc.stderr


@pytest.mark.parametrize("mutation", [
    ("action: labeldrop", "action: label-drop-typo"),  # relabelling
    ("role: pod", "role: pods"),  # Kubernetes discovery: no such role
    ("kubernetes_sd_configs:\n  - role: node", "kubernetes_sd_configs:\n  - role: node\n    no_such_key: 1"),
])
def test_promtool_check_can_fail(prod, tmp_path, mutation):
    promtool = require_tool("promtool")
    text = prometheus_config(prod)
    old, new = mutation
    assert old in text, old
    proc = check_config(promtool, text.replace(old, new, 1), tmp_path / "broken.yml")
    assert proc.returncode != 0, f"promtool accepted {new!r}: {proc.stdout}{proc.stderr}"


def test_blackbox_config_passes_blackbox_exporter(prod, tmp_path):
    exporter = require_tool("blackbox_exporter")
    path = tmp_path / "blackbox.yml"
    path.write_text(prod.one("ConfigMap", "blackbox-exporter-config")["data"]["blackbox.yml"])
    proc = run([exporter, "--config.check", f"--config.file={path}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path.write_text("modules:\n  http_2xx:\n    prober: http\n    http:\n      no_such_field: 1\n")
    assert run([exporter, "--config.check", f"--config.file={path}"]).returncode != 0


def test_grafana_provider_reads_the_mounted_dashboards(prod):
    provider = yaml.safe_load(prod.one("ConfigMap", "grafana-dashboard-provider")["data"]["football-monitoring.yaml"])
    assert provider["providers"][0]["options"]["path"] == DASHBOARDS_DIR
    grafana = prod.one("StatefulSet", "grafana")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in grafana["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in grafana["volumes"]}
    assert {s["configMap"]["name"] for s in volumes[mounts[DASHBOARDS_DIR]]["projected"]["sources"]} == \
        {o["metadata"]["name"] for o in prod.find("ConfigMap") if o["metadata"]["name"].startswith("grafana-dashboards-")}
    assert volumes[mounts["/etc/grafana/secrets"]]["secret"]["secretName"] == "grafana-admin"


def test_jobs_of_timestamped_samples_track_their_staleness(prod):
    """The kubelet's cAdvisor endpoint stamps every sample with the time it was collected; with
    Prometheus' default (honor_timestamps, no timestamp staleness) a deleted container's series
    never goes stale and stays in instant queries for the 5-minute lookback, so every sum over a
    rollout counts it twice."""
    jobs = {j["job_name"]: j for j in yaml.safe_load(prometheus_config(prod))["scrape_configs"]}
    timestamped = [name for name, job in jobs.items() if job.get("metrics_path") == "/metrics/cadvisor"]
    assert timestamped == ["cadvisor"]
    for name in timestamped:
        assert jobs[name].get("honor_timestamps", True) is False or jobs[name].get("track_timestamps_staleness") is True, name
