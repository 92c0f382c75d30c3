"""Generated configs, checked by the real tools (Debian's promtool, amtool, blackbox_exporter)."""

from __future__ import annotations

import yaml

from components import data
from components.configs.grafana import DASHBOARDS_DIR
from tests.config_checks import checkable, kubernetes_sd_problems, run
from tests.conftest import require_tool


def prometheus_config(result) -> str:
    return result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]


def test_prometheus_config_passes_promtool(runs, tmp_path):
    promtool = require_tool("promtool")
    for stack, result in runs.items():
        path = checkable(prometheus_config(result), tmp_path / stack, data.rule_files())
        proc = run([promtool, "check", "config", str(path)])
        assert proc.returncode == 0, f"{stack}: {proc.stdout}{proc.stderr}"
        assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_check_can_fail(prod, tmp_path):
    promtool = require_tool("promtool")
    broken = prometheus_config(prod).replace("action: labeldrop", "action: label-drop-typo", 1)
    proc = run([promtool, "check", "config", str(checkable(broken, tmp_path, {}))])
    assert proc.returncode != 0


def test_kubernetes_discovery_blocks_match_documented_schema(runs):
    for stack, result in runs.items():
        config = yaml.safe_load(prometheus_config(result))
        assert kubernetes_sd_problems(config) == [], stack
    broken = yaml.safe_load(prometheus_config(runs["prod"]).replace(
        "__meta_kubernetes_pod_container_port_name", "__meta_kubernetes_pod_port_name", 1))
    assert kubernetes_sd_problems(broken)


def test_blackbox_config_passes_blackbox_exporter(prod, tmp_path):
    exporter = require_tool("prometheus-blackbox-exporter")
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
    assert volumes[mounts[DASHBOARDS_DIR]]["configMap"]["name"] == "grafana-dashboards"
    assert volumes[mounts["/etc/grafana/secrets"]]["secret"]["secretName"] == "grafana-admin"
