"""The Alertmanager checks: ready, cluster, receivers, and the delivery test.

The delivery test POSTs uniquely labelled test alerts (one per receiver with an integration,
labels chosen by walking the route tree, tools/verify/routing.py), confirms through Alertmanager's
own metrics that every integration delivered and none failed, then resolves the test alerts.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from tools.verify.checks import Context, check, ready
from tools.verify.http import Unreachable
from tools.verify.report import FAIL, PASS, SKIP, Result, _iso
from tools.verify.routing import Route, build_route, group_key, labels_for_receiver, match_routes

TEST_ALERTNAME = "FootballMonitoringVerification"
TEST_SERVICE = "football-monitoring-verify"
PEER_TIMEOUT = 15.0  # Alertmanager's --cluster.peer-timeout default: the wait per cluster position


@check("alertmanager.ready", needs=("alertmanager",), gate=True)
def alertmanager_ready(ctx: Context) -> Result:
    return ready(ctx, "alertmanager", "Alertmanager", "kubectl -n <namespace> logs statefulset/alertmanager")


@check("alertmanager.cluster", needs=("alertmanager",))
def alertmanager_cluster(ctx: Context) -> Result:
    status = ctx.alertmanager_status()
    cluster = status.get("cluster") or {}
    state = cluster.get("status", "?")
    peers = cluster.get("peers") or []
    expected, source = ctx.expected_alertmanagers()
    version = (status.get("versionInfo") or {}).get("version", "?")
    details = [f"peer: {p.get('name')} {p.get('address')}" for p in peers]
    action = ("see docs/runbooks/AlertmanagerClusterMembersMissing.md: check that every alertmanager-N pod runs "
              "and reaches the others on the mesh port 9094 (TCP and UDP)")
    if state == "disabled":
        if expected and expected > 1:
            return Result(FAIL, "alertmanager.cluster", f"clustering is disabled but {expected} replicas are expected "
                                                        f"({source})", action=action)
        return Result(PASS, "alertmanager.cluster", f"single Alertmanager, clustering disabled (version {version})")
    numbers = f"cluster {state}, {len(peers)} peer(s)" + (f" of {expected} expected ({source})" if expected else
                                                           f"; expected count {source}")
    if state != "ready":
        return Result(FAIL, "alertmanager.cluster", numbers, details,
                      action="the gossip has not settled: rerun in a minute; if it stays, " + action)
    if expected and len(peers) != expected:
        return Result(FAIL, "alertmanager.cluster", f"cluster incomplete: {numbers}", details, action=action)
    return Result(PASS, "alertmanager.cluster", f"{numbers} (version {version})", details)


def receiver_integrations(receiver: dict) -> dict[str, int]:
    """{integration: how many} of one receiver, e.g. {"webhook": 2, "slack": 1}."""
    return {key[:-len("_configs")]: len(value) for key, value in receiver.items()
            if key.endswith("_configs") and isinstance(value, list) and value}


@check("alertmanager.receivers", needs=("alertmanager",))
def alertmanager_receivers(ctx: Context) -> Result:
    receivers = ctx.alertmanager_config().get("receivers") or []
    used = Counter(i for r in receivers for i, n in receiver_integrations(r).items() for _ in range(n))
    empty = [r.get("name") for r in receivers if not receiver_integrations(r)]
    numbers = (f"{len(receivers)} receivers, {sum(used.values())} integrations "
               f"({', '.join(f'{n} {i}' for i, n in sorted(used.items())) or 'none'})"
               + (f"; without integrations (drop): {', '.join(empty)}" if empty else ""))
    if not receivers or not used:
        return Result(FAIL, "alertmanager.receivers", numbers,
                      action="Alertmanager runs without a usable configuration: check the alertmanager-config ConfigMap and the alertmanager-credentials Secret")
    return Result(PASS, "alertmanager.receivers", numbers)


# ----- the delivery test

METRICS = ("alertmanager_notifications_total", "alertmanager_notifications_failed_total",
           "alertmanager_notification_requests_total", "alertmanager_notification_requests_failed_total")
_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, names: Iterable[str] = METRICS) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of the named metrics from the Prometheus text format."""
    wanted = set(names)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in wanted}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE_RE.match(line)
        if not found or found.group(1) not in wanted:
            continue
        try:
            value = float(found.group(3))
        except ValueError:
            continue
        labels = {k: json.loads(f'"{v}"') for k, v in _LABEL_RE.findall(found.group(2) or "")}
        samples[found.group(1)].append((labels, value))
    return samples


