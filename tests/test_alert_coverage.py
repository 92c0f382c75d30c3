"""Every service the prod stack deploys, scrapes or probes has an up-style alert.

The mapping is scripts/alert_coverage.py (derived from the generated prometheus.yml and the
rules' expressions and labels); the other signals (errors, latency, saturation) are printed,
not gated.
"""

from __future__ import annotations

import pytest

from scripts import alert_coverage

# What the brief of this check names; the script derives its list from the generated config.
DOCUMENTED = {"prometheus", "alertmanager", "grafana", "node", "kube-state-metrics", "kubelet", "cadvisor",
              "apiserver", "probe:api-health", "probe:postgres", "probe:redis", "postgresql", "redis",
              "football-prediction-api", "football-prediction-worker"}


@pytest.fixture(scope="module")
def services(prod):
    return alert_coverage.coverage(prod)


def _report(services) -> str:
    overall, up = alert_coverage.shares(services)
    lines = [alert_coverage.table(services), f"cells covered: {overall:.0f}%, services with an up alert: {up:.0f}%"]
    for signal in alert_coverage.SIGNAL_NAMES[1:]:
        missing = sorted(s.name for s in services.values() if not s.alerts[signal])
        lines.append(f"no {signal} alert: {', '.join(missing) or '-'}")
    return "\n".join(lines)


def test_the_services_of_the_stack_are_found(services):
    assert DOCUMENTED <= set(services), sorted(DOCUMENTED - set(services))


def test_the_mapping_attributes_known_alerts(services):
    assert "NodeDown" in services["node"].alerts["up"]
    assert "FootballApiHealthProbeFailing" in services["probe:api-health"].alerts["up"]
    assert "FootballApiHealthProbeFailing" in services["football-prediction-api"].alerts["up"]
    assert "TargetDown" in services["grafana"].alerts["up"]  # service "{{ $labels.job }}", every job
    assert "FootballApiHighErrorRatio" in services["football-prediction-api"].alerts["errors"]
    assert "FootballApiHighLatencyP99" in services["football-prediction-api"].alerts["latency"]
    assert "PostgresConnectionsExhausted" in services["postgresql"].alerts["saturation"]


def test_every_deployed_or_probed_service_has_an_up_style_alert(services):
    report = _report(services)
    print("\n" + report)
    deployed = [s for s in services.values() if s.source != "alert service label"]
    missing = sorted(s.name for s in deployed if not s.alerts["up"])
    assert not missing, f"services without an up-style alert: {missing}\n{report}"
