"""prometheus.yml, rendered from settings. No Pulumi here: promtool checks the output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Mapping, Sequence

import yaml

from components.settings import ProbeTarget, StaticTarget

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RULES_DIR = "/etc/prometheus/rules"
SHARD_LABEL = "shard"  # the external label of a scrape shard (prometheus.shards)


@dataclass(frozen=True)
class ScrapeTarget:
    """A stack component: found by pod discovery on Kubernetes, by address elsewhere."""

    job: str
    app: str  # app.kubernetes.io/name of its pods
    port: str  # container port name
    instance_from_node: bool = False  # per-node exporters: instance = node name
    honor_labels: bool = False
    addresses: Sequence[str] = ()  # host:port, for static discovery
    labels: Mapping[str, str] = field(default_factory=dict)  # extra target labels, for static discovery
    namespace: Optional[str] = None  # where its pods run, if not in the stack's namespace
    metric_relabel: Sequence[Mapping] = ()  # metric_relabel_configs, for static discovery


@dataclass(frozen=True)
class PrometheusConfig:
    environment: str
    namespace: str
    scrape_interval: str
    scrape_timeout: str
    evaluation_interval: str
    alertmanagers: Sequence[str]  # host:port of every Alertmanager replica
    components: Sequence[ScrapeTarget]
    blackbox_address: str
    http_probes: Sequence[ProbeTarget] = ()
    tcp_probes: Sequence[ProbeTarget] = ()
    icmp_probes: Sequence[ProbeTarget] = ()
    kubelet_insecure_skip_verify: bool = False
    replica_label: str = "${POD_NAME}"  # expanded per pod (expand-external-labels)
    replica_label_name: str = "replica"  # the external label that tells the replicas apart
    rule_files: Sequence[str] = field(default_factory=lambda: [f"{RULES_DIR}/*.yaml"])
    # "kubernetes": service discovery through the API; "static": addresses (a Docker host)
    discovery: str = "kubernetes"
    static_targets: Sequence[StaticTarget] = ()
    # TSDB retention by age and by size (Prometheus duration, size in powers of 2 such as 85GB);
    # None leaves Prometheus' own default.
    retention: Optional[str] = None
    retention_size: Optional[str] = None
    # Scrape sharding (prometheus.shards): this config is shard ``shard`` of ``shards``. With one
    # shard nothing below applies and the file is what it was before sharding existed.
    shards: int = 1
    shard: int = 0
    shard_label_name: str = SHARD_LABEL  # the external label that tells the shards apart
    # The app.kubernetes.io/instance of the Prometheus pods this shard scrapes (jobs of the stack's
    # own Prometheus pods, see shard_jobs): the next shard's, so that a shard that is down entirely
    # is seen (its targets down) by one that is up.
    watched_prometheus: Optional[str] = None


def _environment_label(environment: str) -> dict:
    # Every series carries its environment, so rules and dashboards can select
    # it even where several environments share one Grafana or a federation.
    return {"target_label": "environment", "replacement": environment, "action": "replace"}


def _kubernetes_auth(insecure: bool = False) -> dict:
    return {
        "scheme": "https",
        "tls_config": {"ca_file": f"{SA_DIR}/ca.crt", "insecure_skip_verify": insecure},
        "authorization": {"credentials_file": f"{SA_DIR}/token"},
    }


def _component_job(cfg: PrometheusConfig, target: ScrapeTarget) -> dict:
    if cfg.discovery == "static":
        job = {
            "job_name": target.job,
            "static_configs": [{"targets": list(target.addresses), **({"labels": dict(target.labels)} if target.labels else {})}],
            "relabel_configs": [_environment_label(cfg.environment)],
        }
        if target.metric_relabel:
            job["metric_relabel_configs"] = [dict(r) for r in target.metric_relabel]
        if target.honor_labels:
            job["honor_labels"] = True
        return job
    relabel = [
        {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "regex": target.app, "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": target.port, "action": "keep"},
    ]
    # An exporter that speaks for other objects (honor_labels: kube-state-metrics) names them in its
    # own labels. Its pod's namespace/pod/node would land on every series that lacks them (a
    # Deployment's, a Node's), so each of its alerts would restart its `for:` when the exporter's pod
    # is replaced and a Node alert would be inhibited by the exporter's node going down.
    # Nor its address as `instance`, which changes with the pod as well: the job's name stands in.
    if target.honor_labels:
        relabel.append({"target_label": "instance", "replacement": target.job})
    else:
        relabel += [
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
        ]
    if target.instance_from_node:
        relabel.append({"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "instance"})
    relabel.append(_environment_label(cfg.environment))
    job = {
        "job_name": target.job,
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [target.namespace or cfg.namespace]}}],
        "relabel_configs": relabel,
    }
    if target.honor_labels:
        job["honor_labels"] = True
    return job


def _kubelet_job(cfg: PrometheusConfig, job_name: str, path: str, timestamped: bool = False) -> dict:
    return {
        "job_name": job_name,
        **_kubernetes_auth(cfg.kubelet_insecure_skip_verify),
        "metrics_path": path,
        # Samples that carry their own timestamps (cAdvisor's) never go stale by default: a deleted
        # container's series stayed in instant queries for 5 minutes, counted twice in every sum
        # over a rollout.
        **({"track_timestamps_staleness": True} if timestamped else {}),
        "kubernetes_sd_configs": [{"role": "node"}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"},
            {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "instance"},
            _environment_label(cfg.environment),
        ],
    }


def _probe_job(cfg: PrometheusConfig, job_name: str, module: str, targets: Sequence[ProbeTarget]) -> dict:
    return {
        "job_name": job_name,
        "metrics_path": "/probe",
        "params": {"module": [module]},
        "static_configs": [{"targets": [t.target], "labels": {"probe": t.name}} for t in targets],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": cfg.blackbox_address},
            _environment_label(cfg.environment),
        ],
    }


def _annotated_jobs(cfg: PrometheusConfig, reserved: Sequence[str]) -> list[dict]:
    """Application pods and services opt in with prometheus.io/* annotations.

    Their job is their app.kubernetes.io/name, so a pod of another team named like one of the
    stack's own jobs (an annotated kube-state-metrics of a chart, say) would feed that job's rules
    from a second source: such a target is dropped."""

    def annotation(role: str, name: str) -> str:
        return f"__meta_kubernetes_{role}_annotation_prometheus_io_{name}"

    def job(job_name: str, role: str, sd_role: str) -> dict:
        relabel = [
            {"source_labels": [annotation(role, "scrape")], "regex": "true", "action": "keep"},
            {"source_labels": [f"__meta_kubernetes_{role}_label_app_kubernetes_io_name"],
             "regex": "|".join(re.escape(name) for name in reserved), "action": "drop"},
            {"source_labels": [annotation(role, "scheme")], "regex": "(https?)", "target_label": "__scheme__"},
            {"source_labels": [annotation(role, "path")], "regex": "(.+)", "target_label": "__metrics_path__"},
            {"source_labels": ["__address__", annotation(role, "port")],
             "regex": r"([^:]+)(?::\d+)?;(\d+)", "replacement": "$1:$2", "target_label": "__address__"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "regex": "(.+)", "target_label": "pod"},
            # job = the workload's app.kubernetes.io/name (e.g. football-prediction-api)
            {"source_labels": [f"__meta_kubernetes_{role}_label_app_kubernetes_io_name"], "regex": "(.+)",
             "target_label": "job"},
        ]
        if sd_role == "endpointslice":
            relabel.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"})
        relabel.append(_environment_label(cfg.environment))
        return {"job_name": job_name, "kubernetes_sd_configs": [{"role": sd_role}], "relabel_configs": relabel}

    pods = job("kubernetes-pods", "pod", "pod")
    # Pod discovery makes a target of every port of every container (a port-less container: one
    # of its own). With prometheus.io/port they all get the same address and, with no label left
    # that names the container, the same labels: the scrape pool keeps one of equal targets, so a
    # pod with sidecars is scraped once, not once per port (which doubled every sum()).
    pods["relabel_configs"].insert(1, {"source_labels": ["__meta_kubernetes_pod_container_init"],
                                       "regex": "true", "action": "drop"})
    pods["relabel_configs"].insert(2, {"source_labels": ["__meta_kubernetes_pod_phase"],
                                       "regex": "Pending|Succeeded|Failed", "action": "drop"})
    return [pods, job("kubernetes-services", "service", "endpointslice")]


def _static_target_jobs(cfg: PrometheusConfig) -> list[dict]:
    by_job: dict[str, list[str]] = {}
    for target in cfg.static_targets:
        by_job.setdefault(target.job, []).append(target.target)
    return [{"job_name": job, "static_configs": [{"targets": targets}],
             "relabel_configs": [_environment_label(cfg.environment)]} for job, targets in by_job.items()]


def scrape_jobs(cfg: PrometheusConfig) -> list[dict]:
    jobs = [_component_job(cfg, target) for target in cfg.components]
    for job_name, module, targets in (("blackbox-http", "http_2xx", cfg.http_probes),
                                      ("blackbox-tcp", "tcp_connect", cfg.tcp_probes),
                                      ("blackbox-icmp", "icmp", cfg.icmp_probes)):
        if targets:
            jobs.append(_probe_job(cfg, job_name, module, targets))
    jobs.extend(_static_target_jobs(cfg))
    if cfg.discovery == "kubernetes":
        jobs.extend(_kubernetes_jobs(cfg))
        jobs.extend(_annotated_jobs(cfg, reserved=[j["job_name"] for j in jobs]))
    return jobs


def _kubernetes_jobs(cfg: PrometheusConfig) -> list[dict]:
    jobs = []
    jobs.append({
        "job_name": "apiserver",
        **_kubernetes_auth(),
        "kubernetes_sd_configs": [{"role": "endpointslice", "namespaces": {"names": ["default"]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpointslice_port_name"],
             "regex": "kubernetes;https", "action": "keep"},
            _environment_label(cfg.environment),
        ],
    })
    jobs.append(_kubelet_job(cfg, "kubelet", "/metrics"))
    # cAdvisor: the kubelet's built-in endpoint (see components/metrics/exporters.py for why).
    jobs.append(_kubelet_job(cfg, "cadvisor", "/metrics/cadvisor", timestamped=True))
    return jobs
    return jobs


# The jobs whose targets grow with the fleet: the annotated application pods and services, and
# one target per node (kubelet, cAdvisor, and the per-node exporters: ScrapeTarget.instance_from_node).
FLEET_JOBS = ("kubernetes-pods", "kubernetes-services", "kubelet", "cadvisor")
HASH_LABEL = "__tmp_shard_hash"


def shard_jobs(cfg: PrometheusConfig, jobs: list[dict]) -> list[dict]:
    """The jobs of shard ``cfg.shard``, three kinds:

    - the fleet's (FLEET_JOBS and per-node targets): every shard keeps the targets whose address
      hashes to it (hashmod, modulus the shard count), as the last relabelling step so that the
      address hashed is the one scraped (the annotated jobs rewrite it to the annotated port: a
      pod's equal targets then land on one shard, where the scrape pool keeps one of them);
    - the stack's own Prometheus pods (the prometheus and thanos-sidecar jobs): each shard scrapes
      those of the next shard (``watched_prometheus``), so that a shard wholly down is reported
      down by another one instead of vanishing with its own targets;
    - everything else, a handful of targets each (the stack's components, kube-state-metrics, the
      API server, the probes, the static targets): shard 0 only. Hashed, each would move to
      another shard whenever its pod got a new address (kube-state-metrics speaks for every object
      of the cluster in one target: sharding by target cannot split it), and where it is scraped
      would be anyone's guess.
    """
    fleet = set(FLEET_JOBS) | {t.job for t in cfg.components if t.instance_from_node}
    own = {t.job for t in cfg.components if t.app == "prometheus"}
    out = []
    for job in jobs:
        name = job["job_name"]
        if name in fleet:
            job = {**job, "relabel_configs": job["relabel_configs"] + [
                {"source_labels": ["__address__"], "modulus": cfg.shards, "target_label": HASH_LABEL,
                 "action": "hashmod"},
                {"source_labels": [HASH_LABEL], "regex": str(cfg.shard), "action": "keep"},
            ]}
        elif name in own:
            if not cfg.watched_prometheus:
                raise ValueError(f"shard {cfg.shard}: the job {name} needs the Prometheus pods it watches")
            job = {**job, "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
                 "regex": re.escape(cfg.watched_prometheus), "action": "keep"}] + job["relabel_configs"]}
        elif cfg.shard != 0:
            continue
        out.append(job)
    return out


def render(cfg: PrometheusConfig) -> str:
    external_labels = {"environment": cfg.environment, cfg.replica_label_name: cfg.replica_label}
    jobs = scrape_jobs(cfg)
    if cfg.shards > 1:
        if cfg.discovery != "kubernetes":
            raise ValueError("scrape sharding needs Kubernetes discovery")
        external_labels[cfg.shard_label_name] = str(cfg.shard)
        jobs = shard_jobs(cfg, jobs)
    document = {
        "global": {
            "scrape_interval": cfg.scrape_interval,
            "scrape_timeout": cfg.scrape_timeout,
            "evaluation_interval": cfg.evaluation_interval,
            "external_labels": external_labels,
        },
        "alerting": {
            # The replicas of an HA pair send identical alerts; without their
            # replica label Alertmanager deduplicates them.
            "alert_relabel_configs": [{"regex": cfg.replica_label_name, "action": "labeldrop"}],
            "alertmanagers": [{
                "api_version": "v2",
                "timeout": "10s",
                # Every replica, by its stable name: Alertmanager needs each alert
                # from every Prometheus at every peer to deduplicate in the cluster.
                "static_configs": [{"targets": list(cfg.alertmanagers)}],
            }],
        },
        "rule_files": list(cfg.rule_files),
        "scrape_configs": jobs,
    }
    retention = {k: v for k, v in (("time", cfg.retention), ("size", cfg.retention_size)) if v}
    if retention:
        # In the file, not as flags (deprecated since Prometheus 3.x): a reload applies a change.
        document["storage"] = {"tsdb": {"retention": retention}}
    return "# Generated by football-monitoring; edit the settings, not this file.\n" + yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False, width=120)