@dataclass
class Counters:
    """Alertmanager's notification counters per (receiver, integration); receiver None when the
    metrics do not carry the receiver (Alertmanager < 0.28 without receiver-name-in-metrics)."""

    values: dict[str, Counter]
    per_receiver: bool

    @classmethod
    def parse(cls, text: str) -> "Counters":
        samples = parse_metrics(text)
        per_receiver = any("receiver_name" in labels for name in METRICS for labels, _ in samples[name])
        values: dict[str, Counter] = {}
        for name in METRICS:
            counter: Counter = Counter()
            for labels, value in samples[name]:
                key = (labels.get("receiver_name") if per_receiver else None, labels.get("integration", ""))
                counter[key] += value
            values[name] = counter
        return cls(values, per_receiver)

    def has_requests(self) -> bool:
        return bool(self.values["alertmanager_notification_requests_total"])

    def delta(self, before: "Counters", metric: str, key: tuple) -> float:
        return self.values[metric][key] - before.values[metric][key]


@dataclass
class Outcome:
    key: tuple  # (receiver or None, integration)
    expected: int
    attempted: float = 0  # notifications_total increase
    delivered: float = 0  # successful requests
    failed: float = 0  # failed requests + notifications given up

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.delivered >= self.expected

    @property
    def settled(self) -> bool:
        return self.failed > 0 or self.delivered >= self.expected


