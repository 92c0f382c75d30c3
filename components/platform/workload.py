"""Platform-neutral description of a service.

A component says *what* runs (image, arguments, ports, config files, secret
files, persistent data, health endpoints, resources, where it runs); a platform
module (``components.platform.kubernetes``) turns that into resources with the hardened
defaults applied in one place. Components do not build pod specs themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Protocol, Sequence, Union
from urllib.parse import urlparse

import pulumi

from components.settings import Resources

PART_OF = "football-monitoring"


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class HttpCheck:
    path: str
    port: str  # a Port name


@dataclass(frozen=True)
class CommandCheck:
    """A probe that runs a command in the container (for endpoints an HTTP GET cannot reach,
    e.g. behind TLS and authentication); exit status 0 means healthy."""

    command: Sequence[str]


@dataclass(frozen=True)
class InitStep:
    """A command run to completion before the service starts, in an init container with the
    service's own mounts, environment and hardened security context (image: the service's own
    unless given)."""

    name: str
    command: Sequence[str]
    image: Optional[str] = None


@dataclass(frozen=True)
class Sidecar:
    """A helper container next to the service (e.g. a metrics exporter reading its local API)."""

    name: str
    image: str
    port: "Port"
    resources: Resources
    health: "HttpCheck"
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    run_as_user: int = 65534
    more_ports: Sequence["Port"] = ()  # served besides ``port`` (which its probes use)
    # The service's data volume, mounted writable at this path: for a sidecar that works on what the
    # service writes (Thanos' sidecar uploads Prometheus' blocks and records which it shipped).
    data_path: Optional[str] = None
    # Files mounted into this container alone: credentials the service itself has no use for.
    config: Sequence["ConfigFiles"] = ()


@dataclass(frozen=True)
class SharedVolume:
    """An existing volume claim mounted read-write into every replica (e.g. a ReadWriteMany
    snapshot repository shared by all Elasticsearch nodes)."""

    claim_name: str
    mount_path: str


@dataclass(frozen=True)
class ConfigFiles:
    """Files mounted read-only into the main container at ``mount_path``.

    ``secret`` files land in a Kubernetes Secret (their content may be an
    Output), others in a ConfigMap. ``reload`` says the service notices a
    change itself (a reloader sidecar, its own polling, or reading the file each
    time it needs it); otherwise a change rolls the pods through a checksum
    annotation, for Secrets as much as for ConfigMaps. ``object_per_file`` puts each
    file in its own ConfigMap (one directory still, through a projected volume), for
    sets of files too large for one object.
    """

    name: str
    mount_path: str
    files: Mapping[str, Union[str, pulumi.Output]]
    secret: bool = False
    reload: bool = False
    object_per_file: bool = False


@dataclass(frozen=True)
class ExternalSecret:
    """A Secret that something outside this service creates (another component, an
    operator, cert-manager), mounted read-only at ``mount_path`` by name. Its content never
    passes through the program; only Kubernetes can realise it."""

    secret_name: str
    mount_path: str


@dataclass(frozen=True)
class DataVolume:
    mount_path: str
    size: str


@dataclass(frozen=True)
class HostAccess:
    """An exception to the hardened defaults, with the reason it is needed."""

    reason: str
    host_network: bool = False
    host_pid: bool = False
    host_paths: Mapping[str, str] = field(default_factory=dict)  # host path -> mount path (read-only)
    run_as_root: bool = False
    # host path -> mount path, writable (created on the host if missing); state that must
    # survive the pod, such as a log shipper's read positions.
    writable_host_paths: Mapping[str, str] = field(default_factory=dict)
    devices: Sequence[str] = ()


# The only exceptions to "no host access". Keep this list short; each entry
# says why the hardened default cannot hold.
HOST_ACCESS = {
    "node-metrics": HostAccess(
        reason=("node-exporter reports the node, not its container: it reads the host's /proc, /sys "
                "and filesystems (read-only) and needs the host network and PID namespaces to see "
                "the node's interfaces and processes."),
        host_network=True,
        host_pid=True,
        host_paths={"/proc": "/host/proc", "/sys": "/host/sys", "/": "/host/root"},
    ),
    # Only on a Docker host: on Kubernetes the kubelet's built-in cAdvisor is scraped instead.
    "container-metrics": HostAccess(
        reason=("cAdvisor reads every container's cgroups and the Docker daemon's state, which only root "
                "may read, through read-only mounts of the host's /, /var/run, /sys, /var/lib/docker and "
                "/dev/disk; /dev/kmsg lets it count OOM kills."),
        host_paths={"/": "/rootfs", "/var/run": "/var/run", "/sys": "/sys",
                    "/var/lib/docker": "/var/lib/docker", "/dev/disk": "/dev/disk"},
        run_as_root=True,
        devices=("/dev/kmsg",),
    ),
    # Only on Kubernetes.
    "log-collection": HostAccess(
        reason=("Filebeat ships every container's log files, which the kubelet writes on the node as "
                "root-owned files (mode 0640) under /var/log/pods (/var/log/containers links there): it "
                "mounts them read-only and runs as uid 0, still with every capability dropped, no "
                "privilege escalation and a read-only root filesystem. Its registry (read positions) "
                "lives in a writable host directory so a restarted pod neither re-sends nor skips lines."),
        host_paths={"/var/log/pods": "/var/log/pods", "/var/log/containers": "/var/log/containers"},
        run_as_root=True,
        writable_host_paths={"/var/lib/football-monitoring/filebeat": "/usr/share/filebeat/data"},
    ),
    # Only on a Docker host.
    "docker-log-collection": HostAccess(
        reason=("Filebeat ships every container's log, which Docker's json-file driver writes as root-only "
                "files under /var/lib/docker/containers: it mounts them read-only and runs as uid 0, with every "
                "capability dropped, no privilege escalation and a read-only root filesystem. It names each "
                "line's container (and its Compose service) through the Docker API socket in the host's "
                "/var/run, mounted read-only; the socket still answers any API call, so this grants the same "
                "trust as cAdvisor's /var/run mount, and Filebeat's configuration makes only read calls. Its "
                "registry (read positions) survives the container on a volume."),
        host_paths={"/var/lib/docker/containers": "/var/lib/docker/containers", "/var/run": "/host/var/run"},
        run_as_root=True,
        writable_host_paths={"/var/lib/football-monitoring/filebeat": "/usr/share/filebeat/data"},
    ),
}


@dataclass(frozen=True)
class AccessRule:
    """One RBAC rule the service needs against the platform's API (read-only by design)."""

    api_groups: Sequence[str] = ()
    resources: Sequence[str] = ()
    verbs: Sequence[str] = ("get", "list", "watch")
    non_resource_urls: Sequence[str] = ()


