"""A synthetic week of the API's traffic with an evening incident, as the SLO tests and the report's
tests back-fill it into a real Prometheus.

The week is the synthetic fleet's diurnal load (tests/synthetic_fleet.py: closed-form counters), reduced
to the series the availability SLI reads plus the health probe it must leave out: a baseline of 0.02%
server errors and a 45-minute incident at the evening peak with 20% of requests failing. Its counters
have a closed form, so what a test expects comes from the history itself, never from Prometheus.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.configs import slo as slo_config
from tests import synthetic_fleet as sf

DAY = 86400
WEEK = 7 * DAY
RATE = 40.0  # requests per second of the API at its mean load
BASELINE = 0.0002  # the share of 5xx outside the incident
INCIDENT_SHARE = 0.2
INCIDENT_START_DAY, INCIDENT_HOUR, INCIDENT_SECONDS = 3, 19, 45 * 60
TOLERANCE = 0.01  # one percentage point of the budget
SLO_NAME = "api-availability"
LABELS = {"environment": "prod", "job": "football-prediction-api", "instance": "10.42.0.7:8000",
          "namespace": "football-prediction", "pod": "football-prediction-api-7c9f8-abcde", "container": "api",
          "method": "GET", "handler": "/api/v1/predictions/{match_id}"}


class Traffic(sf.Model):
    """Requests of one status: `kind` = bad (5xx), good, or all; closed form of the diurnal load G(t)."""

    def __init__(self, spec: sf.FleetSpec, kind: str):
        self.spec, self.kind = spec, kind
        start = spec.start - spec.start % DAY + INCIDENT_START_DAY * DAY + INCIDENT_HOUR * 3600
        self.t0, self.t1 = start, start + INCIDENT_SECONDS

    def G(self, t: float) -> float:
        return sf.Window([t], self.spec.start).G[0]

    def bad(self, t: float) -> float:
        clipped = min(max(t, self.t0), self.t1)
        incident = self.G(clipped) - self.G(self.t0)
        return RATE * (BASELINE * self.G(t) + (INCIDENT_SHARE - BASELINE) * incident)

    def total(self, t: float) -> float:
        return RATE * self.G(t)

    def value(self, t: float) -> float:
        return {"bad": self.bad, "all": self.total, "good": lambda x: self.total(x) - self.bad(x)}[self.kind](t)

    def values(self, win: sf.Window) -> list:
        g0, g1 = self.G(self.t0), self.G(self.t1)
        out = []
        for t, g in zip(win.ts, win.G):
            bad = RATE * (BASELINE * g + (INCIDENT_SHARE - BASELINE) * (min(max(g, g0), g1) - g0))
            out.append("%.3f" % {"bad": bad, "all": RATE * g, "good": RATE * g - bad}[self.kind])
        return out


def families(spec: sf.FleetSpec) -> list[sf.Family]:
    http = sf.Family("http_requests_total", "counter")
    labels = ",".join(f'{k}="{v}"' for k, v in LABELS.items())
    http.series.append((labels + ',status="500"', Traffic(spec, "bad")))
    http.series.append((labels + ',status="200"', Traffic(spec, "good")))
    # The health probe fails all the time and is no user request: it must not count.
    health = labels.replace('handler="/api/v1/predictions/{match_id}"', 'handler="/health"')
    http.series.append((health + ',status="503"', Traffic(spec, "all")))
    return [http]


def expected_share(spec: sf.FleetSpec, slo: slo_config.Slo, first: int, last: int) -> float:
    """The share of the 30-day budget the events between two samples spent, from the closed form."""
    bad, total = Traffic(spec, "bad"), Traffic(spec, "all")
    ratio = (bad.bad(last) - bad.bad(first)) / (total.total(last) - total.total(first))
    return ratio / float(slo.budget) * (last - first) / (slo_config.PERIOD_DAYS * DAY)


def write_history(spec: sf.FleetSpec, families: list, work: Path, tsdb: Path, promtool: str) -> None:
    """The families' samples as TSDB blocks in ``tsdb``."""
    om = Path(work) / "week.om"
    sf.write_openmetrics(spec, om, families)
    # Blocks of up to a week (162 h, a compaction range): promtool reads its input once per block.
    proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", "--max-block-duration=168h",
                           str(om), str(tsdb)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    om.unlink()


# --------------------------------------------------------------------------- the report's week
# Beside the traffic: the API's latency histogram, predictions and their accuracy, data collection,
# the alerts that fired (as Prometheus writes ALERTS and ALERTS_FOR_STATE), and an environment whose
# counters never move (a period with no traffic).

QUIET_ENVIRONMENT = "staging"
WORKER = {"environment": "prod", "job": "football-prediction-worker", "instance": "10.42.0.9:9808",
          "namespace": "football-prediction", "pod": "football-prediction-worker-6d5f7-fghij", "container": "worker"}
