"""Service level objectives: slos/*.yaml to Prometheus rules and runbook pages. No Pulumi here.

An SLO file is Sloth's ``prometheus/v1`` spec holding one SLO (docs/slos.md), so ``sloth validate``
and ``sloth generate`` read it too. From each SLO this renders, in one rule file:

* the SLI error ratio, (error query) / (total query), over each window the alerts read (5m, 30m,
  1h, 2h, 6h, 1d, 3d) and over the 30-day period;
* the objective and budget as series (objective, error budget, period, current and period burn
  rate, budget remaining), for dashboards and reports;
* the multi-window, multi-burn-rate alerts of the SRE workbook: a page (critical) when 2% of the
  30-day budget goes in an hour or 5% in six hours, a ticket (warning) when 10% goes in a day or in
  three days; each long window is confirmed by a short one (1/12 of it) so that an alert ends soon
  after the burn does, and counted only for the share of it that holds data (a young Prometheus
  would otherwise take its first minutes for the whole window).

The alert windows and their expressions are Sloth's (sloth.dev/core/sli_rules/v1 and alert_rules/v1
at the pinned version), plus the coverage condition (_alert_expr); the 30-day ratio is not: Sloth averages the 5-minute ratios, which weighs a
quiet night's five minutes like a busy evening's and is NaN for the whole period after any five
minutes without events. Here the 5-minute error and total rates are recorded and summed over the
period, so the 30-day ratio is the share of bad events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Mapping, Sequence

import yaml

SPEC_VERSION = "prometheus/v1"
PERIOD = "30d"
PERIOD_DAYS = 30
# Sloth's conventions: the names of the recorded series.
SLI_ERROR_RATIO = "slo:sli_error:ratio_rate{window}"
ERRORS_5M = "slo:sli_errors:rate5m"
EVENTS_5M = "slo:sli_events:rate5m"
OBJECTIVE = "slo:objective:ratio"
ERROR_BUDGET = "slo:error_budget:ratio"
TIME_PERIOD = "slo:time_period:days"
CURRENT_BURN_RATE = "slo:current_burn_rate:ratio"
PERIOD_BURN_RATE = "slo:period_burn_rate:ratio"
BUDGET_REMAINING = "slo:period_error_budget_remaining:ratio"

RULE_FILE_PREFIX = "slo-"
RUNBOOK_URL_BASE = "https://github.com/football-prediction/football-monitoring/blob/main/docs/runbooks/"
KNOWN_TEAMS = ("platform", "backend", "data", "security")
_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$")  # Sloth's NameRegexp
_ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_WINDOW_VAR = re.compile(r"{{ *\.window *}}")  # Sloth's TplSLIQueryWindowVarRegex

_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def seconds(window: str) -> int:
    return int(window[:-1]) * _SECONDS[window[-1]]


@dataclass(frozen=True)
class BurnWindow:
    """One condition of an alert: the long window's ratio over `factor` times the budget, confirmed by the
    short window. `budget_percent` of the period's budget goes in `long` at exactly that rate."""

    long: str
    short: str
    budget_percent: int

    @property
    def factor(self) -> Decimal:
        return Decimal(self.budget_percent) / 100 * seconds(PERIOD) / seconds(self.long)


@dataclass(frozen=True)
class AlertKind:
    key: str  # page | ticket (Sloth's page_alert / ticket_alert)
    severity: str
    suffix: str  # appended to alerting.name
    windows: tuple[BurnWindow, BurnWindow]


# Sloth's google-30d windows (internal/alert/windows/google-30d.yaml), the SRE workbook's table.
PAGE = AlertKind("page", "critical", "FastBurn", (BurnWindow("1h", "5m", 2), BurnWindow("6h", "30m", 5)))
TICKET = AlertKind("ticket", "warning", "SlowBurn", (BurnWindow("1d", "2h", 10), BurnWindow("3d", "6h", 10)))
ALERT_KINDS = (PAGE, TICKET)
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")  # every window an alert reads, shortest first