# Peers of a Flow besides the stack's own services (named by their app name).
ANYWHERE = "anywhere"  # any address, inside or outside the cluster
INGRESS = "ingress"  # the ingress controller that serves the UIs
# Pods of every namespace but the stack's own: clients such as the instrumented application, kept
# apart from the stack's pods, which reach a service only where a flow names them.
OTHER_NAMESPACES = "other-namespaces"


@dataclass(frozen=True)
class Flow:
    """Traffic a service accepts (allow_in) or starts (allow_out), for network isolation.

    ``peer`` is another service of the stack (its name), ANYWHERE, INGRESS or OTHER_NAMESPACES;
    ``ports`` are (port, protocol) pairs, empty meaning every port, or an Output of such pairs
    when they come from secret settings (a receiver URL's port: the port is not the secret).
    """

    peer: str
    ports: Union[Sequence[tuple], pulumi.Output] = ()


RELOADER_PORT = 8080  # the reloader sidecar's web port: its metrics


@dataclass(frozen=True)
class Reloader:
    """A sidecar that watches the service's reloadable config and asks it to reload; it serves
    its metrics (reloads triggered, failures) on RELOADER_PORT to the ``scraped_by`` services."""

    reload_url: str
    scraped_by: Sequence[str] = ()


@dataclass(frozen=True)
class ImageBuild:
    """An image built from this repository (``context``, ``dockerfile`` relative to it) where the
    platform can build one (a Docker host); elsewhere ``ServiceSpec.image`` must be pushed already."""

    context: str
    dockerfile: str


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    component: str
    image: str
    ports: Sequence[Port]
    resources: Resources
    run_as_user: int
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # Secret values (Outputs) given to the process as environment variables through a
    # Kubernetes Secret reference; the pod spec never holds the value itself.
    secret_env: Mapping[str, pulumi.Output] = field(default_factory=dict)
    # Environment variables filled from the pod's own fields (POD_NAME, POD_IP).
    env_from_pod: Mapping[str, str] = field(default_factory=dict)
    config: Sequence[ConfigFiles] = ()
    data: Optional[DataVolume] = None
    scratch_paths: Sequence[str] = ()  # writable emptyDir mounts (e.g. /tmp)
    # Those scratch_paths the process runs native code from (the JVM's JNA unpacks its library
    # into the temp directory): a platform that mounts scratch space noexec (Docker's tmpfs)
    # leaves these executable.
    scratch_exec: Sequence[str] = ()
    liveness: Optional[Union[HttpCheck, CommandCheck]] = None
    readiness: Optional[Union[HttpCheck, CommandCheck]] = None
    replicas: int = 1
    every_node: bool = False  # one instance per node
    host_access: Optional[str] = None  # key of HOST_ACCESS
    api_access: Sequence[AccessRule] = ()  # empty: no API credentials are mounted at all
    cluster_peers: Sequence[Port] = ()  # ports of the peer-to-peer mesh (stable per-replica names)
    reloader: Optional[Reloader] = None
    sysctls: Mapping[str, str] = field(default_factory=dict)
    session_affinity: bool = False  # keep one client on one replica (consistent dashboards across an HA pair)
    # Ports (by name) that clients reach on every ready replica directly, through a name that resolves
    # to all their addresses (``Platform.pods_host``: a headless Service on Kubernetes): for clients
    # that spread or route their requests over the replicas themselves (gRPC round robin, trace-id
    # routing), which one long-lived connection through a Service's virtual IP would pin to one pod.
    headless_ports: Sequence[str] = ()
    allow_in: Sequence[Flow] = ()
    allow_out: Sequence[Flow] = ()  # DNS is always allowed
    external_secrets: Sequence[ExternalSecret] = ()  # Secrets made elsewhere, mounted by name
    # A cron schedule ("15 0 * * *"): the service is a job that runs to completion on that
    # schedule (no Service, no probes) instead of a long-running server. Kubernetes only.
    schedule: Optional[str] = None
    init: Sequence[InitStep] = ()  # run in order before the service starts
    command: Sequence[str] = ()  # replaces the image's entrypoint (empty: the image's own)
    sidecars: Sequence[Sidecar] = ()
    shared_volumes: Sequence[SharedVolume] = ()
    # Run to completion once per content of its config (a Kubernetes Job named after that
    # content's hash, so a change runs it again), instead of a long-running service.
    run_once: bool = False
    # Whether its pods may evict other workloads' pods to find room. Off for work that can wait: the
    # UIs (Kibana, Jaeger's) and, whatever this says, jobs, which would otherwise push the service's
    # own pods off a full node.
    preempts: bool = True
    # Extra annotations of the pod template (e.g. a checksum of Secret inputs the pods read at start).
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    build: Optional[ImageBuild] = None  # a Docker host builds ``image`` from the repository
    # Its app.kubernetes.io/name when several services are one application (the Prometheus shards:
    # network flows and scrape jobs name "prometheus" and mean every shard); empty: ``name``.
    app: Optional[str] = None

    @property
    def app_name(self) -> str:
        return self.app or self.name

    @property
    def version(self) -> str:
        return image_version(self.image)


