"""renovate.json keeps every pin current: each image in DEFAULT_IMAGES (and each built tool without an
image) is matched by a regex manager rule with the right datasource, and the Python requirements
and GitHub Actions have their managers.

The managers' regexes are applied to components/settings/images.py with Python's `re` (Renovate's
named groups `(?<name>...)` become `(?P<name>...)`), so a pin the update manager would not see fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from components.settings.images import DEFAULT_IMAGES, NPM_TEST_TOOLS, TEST_TOOLS
from tests.conftest import ROOT

IMAGES_FILE = "components/settings/images.py"
CONFIG = json.loads((ROOT / "renovate.json").read_text())


def file_pattern_matches(pattern: str, path: str) -> bool:
    """Renovate's managerFilePatterns: "/regex/" is a regular expression, anything else a glob."""
    if len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/"):
        return re.search(pattern[1:-1], path) is not None
    return Path(path).match(pattern)


def python_regex(renovate_regex: str) -> re.Pattern:
    return re.compile(re.sub(r"\(\?<([A-Za-z][A-Za-z0-9]*)>", r"(?P<\1>", renovate_regex))


def matched_dependencies(config: dict, path: str, text: str) -> dict[str, str]:
    """'depName:currentValue' -> datasource, for every regex manager match in the file."""
    found: dict[str, str] = {}
    for manager in config.get("customManagers", []):
        if manager.get("customType") != "regex":
            continue
        if not any(file_pattern_matches(p, path) for p in manager.get("managerFilePatterns", [])):
            continue
        for expression in manager["matchStrings"]:
            for match in python_regex(expression).finditer(text):
                groups = match.groupdict()
                datasource = groups.get("datasource") or manager.get("datasourceTemplate")
                found[f"{groups['depName']}:{groups['currentValue']}"] = datasource
    return found


def unmatched_pins(config: dict, text: str, images: dict = DEFAULT_IMAGES, tools: dict = TEST_TOOLS) -> list[str]:
    found = matched_dependencies(config, IMAGES_FILE, text)
    problems = [f"image {key} = {image}: no renovate.json rule matches it with datasource docker"
                for key, image in images.items() if found.get(image) != "docker"]
    problems += [f"tool {key} = {pin}: no renovate.json rule matches it with datasource go"
                 for key, pin in tools.items() if found.get(pin) != "go"]
    problems += [f"npm tool {key} = {pin}: no renovate.json rule matches it with datasource npm"
                 for key, pin in NPM_TEST_TOOLS.items() if found.get(pin.replace("@", ":")) != "npm"]
    return problems


def test_every_pinned_image_is_matched_by_a_manager_rule():
    text = (ROOT / IMAGES_FILE).read_text()
    assert unmatched_pins(CONFIG, text) == []


def test_the_rule_check_can_fail():
    text = (ROOT / IMAGES_FILE).read_text()
    # An image from a registry the rule does not know is missed, and so is a rule for the wrong datasource.
    key, image = next(iter(DEFAULT_IMAGES.items()))
    moved = image.replace(image.split("/", 1)[0], "registry.example.org", 1)
    problems = unmatched_pins(CONFIG, text.replace(image, moved), dict(DEFAULT_IMAGES, **{key: moved}))
    assert problems == [f"image {key} = {moved}: no renovate.json rule matches it with datasource docker"]
    wrong = json.loads(json.dumps(CONFIG))
    for manager in wrong["customManagers"]:
        manager["datasourceTemplate"] = "github-tags"
    assert len(unmatched_pins(wrong, text)) == len(DEFAULT_IMAGES) + len(TEST_TOOLS) + len(NPM_TEST_TOOLS)
    # A rule that does not look at the settings file matches nothing.
    elsewhere = json.loads(json.dumps(CONFIG))
    for manager in elsewhere["customManagers"]:
        manager["managerFilePatterns"] = ["/(^|/)Dockerfile$/"]
    assert len(unmatched_pins(elsewhere, text)) == len(DEFAULT_IMAGES) + len(TEST_TOOLS) + len(NPM_TEST_TOOLS)


def test_python_requirements_and_actions_have_managers():
    assert {"custom.regex", "pip_requirements", "github-actions"} <= set(CONFIG["enabledManagers"])
    patterns = CONFIG["pip_requirements"]["managerFilePatterns"]
    for requirements in sorted(ROOT.glob("requirements*.txt")):
        assert any(file_pattern_matches(p, requirements.name) for p in patterns), requirements.name
    assert list(ROOT.glob(".github/workflows/*.yml")), "the github-actions manager has workflows to read"


def test_elastic_images_share_one_release_and_one_update():
    elastic = {key: image for key, image in DEFAULT_IMAGES.items() if image.startswith("docker.elastic.co/")}
    assert len({image.rsplit(":", 1)[1] for image in elastic.values()}) == 1, elastic
    rules = [rule for rule in CONFIG["packageRules"] if "docker.elastic.co/**" in rule.get("matchPackageNames", [])]
    assert rules and rules[0]["groupName"], "one grouped update for the whole Elastic stack"


def test_the_previous_kubernetes_release_takes_patch_releases_only():
    """The admission tests run the pinned release and the minor before it (scripts/install-test-tools.sh
    refuses any other): the update manager must not move the previous one to a new minor."""
    rules = [rule for rule in CONFIG["packageRules"] if "matchCurrentVersion" in rule
             and "k8s.io/kubernetes" in rule.get("matchPackageNames", [])]
    assert len(rules) == 1 and rules[0]["enabled"] is False
    assert set(rules[0]["matchUpdateTypes"]) == {"major", "minor"}
    pattern = re.compile(rules[0]["matchCurrentVersion"][1:-1])
    assert pattern.search(TEST_TOOLS["kubernetesPrevious"].rsplit(":", 1)[1])
    assert not pattern.search(TEST_TOOLS["kubernetes"].rsplit(":", 1)[1])