MODELS = {"xgboost-v3.2": (1.0, 0.01, 0.71), "poisson-v1.4": (0.4, 0.03, 0.64)}  # rate/s, failed share, accuracy
SOURCES = {"fixtures": (1 / 60, 0.02), "odds": (1 / 30, 0.1)}  # runs/s, failed share


@dataclass(frozen=True)
class Firing:
    """One episode of an alert, as its rule would have fired it: firing from `start` to `end` (seconds
    after the incident began), active (pending) `pending` seconds before it fired."""

    labels: dict
    start: float
    end: float
    pending: float = 0.0


def alert_episodes(spec: sf.FleetSpec) -> list[tuple[dict, float, float, float]]:
    """(labels, active since, first firing, last firing) of every alert of the week, in unix seconds."""
    t0 = Traffic(spec, "bad").t0
    slo = {"environment": "prod", "service": "football-prediction-api", "slo": SLO_NAME, "team": "backend"}
    firings = [
        Firing({"alertname": "FootballApiAvailabilityFastBurn", "severity": "critical", **slo}, 4 * 60,
               INCIDENT_SECONDS + 6 * 60),
        Firing({"alertname": "FootballApiAvailabilitySlowBurn", "severity": "warning", **slo}, 25 * 60, 4 * 3600),
        # Twice, with a `for:`: pending ten minutes before each.
        Firing({"alertname": "FootballDataCollectionErrors", "severity": "warning", "team": "data",
                "environment": "prod", "source": "odds"}, -DAY, -DAY + 1800, 600),
        Firing({"alertname": "FootballDataCollectionErrors", "severity": "warning", "team": "data",
                "environment": "prod", "source": "odds"}, DAY, DAY + 3600, 600),
    ]
    out = [(f.labels, t0 + f.start - f.pending, t0 + f.start, t0 + f.end) for f in firings]
    # The Watchdog fires all the time; its rule has no labels of the environment (vector(1)).
    out.append(({"alertname": "Watchdog", "severity": "info", "team": "platform", "service": "prometheus"},
                spec.start - 30 * DAY, spec.start, spec.end))
    return out


def _alert_series(spec: sf.FleetSpec) -> list[sf.Family]:
    alerts, state = sf.Family("ALERTS", "gauge"), sf.Family("ALERTS_FOR_STATE", "gauge")
    by_labels: dict = {}
    for labels, active, first, last in alert_episodes(spec):
        by_labels.setdefault(tuple(sorted(labels.items())), []).append((active, first, last))
    for key, runs in by_labels.items():
        text = ",".join(f'{k}="{v}"' for k, v in key)

        def firing(t, runs=runs):
            return 1 if any(first <= t <= last for _, first, last in runs) else None

        def since(t, runs=runs):
            return next((active for active, _, last in runs if active <= t <= last), None)

        alerts.series.append((text + ',alertstate="firing"', sf.Func(firing, "%d")))
        alerts.series.append((text + ',alertstate="pending"',
                              sf.Func(lambda t, runs=runs: 1 if any(a <= t < f for a, f, _ in runs) else None, "%d")))
        state.series.append((text, sf.Func(since, "%d")))
    return [alerts, state]


def report_families(spec: sf.FleetSpec) -> list[sf.Family]:
    api = ",".join(f'{k}="{v}"' for k, v in LABELS.items())
    duration = sf.Family("http_request_duration_seconds", "histogram")
    duration.series.append((api, sf.Histogram(RATE, sf.HTTP_BUCKETS, 0.04, 0.6, slow=0.04)))
    predictions = sf.Family("prediction_requests_total", "counter")
    accuracy = sf.Family("prediction_accuracy", "gauge")
    api_pod = ",".join(f'{k}="{v}"' for k, v in LABELS.items() if k not in ("method", "handler"))
    worker = ",".join(f'{k}="{v}"' for k, v in WORKER.items())
    for model, (rate, failed, acc) in MODELS.items():
        predictions.series.append((f'{api_pod},model="{model}",status="success"', sf.Counter(rate * (1 - failed))))
        predictions.series.append((f'{api_pod},model="{model}",status="error"', sf.Counter(rate * failed, fmt="%.3f")))
        for window in ("7d", "30d"):
            accuracy.series.append((f'{worker},model="{model}",window="{window}"',
                                    sf.Gauge(acc, wiggle=0.02, fmt="%.4f")))
    runs = sf.Family("football_data_collection_total", "counter")
    errors = sf.Family("football_data_collection_errors_total", "counter")
    for source, (rate, failed) in SOURCES.items():
        runs.series.append((f'{worker},source="{source}"', sf.Counter(rate, traffic=False, fmt="%.3f")))
        errors.series.append((f'{worker},source="{source}",error_type="timeout"',
                              sf.Counter(rate * failed, traffic=False, fmt="%.3f")))
    http = families(spec)[0]
    quiet = ",".join(f'{k}="{QUIET_ENVIRONMENT if k == "environment" else v}"' for k, v in LABELS.items())
    http.series.append((quiet + ',status="200"', sf.Const(1000)))
    return [http, duration, predictions, accuracy, runs, errors] + _alert_series(spec)
