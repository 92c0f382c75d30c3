"""promtool unit tests of every SLO's alerts, built from burn scenarios.

For each SLO of slos/, a promtool test file (slo-<name>_test.yaml, beside the generated rule file
slo-<name>.yaml) whose groups feed the SLI's own input series with a given share of bad events over
time, and check the alerts with real promtool:

* a burn just over the page's 14.4x (15x) after two clean hours pages within the SRE workbook's
  detection time, 1 h x 14.4 / 15 = 57.6 min, and not three minutes before it;
* a total outage pages within the detection time of the burn it is (1 / budget), and the page
  carries the SLO's labels (routing: severity, team) and annotations;
* a steady 0.9x burn alerts nothing while every window of the page fills (6.5 h; the ticket's 1d and
  3d windows see the same steady share), and a 5-minute spike at 100x on it that recovers does not page;
* in a Prometheus whose history starts with the test (a new environment, a replaced volume), a
  2-minute burst at 50x alerts nothing, although every window's ratio is the burst's own share: the
  part of a window not recorded yet counts as good; a total outage from the first minute still
  pages within its detection time;
* a steady 5x burn from the start opens a ticket within 1 d x 3 / 5 = 14.4 h, with its labels and
  annotations, and never pages.

The detection times are the workbook's ("Alerting on SLOs": long window x burn-rate factor / burn),
plus one scrape and one evaluation interval. Each SLO has an input builder here that knows which
series its SLI reads; an SLO without one fails the suite (docs/slos.md: adding an SLO).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Sequence

from components.configs import slo as slo_config

ENVIRONMENT = "prod"
STEP = 30  # seconds between input samples: the scrape interval (and the rule evaluation interval)
EVENTS_PER_MINUTE = 1200  # counter SLIs: events per minute
SERIES = 20  # sample SLIs (up, a recorded 0/1 indicator): parallel series, so that a share is smooth
# Clean history before a timed burn: long enough that the 6h/30m pair, whose 6h window holds only this much
# history, cannot fire before the 1h/5m pair under test (it would after 2/3 of it at 15x).
CLEAN = 2 * 3600


@dataclass(frozen=True)
class Segment:
    seconds: int
    burn: float  # the share of bad events as a multiple of the error budget


# -------------------------------------------------------------------------- input series


def _runs(values: Sequence[str]) -> str:
    """promtool's expanding notation for a list of literal values: 'v' or 'vxN' (N + 1 values)."""
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        out.append(values[i] if j == i else f"{values[i]}x{j - i}")
        i = j + 1
    return " ".join(out)


def _fmt(x: float) -> str:
    return repr(round(x, 6)) if x != int(x) else str(int(x))


def _counter(increments: Sequence[float]) -> str:
    """A counter from 0 with these increments per sample, as 'start+stepxN' runs of equal increments."""
    parts, value, i = ["0"], 0.0, 0
    while i < len(increments):
        j = i
        while j + 1 < len(increments) and increments[j + 1] == increments[i]:
            j += 1
        step, n = increments[i], j - i + 1
        parts.append(f"{_fmt(value + step)}+{_fmt(step)}x{n - 1}")
        value += step * n
        i = j + 1
    return " ".join(parts)


