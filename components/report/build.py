"""The report's content, built from the answers of a running stack's Prometheus (and Alertmanager).

Each part keeps the figures it could compute and, beside them, what is missing and why: a query
Prometheus refused, a metric with no series in the environment, a period without events. A missing
figure stays None (never 0, never 100%), so the rendering can say so instead of drawing an empty
chart or claiming an objective was met.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional, Protocol, Sequence

from components.configs import slo as slo_config
from components.report.queries import API_JOB, Period, Queries, TOP_ROUTES
from components.report.source import Answer

SEVERITIES = ("critical", "warning", "info")


class Source(Protocol):
    def instant(self, expr: str, at: float) -> Answer: ...

    def range(self, expr: str, start: float, end: float, step: int) -> Answer: ...


@dataclass
class Chart:
    key: str  # file name stem
    title: str
    unit: str  # percent | seconds | per_second
    series: list  # [(label, [(t, value)])]
    threshold: Optional[tuple] = None  # (value, label): a line across the chart

    @property
    def has_data(self) -> bool:
        return any(math.isfinite(v) for _, points in self.series for _, v in points)


@dataclass
class Part:
    title: str
    missing: list = field(default_factory=list)  # what could not be read, each a sentence
    charts: list = field(default_factory=list)

    def lack(self, message: str) -> None:
        if message not in self.missing:
            self.missing.append(message)


@dataclass
class SloRow:
    name: str
    service: str
    team: str
    objective: float  # ratio, 0.999
    budget: float  # ratio, 0.001
    attainment: Optional[float] = None  # 1 - bad share over the period
    events: Optional[float] = None  # the recorded 5-minute event rates summed over the period (0: no traffic)
    budget_spent: Optional[float] = None  # share of the 30-day budget the period spent
    budget_left: Optional[float] = None  # of the rolling 30 days, at the period's end (below 0: missed)
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        return None if self.attainment is None else self.attainment >= self.objective


@dataclass
class Episode:
    start: float  # first firing evaluation
    end: float  # last firing evaluation + one evaluation interval
    active_since: Optional[float] = None  # ALERTS_FOR_STATE: when it became pending (for: before firing)
    open_at_start: bool = False  # already firing when the period began
    open_at_end: bool = False  # still firing when it ended

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class AlertRow:
    alertname: str
    severity: str
    team: str
    labels: dict
    episodes: list

    @property
    def firing_seconds(self) -> float:
        return sum(e.seconds for e in self.episodes)

    @property
    def longest(self) -> float:
        return max(e.seconds for e in self.episodes)


@dataclass
class Report:
    environment: str
    period: Period
    generated: float
    prometheus_url: str
    slos: Part
    slo_rows: list
    alerts: Part
    alert_rows: list
    active_now: Optional[list]  # Alertmanager's alerts, None when it was not asked
    errors: Part
    route_rows: list  # (handler, errors, requests)
    api_requests: Optional[float]
    latency: Part
    latency_p95: Optional[float]
    predictions: Part
    prediction_rows: list  # (model, requests, failed, accuracy 7d, accuracy 30d)
    collection: Part
    collection_rows: list  # (source, runs, failed)
    unreachable: Optional[str] = None  # Prometheus answered nothing at all
    alerts_read: bool = True  # whether the firing alerts were read (none fired is not "not read")

    @property
    def parts(self) -> list:
        return [self.slos, self.alerts, self.errors, self.latency, self.predictions, self.collection]

    @property
    def missing(self) -> list:
        return [(p.title, m) for p in self.parts for m in p.missing]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class _Reader:
    def __init__(self, source: Source, queries: Queries):
        self.source, self.q, self.period = source, queries, queries.period
        self.unreachable: Optional[str] = None

    def instant(self, part: Part, expr: str, what: str) -> Optional[Answer]:
        if self.unreachable:
            part.lack(f"{what}: not read (Prometheus is unreachable)")
            return None
        answer = self.source.instant(expr, self.period.end)
        return self._checked(part, answer, what, expr)

    def range(self, part: Part, expr: str, what: str) -> Optional[Answer]:
        if self.unreachable:
            part.lack(f"{what}: not read (Prometheus is unreachable)")
            return None
        answer = self.source.range(expr, self.period.start, self.period.end, self.period.step)
        return self._checked(part, answer, what, expr)

    def _checked(self, part: Part, answer: Answer, what: str, expr: str) -> Optional[Answer]:
        if answer.unreachable:
            self.unreachable = answer.error
        if not answer.ok:
            part.lack(f"{what}: {answer.error} (query: {expr})")
            return None
        return answer

    def empty(self, part: Part, answer: Optional[Answer], what: str) -> bool:
        """True (and the reason noted) when an answer holds no series at all."""
        if answer is None:
            return True
        if not answer.series:
            part.lack(f"{what}: no series in environment {self.q.environment!r} between {_iso(self.period.start)} "
                      f"and {_iso(self.period.end)}")
            return True
        return False


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0 or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a / b


def _points(answer: Optional[Answer], label: str) -> list:
    if answer is None:
        return []
    return sorted(((s.labels.get(label, "") or "all", s.values) for s in answer.series), key=lambda x: x[0])


# --------------------------------------------------------------------------- SLOs

def _slo_part(read: _Reader, slos: Sequence[slo_config.Slo]) -> tuple[Part, list]:
    part = Part("Service level objectives")
    q, period = read.q, read.period
    rows = [SloRow(s.name, s.service, s.team, float(s.objective_ratio), float(s.budget)) for s in slos]
    errors = read.instant(part, q.slo_errors(), "bad events per SLO")
    events = read.instant(part, q.slo_events(), "all events per SLO")
    objective = read.instant(part, q.slo_objective(), "the deployed objectives")
    budget = read.instant(part, q.slo_budget(), "the deployed error budgets")
    left = read.instant(part, q.slo_budget_left(), "the 30-day budget remaining")
    e, n = (errors.by("slo") if errors else {}), (events.by("slo") if events else {})
    deployed_objective = objective.by("slo") if objective else {}
    deployed_budget = budget.by("slo") if budget else {}
    remaining = left.by("slo") if left else {}
    for row in rows:
        # The stack's own recorded objective wins over this checkout's file: it is what was deployed.
        row.objective = deployed_objective.get(row.name, row.objective)
        row.budget = deployed_budget.get(row.name, row.budget)
        row.budget_left = remaining.get(row.name)
        row.events = n.get(row.name)
        if events is None:
            row.note = "not read"
        elif row.events is None:
            row.note = "no recorded series (are its rules deployed? slo.enabled)"
            part.lack(f"SLO {row.name}: no {slo_config.EVENTS_5M} series in environment {q.environment!r} over the "
                      f"{period.name}: its rules are not loaded, or nothing they read exists")
        elif row.events == 0:
            row.note = "no traffic in the period"
            part.lack(f"SLO {row.name}: no events in the {period.name} (no traffic): its attainment is undefined, "
                      "not 100%")
        else:
            share = _ratio(e.get(row.name), row.events)
            if share is None:
                row.note = "bad events not recorded"
            else:
                row.attainment = 1 - share
                row.budget_spent = share / row.budget * period.share_of_slo_period
    trend = read.range(part, q.slo_budget_left_trend(), "the 30-day budget remaining over the period")
    if trend is not None and trend.series:
        part.charts.append(Chart("slo-budget", "Error budget remaining (rolling 30 days)", "percent",
                                 _points(trend, "slo"), (0.0, "objective missed below 0")))
    elif trend is not None:
        part.lack(f"chart of the budget remaining: no {slo_config.BUDGET_REMAINING} series in the {period.name}")
    return part, rows


# --------------------------------------------------------------------------- alerts

def _key(labels: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ("__name__", "alertstate")))


def episodes(samples: Sequence[float], interval: float, start: float, end: float,
             active: Optional[list] = None) -> list[Episode]:
    """Firing evaluations (their timestamps) -> episodes: a gap of more than two evaluation intervals
    ends one. ``active``: the ALERTS_FOR_STATE samples [(t, active since)] of the same alert."""
    out: list[Episode] = []
    since = dict(active or [])
    for t in sorted(samples):
        if out and t - (out[-1].end - interval) <= 2 * interval:
            out[-1].end = t + interval
        else:
            out.append(Episode(t, t + interval, since.get(t)))
    for e in out:
        e.open_at_start = e.start - start <= 2 * interval
        e.open_at_end = end - (e.end - interval) <= 2 * interval
        e.end = min(e.end, end)
    return out


def _alert_part(read: _Reader) -> tuple[Part, list]:
    part = Part("Alerts fired")
    firing = read.instant(part, read.q.alerts_firing(), "firing alerts (ALERTS)")
    active = read.instant(part, read.q.alerts_active_since(), "when alerts became active (ALERTS_FOR_STATE)")
    if firing is None:
        return part, []
    gaps = [b - a for s in firing.series for (a, _), (b, _) in zip(s.values, s.values[1:]) if b > a]
    # The evaluation interval: the most common gap between an alert's samples.
    interval = statistics.median(gaps) if gaps else 30.0
    since = {}
    for s in (active.series if active else []):
        since[_key(s.labels)] = [(t, v) for t, v in s.values]
    rows = []
    for s in firing.series:
        labels = {k: v for k, v in s.labels.items() if k not in ("__name__", "alertstate")}
        found = episodes([t for t, _ in s.values], interval, read.period.start, read.period.end, since.get(_key(s.labels)))
        if found:
            rows.append(AlertRow(labels.get("alertname", "?"), labels.get("severity", "none"), labels.get("team", "none"),
                                 labels, found))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    rows.sort(key=lambda r: (order.get(r.severity, len(order)), -r.firing_seconds, r.alertname))
    return part, rows


# --------------------------------------------------------------------------- the API, predictions, collection

def _error_part(read: _Reader) -> tuple[Part, list, Optional[float]]:
    part = Part("Top error routes")
    requests = read.instant(part, read.q.route_requests(), "requests per route")
    errors = read.instant(part, read.q.route_errors(), "server errors (5xx) per route")
    if read.empty(part, requests, f"http_requests_total of job {API_JOB}"):
        return part, [], None
    per_route = requests.by("handler")
    total = sum(per_route.values())
    if total == 0:
        part.lack(f"no API requests in the {read.period.name} (no traffic)")
        return part, [], 0.0
    rows = sorted(((h, v, per_route.get(h)) for h, v in (errors.by("handler") if errors else {}).items()),
                  key=lambda r: -r[1])[:TOP_ROUTES]
    return part, rows, total


def _latency_part(read: _Reader) -> tuple[Part, Optional[float]]:
    part = Part("Latency (p95)")
    overall = read.instant(part, read.q.latency_p95(), "p95 latency over the period")
    trend = read.range(part, read.q.latency_p95_trend(), "p95 latency over time")
    p95 = None
    if overall is not None and overall.series:
        value = overall.series[0].values[0][1]
        p95 = value if math.isfinite(value) else None
        if p95 is None:
            part.lack(f"p95 latency over the {read.period.name}: no requests were timed (no traffic)")
    elif overall is not None:
        part.lack(f"p95 latency over the {read.period.name}: no job_handler:http_request_duration_seconds_bucket:"
                  f"rate5m series of job {API_JOB} in environment {read.q.environment!r}")
    if trend is not None and any(math.isfinite(v) for s in trend.series for _, v in s.values):
        part.charts.append(Chart("latency-p95", "API latency, p95 of 5 minutes", "seconds", _points(trend, "job")))
    elif trend is not None:
        part.lack("chart of the p95 latency: no job:http_request_duration_seconds:p95_5m samples in the period")
    return part, p95


def _prediction_part(read: _Reader) -> tuple[Part, list]:
    part = Part("Predictions")
    volume = read.instant(part, read.q.predictions(), "prediction requests per model")
    failed = read.instant(part, read.q.predictions_failed(), "failed predictions per model")
    accuracy = read.instant(part, read.q.accuracy(), "prediction accuracy per model")
    rows = []
    if not read.empty(part, volume, "prediction_requests_total"):
        per_model, bad = volume.by("model"), failed.by("model") if failed else {}
        acc = {}
        for s in (accuracy.series if accuracy else []):
            acc[(s.labels.get("model"), s.labels.get("window"))] = s.values[0][1]
        if sum(per_model.values()) == 0:
            part.lack(f"no prediction requests in the {read.period.name} (no traffic)")
        for model in sorted(per_model):
            rows.append((model, per_model[model], bad.get(model, 0.0) if failed else None,
                         acc.get((model, "7d")), acc.get((model, "30d"))))
    if accuracy is not None and not accuracy.series:
        part.lack("prediction_accuracy: no series (the evaluation task has not reported accuracy)")
    volume_trend = read.range(part, read.q.predictions_trend(), "prediction requests over time")
    accuracy_trend = read.range(part, read.q.accuracy_trend(), "prediction accuracy over time")
    for answer, chart in ((volume_trend, Chart("predictions-volume", "Prediction requests per second", "per_second",
                                               _points(volume_trend, "model"))),
                          (accuracy_trend, Chart("predictions-accuracy", "Prediction accuracy (7-day window)",
                                                 "percent", _points(accuracy_trend, "model")))):
        if answer is None:
            continue
        if chart.has_data:
            part.charts.append(chart)
        else:
            part.lack(f"chart {chart.title!r}: no samples in the {read.period.name}")
    return part, rows


def _collection_part(read: _Reader) -> tuple[Part, list]:
    part = Part("Data collection")
    runs = read.instant(part, read.q.collection_runs(), "collection runs per source")
    failed = read.instant(part, read.q.collection_failures(), "failed collection runs per source")
    rows = []
    if not read.empty(part, runs, "football_data_collection_total"):
        per_source, bad = runs.by("source"), failed.by("source") if failed else {}
        if sum(per_source.values()) == 0:
            part.lack(f"no collection runs in the {read.period.name}")
        rows = [(source, per_source[source], bad.get(source, 0.0) if failed else None) for source in sorted(per_source)]
    trend = read.range(part, read.q.collection_success_trend(), "collection success over time")
    if trend is not None:
        chart = Chart("collection-success", "Data collection success (5 minutes)", "percent", _points(trend, "source"))
        if chart.has_data:
            part.charts.append(chart)
        else:
            part.lack(f"chart of the collection success: no samples in the {read.period.name}")
    return part, rows


def build(source: Source, environment: str, period: Period, slos: Sequence[slo_config.Slo],
          prometheus_url: str = "", alertmanager=None, now: Optional[float] = None) -> Report:
    """The whole report; ``alertmanager`` (source.Alertmanager) adds the alerts it holds now."""
    read = _Reader(source, Queries(environment, period))
    slo_part, slo_rows = _slo_part(read, slos)
    alert_part, alert_rows = _alert_part(read)
    alerts_read = not any(m.startswith("firing alerts (ALERTS)") for m in alert_part.missing)
    active_now = None
    if alertmanager is not None:
        active_now, problem = alertmanager.alerts()
        if problem:
            alert_part.lack(f"alerts held now: {problem}")
            active_now = None
        else:
            active_now = [a for a in active_now
                          if (a.get("labels") or {}).get("environment", environment) == environment]
    error_part, route_rows, api_requests = _error_part(read)
    latency_part, p95 = _latency_part(read)
    prediction_part, prediction_rows = _prediction_part(read)
    collection_part, collection_rows = _collection_part(read)
    return Report(environment, period, now if now is not None else datetime.now(timezone.utc).timestamp(),
                  prometheus_url, slo_part, slo_rows, alert_part, alert_rows, active_now, error_part, route_rows,
                  api_requests, latency_part, p95, prediction_part, prediction_rows, collection_part,
                  collection_rows, read.unreachable, alerts_read=alerts_read)
