"""slos/*.yaml: Sloth's own checks, ours, and the metric contract.

`sloth validate` (the pinned release, built by scripts/install-test-tools.sh) reads every SLO file;
components/configs/slo.py refuses what Sloth lets through (several SLOs in a file, an unknown key, a
page that is not critical, an unknown team), and every query names only contract metrics.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components import data
from components.configs import slo as slo_config
from tests import promql_names as pn
from tests import stack_rules
from tests.conftest import KUBERNETES, ROOT, require_tool

SLO_FILES = sorted((ROOT / "slos").glob("*.yaml"))
SLOS = stack_rules.slos()


def sloth_validate(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("sloth"), "validate", "--no-log", f"--input={directory}"],
                          capture_output=True, text=True, timeout=120)


def test_there_are_the_slos_the_service_team_asked_for():
    names = {slo.name for slo in SLOS}
    assert {"api-availability", "api-latency", "prediction-freshness", "data-collection-success",
            "monitoring-availability", "notification-delivery"} <= names
    objectives = {slo.name: str(slo.objective) for slo in SLOS}
    assert objectives["api-availability"] == "99.9" and objectives["api-latency"] == "99"
    assert objectives["monitoring-availability"] == "99.9" and objectives["notification-delivery"] == "99.9"


def test_sloth_validates_every_slo_file(tmp_path):
    # One file per directory: sloth reports the whole run, so each file is judged on its own.
    for path in SLO_FILES:
        (tmp_path / path.stem).mkdir()
        shutil.copy(path, tmp_path / path.stem / path.name)
    failed = {}
    for path in SLO_FILES:
        proc = sloth_validate(tmp_path / path.stem)
        if proc.returncode != 0:
            failed[path.name] = (proc.stdout + proc.stderr)[-2000:]
    assert not failed, failed


def test_sloth_validate_can_fail(tmp_path):
    text = (ROOT / "slos" / "api-latency.yaml").read_text()
    broken = text.replace("sum by (environment) (rate(", "sum by (environment (rate(", 1)
    assert broken != text
    (tmp_path / "api-latency.yaml").write_text(broken)
    proc = sloth_validate(tmp_path)
    assert proc.returncode != 0, proc.stdout + proc.stderr


def test_one_slo_per_file_and_every_file_loads():
    assert len(SLOS) == len(SLO_FILES) == len(data.slo_files())


@pytest.mark.parametrize("slo", SLOS, ids=lambda s: s.name)
def test_slo_queries_use_only_contract_metrics_and_labels(slo):
    contract = pn.load_contract(ROOT)
    problems = []
    for which in ("error", "total"):
        query = slo.query(which, "5m")
        unknown = contract.unknown_names(query)
        if unknown:
            problems.append(f"{which}_query names metrics outside the contract: {sorted(unknown)}")
        problems += [f"{which}_query: {p}" for p in contract.bad_app_labels(query)]
        # Every SLI keeps `environment`, as every recorded series of the stack does (dashboards select it).
        if not re.search(r"sum by \(environment\)", query):
            problems.append(f"{which}_query does not aggregate `by (environment)`")
    assert not problems, f"{slo.file}: " + "; ".join(problems)


# ------------------------------------------------------------------------------- refusals


def _edited(mutate) -> str:
    document = yaml.safe_load((ROOT / "slos" / "api-availability.yaml").read_text())
    mutate(document)
    return yaml.safe_dump(document)


REFUSALS = {
    "two SLOs in a file": (lambda d: d["slos"].append(dict(d["slos"][0], name="other")),
                           "expected exactly one SLO"),
    "an unknown key": (lambda d: d["slos"][0].update(objetive=99), "slos[0].objetive is not valid"),
    "a page that does not page": (lambda d: d["slos"][0]["alerting"]["page_alert"]["labels"].update(severity="warning"),
                                  "page_alert.labels.severity = 'warning' is not valid: expected 'critical'"),
    "an unknown team": (lambda d: d["slos"][0]["alerting"]["labels"].update(team="frontend"),
                        "alerting.labels.team = 'frontend' is not valid"),
    "no window in a query": (lambda d: d["slos"][0]["sli"]["events"].update(total_query="sum(rate(x[5m]))"),
                             "expected the window as {{.window}}"),
    "an objective of 100": (lambda d: d["slos"][0].update(objective=100), "objective = 100 is not valid"),
    "a lower-case alert name": (lambda d: d["slos"][0]["alerting"].update(name="apiAvailability"),
                                "alerting.name = 'apiAvailability' is not valid"),
    "no ticket": (lambda d: d["slos"][0]["alerting"].pop("ticket_alert"), "alerting.ticket_alert is missing"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_loader_refuses_with_the_place_and_the_reason(case):
    mutate, expected = REFUSALS[case]
    with pytest.raises(slo_config.SloError) as exc:
        slo_config.parse("api-availability.yaml", _edited(mutate))
    assert expected in str(exc.value) and "api-availability.yaml" in str(exc.value), str(exc.value)


def test_names_are_unique_across_files():
    text = (ROOT / "slos" / "api-availability.yaml").read_text()
    with pytest.raises(slo_config.SloError, match="already used by a.yaml"):
        slo_config.parse_all({"a.yaml": text, "b.yaml": text})


def test_a_bad_slo_file_declares_nothing(monkeypatch):
    """The stack reads the SLO files before it declares a resource."""
    from tools import offline

    files = dict(data.slo_files())
    files["api-availability.yaml"] = files["api-availability.yaml"].replace("objective: 99.9", "objective: 120")
    monkeypatch.setattr(data, "slo_files", lambda: files)
    with pytest.raises(slo_config.SloError, match="objective = 120 is not valid"):
        offline.run("dev", KUBERNETES)
    assert offline.LAST_RECORDER.resources == []
