"""The exporters: node-exporter, kube-state-metrics, blackbox, PostgreSQL, Redis, cAdvisor.

On Kubernetes, cAdvisor runs inside every kubelet already and the kubelet
serves its metrics at /metrics/cadvisor; Prometheus scrapes that endpoint
(jobs kubelet and cadvisor). A separate cAdvisor DaemonSet would need
privileged access to the container runtime and /dev/kmsg on every node to
report the same containers a second time, so the stack runs cAdvisor itself
only on a Docker host, where nothing else reports containers.
kube-state-metrics reports Kubernetes objects and runs only there.
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlparse

import pulumi

from components import data
from components.configs import blackbox as blackbox_config
from components.configs.prometheus import ScrapeTarget
from components.settings import Settings, duration_seconds
from components.platform.workload import (ANYWHERE, API_SERVER_PORTS, AccessRule, ConfigFiles, Flow, HttpCheck, Platform, Port,
                                          ServiceSpec, single_host_labels)


# The resources kube-state-metrics watches: the API group of each and the prefix of the metric
# families its store makes (internal/store/<resource>.go of the pinned release; kube_pod_owner, say,
# is the pods store's and needs no ReplicaSet watch). Each one is a cluster-wide list/watch in its
# RBAC, which is built from this table, and every object of it held in its memory, so only those
# whose metrics something reads are here. A name metrics/exporters.yaml lists for it that none of
# them makes fails the render instead of adding its resource: watching one more kind of object
# cluster-wide is a change of its access, made here on purpose, not as a side effect of a dashboard.
KUBE_STATE_RESOURCES = {
    "pods": ("", "kube_pod_"),
    "nodes": ("", "kube_node_"),
    "persistentvolumeclaims": ("", "kube_persistentvolumeclaim_"),
    "daemonsets": ("apps", "kube_daemonset_"),
    "deployments": ("apps", "kube_deployment_"),
    "statefulsets": ("apps", "kube_statefulset_"),
    "jobs": ("batch", "kube_job_"),
    # A claim of a class that binds on first use is Pending by design (KubePersistentVolumeClaimPending).
    "storageclasses": ("storage.k8s.io", "kube_storageclass_"),
}


def kube_state_resource(metric: str) -> Optional[str]:
    """The resource of KUBE_STATE_RESOURCES whose store makes this metric family, or None."""
    # The prefixes end in "_": kube_pod_ is no prefix of kube_poddisruptionbudget_*.
    found = [r for r, (_group, prefix) in KUBE_STATE_RESOURCES.items() if metric.startswith(prefix)]
    return found[0] if found else None


def kube_state_metrics_scope() -> tuple[list[str], list[str]]:
    """(resources, metric names): what kube-state-metrics watches and exports, the names being those
    metrics/exporters.yaml lists for it, the names every rule, dashboard and runbook reads of it
    (tests/test_kube_state_metrics.py holds the list to them). Raises DataFileError when a name is
    of no resource here, or a resource here has no name."""
    names = sorted(data.exporter_metrics("kube-state-metrics"))
    # A metric name has no regex metacharacter, so that ^name$ matches it alone.
    malformed = [n for n in names if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", n)]
    if malformed:
        raise data.DataFileError(f"metrics/exporters.yaml: not metric names: {malformed}")
    orphans = [n for n in names if kube_state_resource(n) is None]
    if orphans:
        raise data.DataFileError(
            f"metrics/exporters.yaml lists kube-state-metrics metrics of no resource it watches: {orphans}; "
            "add the resource to KUBE_STATE_RESOURCES in components/metrics/exporters.py (its RBAC follows)")
    used = {kube_state_resource(n) for n in names}
    unused = sorted(set(KUBE_STATE_RESOURCES) - used)
    if unused:
        raise data.DataFileError(
            f"kube-state-metrics would watch {unused}, of which metrics/exporters.yaml lists no metric: "
            "remove them from KUBE_STATE_RESOURCES in components/metrics/exporters.py")
    return sorted(KUBE_STATE_RESOURCES), names


def kube_state_metrics_args() -> list[str]:
    resources, names = kube_state_metrics_scope()
    # The allowlist's entries are regexes matched anywhere in a family's name
    # (pkg/allowdenylist/allowdenylist.go): anchored, each admits its one family.
    return ["--port=8080", "--telemetry-port=8081", "--resources=" + ",".join(resources),
            "--metric-allowlist=" + ",".join(f"^{name}$" for name in names)]


class NodeExporter(pulumi.ComponentResource):
    def __init__(self, name: str, *, settings: Settings, platform: Platform,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:exporters:NodeExporter", name, None, opts)
        ignored_devices = r"^(veth.*|cali.*|[a-f0-9]{15})$"
        spec = ServiceSpec(
            name="node-exporter",
            component="exporter",
            image=settings.images["nodeExporter"],
            ports=[Port("metrics", 9100)],
            resources=settings.exporters.node_exporter.resources,
            run_as_user=65534,
            args=[
                "--path.procfs=/host/proc",
                "--path.sysfs=/host/sys",
                "--path.rootfs=/host/root",
                "--web.listen-address=:9100",
                "--collector.filesystem.mount-points-exclude="
                r"^/(dev|proc|sys|run/containerd/.+|var/lib/docker/.+|var/lib/kubelet/pods/.+)($|/)",
                f"--collector.netclass.ignored-devices={ignored_devices}",
                f"--collector.netdev.device-exclude={ignored_devices}",
            ],
            liveness=HttpCheck("/", "metrics"),
            readiness=HttpCheck("/", "metrics"),
            every_node=True,
            host_access="node-metrics",
        )
        self.deployed = platform.deploy(spec, self)
        self.scrape_targets = [ScrapeTarget(
            "node-exporter", "node-exporter", "metrics", instance_from_node=True,
            addresses=[self.deployed.address("metrics")], labels=single_host_labels(settings.environment),
            namespace=self.deployed.namespace)]
        self.register_outputs({})


class KubeStateMetrics(pulumi.ComponentResource):
    def __init__(self, name: str, *, settings: Settings, platform: Platform,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:exporters:KubeStateMetrics", name, None, opts)
        args = kube_state_metrics_args()
        groups: dict[str, list[str]] = {}
        for resource, (group, _prefix) in sorted(KUBE_STATE_RESOURCES.items()):
            groups.setdefault(group, []).append(resource)
        spec = ServiceSpec(
            name="kube-state-metrics",
            component="exporter",
            image=settings.images["kubeStateMetrics"],
            ports=[Port("http-metrics", 8080), Port("telemetry", 8081)],
            resources=settings.exporters.kube_state_metrics.resources,
            run_as_user=65534,
            args=args,
            liveness=HttpCheck("/livez", "http-metrics"),
            readiness=HttpCheck("/readyz", "telemetry"),
            api_access=[AccessRule(api_groups=[group], resources=names, verbs=["list", "watch"])
                        for group, names in groups.items()],
            # Prometheus scrapes the metrics port; the telemetry port serves only the readiness probe.
            allow_in=[Flow("prometheus", [(8080, "TCP")])],
            allow_out=[Flow(ANYWHERE, API_SERVER_PORTS)],
        )
        self.deployed = platform.deploy(spec, self)
        self.scrape_targets = [ScrapeTarget("kube-state-metrics", "kube-state-metrics", "http-metrics",
                                            honor_labels=True, addresses=[self.deployed.address("http-metrics")])]
        self.register_outputs({})


class BlackboxExporter(pulumi.ComponentResource):
    def __init__(self, name: str, *, settings: Settings, platform: Platform,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:exporters:BlackboxExporter", name, None, opts)
        self.config = blackbox_config.render()
        spec = ServiceSpec(
            name="blackbox-exporter",
            component="exporter",
            image=settings.images["blackboxExporter"],
            ports=[Port("http", 9115)],
            resources=settings.exporters.blackbox.resources,
            run_as_user=65534,
            args=["--config.file=/etc/blackbox/blackbox.yml", "--web.listen-address=:9115"],
            config=[ConfigFiles("config", "/etc/blackbox", {"blackbox.yml": self.config})],
            liveness=HttpCheck("/-/healthy", "http"),
            readiness=HttpCheck("/-/healthy", "http"),
            # Unprivileged ICMP for the exporter's own group instead of the NET_RAW capability.
            sysctls={"net.ipv4.ping_group_range": "65534 65534"},
            allow_in=[Flow("prometheus", [(9115, "TCP")])],
            allow_out=probe_flows(settings),
        )
        self.deployed = platform.deploy(spec, self)
        self.address = self.deployed.address("http")
        self.scrape_targets = [ScrapeTarget("blackbox-exporter", "blackbox-exporter", "http",
                                            addresses=[self.address])]
        self.register_outputs({"address": self.address})


def probe_flows(settings: Settings) -> list[Flow]:
    """Where the probes go: the ports of the HTTP and TCP probe targets, wherever those are.

    NetworkPolicy has no ICMP: with ICMP probes the exporter may send anything, anywhere."""
    probes = settings.probes
    if probes.icmp:
        return [Flow(ANYWHERE)]
    ports = set()
    for probe in probes.http:
        parsed = urlparse(probe.target)
        ports.add(parsed.port or (443 if parsed.scheme == "https" else 80))
    ports.update(int(probe.target.rsplit(":", 1)[1]) for probe in probes.tcp)
    # No probes: no flow at all (a flow without ports would open every port).
    return [Flow(ANYWHERE, [(port, "TCP") for port in sorted(ports)])] if ports else []


def give_up_seconds(scrape_timeout: str) -> int:
    """How long an exporter waits for its server: half the scrape timeout, whole seconds (what
    lib/pq's connect_timeout takes), at least 1. postgres_exporter answers about a second after
    its connection gives up."""
    return max(1, int(duration_seconds(scrape_timeout) // 2))


def bounded_dsn(dsn: str, seconds: int) -> str:
    """The PostgreSQL connection string with connect_timeout, unless it sets one of its own; both
    forms lib/pq reads: a URL (a query parameter) and key=value pairs."""
    if re.search(r"(^|[?&\s])connect_timeout\s*=", dsn):
        return dsn
    if re.match(r"postgres(ql)?://", dsn):
        base, hashmark, fragment = dsn.partition("#")
        return f"{base}{'&' if '?' in base else '?'}connect_timeout={seconds}{hashmark}{fragment}"
    return f"{dsn} connect_timeout={seconds}"


def connection_port(kind: str, connection: str) -> Optional[int]:
    """The server port a connection string names (a URL or, for PostgreSQL, key=value pairs); None
    where it names none or cannot be read (the exporter's default applies)."""
    if re.match(r"(postgres(ql)?|rediss?|unix)://", connection):
        try:
            return urlparse(connection).port or None
        except ValueError:
            return None
    if kind == "postgres":
        match = re.search(r"(?:^|\s)port\s*=\s*'?(\d+)", connection)
        return int(match.group(1)) if match else None
    # redis_exporter also takes host:port
    match = re.fullmatch(r"[^/:@\s]+:(\d+)", connection.strip())
    return int(match.group(1)) if match else None


def warn_on_other_port(kind: str, connection: str, allowed: int) -> str:
    named = connection_port(kind, connection)
    if named is not None and named != allowed:
        pulumi.log.warn(f"the {kind} connection string names port {named}, while exporters.{kind}.serverPort is "
                        f"{allowed}: the {kind}-exporter NetworkPolicy lets it reach port {allowed} only")
    return connection


class DatabaseExporter(pulumi.ComponentResource):
    """postgres-exporter or redis-exporter: one process whose connection string is a secret."""

    KINDS = {
        # kind: (image key, port, uid, env var that takes the connection string, health path)
        "postgres": ("postgresExporter", 9187, 65534, "DATA_SOURCE_NAME", "/"),
        "redis": ("redisExporter", 9121, 59000, "REDIS_ADDR", "/health"),
    }

    def __init__(self, name: str, *, kind: str, settings: Settings, platform: Platform,
                 connection: pulumi.Output, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"football-monitoring:exporters:{kind.capitalize()}Exporter", name, None, opts)
        image_key, port, uid, env_name, health = self.KINDS[kind]
        resources, db_port = getattr(settings.exporters, kind).resources, getattr(settings.exporters, kind).server_port
        # The egress the NetworkPolicy allows is the setting's port; a connection string naming another
        # would be blocked in the cluster with nothing but pg_up/redis_up 0 to show for it. Only the
        # port is logged, never the string.
        if settings.platform == "kubernetes":
            connection = connection.apply(lambda value: warn_on_other_port(kind, value, db_port))
        # A server that hangs (an address that drops packets, a wedged process) must read as down:
        # the exporter gives up on it within half the scrape timeout, so that the scrape still
        # returns pg_up or redis_up 0 (PostgresDown, RedisDown). Without a bound, lib/pq waits
        # forever and redis_exporter 15 s, the scrape times out, and only TargetDown fires,
        # naming the exporter.
        give_up = give_up_seconds(settings.prometheus.scrape_timeout)
        if kind == "postgres":
            # The postmaster collector (pg_postmaster_start_time_seconds, the uptime panel) is off by default.
            args = [f"--web.listen-address=:{port}", "--collector.postmaster"]
            connection = connection.apply(lambda dsn: bounded_dsn(dsn, give_up))
        else:
            args = [f"--web.listen-address=:{port}", f"--connection-timeout={give_up}s"]
        spec = ServiceSpec(
            name=f"{kind}-exporter",
            component="exporter",
            image=settings.images[image_key],
            ports=[Port("metrics", port)],
            resources=resources,
            run_as_user=uid,
            args=args,
            secret_env={env_name: connection},
            liveness=HttpCheck(health, "metrics"),
            readiness=HttpCheck(health, "metrics"),
            allow_in=[Flow("prometheus", [(port, "TCP")])],
            allow_out=[Flow(ANYWHERE, [(db_port, "TCP")])],
        )
        self.deployed = platform.deploy(spec, self)
        self.scrape_targets = [ScrapeTarget(f"{kind}-exporter", f"{kind}-exporter", "metrics",
                                            addresses=[self.deployed.address("metrics")])]
        self.register_outputs({})


# The metric label a standalone cAdvisor gives the whitelisted Docker label app.kubernetes.io/name.
CADVISOR_APP_LABEL = "container_label_app_kubernetes_io_name"


class CAdvisor(pulumi.ComponentResource):
    """Container metrics on a Docker host (see the module docstring)."""

    def __init__(self, name: str, *, settings: Settings, platform: Platform,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:exporters:CAdvisor", name, None, opts)
        spec = ServiceSpec(
            name="cadvisor",
            component="exporter",
            image=settings.images["cadvisor"],
            ports=[Port("http", 8080)],
            resources=settings.exporters.node_exporter.resources,
            run_as_user=65534,
            args=["--docker_only=true", "--housekeeping_interval=30s", "--store_container_labels=false",
                  "--whitelisted_container_labels=app.kubernetes.io/name,football-monitoring/environment",
                  # The flag replaces cAdvisor's own default list: keep that list's entries too.
                  "--disable_metrics=percpu,sched,tcp,udp,disk,diskIO,hugetlb,referenced_memory,advtcp,process,"
                  "cpu_topology,cpuset,memory_numa,resctrl"],
            liveness=HttpCheck("/healthz", "http"),
            readiness=HttpCheck("/healthz", "http"),
            host_access="container-metrics",
        )
        self.deployed = platform.deploy(spec, self)
        # The panels and rules name a container by its `container` label, which the kubelet's
        # cAdvisor sets; a standalone one labels a container by id, name, image and its whitelisted
        # Docker labels as container_label_<sanitized key> (cadvisor metrics/prometheus.go,
        # BaseContainerLabels): the service's app.kubernetes.io/name becomes `container`.
        self.scrape_targets = [ScrapeTarget(
            "cadvisor", "cadvisor", "http", addresses=[self.deployed.address("http")],
            metric_relabel=[{"source_labels": [CADVISOR_APP_LABEL], "regex": "(.+)", "target_label": "container"},
                            {"regex": CADVISOR_APP_LABEL, "action": "labeldrop"}])]
        self.register_outputs({})
