"""Every critical alert must be able to reach a human within 5 minutes of the fault, under prod settings.

Worst case = the rule's `for` + scrape interval + evaluation interval + the critical route's
group_wait, each read from what the program generates for prod (prometheus.yml's global section
and jobs, alertmanager.yml's critical branch). Fast: no processes, just the rendered configs.
Measured values on real binaries: scripts/alert_latency_benchmark.py.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import notification_bound
from tests.rules_support import load_alerts

BUDGET_SECONDS = 5 * 60


def latency_offenders(alerts: list[tuple[str, str, float]], prometheus_yml: str, alertmanager_yml: str,
                      budget: float = BUDGET_SECONDS) -> list[str]:
    """alerts: (name, severity, for seconds). Returns a line per critical alert over ``budget``."""
    offenders = []
    for name, severity, for_seconds in alerts:
        if severity != "critical":
            continue
        bound = notification_bound(prometheus_yml, alertmanager_yml, for_seconds, severity)
        if bound["total"] > budget:
            offenders.append(f"{name}: {bound['total']:.0f}s = for {bound['for']:.0f}s + scrape "
                             f"{bound['scrape_interval']:.0f}s + evaluation {bound['evaluation_interval']:.0f}s + "
                             f"group_wait {bound['group_wait']:.0f}s > {budget:.0f}s")
    return offenders


@pytest.fixture(scope="module")
def prod_configs(prod):
    return (prod.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"],
            prod.one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"])


def _critical_alerts() -> list[tuple[str, str, float]]:
    return [(r.name, r.labels.get("severity"), r.for_seconds) for r in load_alerts()
            if r.labels.get("severity") == "critical"]


def test_there_are_critical_alerts_to_check():
    assert len(_critical_alerts()) >= 10


def test_every_critical_alert_notifies_within_five_minutes_in_prod(prod_configs):
    offenders = latency_offenders(_critical_alerts(), *prod_configs)
    assert not offenders, "critical alerts that can take more than 5 minutes to notify:\n  " + "\n  ".join(offenders)


def test_the_bound_uses_the_prod_intervals(prod_configs):
    bound = notification_bound(*prod_configs, for_seconds=120)
    # prod: scrape 30s, evaluation 30s, critical group_wait 30s (Pulumi.prod.yaml + defaults)
    assert bound == {"for": 120, "scrape_interval": 30, "evaluation_interval": 30, "group_wait": 30, "total": 210}


def test_the_check_catches_a_slow_critical_alert(prod_configs):
    synthetic = [("SyntheticSlowAlert", "critical", 600.0), ("SyntheticSlowWarning", "warning", 3600.0)]
    offenders = latency_offenders(synthetic, *prod_configs)
    assert len(offenders) == 1 and offenders[0].startswith("SyntheticSlowAlert: 690s"), offenders
