"""pint (cloudflare's Prometheus rule linter, at the pinned release) over every rule file Prometheus loads
(rules/*.yaml and the SLO rule files generated from slos/*.yaml).

pint runs offline (no live Prometheus): its PromQL, alert and label checks, plus the rules of
tests/pint.hcl. Every problem it reports at any severity fails the suite, except the entries of
ACCEPTED, each with the reason it stays; an entry pint no longer reports fails too, so the list
only ever holds what is still true.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from tests import stack_rules
from tests.conftest import ROOT, require_tool

CONFIG = ROOT / "tests" / "pint.hcl"

# (rule file, rule name, pint check): why it stays.
ACCEPTED = {
    ("meta-monitoring.yaml", "Watchdog", "alerts/comparison"):
        "the dead man's switch: it fires always by design, and an external heartbeat receiver pages "
        "when its notifications stop (docs/runbooks/Watchdog.md)",
}
# The prediction freshness SLO counts the samples of job:predictions_stale:bool, recorded in rules/recording.yaml
# beside the stack's other helpers: its SLI rules read a series of another group (one evaluation old at most,
# which moves a share of minutes by nothing that matters).
ACCEPTED.update({
    ("slo-prediction-freshness.yaml", record, "rule/dependency"):
        "the freshness SLI reads job:predictions_stale:bool from rules/recording.yaml"
    for record in [f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")]
    + ["slo:sli_errors:rate5m", "slo:sli_events:rate5m"]
})
# Every SLO's rule file records the same names (slo:sli_error:ratio_rate5m, ...), told apart by the `slo` label;
# pint matches producers by name and finds the other SLOs' groups too. Each file alone passes.
ACCEPTED.update({
    (stack_rules.slo_config.rule_file_name(slo), record, "rule/dependency"):
        "the SLO rule files record the same names, one `slo` label each"
    for slo in stack_rules.slos()
    for record in ("slo:sli_error:ratio_rate30d", "slo:current_burn_rate:ratio", "slo:period_burn_rate:ratio",
                   "slo:period_error_budget_remaining:ratio")
})

_RULE_NAME = re.compile(r"^\s*-\s*(?:alert|record):\s*(\S+)")


def rule_name(path: Path, line: int) -> str:
    """The alert or record name of the rule that holds this line of the file."""
    name = "?"
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if number > line:
            break
        match = _RULE_NAME.match(text)
        if match:
            name = match.group(1)
    return name


def lint(rules_dir: Path, tmp_path: Path) -> dict[tuple[str, str, str], str]:
    """(file, rule, check) -> pint's message, for every problem pint reports."""
    report = tmp_path / "pint.json"
    files = sorted(str(p) for p in rules_dir.glob("*.yaml"))
    proc = subprocess.run([require_tool("pint"), "--offline", "--no-color", f"--config={CONFIG}", "lint",
                           "--min-severity=info", "--fail-on=fatal", f"--json={report}", *files],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    problems = {}
    for problem in json.loads(report.read_text() or "[]"):
        path = Path(problem["path"])
        key = (path.name, rule_name(path, min(problem["lines"])), problem["reporter"])
        problems[key] = f"{problem['severity']}: {problem['problem']}"
    return problems


def test_pint_finds_nothing_but_the_accepted_list(tmp_path):
    problems = lint(stack_rules.stage(), tmp_path)
    unexpected = {k: v for k, v in problems.items() if k not in ACCEPTED}
    stale = sorted(set(ACCEPTED) - set(problems))
    assert not unexpected, "pint reports:\n" + "\n".join(f"{k}: {v}" for k, v in sorted(unexpected.items()))
    assert not stale, f"accepted but no longer reported (remove them): {stale}"


def test_pint_and_its_rules_can_fail(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    path = rules / "cache.yaml"
    text = path.read_text()
    first_runbook = re.search(r"\n\s*runbook_url: .*", text)
    broken = text[:first_runbook.start()] + text[first_runbook.end():]
    # One of pint's own checks: a regexp matcher that is a plain string.
    broken = broken.replace('{job="redis-exporter"}', '{job=~"redis-exporter"}', 1)
    path.write_text(broken)
    problems = lint(rules, tmp_path)
    found = {check for (file, _, check) in problems if file == "cache.yaml"}
    assert {"alerts/annotation", "promql/regexp"} <= found, problems