class SloError(ValueError):
    """An SLO file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Slo:
    file: str  # slos/<file>, for messages and the runbooks' links
    service: str
    name: str
    objective: Decimal  # percent, e.g. 99.9
    description: str
    error_query: str  # with {{.window}}
    total_query: str
    alert_name: str
    team: str

    @property
    def objective_ratio(self) -> Decimal:
        return self.objective / 100

    @property
    def budget(self) -> Decimal:
        """The error budget as a ratio: 1 - objective (0.001 for 99.9%)."""
        return (100 - self.objective) / 100

    def alert(self, kind: AlertKind) -> str:
        return f"{self.alert_name}{kind.suffix}"

    def query(self, which: str, window: str) -> str:
        return _WINDOW_VAR.sub(window, self.error_query if which == "error" else self.total_query)

    @property
    def selector(self) -> str:
        return f'{{slo="{self.name}"}}'


def _number(value: Decimal) -> str:
    """A decimal as PromQL reads it, without float noise (0.001, 14.4, 99.9)."""
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- parsing


def _fields(where: str, value, allowed: Sequence[str], required: Sequence[str]) -> dict:
    if not isinstance(value, dict):
        raise SloError(f"{where} is not valid: expected an object with {', '.join(required)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise SloError(f"{where}.{unknown[0]} is not valid: expected only {', '.join(allowed)} (Sloth ignores unknown "
                       f"keys; here they are refused so that a misspelt key is not lost)")
    for key in required:
        if value.get(key) in (None, "", {}, []):
            raise SloError(f"{where}.{key} is missing")
    return value


def _string(where: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SloError(f"{where} = {value!r} is not valid: expected a non-empty string")
    return value.strip()


def parse(file: str, text: str) -> Slo:
    """One SLO file, checked beyond what Sloth checks (one SLO per file, routing labels, both alerts)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SloError(f"{file} is not valid YAML: {exc}") from None
    top = _fields(file, document, ("version", "service", "slos"), ("version", "service", "slos"))
    if top["version"] != SPEC_VERSION:
        raise SloError(f"{file}: version = {top['version']!r} is not valid: expected {SPEC_VERSION!r}")
    service = _string(f"{file}: service", top["service"])
    if not _NAME.match(service):
        raise SloError(f"{file}: service = {service!r} is not valid: expected letters, digits, '-', '_' and '.'")
    slos = top["slos"]
    if not isinstance(slos, list) or len(slos) != 1:
        raise SloError(f"{file}: slos is not valid: expected exactly one SLO (one file per SLO)")
    at = f"{file}: slos[0]"
    slo = _fields(at, slos[0], ("name", "objective", "description", "sli", "alerting"),
                  ("name", "objective", "description", "sli", "alerting"))
    name = _string(f"{at}.name", slo["name"])
    if not _NAME.match(name):
        raise SloError(f"{at}.name = {name!r} is not valid: expected letters, digits, '-', '_' and '.'")
    objective = slo["objective"]
    if isinstance(objective, bool) or not isinstance(objective, (int, float)) or not 0 < objective < 100:
        raise SloError(f"{at}.objective = {objective!r} is not valid: expected a percentage above 0 and below 100 "
                       "(99.9)")
    sli = _fields(f"{at}.sli", slo["sli"], ("events",), ("events",))
    events = _fields(f"{at}.sli.events", sli["events"], ("error_query", "total_query"),
                     ("error_query", "total_query"))
    queries = {}
    for key in ("error_query", "total_query"):
        query = " ".join(_string(f"{at}.sli.events.{key}", events[key]).split())
        if not _WINDOW_VAR.search(query):
            raise SloError(f"{at}.sli.events.{key} is not valid: expected the window as {{{{.window}}}} in every "
                           "range (rate(x[{{.window}}]))")
        if "{{" in _WINDOW_VAR.sub("", query):
            raise SloError(f"{at}.sli.events.{key} is not valid: {{{{.window}}}} is the only template variable")
        queries[key] = query
    alerting = _fields(f"{at}.alerting", slo["alerting"], ("name", "labels", "page_alert", "ticket_alert"),
                       ("name", "labels", "page_alert", "ticket_alert"))
    alert_name = _string(f"{at}.alerting.name", alerting["name"])
    if not _ALERT_NAME.match(alert_name):
        raise SloError(f"{at}.alerting.name = {alert_name!r} is not valid: expected a CamelCase alert name")
    labels = _fields(f"{at}.alerting.labels", alerting["labels"], ("team",), ("team",))
    team = labels["team"]
    if team not in KNOWN_TEAMS:
        raise SloError(f"{at}.alerting.labels.team = {team!r} is not valid: expected one of "
                       f"{', '.join(KNOWN_TEAMS)} (the teams Alertmanager routes)")
    for kind in ALERT_KINDS:
        where = f"{at}.alerting.{kind.key}_alert"
        alert = _fields(where, alerting[f"{kind.key}_alert"], ("labels",), ("labels",))
        alert_labels = _fields(f"{where}.labels", alert["labels"], ("severity",), ("severity",))
        if alert_labels["severity"] != kind.severity:
            raise SloError(f"{where}.labels.severity = {alert_labels['severity']!r} is not valid: expected "
                           f"{kind.severity!r} (the {kind.key} goes to the team's {kind.severity} route)")
    return Slo(file=file, service=service, name=name, objective=Decimal(str(objective)),
               description=" ".join(_string(f"{at}.description", slo["description"]).split()),
               error_query=queries["error_query"], total_query=queries["total_query"],
               alert_name=alert_name, team=team)


