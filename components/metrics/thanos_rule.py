"""Thanos Ruler: the stack's rules, evaluated over every scrape shard (prometheus.shards > 1).

Once the targets are split, a rule evaluated in one shard sees that shard's share only: a
`sum by (job)` of the API's request rate, the share of a job's targets that are down, every SLO
ratio would be that shard's. The Ruler (the `thanos rule` command of the Thanos image) evaluates
every rule file through Thanos Query, which merges the shards (and each shard's replicas), sends
its alerts to every Alertmanager replica, keeps its recorded series in its own TSDB, serves them to
Thanos Query over its StoreAPI and uploads its blocks to the bucket. The shards then load no rule
file.

Each rule group keeps Thanos' default partial response strategy for rules, abort: a query that
does not get an answer from every store Thanos Query selected fails, and the rule is not evaluated
that round (a rule judged on part of the fleet would fire or clear wrongly: a ratio of one shard,
an absent() of the other shards' series). A shard whose replicas are all down is not a partial
answer: Thanos Query drops endpoints that fail its health checks, so the rules see the other
shards' series; the shard that watches the missing one (components/configs/prometheus.py
shard_jobs) reports its targets down and TargetDown fires.

Flags are those of the pinned release (cmd/thanos/rule.go, cmd/thanos/config.go);
tests/test_command_lines.py starts the command line, tests/test_thanos_rule_e2e.py runs it over
two shards (and tests/test_prometheus_shards.py checks its rule files with `thanos tools rules-check`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi

from components.configs.prometheus import ScrapeTarget
from components.metrics import thanos
from components.metrics.alertmanager import WEB_PORT as ALERTMANAGER_PORT
from components.metrics.prometheus import RULES_DIR
from components.settings import Settings
from components.platform.workload import (ConfigFiles, DataVolume, Flow, Platform, Port, Reloader, ServiceSpec)

RULE = thanos.RULE
DATA_DIR = "/var/thanos/rule"


def scrape_target() -> ScrapeTarget:
    return ScrapeTarget(RULE, RULE, "http")


def args(settings: Settings, query_address: str, alertmanagers: Sequence[str], query_url: str) -> list[str]:
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
        # Thanos Query's own address, not the query frontend's: the Ruler asks instant queries,
        # which the frontend neither splits nor caches.
        f"--query={query_address}",
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
        query_address = f"{platform.host_of(thanos.QUERY)}:{thanos.HTTP_PORT}"
        self.deployed = platform.deploy(ServiceSpec(
            name=RULE, component="metrics-rules", image=settings.images["thanos"],
            ports=[Port("http", thanos.HTTP_PORT), Port("grpc", thanos.GRPC_PORT)],
            resources=t.rule_resources, run_as_user=thanos.RUN_AS_USER,
            args=args(settings, query_address, alertmanagers, f"http://{query_address}"),
            env_from_pod={"POD_NAME": "metadata.name"},
            config=[ConfigFiles("rules", RULES_DIR, rules, reload=True), thanos.objstore_files(settings)],
            data=DataVolume(DATA_DIR, t.rule_storage_size),
            replicas=t.rule_replicas,
            # The Ruler re-reads its rule files on POST /-/reload (cmd/thanos/rule.go), as Prometheus does.
            reloader=Reloader(f"http://127.0.0.1:{thanos.HTTP_PORT}/-/reload", scraped_by=("prometheus",)),
            **thanos.probes(),
            allow_in=[Flow(thanos.QUERY, [(thanos.GRPC_PORT, "TCP")]), Flow("prometheus", [(thanos.HTTP_PORT, "TCP")])],
            allow_out=[Flow(thanos.QUERY, [(thanos.HTTP_PORT, "TCP")]), Flow("alertmanager", [(ALERTMANAGER_PORT, "TCP")]),
                       *thanos.bucket_flows(settings)],
        ), self)
        self.grpc_addresses = self.deployed.replica_addresses("grpc")
        # Its Prometheus-style rules and alerts API: with scrape shards the rules are evaluated here.
        self.internal_url = self.deployed.url("http")
        self.register_outputs({})
