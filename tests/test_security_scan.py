"""checkov on the rendered Kubernetes manifests of every stack; failures only where the skip list says why."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess

import pytest
import yaml

from tools import render
from tests.conftest import ROOT

SKIPS = yaml.safe_load((ROOT / "security" / "checkov-skips.yaml").read_text())


def checkov() -> str:
    path = ROOT / ".venv-checkov" / "bin" / "checkov"
    found = str(path) if path.exists() else shutil.which("checkov")
    if not found:
        pytest.fail("checkov is not installed: run scripts/test (it creates .venv-checkov from requirements-checkov.txt)")
    return found


def failed_checks(manifests_dir) -> list[dict]:
    proc = subprocess.run([checkov(), "-d", str(manifests_dir), "--framework", "kubernetes", "--quiet", "--compact",
                           "-o", "json", "--skip-download"], capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] > 30
    return report["results"]["failed_checks"]


def skip_for(finding: dict):
    kind, _namespace, name = finding["resource"].split(".", 2)
    for skip in SKIPS:
        if skip["check"] == finding["check_id"] and any(
                pattern == "*" or fnmatch.fnmatch(f"{kind}.{name}", pattern) for pattern in skip["resources"]):
            return skip
    return None


def test_skip_list_is_justified():
    assert len(SKIPS) <= 10
    for skip in SKIPS:
        assert skip["check"].startswith("CKV") and skip["resources"] and len(skip["reason"]) > 40, skip


@pytest.fixture(scope="module")
def findings(every_stack, tmp_path_factory) -> dict:
    result = {}
    for stack, run in every_stack.items():
        out = tmp_path_factory.mktemp(stack)
        render.write(run, out)
        result[stack] = failed_checks(out / "kubernetes")
    return result


def test_every_failed_check_is_on_the_skip_list(findings):
    unexplained = [f"{stack}: {f['check_id']} {f['check_name']} on {f['resource']}"
                   for stack, found in findings.items() for f in found if not skip_for(f)]
    assert unexplained == [], "\n".join(unexplained)


def test_no_skip_entry_is_stale(findings):
    used = {(skip_for(f)["check"]) for found in findings.values() for f in found if skip_for(f)}
    assert {s["check"] for s in SKIPS} <= used


def test_scan_catches_a_privileged_container(prod, tmp_path):
    render.write(prod, tmp_path)
    path = tmp_path / "kubernetes" / "deployment-blackbox-exporter.yaml"
    obj = yaml.safe_load(path.read_text())
    obj["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    path.write_text(yaml.safe_dump(obj))
    found = failed_checks(tmp_path / "kubernetes")
    assert any(f["check_id"] == "CKV_K8S_16" and not skip_for(f) for f in found)
