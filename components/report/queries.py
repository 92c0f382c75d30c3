"""The PromQL of every part of the report, from the SLO definitions and the metric contract's names.

Pure: a period and an environment in, expressions out. Every name is one of the metric contract
(metrics/catalog.yaml, metrics/exporters.yaml) or a recording rule of rules/ and slos/ (the names of
components/configs/slo.py); tests/test_report.py checks that each expression parses and names only
those. The SLO figures read the rules' 5-minute series the way the SLO dashboard's "Budget spent in
the time range" does: the period's share of bad events is the sum of the recorded bad-event rates
over the sum of all-event rates (a quiet night weighs what its events weigh), and the budget spent
is that share over the budget, times the period over 30 days.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.configs import slo as slo_config

API_JOB = "football-prediction-api"
# Not user requests: left out of the error routes as the availability SLO leaves them out.
NOT_USER_REQUESTS = "/health|/metrics"
TOP_ROUTES = 10
PERIODS = {"day": 86400, "week": 7 * 86400}
# The charts' resolution: about 300 points over the period.
CHART_STEPS = {"day": 300, "week": 1800}


@dataclass(frozen=True)
class Period:
    name: str  # day | week
    end: int  # unix seconds, the end of the period

    @property
    def seconds(self) -> int:
        return PERIODS[self.name]

    @property
    def start(self) -> int:
        return self.end - self.seconds

    @property
    def range(self) -> str:
        """The period as a PromQL duration."""
        return f"{self.seconds // 86400}d"

    @property
    def step(self) -> int:
        return CHART_STEPS[self.name]

    @property
    def share_of_slo_period(self) -> float:
        """The period as a part of the SLOs' 30 days: a week at exactly the objective spends 7/30 of the budget."""
        return self.seconds / (slo_config.PERIOD_DAYS * 86400)


def regex_literal(value: str) -> str:
    """``value`` matched literally inside a PromQL regex string: RE2's metacharacters escaped (Python's
    re.escape also escapes '-', which RE2 refuses outside a class), then the string's own backslashes
    and quotes."""
    escaped = "".join("\\" + c if c in ".^$*+?()[]{}|\\" else c for c in value)
    return escaped.replace("\\", "\\\\").replace('"', '\\"')


def _matcher(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class Queries:
    """Every expression the report runs, for one environment and period. Instant queries are evaluated at
    the period's end; ``*_trend`` ones are range queries over the period at its chart step."""

    environment: str
    period: Period

    @property
    def env(self) -> str:
        return f'environment="{_matcher(self.environment)}"'

    @property
    def env_or_none(self) -> str:
        # Alerts of rules without labels (the Watchdog's vector(1)) carry the environment only as an
        # external label, which the TSDB does not store.
        return f'environment=~"{regex_literal(self.environment)}|"'

    # ---------------------------------------------------------------- SLOs
    def slo_errors(self) -> str:
        return f"sum by (slo) (sum_over_time({slo_config.ERRORS_5M}{{{self.env}}}[{self.period.range}]))"

    def slo_events(self) -> str:
        return f"sum by (slo) (sum_over_time({slo_config.EVENTS_5M}{{{self.env}}}[{self.period.range}]))"

    def slo_objective(self) -> str:
        return f"max by (slo) ({slo_config.OBJECTIVE}{{{self.env}}})"

    def slo_budget(self) -> str:
        return f"max by (slo) ({slo_config.ERROR_BUDGET}{{{self.env}}})"

    def slo_budget_left(self) -> str:
        return f"max by (slo) ({slo_config.BUDGET_REMAINING}{{{self.env}}})"

    def slo_budget_left_trend(self) -> str:
        return self.slo_budget_left()

    # ---------------------------------------------------------------- alerts
    def alerts_firing(self) -> str:
        """Every evaluation at which an alert fired in the period, as raw samples (a range selector)."""
        return f'ALERTS{{alertstate="firing", {self.env_or_none}}}[{self.period.range}]'

    def alerts_active_since(self) -> str:
        """ALERTS_FOR_STATE: per evaluation of a pending or firing alert, the time it became active."""
        return f"ALERTS_FOR_STATE{{{self.env_or_none}}}[{self.period.range}]"

    # ---------------------------------------------------------------- the API
    def _api(self, extra: str = "") -> str:
        return f'{self.env}, job="{API_JOB}", handler!~"{NOT_USER_REQUESTS}"{extra}'

    def route_errors(self) -> str:
        selector = self._api(', status=~"5.."')
        return (f"topk({TOP_ROUTES}, sum by (handler) (increase(http_requests_total{{{selector}}}"
                f"[{self.period.range}])) > 0)")

    def route_requests(self) -> str:
        return f"sum by (handler) (increase(http_requests_total{{{self._api()}}}[{self.period.range}]))"

    def latency_p95(self) -> str:
        # The recorded 5-minute bucket rates summed over the period are proportional to the period's
        # counts, and a quantile does not change with the scale.
        return (f"histogram_quantile(0.95, sum by (le) (sum_over_time("
                f'job_handler:http_request_duration_seconds_bucket:rate5m{{{self.env}, job="{API_JOB}"}}'
                f"[{self.period.range}])))")

    def latency_p95_trend(self) -> str:
        return f'max(job:http_request_duration_seconds:p95_5m{{{self.env}, job="{API_JOB}"}})'

    # ---------------------------------------------------------------- predictions
    def predictions(self) -> str:
        return f"sum by (model) (increase(prediction_requests_total{{{self.env}}}[{self.period.range}]))"

    def predictions_failed(self) -> str:
        return (f'sum by (model) (increase(prediction_requests_total{{{self.env}, status!="success"}}'
                f"[{self.period.range}]))")

    def predictions_trend(self) -> str:
        return f"sum by (model) (model:prediction_requests:rate5m{{{self.env}}})"

    def accuracy(self) -> str:
        return f"avg by (model, window) (last_over_time(prediction_accuracy{{{self.env}}}[{self.period.range}]))"

    def accuracy_trend(self) -> str:
        return f'avg by (model) (prediction_accuracy{{{self.env}, window="7d"}})'

    # ---------------------------------------------------------------- data collection
    def collection_runs(self) -> str:
        return f"sum by (source) (increase(football_data_collection_total{{{self.env}}}[{self.period.range}]))"

    def collection_failures(self) -> str:
        return (f"sum by (source) (increase(football_data_collection_errors_total{{{self.env}}}"
                f"[{self.period.range}]))")

    def collection_success_trend(self) -> str:
        return f"max by (source) (source:football_data_collection_success_ratio:rate5m{{{self.env}}})"

    def all(self) -> dict[str, str]:
        """Name -> expression of every query, for the checks and the benchmark."""
        return {name: getattr(self, name)() for name in (
            "slo_errors", "slo_events", "slo_objective", "slo_budget", "slo_budget_left", "slo_budget_left_trend",
            "alerts_firing", "alerts_active_since", "route_errors", "route_requests", "latency_p95",
            "latency_p95_trend", "predictions", "predictions_failed", "predictions_trend", "accuracy",
            "accuracy_trend", "collection_runs", "collection_failures", "collection_success_trend")}


def is_range_query(name: str) -> bool:
    return name.endswith("_trend")