def parse_all(files: Mapping[str, str]) -> list[Slo]:
    """Every SLO file (name -> text), with names and alert names unique across them."""
    slos = [parse(name, text) for name, text in sorted(files.items())]
    for attribute, what in (("name", "SLO name"), ("alert_name", "alerting.name")):
        seen: dict[str, str] = {}
        for slo in slos:
            value = getattr(slo, attribute)
            if value in seen:
                raise SloError(f"{slo.file}: {what} {value!r} is already used by {seen[value]}")
            seen[value] = slo.file
    return slos


# --------------------------------------------------------------------------- rules


def _ratio(slo: Slo, window: str) -> str:
    return f"({slo.query('error', window)})\n/\n({slo.query('total', window)})\n"


def covered_share(slo: Slo, window: str, evaluation_seconds: int) -> str:
    """The share of `window` this Prometheus has evaluated the SLO for: its recorded 5m event rate holds one
    sample per evaluation, so a full window holds window / interval of them (clamped: an interval that does
    not divide the window fits one more sample in some windows)."""
    return (f"clamp_max(count_over_time({EVENTS_5M}{slo.selector}[{window}]) * {evaluation_seconds} / "
            f"{seconds(window)}, 1)")


def _alert_expr(slo: Slo, kind: AlertKind, evaluation_seconds: int) -> str:
    """Sloth's two window pairs, each with a third condition of ours: the long window's ratio times the share
    of it that holds data passes the threshold too, i.e. the part of the window not yet recorded counts as
    good. A Prometheus with minutes of history (a new environment, a replica whose volume was replaced)
    otherwise reads those minutes as the whole 6h or 3d window, and one scrape of a replica that was still
    starting pages. With the window full the third condition is the first; the alert's value stays the
    long window's ratio."""
    budget = _number(slo.budget)
    parts = []
    for w in kind.windows:
        threshold = f"({_number(w.factor)} * {budget})"
        long_ratio = f"{SLI_ERROR_RATIO.format(window=w.long)}{slo.selector}"
        parts.append(f"(\n  {long_ratio} > {threshold}\n  and\n"
                     f"  {SLI_ERROR_RATIO.format(window=w.short)}{slo.selector} > {threshold}\n  and\n"
                     f"  {long_ratio} * {covered_share(slo, w.long, evaluation_seconds)} > {threshold}\n)")
    return "\nor\n".join(parts) + "\n"


def _percent(value: Decimal) -> str:
    return f"{_number(value * 100)}%"


def _duration(hours: Decimal) -> str:
    if hours >= 48:
        return f"{_number((hours / 24).quantize(Decimal('0.1')))} days"
    return f"{_number(hours.quantize(Decimal('0.1')))} hours"


def exhaustion(w: BurnWindow) -> str:
    """How long the whole budget lasts at exactly this condition's burn rate."""
    return _duration(Decimal(seconds(PERIOD)) / w.factor / 3600)


def _alert(slo: Slo, kind: AlertKind, evaluation_seconds: int) -> dict:
    a, b = kind.windows
    return {
        "alert": slo.alert(kind),
        "expr": _alert_expr(slo, kind, evaluation_seconds),
        "labels": {"severity": kind.severity, "team": slo.team, "service": slo.service, "slo": slo.name},
        "annotations": {
            "summary": f"The {slo.name} SLO burns its error budget {'fast' if kind is PAGE else 'steadily'}",
            "description": (
                f"{{{{ $value | humanizePercentage }}}} of the events of the {slo.name} SLO in "
                f"{{{{ $labels.environment }}}} were bad over the last {a.long} or {b.long}: at least "
                f"{_number(b.factor)} times the {_percent(slo.budget)} the {_percent(slo.objective_ratio)} objective "
                f"allows ({a.budget_percent}% of the 30-day budget gone in {a.long}, or {b.budget_percent}% in "
                f"{b.long}; at that rate the whole budget lasts {exhaustion(b)} or less)."),
            "runbook_url": f"{RUNBOOK_URL_BASE}{slo.alert(kind)}.md",
        },
    }


