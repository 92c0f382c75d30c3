"""Single-Docker-host realisation of ``ServiceSpec`` (pulumi-docker).

The same service descriptions as on Kubernetes, with the hardened defaults
that Docker can express: pinned image, fixed non-root user, read-only root
filesystem, all capabilities dropped, no-new-privileges, memory limits,
health checks, restart policy and bounded logs. Config files arrive as
uploads into per-container volumes (Docker refuses uploads into a read-only
root filesystem, but not into a volume); a changed file replaces the
container, while data stays on its named volume. Only the UIs a person needs
are published, on the bind address from settings.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_docker as docker

from .settings import DockerSettings, quantity_bytes
from .workload import HOST_ACCESS, PART_OF, DeployedService, ServiceSpec

# Images built FROM scratch have no shell or wget to run a health check with;
# Prometheus' `up` for them is the health signal instead.
NO_HEALTHCHECK_TOOLS = ("redis_exporter",)
HOST_GATEWAY = "host.docker.internal"


class DockerPlatform:
    kind = "docker"

    def __init__(self, *, environment: str, provider: docker.Provider, network: docker.Network,
                 settings: DockerSettings, protect_data: bool):
        self.environment = environment
        self.provider = provider
        self.network = network
        self.settings = settings
        self.protect_data = protect_data

    def host_of(self, name: str) -> str:
        return name  # the container's alias on the stack's network

    def replica_hosts(self, name: str, replicas: int) -> list[str]:
        return [name]

    def public_url(self, name: str) -> Optional[str]:
        return self.settings.url(name)

    def expose(self, deployed: DeployedService, port_name: str, parent: pulumi.Resource) -> None:
        """Published ports are part of the container itself (see deploy)."""

    def container_name(self, name: str) -> str:
        return f"fm-{self.environment}-{name}"

    def opts(self, parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **kwargs)

    def deploy(self, spec: ServiceSpec, parent: pulumi.Resource) -> DeployedService:
        if spec.schedule or spec.external_secrets:
            # Docker has no scheduler and no Secrets to mount by name; settings validation
            # keeps such services off a Docker host, this keeps it from happening silently.
            raise ValueError(f"{spec.name}: scheduled jobs and external Secrets need platform kubernetes")
        if spec.init or spec.sidecars or spec.shared_volumes or spec.run_once or spec.command:
            # The logging stack needs these; settings refuse logging on a Docker host (logging.enabled).
            raise ValueError(f"{spec.name}: init steps, sidecars, shared volumes and run-once jobs need platform "
                             "kubernetes")
        access = HOST_ACCESS[spec.host_access] if spec.host_access else None
        image = docker.RemoteImage(f"{spec.name}-image", name=spec.image, keep_locally=True, opts=self.opts(parent))
        volumes, uploads = [], []
        if spec.data:
            volume = docker.Volume(f"{spec.name}-data", name=f"{self.container_name(spec.name)}-data",
                                   labels=[{"label": "app.kubernetes.io/part-of", "value": PART_OF}],
                                   opts=self.opts(parent, protect=self.protect_data, retain_on_delete=self.protect_data))
            volumes.append({"volume_name": volume.name, "container_path": spec.data.mount_path})
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

        args: dict = {
            "name": self.container_name(spec.name),
            "image": image.image_id,
            "command": list(spec.args) or None,
            "envs": envs or None,
            "user": "0:0" if access and access.run_as_root else f"{spec.run_as_user}:{spec.run_as_user}",
            "read_only": True,
            "capabilities": {"drops": ["ALL"]},
            "security_opts": ["no-new-privileges:true"],
            "restart": "unless-stopped",
            "memory": int(quantity_bytes(spec.resources.memory_limit) // 2**20),
            "memory_reservation": int(quantity_bytes(spec.resources.memory_request) // 2**20),
            "log_driver": "json-file",
            "log_opts": {"max-size": "10m", "max-file": "3"},
            "labels": [{"label": k, "value": v} for k, v in {
                "app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": spec.component,
                "app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/version": spec.version,
                "football-monitoring/environment": self.environment}.items()],
            "volumes": volumes or None,
            "uploads": uploads or None,
            "tmpfs": {path: "rw,noexec,nosuid,size=256m" for path in spec.scratch_paths} or None,
            "sysctls": dict(spec.sysctls) or None,
            "hosts": [{"host": HOST_GATEWAY, "ip": "host-gateway"}],
            "healthcheck": self._healthcheck(spec),
            "wait": False,
        }
        if spec.resources.cpu_limit:
            args["cpus"] = str(_cpus(spec.resources.cpu_limit))
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
        host = HOST_GATEWAY if access and access.host_network else spec.name
        return DeployedService(spec, host, [host], container)

    def _healthcheck(self, spec: ServiceSpec) -> Optional[dict]:
        check = spec.readiness or spec.liveness
        if not check or any(tool in spec.image for tool in NO_HEALTHCHECK_TOOLS):
            return None
        port = next(p.port for p in spec.ports if p.name == check.port)
        return {"tests": ["CMD", "wget", "-q", "--spider", f"http://127.0.0.1:{port}{check.path}"],
                "interval": "30s", "timeout": "5s", "retries": 3, "start_period": "2m"}


def _cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def provider(name: str, host: Optional[str], parent: pulumi.Resource) -> docker.Provider:
    return docker.Provider(name, host=host, opts=pulumi.ResourceOptions(parent=parent))


def network(environment: str, provider: docker.Provider, parent: pulumi.Resource) -> docker.Network:
    return docker.Network("network", name=f"fm-{environment}", driver="bridge",
                          labels=[{"label": "app.kubernetes.io/part-of", "value": PART_OF}],
                          opts=pulumi.ResourceOptions(parent=parent, provider=provider))
