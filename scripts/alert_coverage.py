#!/usr/bin/env python3
"""Which monitored services have an alert for which signal (up, errors, latency, saturation).

Services are what the prod stack deploys, scrapes or probes, read from the generated
prometheus.yml (offline.run("prod")): every scrape job, every blackbox probe target, and the
application workloads of metrics/catalog.yaml (scraped through pod annotations); plus any
literal `service` label of an alert that names something else (e.g. "kubernetes").

Alerts are attributed and classified from rules/*.yaml, never from a hand-kept table:

- an alert belongs to the service its `service` label names; a templated label
  (`{{ $labels.job }}`, `{{ $labels.probe }}`) resolves to the jobs/probes the expression
  selects (all of them when it does not filter);
- an alert that reads a probe's probe_success also covers that probe;
- the signal is derived from the metric names the expression uses, recording rules expanded
  (SIGNALS below: a handful of name patterns).

The explicit mapping rules are the three tables below (JOB_SERVICE, UP_METRICS, SIGNALS).

    .venv/bin/python scripts/alert_coverage.py [--strict]

Prints the table, the share of (service, signal) cells with an alert and the services without an
up-style alert; --strict exits 1 when any service lacks one.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import promql_names as pn  # noqa: E402

# A job whose metrics describe another system: the service is that system.
JOB_SERVICE = {
    "node-exporter": "node",
    "postgres-exporter": "postgresql",
    "redis-exporter": "redis",
    # up of a probe job says whether the blackbox exporter answered, not whether the probe passed
    "blackbox-http": "blackbox-exporter",
    "blackbox-tcp": "blackbox-exporter",
    "blackbox-icmp": "blackbox-exporter",
}
# "Is it up" metrics: the scrape's own up, an exporter's connection check, a probe's result.
UP_METRICS = re.compile(r"^(up|[a-z_]+_up|probe_success|kube_\w+_status_(condition|ready))$")
# Other signals, by the metric and recording-rule names an expression uses.
SIGNALS = {
    "errors": re.compile(r"(^|[_:])(errors?|errs|failed|failures?|rejected|deadlocks|corruptions|"
                         r"waiting_reason|terminated_reason)([_:]|$)"),
    "latency": re.compile(r"duration|latency|delay|:p\d\d_"),
    "saturation": re.compile(r"memory|cpu|filesystem|files_free|connections|queue_length|evicted|throttl|"
                             r"volume_stats|cluster_members|in_progress|utilisation|replicas"),
}
SIGNAL_NAMES = ("up", "errors", "latency", "saturation")


@dataclass
class Service:
    name: str
    source: str  # where it comes from: job, probe, app, rules
    jobs: set[str] = field(default_factory=set)  # job label values whose targets belong to it
    probe: str = ""
    alerts: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in SIGNAL_NAMES})


def prod_services(result=None) -> tuple[dict[str, Service], dict[str, list[str]]]:
    """Services of the prod stack and, per probe job, its probe names (result: offline.run("prod"))."""
    from tools import offline

    result = result or offline.run("prod")
    doc = yaml.safe_load(result.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    catalog = yaml.safe_load((ROOT / "metrics" / "catalog.yaml").read_text())
    services: dict[str, Service] = {}
    probes: dict[str, list[str]] = {}

    def add(name: str, source: str, job: str = "", probe: str = "") -> None:
        service = services.setdefault(name, Service(name, source, probe=probe))
        if job:
            service.jobs.add(job)

    for job in doc["scrape_configs"]:
        name = job["job_name"]
        if job.get("metrics_path") == "/probe":
            probes[name] = [c["labels"]["probe"] for c in job.get("static_configs", [])]
            for probe in probes[name]:
                add(f"probe:{probe}", f"{name} target", probe=probe)
            add(JOB_SERVICE[name], "job", job=name)
        elif any("annotation_prometheus_io_scrape" in label for rule in job.get("relabel_configs", [])
                 for label in rule.get("source_labels", [])):
            for component in catalog["components"].values():  # job = app.kubernetes.io/name
                add(component["job"], "app (annotated pods)", job=component["job"])
        else:
            add(JOB_SERVICE.get(name, name), "job", job=name)
    return services, probes


def _selectors(expr: str, recording: dict[str, str], seen: frozenset = frozenset()) -> list[pn.Selector]:
    found = []
    for selector in pn.selectors(expr):
        found.append(selector)
        if selector.name in recording and selector.name not in seen:
            found += _selectors(recording[selector.name], recording, seen | {selector.name})
    return found


def _matched(selectors: list[pn.Selector], label: str, candidates: set[str]) -> set[str]:
    """Values of ``label`` among ``candidates`` that the selectors accept (all when unfiltered)."""
    matched = set()
    for selector in selectors:
        accepted = set(candidates)
        for name, op, value in selector.matchers:
            if name != label:
                continue
            test = {"=": lambda v: v == value, "!=": lambda v: v != value,
                    "=~": lambda v: re.fullmatch(value, v) is not None,
                    "!~": lambda v: re.fullmatch(value, v) is None}[op]
            accepted = {c for c in accepted if test(c)}
        matched |= accepted
    return matched


def coverage(result=None) -> dict[str, Service]:
    services, probes = prod_services(result)
    recording = {}
    alerts = []
    for rule in pn.iter_rules(ROOT):
        if "record" in rule:
            recording[rule["record"]] = rule["expr"]
        elif "alert" in rule:
            alerts.append(rule)
    all_jobs = {job for s in services.values() for job in s.jobs}
    job_to_service = {job: s.name for s in services.values() for job in s.jobs}
    all_probes = {p for names in probes.values() for p in names}

    for rule in alerts:
        name, label = rule["alert"], str((rule.get("labels") or {}).get("service", ""))
        selectors = _selectors(rule["expr"], recording)
        names = {s.name for s in selectors if s.name}
        signals = {sig for sig, pattern in SIGNALS.items() if any(pattern.search(n) for n in names)}
        up_selectors = [s for s in selectors if s.name and UP_METRICS.match(s.name)]
        if up_selectors:
            signals.add("up")
        owners: set[str] = set()
        if "$labels.job" in label:
            owners |= {job_to_service[j] for j in _matched(selectors, "job", all_jobs)}
        elif "$labels.probe" in label:
            probe_jobs = _matched(selectors, "job", set(probes))
            owners |= {f"probe:{p}" for j in probe_jobs for p in _matched(selectors, "probe", set(probes[j]))}
        elif label:
            services.setdefault(label, Service(label, "alert service label"))
            owners.add(label)
        # reading a probe's result covers that probe as well
        probe_success = [s for s in up_selectors if s.name == "probe_success"]
        if probe_success:
            probe_jobs = _matched(probe_success, "job", set(probes))
            owners |= {f"probe:{p}" for j in probe_jobs for p in _matched(probe_success, "probe", set(probes[j]))}
        for owner in owners:
            for signal in signals:
                services[owner].alerts[signal].add(name)
    assert all_probes <= {s.probe for s in services.values()}
    return services


def table(services: dict[str, Service]) -> str:
    lines = [f"{'service':30} {'from':22} " + " ".join(f"{s:28}" for s in SIGNAL_NAMES)]
    for service in sorted(services.values(), key=lambda s: (s.source == "alert service label", s.name)):
        cells = []
        for signal in SIGNAL_NAMES:
            names = sorted(service.alerts[signal])
            text = "-" if not names else names[0] + (f" +{len(names) - 1}" if len(names) > 1 else "")
            cells.append(f"{text:28}")
        lines.append(f"{service.name:30} {service.source:22} " + " ".join(cells))
    return "\n".join(lines)


def shares(services: dict[str, Service]) -> tuple[float, float]:
    cells = [bool(s.alerts[sig]) for s in services.values() for sig in SIGNAL_NAMES]
    up = [bool(s.alerts["up"]) for s in services.values()]
    return 100 * sum(cells) / len(cells), 100 * sum(up) / len(up)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strict", action="store_true", help="exit 1 when a service has no up-style alert")
    args = ap.parse_args(argv)
    services = coverage()
    print(table(services))
    overall, up = shares(services)
    print(f"\n(service, signal) cells with an alert: {overall:.0f}%   services with an up-style alert: {up:.0f}%")
    missing = {sig: sorted(s.name for s in services.values() if not s.alerts[sig]) for sig in SIGNAL_NAMES}
    for signal in SIGNAL_NAMES:
        if missing[signal]:
            print(f"no {signal} alert: {', '.join(missing[signal])}")
    return 1 if args.strict and missing["up"] else 0


if __name__ == "__main__":
    sys.exit(main())
