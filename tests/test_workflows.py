"""The delivery workflows: tests first, previews on pull requests, approved production deploys."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on:` as true
    return document


def pulumi_steps(job: dict) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@")]


def test_pull_requests_run_tests_then_preview_every_stack():
    wf = load("pull-request.yml")
    assert "pull_request" in wf["on"]
    assert wf["jobs"]["test"]["steps"][-1]["run"] == "scripts/test"
    preview = wf["jobs"]["preview"]
    assert preview["needs"] == "test"
    stacks = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    assert sorted(preview["strategy"]["matrix"]["stack"]) == stacks
    (step,) = pulumi_steps(preview)
    assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
    assert wf["permissions"]["pull-requests"] == "write"


def test_main_deploys_dev_then_prod_after_approval():
    wf = load("deploy.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    jobs = wf["jobs"]
    assert jobs["test"]["steps"][-1]["run"] == "scripts/test"
    assert jobs["dev"]["needs"] == "test" and jobs["prod"]["needs"] == "dev"
    assert jobs["prod"]["environment"] == "production"
    assert [s["with"]["stack-name"] for s in pulumi_steps(jobs["dev"])] == ["dev"]
    assert [(s["with"]["command"], s["with"]["stack-name"]) for s in pulumi_steps(jobs["prod"])] == [("up", "prod")]
    assert wf["concurrency"]["cancel-in-progress"] is False  # never interrupt a running `pulumi up`


def test_no_secret_value_in_workflows():
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if any(word in line for word in ("PASSPHRASE", "TOKEN", "KEY", "KUBECONFIG_DATA", "BACKEND_URL")) and ":" in line:
                value = line.split(":", 1)[1].strip()
                assert value.startswith("${{ secrets.") or value == "", f"{path.name}: {line.strip()}"
