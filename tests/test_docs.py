"""README and the settings reference say what the code does."""

from __future__ import annotations

import re

from components.settings.images import TEST_TOOLS
from tools import offline
from scripts import settings_reference
from scripts.settings_reference import markdown
from tests.conftest import ROOT

REGENERATE = "run .venv/bin/python -m scripts.settings_reference --write"


def test_settings_reference_is_current():
    assert (ROOT / "docs" / "settings.md").read_text() == markdown(), f"docs/settings.md is stale: {REGENERATE}"


def test_stack_file_schema_is_current():
    assert settings_reference.SCHEMA.read_text() == settings_reference.schema_text(), \
        f"schemas/stack-config.schema.json is stale: {REGENERATE}"


def test_project_file_declares_the_settings_as_the_models_do():
    text = settings_reference.PROJECT_FILE.read_text()
    assert text == settings_reference.project_file_text(text), \
        f"Pulumi.yaml's config declarations are stale: {REGENERATE}"


def test_readme_lists_every_stack_output(dev, prod):
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", readme, flags=re.M))
    everything = offline.run("prod", {"ingress": {"prometheusHost": "p.example.org", "alertmanagerHost": "a.example.org",
                                                  "authUrl": "https://auth.example.org/oauth2/auth"}})
    assert set(everything.outputs) <= documented
    assert set(dev.outputs) | set(prod.outputs) <= documented


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "\n    scripts/test\n" in readme
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_readme_states_the_kubernetes_releases_the_admission_tests_run():
    def minor(key: str) -> str:
        return ".".join(TEST_TOOLS[key].rsplit(":v", 1)[1].split(".")[:2])

    readme = (ROOT / "README.md").read_text()
    previous, pinned = minor("kubernetesPrevious"), minor("kubernetes")
    assert f"Supported Kubernetes releases: **{previous} and {pinned}**" in readme
    assert f"Kubernetes {previous} or {pinned})" in readme
    # PodSecurity enforces the policy of the oldest supported release.
    from components.platform.kubernetes import POD_SECURITY_ENFORCE_VERSION
    assert POD_SECURITY_ENFORCE_VERSION == f"v{previous}"
    assert f"enforce-version: {POD_SECURITY_ENFORCE_VERSION}" in readme


def test_docs_name_the_image_releases_the_stack_pins():
    """A page that names an image we pin names the pinned tag: readers copy these lines."""
    from components.settings.images import DEFAULT_IMAGES

    pinned = {image.rsplit(":", 1)[0]: image.rsplit(":", 1)[1] for image in DEFAULT_IMAGES.values()}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    stale = []
    for page in pages:
        for repository, tag in re.findall(r"([a-z0-9.-]+\.[a-z]{2,}/[a-z0-9._/-]+):([A-Za-z0-9._-]+)", page.read_text()):
            if repository in pinned and tag.rstrip(".") != pinned[repository]:
                stale.append(f"{page.relative_to(ROOT)}: {repository}:{tag} (pinned: {pinned[repository]})")
    assert not stale, "\n".join(stale)