def rule_groups(slo: Slo, environment: str, evaluation_seconds: int) -> list[dict]:
    """`evaluation_seconds`: the interval the group runs at (prometheus.evaluationInterval), which the alerts'
    window coverage counts in."""
    labels = {"slo": slo.name, "service": slo.service}
    meta_labels = {"environment": environment, **labels}
    budget = _number(slo.budget)
    sli = [{"record": SLI_ERROR_RATIO.format(window=w), "expr": _ratio(slo, w), "labels": labels} for w in WINDOWS]
    sli += [
        {"record": ERRORS_5M, "expr": slo.query("error", "5m"), "labels": labels},
        {"record": EVENTS_5M, "expr": slo.query("total", "5m"), "labels": labels},
    ]
    # Sums of samples taken every evaluation: their ratio is the share of bad events over the period,
    # and a sample without events adds 0 to both instead of making the period NaN.
    period = {"record": SLI_ERROR_RATIO.format(window=PERIOD),
              "expr": (f"sum_over_time({ERRORS_5M}{slo.selector}[{PERIOD}])\n/\n"
                       f"sum_over_time({EVENTS_5M}{slo.selector}[{PERIOD}])\n"),
              "labels": labels}
    meta = [
        {"record": OBJECTIVE, "expr": f"vector({_number(slo.objective_ratio)})", "labels": meta_labels},
        {"record": ERROR_BUDGET, "expr": f"vector({budget})", "labels": meta_labels},
        {"record": TIME_PERIOD, "expr": f"vector({PERIOD_DAYS})", "labels": meta_labels},
        {"record": CURRENT_BURN_RATE, "expr": f"{SLI_ERROR_RATIO.format(window='5m')}{slo.selector} / {budget}",
         "labels": labels},
        {"record": PERIOD_BURN_RATE, "expr": f"{SLI_ERROR_RATIO.format(window=PERIOD)}{slo.selector} / {budget}",
         "labels": labels},
        {"record": BUDGET_REMAINING, "expr": f"1 - {SLI_ERROR_RATIO.format(window=PERIOD)}{slo.selector} / {budget}",
         "labels": labels},
    ]
    # One group: its rules run in order at one timestamp, so the period ratio, the budget series and the
    # alerts read the ratios of the same evaluation (Sloth's three groups read each other's last one).
    return [{"name": f"slo.{slo.name}", "rules": sli + [period] + meta + [_alert(slo, kind, evaluation_seconds) for kind in ALERT_KINDS]}]


class _Literal(str):
    pass


