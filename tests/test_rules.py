"""Prometheus alerting and recording rules: promtool checks, promtool unit tests, and the
conventions every alert must follow (labels, annotations, runbooks, test coverage).

Every failure here fails; nothing is skipped. promtool must be on PATH
(scripts/install-test-tools.sh installs it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rules_support as rs  # noqa: E402
from tests.conftest import require_tool  # noqa: E402

# A bound that stops a hung promtool, not a benchmark: on a 2-core machine busy with builds the
# longest test file took over 180 s before the week-long tests moved to their own file.
PROMTOOL_TIMEOUT = 600  # seconds per promtool invocation

RULE_FILES = rs.rule_files()
RULE_TEST_FILES = rs.rule_test_files()
ALL_RULES = rs.load_rules(RULE_FILES)
ALERTS = [rule for rule in ALL_RULES if rule.is_alert]


def _params(items, id_of):
    """Parametrize over items; an empty list becomes one failing case, never a skip."""
    if not items:
        return [pytest.param(None, id="nothing-found")]
    return [pytest.param(item, id=id_of(item)) for item in items]


def _require(item, what):
    if item is None:
        pytest.fail(f"no {what} found: the rule data is missing", pytrace=False)


# --------------------------------------------------------------------------------------
# promtool
# --------------------------------------------------------------------------------------


PROMTOOL_MISSING = (
    "promtool is not built: run scripts/install-test-tools.sh (it builds Prometheus at the image's "
    "version) and re-run the tests"
)


def _promtool() -> str | None:
    try:
        return require_tool("promtool")
    except pytest.fail.Exception:
        return None


@pytest.fixture(scope="session")
def promtool_runs():
    """Start every promtool invocation at once on a thread pool; tests wait on their own.

    The unit tests of a few files simulate hours or a week of samples; running them
    concurrently keeps the whole module within seconds of the slowest file.
    Without promtool this yields {} and every promtool test FAILS (never skips).
    """
    promtool = _promtool()
    if promtool is None:
        yield {}
        return
    # Longest first: larger test files tend to simulate longer periods.
    jobs = [("test", path) for path in sorted(RULE_TEST_FILES, key=lambda p: -p.stat().st_size)]
    jobs += [("check", path) for path in RULE_FILES]
    workers = max(2, os.cpu_count() or 2)
    futures: dict[tuple[str, Path], Future] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for kind, path in jobs:
            futures[(kind, path)] = pool.submit(_run_promtool, promtool, kind, path)
        yield futures


def test_promtool_is_installed():
    require_tool("promtool")


def _run_promtool(promtool: str, kind: str, path: Path) -> subprocess.CompletedProcess:
    # `promtool test rules` resolves rule_files relative to the test file; run from its dir.
    return subprocess.run(
        [promtool, kind, "rules", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )


def _assert_promtool_ok(runs: dict, key: tuple[str, Path], what: str) -> None:
    if not runs:
        pytest.fail(PROMTOOL_MISSING, pytrace=False)
    result = runs[key].result()
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )


def test_there_are_rule_files_and_tests():
    assert RULE_FILES, "no rules/*.yaml found"
    assert RULE_TEST_FILES, "no rules/tests/*.yaml found"
    assert ALERTS, "no alerting rules found"


def test_every_domain_has_a_rule_file_and_a_test_file():
    stems = {path.stem for path in RULE_FILES}
    test_stems = {path.stem for path in RULE_TEST_FILES}
    missing = sorted((set(rs.DOMAIN_TEAMS) | {rs.RECORDING_FILE}) - stems)
    assert not missing, f"missing rule files: {missing}"
    unknown = sorted(stems - set(rs.DOMAIN_TEAMS) - {rs.RECORDING_FILE})
    assert not unknown, f"rule files without a known domain/team (update rules_support.DOMAIN_TEAMS): {unknown}"
    missing_tests = sorted(f"{d}_test.yaml" for d in rs.DOMAIN_TEAMS if f"{d}_test" not in test_stems)
    assert not missing_tests, f"missing promtool test files in rules/tests/: {missing_tests}"


@pytest.mark.parametrize("path", _params(RULE_FILES, lambda p: p.name))
def test_promtool_check_rules(promtool_runs, path):
    _require(path, "rules/*.yaml")
    _assert_promtool_ok(promtool_runs, ("check", path), f"promtool check rules {path.name}")


@pytest.mark.parametrize("path", _params(RULE_TEST_FILES, lambda p: p.name))
def test_promtool_test_rules(promtool_runs, path):
    _require(path, "rules/tests/*.yaml")
    _assert_promtool_ok(promtool_runs, ("test", path), f"promtool test rules {path.name}")


# --------------------------------------------------------------------------------------
# PromQL syntax (independent of promtool's version)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", _params(ALL_RULES, lambda r: f"{r.file.name}:{r.name}"))
def test_expr_parses(rule):
    _require(rule, "rules")
    import promql_parser

    expr = rule.data.get("expr")
    assert isinstance(expr, str) and expr.strip(), f"{rule.name}: empty expr"
    try:
        promql_parser.parse(expr)
    except Exception as exc:  # the parser raises ValueError; be broad on purpose
        pytest.fail(f"{rule.file.name}: {rule.name}: expr does not parse: {exc}\n{expr}", pytrace=False)


# --------------------------------------------------------------------------------------
# Conventions
# --------------------------------------------------------------------------------------


def test_alert_names_are_unique_and_camel_case():
    counts = Counter(rule.name for rule in ALERTS)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    assert not duplicates, f"alert names defined more than once: {duplicates}"
    bad = sorted(name for name in counts if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name or ""))
    assert not bad, f"alert names must be CamelCase: {bad}"


def test_recording_rules_for_dashboards_exist():
    # Each SLO's rule file records the same names under its own `slo` label: once per file.
    recorded = Counter((rule.name, rule.domain if rule.domain in rs.SLO_TEAMS else "")
                       for rule in ALL_RULES if not rule.is_alert)
    duplicates = sorted(name for (name, _), count in recorded.items() if count > 1)
    recorded = {name for name, _ in recorded}
    assert not duplicates, f"recording rules defined more than once: {duplicates}"
    missing = sorted(rs.REQUIRED_RECORDING_RULES - set(recorded))
    assert not missing, f"recording rules used by the dashboards are missing: {missing}"
    misplaced = sorted(r.name for r in ALL_RULES
                       if not r.is_alert and r.domain != rs.RECORDING_FILE and r.domain not in rs.SLO_TEAMS)
    assert not misplaced, f"recording rules belong in rules/recording.yaml (or an SLO's rule file): {misplaced}"
    alerts_in_recording = sorted(r.name for r in ALERTS if r.domain == rs.RECORDING_FILE)
    assert not alerts_in_recording, f"alerts in rules/recording.yaml: {alerts_in_recording}"


@pytest.mark.parametrize("alert", _params(ALERTS, lambda a: a.name))
def test_alert_labels_and_annotations(alert):
    _require(alert, "alerting rules")
    problems = []
    labels, annotations = alert.labels, alert.annotations
    if labels.get("severity") not in rs.SEVERITIES:
        problems.append(f"severity {labels.get('severity')!r} not in {sorted(rs.SEVERITIES)}")
    if not (labels.get("team") or labels.get("service")):
        problems.append("needs a team or service label")
    expected_team = rs.DOMAIN_TEAMS.get(alert.domain)
    if expected_team and labels.get("team") != expected_team:
        problems.append(f"team {labels.get('team')!r}, expected {expected_team!r} for {alert.file.name}")
    if not labels.get("service"):
        problems.append("missing service label")
    for key in ("summary", "description", "runbook_url"):
        if not str(annotations.get(key) or "").strip():
            problems.append(f"missing annotation {key}")
    if "$value" not in str(annotations.get("description", "")):
        problems.append("description must include the value ({{ $value | humanize... }})")
    expected_url = f"{rs.RUNBOOK_URL_BASE}{alert.name}.md"
    if annotations.get("runbook_url") != expected_url:
        problems.append(f"runbook_url {annotations.get('runbook_url')!r}, expected {expected_url!r}")
    assert not problems, f"{alert.file.name}: {alert.name}: " + "; ".join(problems)


@pytest.mark.parametrize("alert", _params(ALERTS, lambda a: a.name))
def test_critical_alerts_page_within_five_minutes(alert):
    _require(alert, "alerting rules")
    if alert.labels.get("severity") != "critical":
        return
    assert alert.for_seconds <= rs.MAX_CRITICAL_FOR_SECONDS, (
        f"{alert.name}: critical with for={alert.data.get('for')}; "
        "for + scrape + evaluation + group_wait must stay within 5m, so for <= 3m "
        "(make slow-burn conditions warnings)"
    )


@pytest.mark.parametrize("alert", _params(ALERTS, lambda a: a.name))
def test_runbook_exists_with_sections(alert):
    _require(alert, "alerting rules")
    path = rs.runbook_path(alert.name)
    assert path.is_file(), f"{alert.name}: runbook {path.relative_to(rs.ROOT)} does not exist"
    sections = rs.runbook_sections(path.read_text(encoding="utf-8"))
    for name in rs.RUNBOOK_SECTIONS:
        assert name in sections, f"{path.name}: missing section '## {name}'"
        assert sections[name].strip(), f"{path.name}: section '## {name}' is empty"
    for name in ("Diagnosis", "Mitigation"):
        assert "```" in sections[name] or "`" in sections[name], (
            f"{path.name}: section '## {name}' has no command or query"
        )
    assert "```" in sections["Diagnosis"], f"{path.name}: Diagnosis needs a code block (PromQL/kubectl)"


# --------------------------------------------------------------------------------------
# Test coverage: every alert is shown firing and shown silent
# --------------------------------------------------------------------------------------

ALERT_CASES = rs.load_alert_test_cases(RULE_TEST_FILES)


@pytest.mark.parametrize("alert", _params(ALERTS, lambda a: a.name))
def test_alert_has_firing_and_silent_test_cases(alert):
    _require(alert, "alerting rules")
    # Only cases from test files that actually load the file defining the alert count.
    cases = [
        case
        for case in ALERT_CASES
        if case.alertname == alert.name and alert.file.resolve() in case.rule_files
    ]
    firing = [case for case in cases if case.exp_alerts]
    silent = [case for case in cases if not case.exp_alerts]
    assert firing, f"{alert.name}: no promtool case where it fires (alert_rule_test with non-empty exp_alerts)"
    if alert.name in rs.ALWAYS_FIRING:
        assert len(firing) >= 2 and not silent, f"{alert.name}: always-firing alert must be tested firing at >= 2 times"
    else:
        assert silent, f"{alert.name}: no promtool case where it must stay silent (alert_rule_test with exp_alerts: [])"

    for case in firing:
        for expected in case.exp_alerts:
            exp_labels = expected.get("exp_labels") or {}
            exp_annotations = expected.get("exp_annotations") or {}
            where = f"{case.test_file.name} at {case.eval_time}"
            for key in ("severity", "team", "service"):
                assert key in exp_labels, f"{alert.name}: {where}: exp_labels lacks {key}"
            assert exp_labels.get("severity") == alert.labels.get("severity"), (
                f"{alert.name}: {where}: severity {exp_labels.get('severity')!r} differs from the rule"
            )
            for key in ("summary", "description", "runbook_url"):
                assert key in exp_annotations, f"{alert.name}: {where}: exp_annotations lacks {key}"


def test_alert_tests_name_existing_alerts():
    known = {alert.name for alert in ALERTS}
    unknown = sorted({case.alertname for case in ALERT_CASES} - known)
    assert not unknown, f"promtool tests reference unknown alerts: {unknown}"


# Files named *_weekly_test.yaml hold tests that need a week of history (offset 1w baselines):
# promtool evaluates every rule of the file at every step up to the last eval_time, which at
# 30s costs minutes. They may take a coarser step, but one that cannot change an outcome: at
# most a sixth of the shortest `for` of the alerts they test, dividing every eval_time.
WEEKLY_SUFFIX = "_weekly_test.yaml"


def test_rule_test_files_use_30s_evaluation_interval():
    for path in RULE_TEST_FILES:
        document = rs.load_yaml(path) or {}
        if path.name.endswith(WEEKLY_SUFFIX):
            continue
        assert str(document.get("evaluation_interval")) == "30s", (
            f"{path.name}: evaluation_interval must be 30s (the production rule evaluation interval)"
        )


def test_weekly_rule_tests_take_a_step_that_cannot_change_an_outcome():
    weekly = [p for p in RULE_TEST_FILES if p.name.endswith(WEEKLY_SUFFIX)]
    assert weekly, f"no *{WEEKLY_SUFFIX} file: the week-over-week alerts have no test"
    by_name = {alert.name: alert for alert in ALERTS}
    for path in weekly:
        document = rs.load_yaml(path) or {}
        step = rs.parse_duration(str(document.get("evaluation_interval")))
        cases = [case for case in ALERT_CASES if case.test_file == path]
        assert cases, f"{path.name}: tests no alert"
        shortest_for = min(rs.parse_duration(by_name[c.alertname].data.get("for", "0s")) for c in cases)
        assert step * 6 <= shortest_for, (
            f"{path.name}: evaluation_interval {step:.0f}s is coarser than a sixth of the shortest "
            f"`for` ({shortest_for:.0f}s) of the alerts it tests"
        )
        for case in cases:
            at = rs.parse_duration(str(case.eval_time))
            assert at % step == 0, f"{path.name}: eval_time {case.eval_time} is not a multiple of the step"
        # At a coarse step, a rule evaluated before the recording it reads sees a sample a whole
        # step old, which from 5m (the query lookback) on is no sample: the order must be fixed,
        # every recording group before every group with an alert.
        groups = [g for rule_file in document.get("rule_files", [])
                  for g in (rs.load_yaml(path.parent / rule_file) or {}).get("groups", [])]
        order = document.get("group_eval_order") or []
        assert sorted(order) == sorted(g["name"] for g in groups), (
            f"{path.name}: group_eval_order must list every group of its rule files")
        alerting = {g["name"] for g in groups if any("alert" in r for r in g["rules"])}
        first_alerting = min((order.index(n) for n in alerting), default=len(order))
        late = [n for n in order[first_alerting:] if n not in alerting]
        assert not late, f"{path.name}: recording groups {late} are evaluated after an alerting group"


# --------------------------------------------------------------------------------------
# Metric coverage: the application's metric contract is watched (scripts/metric_coverage.py)
# --------------------------------------------------------------------------------------

METRIC_COVERAGE_MIN = 95.0  # percent; the team's target, as scripts/metric_coverage.py --min


def test_catalog_metrics_are_on_a_dashboard_and_in_an_alert():
    from scripts import metric_coverage

    cov = metric_coverage.coverage(rs.ROOT)
    catalog = cov["catalog"]
    assert catalog, "metrics/catalog.yaml lists no metrics"
    not_on_dashboards = sorted(m for m in catalog if not cov["dashboards"][m])
    not_in_alerts = sorted(m for m in catalog if not cov["alerts"][m])
    both = [m for m in catalog if cov["dashboards"][m] and cov["alerts"][m]]
    share = 100.0 * len(both) / len(catalog)
    assert share >= METRIC_COVERAGE_MIN, (
        f"only {share:.1f}% of the {len(catalog)} catalog metrics are both on a dashboard and in an "
        f"alerting rule (target {METRIC_COVERAGE_MIN:g}%); not on a dashboard: {not_on_dashboards}; "
        f"not in an alert: {not_in_alerts}"
    )
    # The script's own gate (exit code) agrees.
    assert metric_coverage.main(["--min", str(METRIC_COVERAGE_MIN), "--root", str(rs.ROOT)]) == 0
