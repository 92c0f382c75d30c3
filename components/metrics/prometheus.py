"""Prometheus: a StatefulSet (an HA pair in prod) with its TSDB on a volume.

Config and rule changes reach it through a reload (a sidecar watches the
mounted files and calls /-/reload), never through a restart that would replay
the WAL or lose data.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi

from components import data
from components.configs import prometheus as prometheus_config
from components.configs import slo
from components.configs.prometheus import RULES_DIR, ScrapeTarget
from components.metrics import thanos
from components.settings import REPORT_APP, Settings, duration_seconds
from components.platform.workload import (ANYWHERE, INGRESS, AccessRule, ConfigFiles, DataVolume, Flow, HttpCheck, Platform, Port,
                       Reloader, ServiceSpec)

WEB_PORT = 9090

# What service discovery reads, and nothing more: get/list/watch only.
DISCOVERY_ACCESS = (
    AccessRule(api_groups=[""], resources=["nodes", "services", "pods"]),
    AccessRule(api_groups=["discovery.k8s.io"], resources=["endpointslices"]),
    # kubelet and cAdvisor metrics straight from each kubelet (no API-server proxy,
    # which would need the far broader nodes/proxy permission).
    AccessRule(api_groups=[""], resources=["nodes/metrics"], verbs=["get"]),
    # The API server's own /metrics (the apiserver job). The kubelet authorizes /metrics/cadvisor as
    # nodes/metrics above; the API server serves no such path.
    AccessRule(non_resource_urls=["/metrics"], verbs=["get"]),
)


def shard_name(shard: int) -> str:
    """The service of one shard: shard 0 keeps the name (and so the volumes and pod names) of the
    single Prometheus it was before sharding."""
    return "prometheus" if shard == 0 else f"prometheus-shard-{shard}"


def config_text(settings: Settings, alertmanagers: Sequence[str], components: Sequence[ScrapeTarget],
                blackbox_address: str, discovery: str = "kubernetes", shard: int = 0,
                watched_prometheus: Optional[str] = None) -> str:
    prom = settings.prometheus
    sharded = {} if prom.shards == 1 else {
        "shards": prom.shards, "shard": shard, "watched_prometheus": watched_prometheus,
        # The rules run in Thanos Ruler (components/metrics/thanos_rule.py).
        "rule_files": ()}
    return prometheus_config.render(prometheus_config.PrometheusConfig(
        environment=settings.environment,
        namespace=settings.namespace,
        scrape_interval=prom.scrape_interval,
        scrape_timeout=prom.scrape_timeout,
        evaluation_interval=prom.evaluation_interval,
        alertmanagers=alertmanagers,
        components=components,
        blackbox_address=blackbox_address,
        http_probes=settings.probes.http,
        tcp_probes=settings.probes.tcp,
        icmp_probes=settings.probes.icmp,
        kubelet_insecure_skip_verify=prom.kubelet_insecure_skip_verify,
        discovery=discovery,
        static_targets=settings.static_targets,
        retention=prom.retention,
        retention_size=prom.retention_size,
        replica_label_name=settings.thanos.replica_label,
        **sharded,
    ))


def rule_files(settings: Settings) -> dict[str, str]:
    """The rule files Prometheus loads: rules/*.yaml (an optional part's, data.OPTIONAL_PARTS, only where it
    runs), and with
    slo.enabled one generated from each of slos/*.yaml.

    Raises components.configs.slo.SloError (or data.DataFileError) on a bad data file: called before the stack
    declares anything, so a bad file declares nothing."""
    files = data.rule_files()
    for name in data.left_out(settings)[0]:
        del files[name]
    if settings.slo.enabled:
        for name, text in slo.rule_files(slo.parse_all(data.slo_files()), settings.environment,
                                         duration_seconds(settings.prometheus.evaluation_interval)).items():
            if name in files:
                raise data.DataFileError(f"rules/{name} has the name of the rule file generated from an SLO: rename it")
            files[name] = text
        data.check_budget("the rule files", files)
    return files


class Prometheus(pulumi.ComponentResource):
    internal_url: str
    external_url: Optional[str]

    def __init__(self, name: str, *, settings: Settings, platform: Platform,
                 alertmanagers: Sequence[str], components: Sequence[ScrapeTarget], blackbox_address: str,
                 rules: Optional[dict[str, str]] = None, shard: int = 0,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:prometheus:Prometheus", name, None, opts)
        prom = settings.prometheus
        service = shard_name(shard)
        sharded = prom.shards > 1
        discovery = "kubernetes" if platform.kind == "kubernetes" else "static"
        watched = platform.instance_label(shard_name((shard + 1) % prom.shards)) if sharded else None
        self.config = config_text(settings, alertmanagers, components, blackbox_address, discovery, shard, watched)
        # Notification and alert links carry this URL: the ingress (or a Docker host's published port),
        # else the address people reach it at some other way, else the cluster-internal one. The
        # ingress leads to shard 0: the other shards' links are their cluster-internal addresses.
        public = platform.public_url("prometheus") if shard == 0 else None
        self.external_url = (prom.external_url if shard == 0 else None) or public
        internal_url = f"http://{platform.host_of(service)}:{WEB_PORT}"
        uploading = settings.thanos.enabled
        thanos_in = thanos.prometheus_flows(settings) if uploading else []

        config = [ConfigFiles("config", "/etc/prometheus/config", {"prometheus.yml": self.config}, reload=True)]
        if not sharded:
            config.append(ConfigFiles("rules", RULES_DIR, rules if rules is not None else rule_files(settings),
                                      reload=True))
        spec = ServiceSpec(
            name=service,
            # Every shard is "prometheus" to the network flows and scrape jobs that name it.
            app="prometheus" if sharded else None,
            component="metrics",
            image=settings.images["prometheus"],
            ports=[Port("web", WEB_PORT)],
            resources=prom.resources,
            run_as_user=65534,
            args=[
                "--config.file=/etc/prometheus/config/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--web.enable-lifecycle",
                f"--web.external-url={self.external_url or internal_url}",
                "--web.route-prefix=/",
                *(thanos.PROMETHEUS_UPLOAD_ARGS if uploading else ()),
            ],
            # External label replica=${POD_NAME}; Prometheus 3 expands it at load time.
            env_from_pod={"POD_NAME": "metadata.name"},
            config=config,
            data=DataVolume("/prometheus", prom.storage_size),
            liveness=HttpCheck("/-/healthy", "web"),
            readiness=HttpCheck("/-/ready", "web"),
            replicas=prom.replicas,
            api_access=DISCOVERY_ACCESS,
            reloader=Reloader(f"http://127.0.0.1:{WEB_PORT}/-/reload", scraped_by=("prometheus",)),
            session_affinity=True,
            sidecars=[thanos.sidecar(settings, WEB_PORT, "/prometheus")] if uploading else [],
            # With Thanos, Grafana reads Thanos Query, which reads the sidecar.
            allow_in=([] if uploading else [Flow("grafana", [(WEB_PORT, "TCP")])])
            + [Flow("prometheus", [(WEB_PORT, "TCP")]), Flow(INGRESS, [(WEB_PORT, "TCP")])]
            + ([Flow(REPORT_APP, [(WEB_PORT, "TCP")])] if settings.report.enabled else [])
            + thanos_in,
            # Targets live anywhere: every namespace, every node's kubelet, the API server.
            allow_out=[Flow(ANYWHERE)],
        )
        self.deployed = platform.deploy(spec, self)
        self.internal_url = self.deployed.url("web")
        if public:
            platform.expose(self.deployed, "web", parent=self)
        self.register_outputs({"internal_url": self.internal_url, "external_url": self.external_url})
