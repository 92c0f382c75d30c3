"""The offline render writes what a stack deploys, with no secret value in it."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tools import offline
from tools import render
from components.settings import SECRETS
from tests.conftest import ROOT


def test_render_command_writes_objects_configs_and_outputs(tmp_path):
    out = tmp_path / "prod"
    proc = subprocess.run([sys.executable, "-m", "tools.render", "--stack", "prod", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "prod:" in proc.stdout
    kinds = {p.name.split("-", 1)[0] for p in (out / "kubernetes").iterdir()}
    assert {"statefulset", "deployment", "daemonset", "service", "configmap", "secret", "clusterrole",
            "ingress", "namespace"} <= kinds
    configs = {str(p.relative_to(out / "config")) for p in (out / "config").rglob("*") if p.is_file()}
    assert {"prometheus-config/prometheus.yml", "alertmanager-config/alertmanager.yml",
            "grafana-datasources/datasources.yaml", "grafana-dashboard-provider/football-monitoring.yaml",
            "blackbox-exporter-config/blackbox.yml", "grafana-dashboards-stack-health/stack-health.json"} <= configs
    assert any(c.startswith("prometheus-rules/") for c in configs)
    outputs = json.loads((out / "outputs.json").read_text())
    assert outputs["grafanaAdminPassword"] == render.SECRET_MARK
    sts = yaml.safe_load((out / "kubernetes" / "statefulset-prometheus.yaml").read_text())
    assert sts["spec"]["replicas"] == 2


def test_render_shows_secrets_only_as_placeholders(tmp_path):
    result = offline.run("prod")
    render.write(result, tmp_path)
    text = "\n".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert offline.GENERATED_SECRET not in text
    for path in (tmp_path / "kubernetes").glob("secret-*.yaml"):
        secret = yaml.safe_load(path.read_text())
        assert set(secret["stringData"].values()) == {render.SECRET_MARK}
    # alertmanager.yml names its receivers' credential files, never their values.
    alertmanager_yml = (tmp_path / "config/alertmanager-config/alertmanager.yml").read_text()
    assert SECRETS["alertmanagerWebhookUrl"].placeholder not in alertmanager_yml
    assert "url_file: /etc/alertmanager/credentials/webhook-url" in alertmanager_yml


def test_render_reports_bad_settings_without_a_traceback(tmp_path):
    # The bad stack file lives in tmp_path, never in the project: a Pulumi.<stack>.yaml there, even for a
    # moment, is a stack to every other test running beside this one (test_workflows' preview matrix).
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.badrender.yaml").write_text("config:\n  football-monitoring:prometheus:\n    retention: abc\n")
    command = ("import pathlib, sys; from tools import offline, render; "
               "offline.ROOT = pathlib.Path(sys.argv[1]); sys.exit(render.main(sys.argv[2:]))")
    proc = subprocess.run([sys.executable, "-c", command, str(stacks), "--stack", "badrender",
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "football-monitoring:prometheus.retention = 'abc' is not valid" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_name_in_several_namespaces_names_its_namespace_in_every_file(tmp_path):
    """File names must not depend on the order the objects were recorded in (which varies)."""
    result = offline.run("prod")
    render.write(result, tmp_path)
    deny = [o for o in result.kubernetes_objects() if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny"]
    assert len(deny) >= 2
    files = {p.name for p in (tmp_path / "kubernetes").glob("networkpolicy-default-deny*.yaml")}
    assert files == {f"networkpolicy-default-deny.{o['metadata']['namespace']}.yaml" for o in deny}
