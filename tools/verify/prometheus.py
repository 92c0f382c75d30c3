"""The Prometheus checks: ready, targets (over every shard), rules, alerting rules, Watchdog, its Alertmanagers."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Optional

import yaml

from components import data
from components.configs import slo
from tools.verify.checks import Context, check, ready
from tools.verify.project import ROOT
from tools.verify.report import FAIL, PASS, WARN, Result

# The external label of a scrape shard, components/configs/prometheus.py SHARD_LABEL (which would
# bring the settings, and Pulumi with them, into this standard-library tool; tests/test_verify.py
# holds the two equal).
SHARD_LABEL = "shard"


@check("prometheus.ready", needs=("prometheus",), gate=True)
def prometheus_ready(ctx: Context) -> Result:
    return ready(ctx, "prometheus", "Prometheus",
                 "kubectl -n <namespace> logs statefulset/prometheus (WAL replay can take minutes after a restart)")


@check("prometheus.targets", needs=("prometheus",))
def prometheus_targets(ctx: Context) -> list[Result]:
    if ctx.shards != 1:
        return _sharded_targets(ctx)
    targets = ctx.api("prometheus", "/api/v1/targets?state=active").get("activeTargets") or []
    return [_judge_targets(targets, "")]


def _judge_targets(targets: list[dict], where: str) -> Result:
    health = Counter(t.get("health", "unknown") for t in targets)
    jobs = {t.get("labels", {}).get("job") or t.get("scrapePool") for t in targets}
    numbers = (f"{health['up']}/{len(targets)} active targets up in {len(jobs)} jobs "
               f"({health['down']} down, {health['unknown']} not scraped yet){where}")
    if not targets:
        return Result(FAIL, "prometheus.targets", "no active targets" + where,
                      action="check the scrape configuration and service discovery (RBAC, namespaces); "
                             "right after a start Prometheus needs a few seconds to publish its targets")
    down = sorted((t for t in targets if t.get("health") == "down"),
                  key=lambda t: (t.get("labels", {}).get("job", ""), t.get("labels", {}).get("instance", "")))
    details = [f"down: job={t.get('labels', {}).get('job') or t.get('scrapePool')} "
               f"instance={t.get('labels', {}).get('instance') or t.get('scrapeUrl')}: "
               f"{(t.get('lastError') or 'no error reported').strip()}" for t in down]
    if down:
        return Result(FAIL, "prometheus.targets", numbers, details,
                      action="open each target's scrape URL from the Prometheus pod (kubectl exec ... wget -qO- URL) "
                             "and see docs/runbooks/TargetDown.md")
    if health["unknown"]:
        pending = [f"not scraped yet: job={t.get('labels', {}).get('job')} "
                   f"instance={t.get('labels', {}).get('instance')}"
                   for t in targets if t.get("health") not in ("up", "down")]
        return Result(WARN, "prometheus.targets", numbers, pending,
                      action="rerun after one scrape interval")
    return Result(PASS, "prometheus.targets", numbers)


def _sharded_targets(ctx: Context) -> list[Result]:
    """With scrape shards each Prometheus scrapes a share of the targets: they are read through
    Thanos Query, whose targets API asks every sidecar it reaches for its Prometheus' targets and
    merges them (pkg/targets: one entry per target once the replica labels, the shard label among
    them, are removed; a target down in any replica is shown down). Which shards Query reaches is
    read from its endpoints (/api/v1/stores): a shard it reaches no Prometheus of has no targets
    in the answer and no warning either, so it is named here."""
    shards = ctx.shards
    endpoint = ctx.endpoints["thanos-query"]
    how = f"{shards} scrape shards" if shards else "scrape shards (Thanos Ruler evaluates the rules)"
    if endpoint.url is None:
        return [Result(FAIL, "prometheus.targets",
                       f"the stack has {how}: their targets are read through Thanos Query, which has no URL here",
                       action=endpoint.problem if not endpoint.absent else
                       "pass --thanos-query-url (kubectl --namespace <namespace> port-forward svc/thanos-query 10902)")]
    where = f" (through Thanos Query, over {how})"
    results = [_shard_coverage(ctx, shards)]
    document = ctx.get_json("thanos-query", "/api/v1/targets?state=active")
    if not isinstance(document, dict) or document.get("status") != "success":
        return results + [Result(FAIL, "prometheus.targets", f"unexpected answer {str(document)[:200]}",
                                 action="check Thanos Query's logs")]
    warnings = document.get("warnings") or []
    result = _judge_targets((document.get("data") or {}).get("activeTargets") or [], where)
    if warnings:
        # A Prometheus that did not answer: its share of the targets is missing from the list.
        result = Result(FAIL, "prometheus.targets", result.summary + f"; {len(warnings)} Prometheus did not answer",
                        [f"not answered: {w}" for w in warnings] + result.details,
                        action="see the Thanos Query and sidecar logs; " + (result.action or ""))
    return results + [result]


def _shard_coverage(ctx: Context, shards: Optional[int]) -> Result:
    stores = ctx.api("thanos-query", "/api/v1/stores") or {}
    answering: dict[str, list[str]] = defaultdict(list)
    failing = []
    for store in stores.get("sidecar") or []:
        for labels in store.get("labelSets") or []:
            shard = str(labels.get(SHARD_LABEL, "?"))
            who = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in (SHARD_LABEL, "environment"))
            if store.get("lastError"):
                failing.append(f"shard {shard}: {who or store.get('name')} failing: {store['lastError']}")
            else:
                answering[shard].append(who or store.get("name", "?"))
    details = [f"shard {s}: {', '.join(sorted(found))}" for s, found in sorted(answering.items())] + failing
    if shards is None:
        return Result(WARN, "prometheus.shards", f"Thanos Query reaches Prometheus of shards "
                      f"{', '.join(sorted(answering)) or 'none'}; the outputs do not say how many there are",
                      details, action="redeploy to get the prometheusShards output, or count the "
                                      "prometheus-shard-* StatefulSets")
    missing = [str(s) for s in range(shards) if str(s) not in answering]
    numbers = f"Thanos Query reaches a Prometheus of {shards - len(missing)} of {shards} scrape shards"
    if missing:
        return Result(FAIL, "prometheus.shards", numbers + f": none of shard {', '.join(missing)}", details,
                      action="the targets of those shards are not checked (and the rules, through the Rulers' "
                             "Query thanos-query-rule over the same endpoints, most likely miss them too): see that "
                             "shard's pods and their sidecars (kubectl -n <namespace> get pods prometheus-shard-N-0 "
                             "prometheus-shard-N-1; shard 0's are prometheus-0 and prometheus-1) and Thanos Query's "
                             "endpoints (its /stores page)")
    return Result(PASS, "prometheus.shards", numbers, details)


def _where(ctx: Context) -> str:
    return " (in Thanos Ruler: the stack has scrape shards)" if ctx.rules_service == "rules" else ""


def _rules(ctx: Context) -> list[tuple[str, dict]]:
    groups = ctx.api(ctx.rules_service, "/api/v1/rules").get("groups") or []
    return [(g.get("name", "?"), rule) for g in groups for rule in g.get("rules") or []]


@check("prometheus.rules", needs=("prometheus",))
def prometheus_rules(ctx: Context) -> Result:
    groups = ctx.api(ctx.rules_service, "/api/v1/rules").get("groups") or []
    rules = _rules(ctx)
    health = Counter(rule.get("health", "unknown") for _, rule in rules)
    numbers = f"{len(groups)} rule groups, {len(rules)} rules: {health['ok']} ok, {health['err']} failing, " \
              f"{len(rules) - health['ok'] - health['err']} not evaluated yet" + _where(ctx)
    if not groups:
        return Result(FAIL, "prometheus.rules", "no rule groups loaded",
                      action="check the prometheus-rules ConfigMap mount and the config reloader's logs")
    bad = [f"{rule.get('health')}: group {group} rule {rule.get('name')}: {(rule.get('lastError') or '').strip()}"
           for group, rule in rules if rule.get("health") not in ("ok", "unknown")]
    if bad:
        return Result(FAIL, "prometheus.rules", numbers, bad,
                      action="fix the expressions (promtool check rules / promtool test rules in rules/tests), "
                             "see docs/runbooks/PrometheusRuleEvaluationFailures.md")
    unknown = [f"not evaluated yet: group {group} rule {rule.get('name')}" for group, rule in rules
               if rule.get("health") not in ("ok", "err")]
    if unknown:
        return Result(WARN, "prometheus.rules", numbers, unknown[:20],
                      action="rerun after one evaluation interval")
    return Result(PASS, "prometheus.rules", numbers)


def checkout_alerting_rules(rules_dir: Path = ROOT / "rules", slos_dir: Optional[Path] = ROOT / "slos",
                            parts_off: Iterable[str] = ()) -> Optional[int]:
    """Alerting rules this checkout deploys (rules/*.yaml but the rule files of the optional parts in
    ``parts_off``, data.OPTIONAL_PARTS, and a page and a ticket per SLO of slos/*.yaml), or None when there
    is no checkout."""
    files = sorted(rules_dir.glob("*.yaml")) if rules_dir.is_dir() else []
    if not files:
        return None
    left_out = {data.OPTIONAL_PARTS[part][0] for part in parts_off}
    files = [path for path in files if path.name not in left_out]
    count = 0
    for path in files:
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return None
        count += sum(1 for g in document.get("groups") or [] for r in g.get("rules") or [] if "alert" in r)
    slo_files = sorted(slos_dir.glob("*.yaml")) if slos_dir is not None and slos_dir.is_dir() else []
    return count + len(slo.ALERT_KINDS) * len(slo_files)


@check("prometheus.alerting-rules", needs=("prometheus",))
def prometheus_alerting_rules(ctx: Context) -> Result:
    alerting = [rule for _, rule in _rules(ctx) if rule.get("type") == "alerting"]
    firing = sum(1 for rule in alerting if rule.get("state") == "firing")
    pending = sum(1 for rule in alerting if rule.get("state") == "pending")
    numbers = f"{len(alerting)} alerting rules loaded ({firing} firing, {pending} pending)"
    if not alerting:
        return Result(FAIL, "prometheus.alerting-rules", "no alerting rules loaded",
                      action="check the prometheus-rules ConfigMap and rule_files in prometheus.yml")
    expected = checkout_alerting_rules()
    if expected is not None:
        # What a stack deploys of the checkout depends on the SLOs and the optional parts being on.
        optional = ["slo", *data.OPTIONAL_PARTS]
        for off in (combo for n in range(1, len(optional) + 1) for combo in itertools.combinations(optional, n)):
            parts = [p for p in off if p != "slo"]
            count = checkout_alerting_rules(slos_dir=None if "slo" in off else ROOT / "slos", parts_off=parts)
            if len(alerting) == count != expected:
                left_out = [f"{'its SLOs' if p == 'slo' else p + ' rules'} ({p}.enabled is false)" for p in off]
                return Result(PASS, "prometheus.alerting-rules",
                              f"{numbers}; this checkout defines {count} without {' and '.join(left_out)}")
    if expected is not None and expected != len(alerting):
        return Result(WARN, "prometheus.alerting-rules", f"{numbers}; this checkout defines {expected}",
                      action="the deployed rules differ from this checkout: deploy this revision, "
                             "or verify from the revision that is deployed")
    suffix = f"; this checkout defines {expected} too" if expected is not None else ""
    return Result(PASS, "prometheus.alerting-rules", numbers + suffix)


@check("prometheus.watchdog", needs=("prometheus",))
def prometheus_watchdog(ctx: Context) -> Result:
    alerts = ctx.active_alerts()
    watchdog = [a for a in alerts if (a.get("labels") or {}).get("alertname") == "Watchdog"]
    states = Counter(a.get("state") for a in watchdog)
    if states["firing"]:
        return Result(PASS, "prometheus.watchdog", f"Watchdog is firing ({len(alerts)} alerts active in total): "
                                                   "rules are evaluated")
    rules = [rule for _, rule in _rules(ctx) if rule.get("name") == "Watchdog" and rule.get("type") == "alerting"]
    if not rules:
        return Result(FAIL, "prometheus.watchdog", "no Watchdog alerting rule loaded",
                      action="rules/meta-monitoring.yaml must be deployed: check the prometheus-rules ConfigMap")
    return Result(FAIL, "prometheus.watchdog",
                  f"Watchdog is not firing (states: {dict(states) or 'none'}; rule health "
                  f"{rules[0].get('health')}, last evaluation {rules[0].get('lastEvaluation')})",
                  action="rule evaluation is not working: see docs/runbooks/Watchdog.md and the Prometheus logs")


@check("prometheus.alertmanagers", needs=("prometheus",))
def prometheus_alertmanagers(ctx: Context) -> Result:
    data = ctx.api("prometheus", "/api/v1/alertmanagers")
    active = [a.get("url", "?") for a in data.get("activeAlertmanagers") or []]
    dropped = [a.get("url", "?") for a in data.get("droppedAlertmanagers") or []]
    expected, source = ctx.expected_alertmanagers()
    details = [f"active: {url}" for url in active] + [f"dropped: {url}" for url in dropped]
    numbers = f"connected to {len(active)} Alertmanager(s)" + (f", expected {expected} ({source})" if expected else
                                                                f"; expected count {source}")
    action = ("check that every Alertmanager pod runs and that Prometheus resolves each "
              "alertmanager-N.alertmanager-headless address; "
              "see docs/runbooks/PrometheusNotConnectedToAlertmanagers.md")
    if not active or (expected and len(active) < expected):
        return Result(FAIL, "prometheus.alertmanagers", numbers, details, action=action)
    if expected and len(active) > expected:
        return Result(WARN, "prometheus.alertmanagers", numbers, details,
                      action="more Alertmanagers than expected: check --alertmanager-replicas and the stack settings")
    return Result(PASS, "prometheus.alertmanagers", numbers, details)
