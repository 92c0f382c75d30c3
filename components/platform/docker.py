"""Single-Docker-host realisation of ``ServiceSpec`` (pulumi-docker).

The same service descriptions as on Kubernetes, with the hardened defaults
that Docker can express: pinned image, fixed non-root user, read-only root
filesystem, all capabilities dropped, no-new-privileges, memory limits,
health checks, restart policy and bounded logs. Config files arrive as
uploads into per-container volumes (Docker refuses uploads into a read-only
root filesystem, but not into a volume); a changed file replaces the
container, while data stays on its named volume. Only the UIs a person needs
are published, on the bind address from settings.

What Kubernetes has and Docker lacks is realised with Docker's own means:
init steps run in the service's container before its command (start_command);
a sidecar is a container in the service container's network namespace; a
run-once Job is a container restarted on failure and left stopped on success;
a writable host path for state, and a shared volume claim, become named volumes.
"""

from __future__ import annotations

import shlex
from typing import Optional

import pulumi
import pulumi_docker as docker

from components.settings import DockerSettings, quantity_bytes
from components.platform.workload import HOST_ACCESS, PART_OF, CommandCheck, DeployedService, ServiceSpec, Sidecar, image_version

# Images built FROM scratch have no shell, wget or curl to run a health check with;
# Prometheus' `up` for them is the health signal instead.
NO_HEALTHCHECK_TOOLS = ("redis_exporter", "logstash-exporter")
# Elastic's images ship curl and no wget.
CURL_IMAGES = ("docker.elastic.co/",)
# Images built FROM python's slim images (the demo's, components/demo.py) have neither: Python itself asks.
PYTHON_IMAGES = ("football-monitoring-demo",)
PYTHON_CHECK = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)"
HOST_GATEWAY = "host.docker.internal"
# A run-once container (a Kubernetes Job elsewhere) is restarted this often after a failure.
RUN_ONCE_RETRIES = 10