def image_version(image: str) -> str:
    """The tag of an image reference (or its digest when it has no tag)."""
    tail = image.rsplit("/", 1)[-1]
    return tail.split("@")[0].split(":", 1)[1] if ":" in tail else tail.split("@", 1)[-1]


@dataclass
class DeployedService:
    """What a platform made of a ServiceSpec, and how other services reach it."""

    spec: ServiceSpec
    host: str  # the name other services use to reach it
    replica_hosts: Sequence[str]  # stable per-replica names
    workload: Any = None
    namespace: Optional[str] = None  # where its pods run (Kubernetes)
    pods_host: Optional[str] = None  # resolves to every ready replica (ServiceSpec.headless_ports)

    @property
    def name(self) -> str:
        return self.spec.name

    def port(self, port_name: str) -> int:
        # Sidecars share the service's address.
        sidecar_ports = [p for sidecar in self.spec.sidecars for p in (sidecar.port, *sidecar.more_ports)]
        for port in list(self.spec.ports) + list(self.spec.cluster_peers) + sidecar_ports:
            if port.name == port_name:
                return port.port
        raise KeyError(f"{self.name} has no port named {port_name}")

    def address(self, port_name: str) -> str:
        return f"{self.host}:{self.port(port_name)}"

    def url(self, port_name: str, path: str = "") -> str:
        return f"http://{self.address(port_name)}{path}"

    def pods_address(self, port_name: str) -> str:
        """host:port of a name that resolves to every ready replica's own address."""
        if port_name not in self.spec.headless_ports:
            raise KeyError(f"{self.name} publishes no port {port_name} on its replicas (headless_ports)")
        return f"{self.pods_host or self.host}:{self.port(port_name)}"

    def replica_addresses(self, port_name: str) -> list[str]:
        return [f"{host}:{self.port(port_name)}" for host in self.replica_hosts]


