"""The alerting pipeline end to end with real binaries on loopback (see harness.py for the setup).

One module-scoped run (about 4 minutes): a healthy baseline, then three faults injected together
(node-exporter stopped, API answering 5xx, /health answering 503), a wait for their `for: 2m`,
then the Alertmanager that delivered the notifications is stopped and everything recovers. The
tests below assert on what the capture servers received during that run:

- the healthy state pends/fires nothing but the Watchdog (host-state alerts excepted, listed);
- each fault reaches every receiver the generated route tree (asked through amtool) sends it
  to, exactly once per receiver integration although two Prometheus replicas and two clustered
  Alertmanagers handle it, with the rule's labels, the environment and no `replica` label;
- after recovery the surviving Alertmanager sends each resolved notification exactly once
  (not for FootballApiHighErrorRatio: its 5m rate window keeps it firing for minutes);
- the Watchdog reaches the heartbeat receiver repeatedly, deduplicated, also after the failover;
- the 5xx fault also pages the API availability SLO (slos/), on its team's critical route.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
import yaml

from tests.conftest import require_tool
from tests.e2e.harness import Pipeline, host_state_alerts, run_scenario

CHECK_RESOLVED = ["NodeDown", "FootballApiHealthProbeFailing"]
FAULTS = ["NodeDown", "FootballApiHighErrorRatio", "FootballApiHealthProbeFailing"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    for tool in ("prometheus", "promtool", "alertmanager", "amtool", "node_exporter",
                 "blackbox_exporter"):
        require_tool(tool)
    pipeline = Pipeline(tmp_path_factory.mktemp("alerting-e2e"), log=_log)
    with pipeline:
        result = run_scenario(pipeline)
        yield pipeline, result


def _describe(notifications) -> str:
    return "\n".join(f"  {n.time:.1f} {n.integration} {n.destination} receiver={n.receiver or '-'} {n.status} "
                     f"{n.alertname} sender={n.sender or '-'}" for n in notifications)


def test_scenario_completed_without_timeouts(e2e):
    pipeline, result = e2e
    assert not result.errors, "\n".join(result.errors) + "\n" + pipeline.logs()


def test_generated_configs_pass_the_real_checkers(e2e):
    pipeline, _ = e2e
    prom = subprocess.run([require_tool("promtool"), "check", "config", str(pipeline.workdir / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert prom.returncode == 0, prom.stdout + prom.stderr
    am = subprocess.run([require_tool("amtool"), "check-config", str(pipeline.alertmanager_yml_path)],
                        capture_output=True, text=True, timeout=60)
    assert am.returncode == 0, am.stdout + am.stderr


def test_generated_relabelling_produces_the_labels_alerts_rely_on(e2e):
    pipeline, _ = e2e
    env = pipeline.generated.result.outputs["environment"]
    by_job = {}
    for target in pipeline.targets(0):
        by_job.setdefault(target["labels"]["job"], []).append(target["labels"])
    assert set(by_job) >= {"node-exporter", "blackbox-http", "football-prediction-api", "football-prediction-worker",
                           "prometheus", "alertmanager", "blackbox-exporter"}, sorted(by_job)
    assert all(labels["environment"] == env for labels_list in by_job.values() for labels in labels_list)
    node = by_job["node-exporter"][0]
    assert node["instance"] == node["node"] == "e2e-node-1", node
    assert by_job["blackbox-http"][0]["probe"] == "api-health"
    assert by_job["blackbox-http"][0]["instance"] == pipeline.api.health_url
    assert by_job["football-prediction-api"][0]["namespace"] == "football-prediction"


def test_healthy_baseline_fires_nothing_but_the_watchdog(e2e):
    pipeline, result = e2e
    host_only = host_state_alerts(pipeline.generated.rule_files)
    host_state = [a for a in result.baseline_alerts if a["labels"]["alertname"] in host_only]
    unexpected = [a for a in result.baseline_alerts if a not in host_state]
    if host_state:
        _log("host-state alerts pending in the healthy baseline (the test machine, not the stack): "
             + ", ".join(sorted({a["labels"]["alertname"] for a in host_state})))
    assert not unexpected, "alerts pending/firing in the healthy state:\n" + "\n".join(
        f"  prometheus-{a['prometheus']}: {a['labels']} {a['state']} value={a['value']}" for a in unexpected)
    others = [n for n in result.baseline_notifications if n.alertname != "Watchdog"]
    assert not others, "notifications in the healthy state:\n" + _describe(others)


def test_watchdog_reaches_the_heartbeat_repeatedly_and_once_per_interval(e2e):
    pipeline, result = e2e
    beats = pipeline.notified("Watchdog")
    assert {(n.integration, n.destination, n.receiver) for n in beats} == {("webhook", "/heartbeat", "heartbeat")}, \
        _describe(beats)
    assert len(beats) >= 3, _describe(beats)
    gaps = [b.time - a.time for a, b in zip(beats, beats[1:])]
    # the heartbeat route repeats every minute: two copies close together would mean the
    # Alertmanager cluster failed to deduplicate
    assert min(gaps) > 40, f"heartbeats too close together (gaps {gaps}):\n" + _describe(beats)
    assert result.survivor_heartbeat, "no heartbeat from the surviving Alertmanager after the failover:\n" + \
        _describe(beats)


@pytest.mark.parametrize("alertname", FAULTS)
def test_fault_notifies_every_routed_receiver_exactly_once(e2e, alertname):
    pipeline, result = e2e
    expected = result.expected[alertname]
    firing = pipeline.notified(alertname, "firing", result.t_fault)
    counts = Counter(n.key for n in firing)
    missing = expected - set(counts)
    extra = set(counts) - expected
    duplicated = {k: c for k, c in counts.items() if c > 1}
    assert not missing and not extra and not duplicated, (
        f"{alertname} (receivers {result.receivers[alertname]}):\n  missing {sorted(missing)}\n  "
        f"unexpected {sorted(extra)}\n  duplicated {duplicated}\n" + _describe(firing))
    # the route tree of a critical alert of a known team: escalation + the team's receiver, whose
    # integrations are Slack, e-mail, the default webhook and the DingTalk relay
    assert result.receivers[alertname][0] == "escalation", result.receivers[alertname]
    integrations = {k[0] for k in expected}
    assert integrations == {"webhook", "slack", "email"}, expected


@pytest.mark.parametrize("alertname", FAULTS)
def test_fault_notifications_carry_the_rule_labels(e2e, alertname):
    pipeline, result = e2e
    from tests.e2e.harness import rule_labels

    want = dict(rule_labels(pipeline.generated.rule_files, alertname),
                environment=pipeline.generated.result.outputs["environment"], alertname=alertname)
    firing = [n for n in pipeline.notified(alertname, "firing", result.t_fault) if n.integration != "email"]
    assert firing
    for n in firing:
        assert len(n.alerts) == 1, f"{n.destination}: {n.alerts}"
        labels = n.alerts[0]
        assert {k: labels.get(k) for k in want} == want, f"{n.integration} {n.destination}: {labels}"
        assert "replica" not in labels, f"{n.destination}: the HA pair's replica label reached Alertmanager"
    labels = firing[0].alerts[0]
    if alertname == "NodeDown":
        assert labels["instance"] == labels["node"] == "e2e-node-1" and labels["job"] == "node-exporter", labels
    if alertname == "FootballApiHealthProbeFailing":
        assert labels["probe"] == "api-health" and labels["instance"] == pipeline.api.health_url, labels
    if alertname == "FootballApiHighErrorRatio":
        assert labels["job"] == "football-prediction-api", labels


def test_both_alertmanagers_held_each_alert_once(e2e):
    _, result = e2e
    for i, counts in result.fired_alerts_per_am.items():
        for alertname in FAULTS:
            # two Prometheus replicas send it; without their replica label it is one alert
            assert counts.get(alertname) == 1, f"alertmanager-{i}: {counts}"


def test_one_alertmanager_sent_while_both_were_up(e2e):
    pipeline, result = e2e
    senders = {n.sender for n in pipeline.notifications()
               if n.integration == "webhook" and n.alertname in FAULTS and n.status == "firing"}
    assert len(senders) == 1, senders
    assert result.killed_alertmanager is not None
    assert pipeline.alertmanager_index(senders.pop()) == result.killed_alertmanager


@pytest.mark.parametrize("alertname", CHECK_RESOLVED)
def test_recovery_is_notified_once_by_the_surviving_alertmanager(e2e, alertname):
    pipeline, result = e2e
    expected = result.expected[alertname]
    resolved = pipeline.notified(alertname, "resolved", result.t_recover)
    counts = Counter(n.key for n in resolved)
    assert set(counts) == expected and set(counts.values()) == {1}, (
        f"{alertname}: expected {sorted(expected)}\n" + _describe(resolved))
    survivors = {pipeline.alertmanager_url(i) for i in result.surviving(pipeline)}
    assert {n.sender.rstrip("/") for n in resolved if n.integration == "webhook"} <= survivors


def _slo_alerts(pipeline) -> dict[str, dict]:
    """The alerts of the rule files generated from slos/: name -> labels."""
    out = {}
    for name, text in pipeline.generated.rule_files.items():
        if name.startswith("slo-"):
            for group in yaml.safe_load(text)["groups"]:
                out.update({r["alert"]: r["labels"] for r in group["rules"] if "alert" in r})
    return out


def test_nothing_else_was_notified(e2e):
    pipeline, _ = e2e
    # The faults also burn error budgets (slos/): the 5xx answers the API availability's, the stopped
    # Alertmanager the monitoring system's. Their pages and tickets are expected (test below).
    others = [n for n in pipeline.notifications()
              if n.alertname not in set(FAULTS) | {"Watchdog"} | set(_slo_alerts(pipeline))]
    assert not others, "unexpected notifications:\n" + _describe(others)


def test_the_5xx_fault_pages_the_availability_slo_on_its_team_routes(e2e):
    pipeline, result = e2e
    slo_alerts = _slo_alerts(pipeline)
    page = pipeline.notified("FootballApiAvailabilityFastBurn", "firing", result.t_fault)
    assert page, "the API answering 5xx did not page its availability SLO:\n" + _describe(pipeline.notifications())
    for n in [n for n in pipeline.notifications() if n.alertname in slo_alerts and n.integration == "webhook"]:
        labels = slo_alerts[n.alertname]
        route = f"{labels['team']}-{labels['severity']}"
        allowed = {route, "escalation"} if labels["severity"] == "critical" else {route}
        assert n.receiver in allowed, f"{n.alertname} ({labels}) reached {n.receiver}:\n" + _describe([n])


def test_email_is_sent_with_the_mounted_smtp_credentials(e2e):
    pipeline, _ = e2e
    mails = pipeline.smtp.mails()
    assert mails
    config = yaml.safe_load(pipeline.alertmanager_yml_path.read_text())["global"]
    password = pipeline.generated.credentials["smtp-password"]
    assert {m.auth for m in mails} == {(config["smtp_auth_username"], password)}
    assert {m.sender for m in mails} == {config["smtp_from"]}