class DockerPlatform:
    kind = "docker"

    def __init__(self, *, environment: str, provider: docker.Provider, network: docker.Network,
                 settings: DockerSettings, protect_data: bool):
        self.environment = environment
        self.provider = provider
        self.network = network
        self.settings = settings
        self.protect_data = protect_data
        self._built: dict[str, docker.Image] = {}  # image name -> its build, shared by the services that run it

    def host_of(self, name: str) -> str:
        return name  # the container's alias on the stack's network

    def every_replica_host(self, name: str) -> str:
        return name  # one container per service; Docker's DNS does not wait for it to be healthy

    def replica_hosts(self, name: str, replicas: int) -> list[str]:
        return [name]

    def pods_host(self, name: str) -> str:
        return name  # the one container's alias

    def public_url(self, name: str, scheme: str = "http") -> Optional[str]:
        return self.settings.url(name, scheme)

    def expose(self, deployed: DeployedService, port_name: str, parent: pulumi.Resource) -> None:
        """Published ports are part of the container itself (see deploy)."""

    def finish(self) -> None:
        """Nothing waits for the last service: one network joins every container."""

    def container_name(self, name: str) -> str:
        return f"fm-{self.environment}-{name}"

    def opts(self, parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **kwargs)

    def _volume(self, resource_name: str, volume_name: str, parent: pulumi.Resource) -> docker.Volume:
        """A named volume: state that outlives the container, protected like the stack's data."""
        return docker.Volume(resource_name, name=volume_name,
                             labels=[{"label": "app.kubernetes.io/part-of", "value": PART_OF}],
                             opts=self.opts(parent, protect=self.protect_data, retain_on_delete=self.protect_data))

    def deploy(self, spec: ServiceSpec, parent: pulumi.Resource) -> DeployedService:
        _check_realisable(spec)
        access = HOST_ACCESS[spec.host_access] if spec.host_access else None
        if spec.build:
            image_ref = self._build(spec, parent).image_name
        else:
            image_ref = docker.RemoteImage(f"{spec.name}-image", name=spec.image, keep_locally=True,
                                           opts=self.opts(parent)).image_id
        volumes, uploads = [], []
        if spec.data:
            volume = self._volume(f"{spec.name}-data", f"{self.container_name(spec.name)}-data", parent)
            volumes.append({"volume_name": volume.name, "container_path": spec.data.mount_path})
        for shared in spec.shared_volumes:
            # One host: the "shared" claim is a named volume this stack owns.
            volume = self._volume(f"{spec.name}-{shared.claim_name}", f"fm-{self.environment}-{shared.claim_name}",
                                  parent)
            volumes.append({"volume_name": volume.name, "container_path": shared.mount_path})
        if access:
            # State a host path keeps on a node (e.g. a log shipper's read positions) lives on a volume here.
            for i, mount_path in enumerate(access.writable_host_paths.values()):
                volume = self._volume(f"{spec.name}-state-{i}", f"{self.container_name(spec.name)}-state-{i}", parent)
                volumes.append({"volume_name": volume.name, "container_path": mount_path})
        for cfg in spec.config:
            volumes.append({"container_path": cfg.mount_path})  # an anonymous volume per container
            for file_name, content in cfg.files.items():
                uploads.append({
                    "file": f"{cfg.mount_path}/{file_name}",
                    "content": pulumi.Output.secret(content) if cfg.secret else content,
                    "owner": str(spec.run_as_user), "group": str(spec.run_as_user),
                    "permissions": "0400" if cfg.secret else "0444",
                })

        envs: list = [f"{k}={v}" for k, v in spec.env.items()]
        envs += [f"{k}={self.container_name(spec.name)}" for k, field_path in spec.env_from_pod.items()
                 if field_path == "metadata.name"]
        # Docker keeps environment values in the container's config: these stay secret
        # Outputs in Pulumi's state, and the Docker host's root can read them anyway.
        envs += [pulumi.Output.concat(f"{k}=", pulumi.Output.secret(v)) for k, v in spec.secret_env.items()]

        entrypoints, command = start_command(spec)
        args: dict = {
            "name": self.container_name(spec.name),
            "image": image_ref,
            "entrypoints": entrypoints,
            "command": command,
            "envs": envs or None,
            "user": "0:0" if access and access.run_as_root else f"{spec.run_as_user}:{spec.run_as_user}",
            "volumes": volumes or None,
            "uploads": uploads or None,
            "tmpfs": {path: "rw,nosuid,size=256m" if path in spec.scratch_exec else "rw,noexec,nosuid,size=256m"
                      for path in spec.scratch_paths} or None,
            "sysctls": dict(spec.sysctls) or None,
            "hosts": [{"host": HOST_GATEWAY, "ip": "host-gateway"}],
            "healthcheck": None if spec.run_once else _healthcheck(spec.image, spec.ports, spec.readiness or spec.liveness),
            **self._hardening(spec.name, spec.component, spec.version, spec.resources),
        }
        if spec.run_once:
            # Runs to completion; a failure is retried, a success leaves the container stopped.
            # A changed input (uploads, environment) replaces the container, which runs it again.
            args.update(restart="on-failure", max_retry_count=RUN_ONCE_RETRIES, must_run=False)
        if access and access.host_network:
            args["network_mode"] = "host"
        else:
            args["networks_advanced"] = [{"name": self.network.name, "aliases": [spec.name]}]
            published = self.settings.ports.get(spec.name)
            if published:
                args["ports"] = [{"internal": spec.ports[0].port, "external": published,
                                  "ip": self.settings.bind_address, "protocol": "tcp"}]
        if access:
            if access.host_pid:
                args["pid_mode"] = "host"
            args["mounts"] = [{"type": "bind", "source": host, "target": target, "read_only": True,
                               **({"bind_options": {"propagation": "rslave"}} if host == "/" else {})}
                              for host, target in access.host_paths.items()]
            if access.devices:
                args["devices"] = [{"host_path": d, "container_path": d, "permissions": "r"} for d in access.devices]
        args = {k: v for k, v in args.items() if v is not None}
        container = docker.Container(spec.name, opts=self.opts(parent), **args)
        for sidecar in spec.sidecars:
            self._sidecar(spec, sidecar, container, parent)
        host = HOST_GATEWAY if access and access.host_network else spec.name
        return DeployedService(spec, host, [host] if not spec.run_once else [], container)

    def _build(self, spec: ServiceSpec, parent: pulumi.Resource) -> docker.Image:
        """The image built from the repository, once per name; kept on the host, pushed nowhere."""
        if spec.image not in self._built:
            self._built[spec.image] = docker.Image(
                f"{spec.name}-image", image_name=spec.image, skip_push=True,
                build=docker.DockerBuildArgs(context=spec.build.context, dockerfile=spec.build.dockerfile),
                opts=self.opts(parent))
        return self._built[spec.image]

    def _hardening(self, name: str, component: str, version: str, resources) -> dict:
        """What every container gets: read-only root, no capabilities, no privilege gain,
        memory bounds, restart policy, bounded logs and the stack's labels."""
        hardening = {
            "read_only": True,
            "capabilities": {"drops": ["ALL"]},
            "security_opts": ["no-new-privileges:true"],
            "restart": "unless-stopped",
            "memory": int(quantity_bytes(resources.limits.memory) // 2**20),
            "memory_reservation": int(quantity_bytes(resources.requests.memory) // 2**20),
            "log_driver": "json-file",
            "log_opts": {"max-size": "10m", "max-file": "3"},
            "labels": [{"label": k, "value": v} for k, v in {
                "app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
                "app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/version": version,
                "football-monitoring/environment": self.environment}.items()],
            "wait": False,
        }
        if resources.limits.cpu:
            hardening["cpus"] = str(_cpus(resources.limits.cpu))
        return hardening

    def _sidecar(self, spec: ServiceSpec, sidecar: Sidecar, main: docker.Container,
                 parent: pulumi.Resource) -> docker.Container:
        """A helper container in the service container's network namespace, as in a pod: it reaches
        the service on 127.0.0.1 and others reach it at the service's address. A replaced service
        container (new id) replaces its sidecars."""
        name = f"{spec.name}-{sidecar.name}"
        image = docker.RemoteImage(f"{name}-image", name=sidecar.image, keep_locally=True, opts=self.opts(parent))
        args = {
            "name": self.container_name(name),
            "image": image.image_id,
            "command": list(sidecar.args) or None,
            "envs": [f"{k}={v}" for k, v in sidecar.env.items()] or None,
            "user": f"{sidecar.run_as_user}:{sidecar.run_as_user}",
            "network_mode": main.id.apply(lambda container_id: f"container:{container_id}"),
            "healthcheck": _healthcheck(sidecar.image, [sidecar.port], sidecar.health),
            **self._hardening(name, spec.component, image_version(sidecar.image), sidecar.resources),
        }
        return docker.Container(name, opts=self.opts(parent), **{k: v for k, v in args.items() if v is not None})


def _check_realisable(spec: ServiceSpec) -> None:
    """What one Docker host cannot run; settings validation keeps such stacks off a Docker host,
    this keeps it from happening silently."""
    if spec.schedule or spec.external_secrets:
        raise ValueError(f"{spec.name}: scheduled jobs and external Secrets need platform kubernetes")
    if spec.init and not spec.command:
        raise ValueError(f"{spec.name}: init steps on a Docker host run in the service's own container before its "
                         "command, so the ServiceSpec must spell the command out (the image's entrypoint)")
    if any(sidecar.data_path or sidecar.config or sidecar.more_ports for sidecar in spec.sidecars):
        raise ValueError(f"{spec.name}: a sidecar with mounts or ports of its own needs platform kubernetes")
    if any(step.image and step.image != spec.image for step in spec.init):
        raise ValueError(f"{spec.name}: init steps on a Docker host run in the service's container, so they "
                         "cannot use another image")


def start_command(spec: ServiceSpec) -> tuple[Optional[list], Optional[list]]:
    """(entrypoint, command) of the container. Docker has no init containers: init steps run in
    order in the service's own container (same mounts, environment and user), each to
    completion, and a failing step stops the start (the restart policy tries again); then the
    service's command replaces the shell."""
    if not spec.init:
        return list(spec.command) or None, list(spec.args) or None
    steps = "\n".join(f"echo {shlex.quote(f'init step {step.name}')} >&2\n{shlex.join(step.command)}"
                      for step in spec.init)
    script = f"set -eu\n{steps}\nexec \"$@\"\n"
    return ["/bin/sh", "-c", script, spec.name], list(spec.command) + list(spec.args)


def _healthcheck(image: str, ports, check) -> Optional[dict]:
    if not check or any(tool in image for tool in NO_HEALTHCHECK_TOOLS):
        return None
    if isinstance(check, CommandCheck):
        tests = ["CMD", *check.command]
    else:
        port = next(p.port for p in ports if p.name == check.port)
        url = f"http://127.0.0.1:{port}{check.path}"
        if image.split(":", 1)[0] in PYTHON_IMAGES:
            tests = ["CMD", "python", "-c", PYTHON_CHECK, url]
        elif image.startswith(CURL_IMAGES):
            tests = ["CMD", "curl", "--fail", "--silent", "--max-time", "4", "--output", "/dev/null", url]
        else:
            tests = ["CMD", "wget", "-q", "--spider", url]
    return {"tests": tests, "interval": "30s", "timeout": "5s", "retries": 3, "start_period": "2m"}


def _cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def provider(name: str, host: Optional[str], parent: pulumi.Resource) -> docker.Provider:
    return docker.Provider(name, host=host, opts=pulumi.ResourceOptions(parent=parent))


def network(environment: str, provider: docker.Provider, parent: pulumi.Resource) -> docker.Network:
    return docker.Network("network", name=f"fm-{environment}", driver="bridge",
                          labels=[{"label": "app.kubernetes.io/part-of", "value": PART_OF}],
                          opts=pulumi.ResourceOptions(parent=parent, provider=provider))