class Platform(Protocol):
    """Where services run: Kubernetes (components.platform.kubernetes) or one Docker host (components.platform.docker)."""

    kind: str  # "kubernetes" or "docker"

    def host_of(self, name: str) -> str: ...

    def replica_hosts(self, name: str, replicas: int) -> list[str]: ...

    def pods_host(self, name: str) -> str:
        """A name that resolves to the address of every ready replica (ServiceSpec.headless_ports)."""

    def every_replica_host(self, name: str) -> str:
        """A name that reaches every replica, ready or not (for reading a cluster's health while
        it is unhealthy)."""

    def deploy(self, spec: ServiceSpec, parent: pulumi.Resource) -> DeployedService: ...

    def public_url(self, name: str, scheme: str = "http") -> Optional[str]:
        """Where a person reaches the service, if it is exposed at all (``scheme``: what the
        service itself serves, where the platform publishes its port as it is)."""

    def expose(self, deployed: DeployedService, port_name: str, parent: pulumi.Resource) -> None: ...

    def finish(self) -> None:
        """After every service is deployed: what depends on all of them (Kubernetes' network policies)."""


# The Kubernetes API server, as clients reach it (the Service port and the usual node port).
API_SERVER_PORTS = [(443, "TCP"), (6443, "TCP")]


def single_host_labels(environment: str) -> dict[str, str]:
    """Target labels of a per-node exporter on a Docker host: there is one node; name it like
    Kubernetes would (instance = node), so per-node alerts and dashboards read the same."""
    return {"instance": f"{environment}-docker-host", "node": f"{environment}-docker-host"}


@dataclass(frozen=True)
class ElasticsearchConnection:
    """How Jaeger reaches the logging stack's Elasticsearch (given by components/logging/, used by components/tracing/)."""

    url: str  # e.g. https://elasticsearch.monitoring.svc:9200
    username: str
    password: pulumi.Output  # secret; lands only in a Kubernetes Secret
    ca_secret_name: Optional[str] = None  # Secret with the CA certificate (https)
    ca_key: str = "ca.crt"
    peer: str = "elasticsearch"  # app name of its pods in this stack (network policy), or workload.ANYWHERE

    @property
    def port(self) -> int:
        parsed = urlparse(self.url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)