def _literal(dumper, value):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def _blocks(value):
    if isinstance(value, dict):
        return {k: _blocks(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blocks(v) for v in value]
    if isinstance(value, str) and "\n" in value:
        return _Literal(value)
    return value


def rule_file_name(slo: Slo) -> str:
    return f"{RULE_FILE_PREFIX}{slo.name}.yaml"


def render(slo: Slo, environment: str, evaluation_seconds: int) -> str:
    """The rule file of one SLO."""
    groups = _blocks({"groups": rule_groups(slo, environment, evaluation_seconds)})
    return (f"# Generated by football-monitoring from slos/{slo.file} (components/configs/slo.py); edit the SLO "
            "file, not this file.\n" + yaml.dump(groups, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                                                 width=120))


def rule_files(slos: Iterable[Slo], environment: str, evaluation_seconds: int) -> dict[str, str]:
    """One rule file per SLO (slo-<name>.yaml), beside those of rules/ in Prometheus' rules directory: a promtool
    test of one SLO loads its rules alone."""
    return {rule_file_name(slo): render(slo, environment, evaluation_seconds) for slo in slos}


# --------------------------------------------------------------------------- runbooks


@dataclass(frozen=True)
class RelatedAlert:
    """An alert of rules/ that reads a metric the SLI reads: where to look next."""

    name: str
    severity: str


def _windows_table(slo: Slo, kind: AlertKind) -> list[str]:
    lines = ["| long window | short window | burn rate | error ratio over both | budget gone in the long window | "
             "whole budget gone in |", "|---|---|---|---|---|---|"]
    for w in kind.windows:
        lines.append(f"| {w.long} | {w.short} | {_number(w.factor)}x | {_percent(w.factor * slo.budget)} | "
                     f"{w.budget_percent}% | {exhaustion(w)} |")
    return lines


def _in_environment(query: str) -> str:
    return re.sub(r"\{(?=\w)", '{environment="<environment>", ', query)


def runbook(slo: Slo, kind: AlertKind, related: Sequence[RelatedAlert] = (),
            dashboard: str = "dashboards/slos.json") -> str:
    """The runbook page of one alert of an SLO (docs/runbooks/<alert>.md), from the SLO file alone."""
    name = slo.alert(kind)
    other = TICKET if kind is PAGE else PAGE
    sel = f'{{environment="<environment>", slo="{slo.name}"}}'
    windows = ", ".join(f"{w.long} and {w.short}" for w in kind.windows)
    lines = [
        f"# {name}",
        "",
        "<!-- Generated from " + f"slos/{slo.file}" + " by `python -m scripts.slo_runbooks --write`; edit the SLO "
        "file, not this page. -->",
        "",
        "| | |",
        "|---|---|",
        f"| Severity | `{kind.severity}` ({kind.key}) |",
        f"| Team | `{slo.team}` |",
        f"| Service | `{slo.service}` |",
        f"| SLO | [`slos/{slo.file}`](../../slos/{slo.file}): `{slo.name}`, objective "
        f"{_percent(slo.objective_ratio)} over {PERIOD_DAYS} days |",
        f"| Rule | generated by `components/configs/slo.py` into the rule file `{rule_file_name(slo)}`, group "
        f"`slo.{slo.name}` |",
        "",
        "Placeholders such as `<environment>` stand for the labels of the firing alert.",
        "",
        "## Meaning",
        "",
        slo.description,
        "",
        f"The objective allows {_percent(slo.budget)} of bad events over {PERIOD_DAYS} days: that is the error "
        f"budget. This alert fires when the error ratio over both windows of one of these pairs is above the "
        f"burn rate times the budget ({windows}):",
        "",
        *_windows_table(slo, kind),
        "",
        "The long window shows that the burn is large enough to matter, the short one that it is still going "
        f"on: the alert resolves soon after the burn stops. `{slo.alert(other)}` is the "
        f"{'slower' if kind is PAGE else 'faster'} {other.key} of the same SLO.",
        "",
        "A Prometheus with less history than the long window (a new environment, a replica whose volume was "
        "replaced) counts the part of the window it has not recorded as good: a burst in its first minutes "
        "does not fire this alert, an outage that lasts does, as soon as it would after a clean history.",
        "",
        "## Impact",
        "",
        (f"At this rate the {PERIOD_DAYS}-day error budget is gone in {exhaustion(kind.windows[0])} to "
         f"{exhaustion(kind.windows[1])}: users already see it, and someone must act now."
         if kind is PAGE else
         f"At this rate the {PERIOD_DAYS}-day error budget is gone in {exhaustion(kind.windows[0])} to "
         f"{exhaustion(kind.windows[1])}: not an emergency, but the objective will be missed unless the cause "
         "is fixed within days."),
        "",
        "## Diagnosis",
        "",
        "How bad, over which windows, and how much of the budget is left:",
        "```promql",
        *[f"{SLI_ERROR_RATIO.format(window=w)}{sel}" for w in WINDOWS],
        f"{BUDGET_REMAINING}{sel}",
        f"{CURRENT_BURN_RATE}{sel}",
        "```",
        "The bad and all events over the last hour, as the SLO counts them (break them down by adding labels to "
        "the `by` clauses):",
        "```promql",
        _in_environment(slo.query("error", "1h")),
        _in_environment(slo.query("total", "1h")),
        "```",
        f"The SLO dashboard (`{dashboard}`) shows the ratios per window and the budget spent over time.",
        "",
        "## Mitigation",
        "",
    ]
    if related:
        lines.append("The alerts that watch the same metrics point at the cause and say how to fix it; follow the "
                     "runbook of the one that fires:")
        lines.append("")
        lines += [f"- [`{r.name}`]({r.name}.md) ({r.severity})" for r in related]
        lines.append("")
    if kind is PAGE:
        lines += [
            "- A release started it: roll it back first (`kubectl -n <namespace> rollout undo deployment/<name>`), "
            "find the cause after.",
            "- A dependency or the platform started it: follow that component's runbook; the budget recovers "
            "by itself once the burn stops.",
            f"- Silence only the page while the fix is under way (`amtool silence add alertname={name} "
            f"environment=<environment>`); `{slo.alert(other)}` keeps the slow burn in view.",
        ]
    else:
        lines += [
            "- Find the part that fails most (the breakdown above) and open a ticket for its team; a steady "
            "burn is a bug, a dependency or a capacity limit, rarely an outage.",
            "- If the objective is wrong rather than the service, change it in the SLO file (a reviewed change, "
            f"`slos/{slo.file}`), never by silencing `{name}` for weeks.",
        ]
    return "\n".join(lines) + "\n"