def measure(before: Counters, now: Counters, expected: dict[tuple, int]) -> list[Outcome]:
    outcomes = []
    requests = now.has_requests()
    for key, count in sorted(expected.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        attempted = now.delta(before, "alertmanager_notifications_total", key)
        given_up = now.delta(before, "alertmanager_notifications_failed_total", key)
        if requests:  # per HTTP/SMTP attempt: a failure shows at once, not after the retry deadline
            sent = now.delta(before, "alertmanager_notification_requests_total", key)
            failed_requests = now.delta(before, "alertmanager_notification_requests_failed_total", key)
            delivered, failed = sent - failed_requests, failed_requests + given_up
        else:
            delivered, failed = attempted - given_up, given_up
        outcomes.append(Outcome(key, count, attempted, delivered, failed))
    return outcomes

@dataclass
class TestAlert:
    receiver: str
    labels: dict[str, str]
    reaches: list[str]  # every receiver the route tree sends it to


@check("alertmanager.delivery", needs=("alertmanager",))
def alertmanager_delivery(ctx: Context) -> list[Result]:
    """A test alert to every receiver that has an integration, confirmed by Alertmanager's metrics."""
    name = "alertmanager.delivery"
    config = ctx.alertmanager_config()
    integrations = {r.get("name"): receiver_integrations(r) for r in config.get("receivers") or []}
    wanted = [r for r, i in integrations.items() if i
              and (not ctx.options.receivers or r in ctx.options.receivers) and r not in ctx.options.skip_receivers]
    unknown = sorted(set(ctx.options.receivers) - set(integrations))
    results: list[Result] = []
    if unknown:
        results.append(Result(FAIL, f"{name}.receivers", f"no such receiver(s): {', '.join(unknown)}",
                              details=[f"configured: {', '.join(integrations)}"], action="fix --receiver"))
    if not ctx.options.delivery:
        return results + [Result(SKIP, name, f"test alerts not sent (--skip-delivery); would test "
                                             f"{len(wanted)} receivers: {', '.join(wanted)}")]
    if not wanted:
        return results + [Result(SKIP, name, "no receiver with an integration selected")]

    root = build_route(config.get("route") or {})
    run_id = str(uuid.uuid4())
    service = f"{TEST_SERVICE}-{run_id[:8]}"  # a new group per run: notified after group_wait, not group_interval
    base = {"alertname": TEST_ALERTNAME, "verification_id": run_id}
    environment = ctx.outputs.get("environment")
    if isinstance(environment, str) and environment:
        base["environment"] = environment

    def finish(labels: dict[str, str], fixed: set[str]) -> None:
        # Critical and warning test alerts must not inhibit each other (equal: alertname, environment, service).
        if "service" not in fixed:
            labels["service"] = f"{service}-{labels['severity']}" if labels.get("severity") else service

    alerts: list[TestAlert] = []
    plan_problems: list[str] = []
    for receiver in wanted:
        given = ctx.options.receiver_labels.get(receiver)
        if given:
            labels = {**base, **given}
            finish(labels, set(given))
            found = (labels, list(dict.fromkeys(r.receiver for r in match_routes(root, labels))))
        else:
            found = labels_for_receiver(root, receiver, base, finish)
        if not found:
            plan_problems.append(f"{receiver}: no label set reaches it through the route tree (unused receiver?); "
                                 f"give labels with --receiver-labels '{receiver}:key=value,...'")
            continue
        labels, reaches = found
        labels["verification_receiver"] = receiver
        alerts.append(TestAlert(receiver, labels, reaches))

    # What Alertmanager will send: one notification per aggregation group and integration.
    groups: dict[tuple, Route] = {}
    for alert in alerts:
        for route in match_routes(root, alert.labels):
            groups[group_key(route, alert.labels)] = route
    per_receiver_expected: Counter = Counter()
    for route in groups.values():
        for integration, count in integrations.get(route.receiver, {}).items():
            per_receiver_expected[(route.receiver, integration)] += count

    status = ctx.alertmanager_status()
    peers = max(1, len((status.get("cluster") or {}).get("peers") or []))
    fresh = {"service", "verification_id", "verification_receiver", "..."}
    longest = max((r.group_wait if fresh & set(r.group_by) else r.group_interval for r in groups.values()),
                  default=0.0)
    timeout = ctx.options.delivery_timeout or longest + (peers - 1) * PEER_TIMEOUT + 20
    tested = sorted({r.receiver for r in groups.values()})
    untargeted = sorted(set(tested) - {a.receiver for a in alerts})
    plan_details = [f"{a.receiver}: " + " ".join(f"{k}={v}" for k, v in sorted(a.labels.items())
                                                  if k not in ("verification_id", "verification_receiver"))
                    + (f"  (also reaches {', '.join(r for r in a.reaches if r != a.receiver)})"
                       if len(a.reaches) > 1 else "")
                    for a in alerts]
    if not alerts:
        return results + [Result(FAIL, f"{name}.routing", "no test alert could be routed", plan_problems,
                                 action="see the lines above")]

    ctx.report.line(f"....  {name:<34} posting {len(alerts)} test alerts (verification_id={run_id}), "
                    f"waiting up to {timeout:.0f}s for {sum(per_receiver_expected.values())} notifications "
                    f"to {len(tested)} receivers")
    metrics_url = ctx.url("alertmanager", "/metrics")

    def counters() -> Counters:
        response = ctx.http.get(metrics_url)
        if response.status != 200:
            raise Unreachable(f"GET /metrics: HTTP {response.status}")
        return Counters.parse(response.text)

    before = counters()
    expected: dict[tuple, int] = dict(per_receiver_expected)
    if not before.per_receiver:
        merged: Counter = Counter()
        for (_, integration), count in per_receiver_expected.items():
            merged[(None, integration)] += count
        expected = dict(merged)
    now = datetime.now(timezone.utc)
    starts = _iso(now)
    # endsAt in the future: Alertmanager resolves them by itself even if this run dies before resolving.
    ends = _iso(now + timedelta(seconds=timeout + 120))
    payload = [{"labels": a.labels, "startsAt": starts, "endsAt": ends, "generatorURL": "",
                "annotations": {"summary": f"football-monitoring post-deploy verification of receiver {a.receiver}",
                                "description": f"Test alert sent by `python -m tools.verify` (run {run_id}) "
                                               "to prove delivery; it is resolved within minutes. No action needed."}}
               for a in alerts]
    response = ctx.http.request("POST", ctx.url("alertmanager", "/api/v2/alerts"), body=payload)
    if response.status != 200:
        return results + [Result(FAIL, f"{name}.post", f"Alertmanager refused the test alerts: HTTP "
                                                       f"{response.status} {response.text[:200].strip()}",
                                 action="check the Alertmanager version (API v2) and its logs")]
    try:
        results.append(_confirm_routing(ctx, run_id, alerts, plan_details, plan_problems, untargeted))
        outcomes = _wait_for_delivery(ctx, counters, before, expected, timeout)
        results += _delivery_results(outcomes, integrations, groups, timeout, before.per_receiver)
    except (Unreachable, ValueError) as error:
        results.append(Result(FAIL, name, f"lost Alertmanager during the test: {error}",
                              action="check the Alertmanager pod and rerun"))
    finally:  # also on Ctrl-C: nobody stays paged
        results.append(_resolve(ctx, payload, starts))
    return results


def _confirm_routing(ctx: Context, run_id: str, alerts: list[TestAlert], plan: list[str], problems: list[str],
                     untargeted: list[str]) -> Result:
    """Alertmanager's own routing of the test alerts (the ``receivers`` field), and their state."""
    query = urllib.parse.urlencode({"filter": f'verification_id="{run_id}"'})
    seen: dict[str, dict] = {}
    for _ in range(10):  # the API answers at once; a few tries cover a slow ingestion
        listed = ctx.get_json("alertmanager", f"/api/v2/alerts?{query}")
        seen = {a["labels"].get("verification_receiver", ""): a for a in listed if isinstance(a, dict)}
        if len(seen) >= len(alerts):
            break
        time.sleep(0.5)
    wrong = list(problems)
    for alert in alerts:
        got = seen.get(alert.receiver)
        if got is None:
            wrong.append(f"{alert.receiver}: the test alert is not listed by Alertmanager")
            continue
        routed = [r.get("name") for r in got.get("receivers") or []]
        state = got.get("status") or {}
        if alert.receiver not in routed:
            wrong.append(f"{alert.receiver}: Alertmanager routed the test alert to {', '.join(routed) or 'nothing'}")
        if state.get("state") == "suppressed":
            wrong.append(f"{alert.receiver}: the test alert is suppressed (silenced by {state.get('silencedBy')}, "
                         f"inhibited by {state.get('inhibitedBy')}), so it is not delivered")
    extra = f"; also reached: {', '.join(untargeted)}" if untargeted else ""
    if wrong:
        bad = {line.split(":", 1)[0] for line in wrong}
        routed_ok = sum(1 for alert in alerts if alert.receiver not in bad)
        return Result(FAIL, "alertmanager.delivery.routing",
                      f"{routed_ok} of {len(alerts) + len(problems)} test alerts routed to their receiver{extra}",
                      wrong + plan,
                      action="check the route tree (amtool config routes test ...) and active silences")
    return Result(PASS, "alertmanager.delivery.routing",
                  f"{len(alerts)} test alerts routed to their receivers by Alertmanager{extra}", plan)


def _wait_for_delivery(ctx: Context, counters: Callable[[], Counters], before: Counters,
                       expected: dict[tuple, int], timeout: float) -> list[Outcome]:
    deadline = time.monotonic() + timeout
    interval = max(0.2, ctx.options.poll_interval)
    outcomes = measure(before, before, expected)
    for _ in range(int(timeout / interval) + 2):
        try:
            outcomes = measure(before, counters(), expected)
        except (Unreachable, ValueError):
            pass  # a missed poll; the deadline still holds
        if all(o.settled for o in outcomes) or time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    return outcomes


def _delivery_results(outcomes: list[Outcome], integrations: dict[str, dict[str, int]], groups: dict[tuple, Route],
                      timeout: float, per_receiver: bool) -> list[Result]:
    results = []
    for outcome in outcomes:
        receiver, integration = outcome.key
        users = sorted({r.receiver for r in groups.values() if integration in integrations.get(r.receiver, {})
                        and (receiver is None or r.receiver == receiver)})
        label = f"{receiver}/{integration}" if receiver else integration
        numbers = (f"{integration}: {outcome.delivered:.0f} delivered ({outcome.expected} expected for the test "
                   f"alerts), {outcome.failed:.0f} failed attempts, {outcome.attempted:.0f} notifications started; "
                   f"receivers {', '.join(users)}")
        check_name = f"alertmanager.delivery[{label}]"
        if outcome.ok:
            results.append(Result(PASS, check_name, numbers))
        elif outcome.failed:
            who = (f"receiver {receiver}" if receiver else
                   f"one of the receivers using {integration} ({', '.join(users)})")
            results.append(Result(FAIL, check_name, f"{integration} unreachable: {numbers}",
                                  [f"Alertmanager could not deliver through {who}; its log names the receiver and "
                                   "the error: kubectl -n <namespace> logs alertmanager-0 "
                                   "| grep 'Notify attempt failed'"]
                                  + ([] if per_receiver else
                                     [f"this Alertmanager's metrics carry no receiver name, so a failure of any "
                                      f"{integration} notification during the test counts (including retries of "
                                      "earlier failed notifications)"]),
                                  action="fix the receiver's URL or credentials (stack secrets), or its network "
                                         "egress; see docs/runbooks/AlertmanagerNotificationsFailing.md"))
        else:
            results.append(Result(FAIL, check_name, f"{integration}: not delivered within {timeout:.0f}s: {numbers}",
                                  [f"Alertmanager had not delivered all {integration} notifications when the wait "
                                   "ended (group_wait, cluster position wait, or a slow receiver)",
                                   "behind a load balancer the metrics may come from another replica than the one "
                                   "that got the alerts: use kubectl port-forward (one pod)"],
                                  action="rerun with a longer --delivery-timeout; check the Alertmanager logs"))
    return results


def _resolve(ctx: Context, payload: list[dict], starts: str) -> Result:
    ends = _iso(datetime.now(timezone.utc))
    resolved = [{**alert, "startsAt": starts, "endsAt": ends} for alert in payload]
    try:
        response = ctx.http.request("POST", ctx.url("alertmanager", "/api/v2/alerts"), body=resolved)
        if response.status == 200:
            return Result(PASS, "alertmanager.delivery.resolve",
                          f"{len(payload)} test alerts resolved (receivers with send_resolved get a resolved message)")
        problem = f"HTTP {response.status}"
    except Unreachable as error:
        problem = str(error)
    return Result(FAIL, "alertmanager.delivery.resolve", f"could not resolve the test alerts: {problem}",
                  action=f"they resolve by themselves at {payload[0]['endsAt']}; or expire them with "
                         f"amtool alert add ... --end=now for alertname={TEST_ALERTNAME}")
