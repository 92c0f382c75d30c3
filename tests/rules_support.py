"""Helpers for tests/test_rules.py: load the rule files, their promtool tests and runbooks.

Pure functions over the rule files Prometheus loads (rules/*.yaml and those generated from slos/*.yaml,
staged with their promtool tests by tests/stack_rules.py) and docs/runbooks/; no promtool here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests import stack_rules

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "rules"
RULE_TESTS_DIR = RULES_DIR / "tests"
RUNBOOKS_DIR = ROOT / "docs" / "runbooks"

RUNBOOK_URL_BASE = "https://github.com/football-prediction/football-monitoring/blob/main/docs/runbooks/"
RUNBOOK_SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation")
SEVERITIES = {"critical", "warning", "info"}

# Which team owns the alerts of each domain file (rules/<domain>.yaml).
DOMAIN_TEAMS = {
    "infrastructure": "platform",
    "kubernetes": "platform",
    "meta-monitoring": "platform",
    "logging": "platform",
    "tracing": "platform",
    "thanos": "platform",
    "application": "backend",
    "database": "backend",
    "cache": "backend",
    "business": "data",
    "security": "security",
}
RECORDING_FILE = "recording"

# The rule file generated from each SLO (slo-<name>): its alerts belong to the SLO's owner team, and it
# holds the SLO's own recording rules beside its alerts.
SLO_TEAMS = {Path(stack_rules.slo_config.rule_file_name(slo)).stem: slo.team for slo in stack_rules.slos()}
DOMAIN_TEAMS.update(SLO_TEAMS)

# Alerts that by design fire all the time (dead man's switch): they cannot have a
# "must not fire" test case; instead they must be tested firing at several times.
ALWAYS_FIRING = {"Watchdog"}

# Critical alerts page: `for` + 30s scrape + 30s evaluation + 30s group_wait <= 5m.
MAX_CRITICAL_FOR_SECONDS = 3 * 60

# Recording rules the Grafana dashboards use by name (contract with dashboards/).
REQUIRED_RECORDING_RULES = {
    "job:http_requests:rate5m",
    "job:http_requests_errors:rate5m",
    "job:http_requests_error_ratio:rate5m",
    "job_handler:http_requests:rate5m",
    "job_handler:http_request_duration_seconds_bucket:rate5m",
    "job_handler_method_status:http_requests:rate5m",
    "job_handler:http_request_duration_seconds_sum:rate5m",
    "job_handler:http_request_duration_seconds_count:rate5m",
    "job_operation:football_database_query_duration_seconds_bucket:rate5m",
    "model:prediction_duration_seconds_bucket:rate5m",
    "job:http_request_duration_seconds:p95_5m",
    "job:http_request_duration_seconds:p99_5m",
    "instance:node_cpu_utilisation:rate5m",
    "instance:node_memory_utilisation:ratio",
    "source:football_data_collection_success_ratio:rate5m",
    "model:prediction_requests:rate5m",
    "cache:cache_hit_ratio:rate5m",
}

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(text: str | None) -> float:
    """Seconds in a Prometheus duration such as '1h30m'; None or '' means 0."""
    if text in (None, "", 0):
        return 0.0
    match = _DURATION_RE.match(str(text))
    if not match or not any(match.groups()):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(v) * unit for v, unit in zip(match.groups(), _DURATION_UNITS) if v)


@dataclass
class Rule:
    file: Path
    group: str
    data: dict

    @property
    def domain(self) -> str:
        return self.file.stem

    @property
    def name(self) -> str:
        return self.data.get("alert") or self.data.get("record")

    @property
    def is_alert(self) -> bool:
        return "alert" in self.data

    @property
    def labels(self) -> dict:
        return self.data.get("labels") or {}

    @property
    def annotations(self) -> dict:
        return self.data.get("annotations") or {}

    @property
    def for_seconds(self) -> float:
        return parse_duration(self.data.get("for"))


def rule_files() -> list[Path]:
    return sorted(stack_rules.stage().glob("*.yaml"))


def rule_test_files() -> list[Path]:
    return sorted((stack_rules.stage() / "tests").glob("*.yaml"))


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_rules(paths: list[Path] | None = None) -> list[Rule]:
    rules = []
    for path in paths if paths is not None else rule_files():
        document = load_yaml(path) or {}
        for group in document.get("groups") or []:
            for data in group.get("rules") or []:
                rules.append(Rule(file=path, group=group.get("name"), data=data))
    return rules


def load_alerts() -> list[Rule]:
    return [rule for rule in load_rules() if rule.is_alert]


@dataclass
class AlertTestCase:
    test_file: Path
    rule_files: list[Path]
    alertname: str
    eval_time: str
    exp_alerts: list = field(default_factory=list)


def load_alert_test_cases(paths: list[Path] | None = None) -> list[AlertTestCase]:
    """Every alert_rule_test entry of the promtool test files, with the rule files it loads."""
    cases = []
    for path in paths if paths is not None else rule_test_files():
        document = load_yaml(path) or {}
        loaded = [(path.parent / name).resolve() for name in document.get("rule_files") or []]
        for test_group in document.get("tests") or []:
            for entry in test_group.get("alert_rule_test") or []:
                cases.append(
                    AlertTestCase(
                        test_file=path,
                        rule_files=loaded,
                        alertname=entry.get("alertname"),
                        eval_time=str(entry.get("eval_time")),
                        exp_alerts=entry.get("exp_alerts") or [],
                    )
                )
    return cases


def runbook_path(alertname: str) -> Path:
    return RUNBOOKS_DIR / f"{alertname}.md"


def runbook_sections(text: str) -> dict[str, str]:
    """Map '## Heading' -> body text (up to the next level-2 heading)."""
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r"^##\s+(.+?)\s*$", line)
        if heading:
            current = heading.group(1)
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections
