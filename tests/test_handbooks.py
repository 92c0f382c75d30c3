"""The handbooks name only alerts, files and commands that exist."""

from __future__ import annotations

import re

import pytest
import yaml

from tests import stack_rules
from tests.conftest import ROOT

HANDBOOKS = ["handbook.md", "alert-handling.md", "troubleshooting.md", "emergency.md"]
ALERT_LIKE = re.compile(r"`([A-Z][a-z]+(?:[A-Z][a-z0-9]*|[A-Z]{2,}(?=[A-Z][a-z]|`)){1,})`")


def alert_names() -> set:
    names = set()
    for path in stack_rules.stage().glob("*.yaml"):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names |= {r["alert"] for r in group["rules"] if "alert" in r}
    return names


@pytest.mark.parametrize("name", HANDBOOKS)
def test_handbook_alerts_exist(name):
    text = (ROOT / "docs" / name).read_text()
    mentioned = set(ALERT_LIKE.findall(text))
    known = alert_names()
    # Words in backticks that look like alert names must be alerts the rules define.
    unknown = {m for m in mentioned if m not in known and m not in {"PriorityClass", "NetworkPolicy", "PodDisruptionBudget",
                                                                     "StatefulSet", "DaemonSet", "StorageClass",
                                                                     "PersistentVolumeClaims", "OOMKilled"}}
    assert unknown == set(), f"{name} names alerts that no rule defines: {sorted(unknown)}"


@pytest.mark.parametrize("name", HANDBOOKS)
def test_handbook_links_and_paths_exist(name):
    text = (ROOT / "docs" / name).read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if not link.startswith("http"):
            assert (ROOT / "docs" / link).exists(), f"{name}: broken link {link}"
    for path in re.findall(r"`((?:scripts|rules|dashboards|alerting|metrics|components|docs)/[\w./<>-]+)`", text):
        if "<" in path:
            continue
        assert (ROOT / path).exists() or list(ROOT.glob(path)), f"{name}: {path} does not exist"
    for module in re.findall(r"python -m ((?:components|tools)\.[\w.]+)", text):
        # A module, or a package that python -m runs through its __main__.
        where = ROOT / module.replace(".", "/")
        assert where.with_suffix(".py").exists() or (where / "__main__.py").exists(), f"{name}: {module} does not exist"
