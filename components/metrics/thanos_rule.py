"""Thanos Ruler: the stack's rules, evaluated over every scrape shard (prometheus.shards > 1).

Once the targets are split, a rule evaluated in one shard sees that shard's share only: a
`sum by (job)` of the API's request rate, the share of a job's targets that are down, every SLO
ratio would be that shard's. The Ruler (the `thanos rule` command of the Thanos image) evaluates
every rule file through a Thanos Query of the Rulers' own (thanos-query-rule: the same stores as
Grafana's, a store timeout of its own, store_silence_seconds), which merges the shards (and each
shard's replicas), sends its alerts to every Alertmanager replica, keeps its recorded series in its
own TSDB, serves them to both Queries over its StoreAPI (later rules read earlier rules' series
through Query) and uploads its blocks to the bucket. The shards then load no rule file.

Each rule group keeps Thanos' default partial response strategy for rules, abort: a query that
does not get an answer from every store Thanos Query selected fails, and the rule is not evaluated
that round (a rule judged on part of the fleet would fire or clear wrongly: a ratio of one shard,
an absent() of the other shards' series). A shard whose replicas are all down is not a partial
answer: Thanos Query drops endpoints that fail its health checks, so the rules see the other
shards' series; the shard that watches the missing one (components/configs/prometheus.py
shard_jobs) reports its targets down and TargetDown fires.

A rule query that hangs is bounded twice (store_silence_seconds, query_config). Left as upstream
has them, only Thanos Query's --query.timeout (2m) ends one: a store that takes a Series call and
sends nothing (a sidecar whose Prometheus hangs, a store gateway stuck on the bucket) held each rule
of a group for 2 minutes in turn, the whole group's evaluation with it.

Flags are those of the pinned release (cmd/thanos/rule.go, cmd/thanos/config.go);
tests/test_command_lines.py starts the command line, tests/test_thanos_rule_e2e.py runs it over
two shards (and tests/test_prometheus_shards.py checks its rule files with `thanos tools rules-check`).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import pulumi
import yaml

from components.configs.prometheus import ScrapeTarget
from components.metrics import thanos
from components.metrics.alertmanager import WEB_PORT as ALERTMANAGER_PORT
from components.metrics.prometheus import RULES_DIR
from components.settings import Settings
from components.settings.types import duration_seconds
from components.platform.workload import (ConfigFiles, DataVolume, Flow, Platform, Port, Reloader, ServiceSpec)

RULE = thanos.RULE
DATA_DIR = "/var/thanos/rule"
QUERY_CONFIG_DIR = "/etc/thanos/query"
QUERY_CONFIG_FILE = f"{QUERY_CONFIG_DIR}/query.yaml"
# --resend-delay, upstream's default (cmd/thanos/rule.go), rendered so that the reckoning of
# store_silence_seconds reads what the Ruler runs with.
RESEND_DELAY_SECONDS = 60


def scrape_target() -> ScrapeTarget:
    return ScrapeTarget(RULE, RULE, "http")


def alert_validity_seconds(interval_seconds: float) -> float:
    """How long Alertmanager holds an alert the Ruler sent (its endsAt): 4 x the larger of the
    group's interval and the resend delay (prometheus/rules/alerting.go sendAlerts, ValidUntil;
    cmd/thanos/rule.go sets endsAt to it). A firing alert not sent again by then resolves."""
    return 4 * max(interval_seconds, RESEND_DELAY_SECONDS)


def store_silence_seconds(settings: Settings, rules: Mapping[str, str]) -> int:
    """The --store.response-timeout of the Rulers' Thanos Query (components/metrics/thanos.py
    QUERY_RULE): how long a store may send nothing in answer to a Series call before Query gives it
    up for that query.

    Nothing in the Ruler bounds a rule query: the rule manager's context has no deadline
    (prometheus/rules/group.go), queryFuncCreator (cmd/thanos/rule.go) passes it on, and the HTTP
    client that --query builds has no timeout and a zero transport (pkg/clientconfig/config.go
    BuildConfigFromHTTPAddresses). Nor does the client's giving up end the store call in Query:
    Query's querier runs it on a context of its own (pkg/query/querier.go Select: detached from the
    request, its timeout --query.timeout), so an abandoned query keeps its place among Query's
    --query.max-concurrent (20) until then. Only Query can end it early: --store.response-timeout
    (pkg/store/proxy_merge.go: the time allowed between two frames of one store's stream; then the
    stream is closed and the query fails under the rules' partial response strategy, abort, or
    answers without that store with a warning under Grafana's).

    The rules of a group run one after the other: the silence allowed is such that every group,
    with a store silent throughout, still ends an evaluation within half its alerts' validity,
    whole seconds. Hence a Query of the Rulers' own: on Grafana's the same bound would leave a
    store that is merely slow between frames (a cold store gateway over a long range) out of a
    panel's answer, with a warning; Grafana's gives a store the longer GRAFANA_STORE_SILENCE_SECONDS
    (components/metrics/thanos.py)."""
    default = duration_seconds(settings.prometheus.evaluation_interval)
    allowed = []
    for text in rules.values():
        for group in (yaml.safe_load(text) or {}).get("groups") or []:
            interval = duration_seconds(group["interval"]) if group.get("interval") else default
            if group.get("rules"):
                allowed.append((alert_validity_seconds(interval) / 2 / len(group["rules"]), group["name"]))
    if not allowed:
        raise ValueError("the Ruler has no rule group to evaluate")
    seconds, group = min(allowed)
    if seconds < 1:
        # 0 would switch the timeout off.
        raise ValueError(f"rule group {group!r} has too many rules for a store's silence of at least 1 s to end "
                         "its evaluation within half its alerts' validity: split it")
    return int(seconds)


def query_config(query_address: str, store_silence: int) -> str:
    """--query.config-file: Thanos Query at its address, and a deadline of the Ruler's own for
    the case that Query itself does not answer (a hung Query, a dead node's address), where the
    store timeout cannot act: the client's transport timeouts (pkg/clientconfig/http.go
    TransportConfig, int64 nanoseconds; net/http: the dial, then the wait for the answer's headers
    after the request is written, which Query sends once it has evaluated the query). The wait is
    twice the store silence, so that a query Query ends on a silent store is answered (an error)
    before the Ruler would give it up. Everything else as --query had it (a zero TransportConfig:
    clientconfig.DefaultConfig, unmarshalled over, sets none)."""
    return yaml.safe_dump([{
        "static_configs": [query_address], "scheme": "http",
        "http_config": {"transport_config": {
            "dialer_timeout": int(store_silence * 1e9 / 2),
            "response_header_timeout": int(store_silence * 2e9)}},
    }], sort_keys=False)


def args(settings: Settings, alertmanagers: Sequence[str], query_url: str) -> list[str]:
    label = settings.thanos.replica_label
    return thanos.common_args("rule") + thanos.grpc_args() + [
        f"--data-dir={DATA_DIR}",
        f"--rule-file={RULES_DIR}/*.yaml",
        f"--eval-interval={settings.prometheus.evaluation_interval}",
        # What Prometheus sets as external labels: environment on every alert and recorded series,
        # the replica (the kubelet expands $(POD_NAME)) to tell the two Rulers' series apart, which
        # Thanos Query then deduplicates along the same label as the Prometheus pairs.
        f'--label=environment="{settings.environment}"',
        f'--label={label}="$(POD_NAME)"',
        # Both replicas send every alert; without the replica label they are one alert to Alertmanager.
        f"--alert.label-drop={label}",
        # The Rulers' own Thanos Query, not a query frontend: the Ruler asks instant queries,
        # which the frontend neither splits nor caches (query_config).
        f"--query.config-file={QUERY_CONFIG_FILE}",
        f"--resend-delay={RESEND_DELAY_SECONDS}s",
        *[f"--alertmanagers.url=http://{address}" for address in alertmanagers],
        # The alerts' "Source" link: the merged view (the shards' own UIs hold a share each).
        f"--alert.query-url={query_url}",
        f"--objstore.config-file={thanos.OBJSTORE_FILE}",
    ]


class ThanosRule(pulumi.ComponentResource):
    """The Ruler replicas (a StatefulSet: each keeps its TSDB on a volume until it is uploaded)."""

    def __init__(self, name: str, *, settings: Settings, platform: Platform, rules: dict[str, str],
                 alertmanagers: Sequence[str], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:thanos:ThanosRule", name, None, opts)
        t = settings.thanos
        # The Rulers' own Query (components/metrics/thanos.py QUERY_RULE), which gives up a silent store.
        query_address = f"{platform.host_of(thanos.QUERY_RULE)}:{thanos.HTTP_PORT}"
        # That Query's --store.response-timeout.
        self.store_silence = store_silence_seconds(settings, rules)
        self.deployed = platform.deploy(ServiceSpec(
            name=RULE, component="metrics-rules", image=settings.images["thanos"],
            ports=[Port("http", thanos.HTTP_PORT), Port("grpc", thanos.GRPC_PORT)],
            resources=t.rule_resources, run_as_user=thanos.RUN_AS_USER,
            # The alerts' links lead to Grafana's Query: the Rulers' lets in the Rulers only.
            args=args(settings, alertmanagers, f"http://{platform.host_of(thanos.QUERY)}:{thanos.HTTP_PORT}"),
            env_from_pod={"POD_NAME": "metadata.name"},
            config=[ConfigFiles("rules", RULES_DIR, rules, reload=True), thanos.objstore_files(settings),
                    # Read at start only: a new deadline (a group grew) rolls the pods through the
                    # checksum, while the rules themselves are reloaded in place.
                    ConfigFiles("query", QUERY_CONFIG_DIR, {"query.yaml": query_config(
                        query_address, self.store_silence)})],
            data=DataVolume(DATA_DIR, t.rule_storage_size),
            replicas=t.rule_replicas,
            # The Ruler re-reads its rule files on POST /-/reload (cmd/thanos/rule.go), as Prometheus does.
            reloader=Reloader(f"http://127.0.0.1:{thanos.HTTP_PORT}/-/reload", scraped_by=("prometheus",)),
            **thanos.probes(),
            allow_in=[*(Flow(q, [(thanos.GRPC_PORT, "TCP")]) for q in thanos.queries(settings)),
                      Flow("prometheus", [(thanos.HTTP_PORT, "TCP")])],
            allow_out=[Flow(thanos.QUERY_RULE, [(thanos.HTTP_PORT, "TCP")]), Flow("alertmanager", [(ALERTMANAGER_PORT, "TCP")]),
                       *thanos.bucket_flows(settings)],
        ), self)
        self.grpc_addresses = self.deployed.replica_addresses("grpc")
        # Its Prometheus-style rules and alerts API: with scrape shards the rules are evaluated here.
        self.internal_url = self.deployed.url("http")
        self.register_outputs({})