def _shares(slo: slo_config.Slo, segments: Sequence[Segment], step: int) -> list[float]:
    """The share of bad events in each sample interval."""
    budget = float(slo.budget)
    out = []
    for seg in segments:
        out += [min(1.0, seg.burn * budget)] * (seg.seconds // step)
    return out


def counter_sli(bad: str, good: Sequence[str] = (), total: Sequence[str] = (),
                constant: Sequence[tuple[str, float]] = ()) -> Callable:
    """Counters: `bad` counts bad events, `good` good ones, `total` all of them; `constant` series grow at a
    fixed rate per minute whatever the scenario (traffic the SLI must leave out)."""

    def build(slo, segments, step, series=None):
        per_sample = EVENTS_PER_MINUTE * step / 60
        shares = _shares(slo, segments, step)
        series = [{"series": bad, "values": _counter([per_sample * s for s in shares])}]
        series += [{"series": g, "values": _counter([per_sample * (1 - s) for s in shares])} for g in good]
        series += [{"series": t, "values": _counter([per_sample] * len(shares))} for t in total]
        series += [{"series": c, "values": _counter([rate * step / 60] * len(shares))} for c, rate in constant]
        return series

    build.share_until = _counter_share
    return build


def _counter_share(slo, segments, step, t):
    """Counters of steady rates from 0: over a window that holds every sample, rate() extrapolates neither end
    (the first sample is 0, the last at t), so the ratio is the burn's own share."""
    assert len(segments) == 1, segments
    return Decimal(str(segments[0].burn)) * slo.budget


def _placement(shares: Sequence[float], series: int = SERIES) -> list[set[int]]:
    """Which of the SERIES series hold a bad sample in each interval: the bad samples are spread over the series
    and intervals so that every interval holds its share, rounded down cumulatively."""
    out, due, placed, turn = [], 0.0, 0, 0
    for share in shares:
        due += share * series
        now = math.floor(due + 1e-9) - placed
        placed += now
        out.append({(turn + k) % series for k in range(now)})
        turn = (turn + now) % series
    return out


def sample_sli(template: str, good: str, bad: str) -> Callable:
    """One 0/1 sample per series and interval; `template` has {i} for the series' own label value. The first
    interval has no sample (a scrape starts after it)."""

    def build(slo, segments, step, series=SERIES):
        placement = _placement(_shares(slo, segments, step), series)
        return [{"series": template.replace("{i}", str(i)),
                 "values": _runs(["_"] + [bad if i in bad_here else good for bad_here in placement])}
                for i in range(series)]

    def share_until(slo, segments, step, t):
        """The share of bad samples up to t (a window that holds them all)."""
        placement = _placement(_shares(slo, segments, step))[: t // step]
        return Decimal(sum(len(p) for p in placement)) / (SERIES * len(placement))

    build.share_until = share_until
    return build


_API = 'environment="prod", job="football-prediction-api", instance="10.1.0.1:8000", namespace="app"'
_WORKER = 'environment="prod", job="football-prediction-worker", instance="10.1.0.2:9808"'
_AM = 'environment="prod", job="alertmanager", instance="10.1.0.3:9093", integration="webhook"'
_HANDLER = 'method="GET", handler="/api/v1/predictions/{match_id}"'

# What each SLO's SLI reads. The excluded traffic (health probe, metrics scrape) fails all the time in the
# availability and latency scenarios: were it counted, the 0.9x burn would page.
BUILDERS: dict[str, Callable] = {
    "api-availability": counter_sli(
        bad=f'http_requests_total{{{_API}, {_HANDLER}, status="500"}}',
        good=[f'http_requests_total{{{_API}, {_HANDLER}, status="200"}}'],
        constant=[(f'http_requests_total{{{_API}, method="GET", handler="/health", status="503"}}', 600.0),
                  (f'http_requests_total{{{_API}, method="GET", handler="/metrics", status="500"}}', 60.0)]),
    "prediction-freshness": sample_sli(
        'job:predictions_stale:bool{environment="prod", job="football-prediction-api", shard="s{i}"}', "0", "1"),
    "data-collection-success": counter_sli(
        bad=f'football_data_collection_errors_total{{{_WORKER}, source="odds", error_type="timeout"}}',
        total=[f'football_data_collection_total{{{_WORKER}, source="odds"}}']),
    "monitoring-availability": sample_sli(
        'up{environment="prod", job="alertmanager", instance="10.2.0.{i}:9093"}', "1", "0"),
    "notification-delivery": counter_sli(
        bad=f'alertmanager_notifications_failed_total{{{_AM}, reason="other"}}',
        total=[f'alertmanager_notifications_total{{{_AM}}}']),
}


def _latency(slo, segments, step, series=None):
    """A histogram: every request lands in +Inf and _count, the fast ones also in le="0.5" (and the buckets
    below), the slow ones in le="1"; a /health series is slow all the time and must not count."""
    per_sample = EVENTS_PER_MINUTE * step / 60
    shares = _shares(slo, segments, step)
    total = _counter([per_sample] * len(shares))
    fast = _counter([per_sample * (1 - s) for s in shares])
    name = "http_request_duration_seconds"
    series = []
    for le, values in (("0.25", fast), ("0.5", fast), ("1.0", total), ("+Inf", total)):
        series.append({"series": f'{name}_bucket{{{_API}, {_HANDLER}, le="{le}"}}', "values": values})
    series.append({"series": f"{name}_count{{{_API}, {_HANDLER}}}", "values": total})
    slow_health = _counter([300 * step / 60] * len(shares))
    zero = _counter([0.0] * len(shares))
    for le, values in (("0.5", zero), ("+Inf", slow_health)):
        series.append({"series": f'{name}_bucket{{{_API}, method="GET", handler="/health", le="{le}"}}',
                       "values": values})
    series.append({"series": f'{name}_count{{{_API}, method="GET", handler="/health"}}', "values": slow_health})
    return series


_latency.share_until = _counter_share
BUILDERS["api-latency"] = _latency


# -------------------------------------------------------------------------- expectations


def detection_seconds(slo: slo_config.Slo, kind: slo_config.AlertKind, burn: float) -> float:
    """The workbook's detection time of a steady burn after a clean history: the first pair whose long and
    short windows both pass their threshold, each window taking window x factor / burn to get there."""
    times = [max(slo_config.seconds(w.long), slo_config.seconds(w.short)) * float(w.factor) / burn
             for w in kind.windows if burn > float(w.factor)]
    return min(times) if times else math.inf


def _duration(seconds_: float) -> str:
    s = int(seconds_)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def _on_grid(seconds_: float, down: bool = True) -> int:
    return int(math.floor(seconds_ / STEP) * STEP if down else math.ceil(seconds_ / STEP) * STEP)


def _firing(slo, kind, t: float, firing: bool) -> dict:
    return {"expr": f'count(ALERTS{{alertname="{slo.alert(kind)}", alertstate="firing"}}) or vector(0)',
            "eval_time": _duration(t), "exp_samples": [{"labels": "{}", "value": 1 if firing else 0}]}


def expected_alert(slo: slo_config.Slo, kind: slo_config.AlertKind, annotations: dict, value: Decimal) -> dict:
    """The alert as promtool reports it: the rule's labels and the series' own, and the annotations with the
    two values the templates read filled in ($value as humanizePercentage writes it, %.4g of a percentage)."""
    description = annotations["description"]
    placeholders = ("{{ $value | humanizePercentage }}", "{{ $labels.environment }}")
    assert description.count("{{") == len(placeholders) and all(p in description for p in placeholders), description
    percent = float(value) * 100
    description = description.replace(placeholders[0], f"{percent:.4g}%").replace(placeholders[1], ENVIRONMENT)
    return {"exp_labels": {"severity": kind.severity, "team": slo.team, "service": slo.service, "slo": slo.name,
                           "environment": ENVIRONMENT},
            "exp_annotations": {**annotations, "description": description}}


def test_document(slo: slo_config.Slo, rule_file: str, annotations: dict[str, dict]) -> dict:
    """The promtool test file of one SLO. `annotations`: alert name -> the annotations of the generated rule."""
    build = BUILDERS.get(slo.name)
    if build is None:
        raise KeyError(f"no input builder for the SLO {slo.name!r} in tests/slo_scenarios.py BUILDERS: add one that "
                       "makes the series its SLI reads (docs/slos.md)")
    page, ticket = slo_config.PAGE, slo_config.TICKET
    groups = []

    def group(name, segments, checks, alert_tests=(), step=STEP):
        groups.append({"name": f"{slo.name}: {name}", "interval": f"{step}s",
                       "input_series": build(slo, segments, step),
                       "promql_expr_test": checks, "alert_rule_test": list(alert_tests)})

    full_outage = 1 / float(slo.budget)
    slack = STEP * 2  # one scrape and one evaluation
    for label, burn in (("15x burn pages within 1h x 14.4 / 15", 15.0),
                        (f"total outage ({full_outage:g}x) pages", full_outage)):
        detect = detection_seconds(slo, page, burn)
        after = _on_grid(detect + slack)
        checks = [_firing(slo, page, CLEAN - STEP, False), _firing(slo, page, CLEAN + after, True)]
        if detect > 3 * 60:
            checks.append(_firing(slo, page, CLEAN + _on_grid(detect - 3 * 60), False))
        tests = []
        if burn == full_outage:
            # Once the outage has lasted the hour, the page's value (its 1h ratio) is 1: the annotations exactly.
            tests = [{"eval_time": _duration(CLEAN + 3600 + 5 * 60), "alertname": slo.alert(page),
                      "exp_alerts": [expected_alert(slo, page, annotations[slo.alert(page)], Decimal(1))]},
                     {"eval_time": _duration(CLEAN - 5 * 60), "alertname": slo.alert(page), "exp_alerts": []}]
        group(label, [Segment(CLEAN, 0), Segment(3600 + 10 * 60, burn)], checks, tests)

    # 0.9x until every window of the page is full, then a spike at 100x (or a total outage, if less) that
    # recovers into 0.9x again.
    steady, spike_burn = 6 * 3600 + 30 * 60, min(100.0, full_outage)
    spike_end = steady + 5 * 60
    group(f"steady 0.9x burn alerts nothing; a 5-minute spike at {spike_burn:g}x on it does not page",
          [Segment(steady, 0.9), Segment(5 * 60, spike_burn), Segment(35 * 60, 0.9)],
          [_firing(slo, kind, t * 3600, False) for kind in (page, ticket) for t in (1, 2, 4, 6)]
          + [_firing(slo, ticket, steady - STEP, False)]
          + [_firing(slo, page, t, False) for t in (steady - STEP, steady + 2 * 60, spike_end, spike_end + 5 * 60,
                                                    spike_end + 30 * 60, spike_end + 35 * 60 - STEP)],
          [{"eval_time": _duration(steady - STEP), "alertname": slo.alert(kind), "exp_alerts": []}
           for kind in (page, ticket)]
          + [{"eval_time": _duration(spike_end + 60), "alertname": slo.alert(page), "exp_alerts": []}])

    # A Prometheus whose history begins now: the part of a window it has not recorded counts as good, so a
    # burst in its first minutes alerts nothing although every window's ratio is the burst's own share ...
    burst_burn = min(50.0, full_outage)
    page_pair = page.windows[0]
    threshold = float(page_pair.factor * slo.budget)
    both = " and ".join(f"{slo_config.SLI_ERROR_RATIO.format(window=w)}{slo.selector} > {threshold!r}"
                        for w in (page_pair.long, page_pair.short))
    group(f"a {burst_burn:g}x burst in a new Prometheus' first 2 minutes alerts nothing",
          [Segment(2 * 60, burst_burn), Segment(2 * 3600, 0)],
          # ... (without the coverage condition the 1h/5m pair would page)
          [{"expr": f"count({both})", "eval_time": "3m", "exp_samples": [{"labels": "{}", "value": 1}]}]
          + [_firing(slo, kind, t, False) for kind in (page, ticket) for t in (2 * 60, 3 * 60, 5 * 60, 15 * 60, 3600,
                                                                                   2 * 3600)])
    # ... while an outage from its first minute pages as soon as it would after a clean history.
    detect = detection_seconds(slo, page, full_outage)
    checks = [_firing(slo, page, _on_grid(detect + slack), True)]
    if detect > 3 * 60:
        checks.append(_firing(slo, page, _on_grid(detect - 3 * 60), False))
    group("a total outage from a new Prometheus' first minute pages within its detection time",
          [Segment(_on_grid(detect + slack) + 10 * 60, full_outage)], checks)

    # 5x: over the ticket's 3x and 1x, under the page's 6x. From a history's start both pairs pass their
    # threshold at 1 d x 3 / 5 = 3 d x 1 / 5 = 14.4 h, the 1d window's share growing by 3.5% of the threshold
    # in half an hour: checked half an hour before and a quarter after. The ticket's value is its 1d ratio,
    # over every sample since the start (less than a day).
    ticket_burn = 5.0
    detect = detection_seconds(slo, ticket, ticket_burn)
    at = _on_grid(detect + 15 * 60, down=False)
    steady_ticket = [Segment(at + 3600, ticket_burn)]
    group(f"steady {ticket_burn:g}x burn opens a ticket within 1 d x 3 / {ticket_burn:g} and never pages",
          steady_ticket,
          [_firing(slo, page, t, False) for t in (1800, 6 * 3600, at, at + 3600 - STEP)]
          + [_firing(slo, ticket, _on_grid(detect - 30 * 60), False)]
          + [_firing(slo, ticket, t, True) for t in (at, at + 3600 - STEP)],
          [{"eval_time": _duration(at), "alertname": slo.alert(ticket),
            "exp_alerts": [expected_alert(slo, ticket, annotations[slo.alert(ticket)],
                                          build.share_until(slo, steady_ticket, STEP, at))]},
           {"eval_time": _duration(at), "alertname": slo.alert(page), "exp_alerts": []}])
    # promtool evaluates groups in no fixed order unless told: the alerts after the ratios they read.
    order = [g["name"] for g in slo_config.rule_groups(slo, ENVIRONMENT, STEP)]
    return {"rule_files": [rule_file], "evaluation_interval": f"{STEP}s", "group_eval_order": order, "tests": groups}
