"""The demo workload (demo.enabled): the FootballPrediction stand-in of demo/, API and Celery worker.

It is discovered like the real service: on Kubernetes through the prometheus.io annotations of its
pods (job = its app.kubernetes.io/name, football-prediction-api and -worker), on a Docker host as
static targets of the same jobs. Its traces go to the stack's OTLP endpoint (the gateway, else
Jaeger), its JSON logs to standard output, where Filebeat reads every container's. A Docker host
builds its image from this repository (demo/Dockerfile), tagged by the content of what goes into
it, so a change of the demo or of the metric contract builds and rolls a new one; Kubernetes runs
demo.image, pushed beforehand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import pulumi

from components.configs.prometheus import ScrapeTarget
from components.platform.workload import Flow, HttpCheck, ImageBuild, Platform, Port, ServiceSpec
from components.settings import Resources, Settings

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "football-monitoring-demo"
# (component, app name = Prometheus job, port): metrics/catalog.yaml's components.
COMPONENTS = (("api", "football-prediction-api", 8000), ("worker", "football-prediction-worker", 9808))
RESOURCES = Resources.of(cpu_request="50m", memory_request="64Mi", memory_limit="256Mi")
UID = 10001  # the image's USER
OTLP_GRPC_PORT = 4317


def image_inputs() -> list[Path]:
    """What the image is built from (demo/Dockerfile's COPY sources)."""
    return sorted(p for p in (ROOT / "demo").rglob("*") if p.is_file() and "__pycache__" not in p.parts) + [
        ROOT / "metrics" / "catalog.yaml"]


def image_tag() -> str:
    digest = hashlib.sha256()
    for path in image_inputs():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def demo_apps() -> tuple[str, ...]:
    """The demo's services by name: the clients other services let in."""
    return tuple(app for _, app, _ in COMPONENTS)


class Demo(pulumi.ComponentResource):
    scrape_targets: list[ScrapeTarget]

    def __init__(self, name: str, *, settings: Settings, platform: Platform, otlp_endpoint: Optional[str],
                 otlp_peer: Optional[str], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:demo:Demo", name, None, opts)
        docker_host = platform.kind == "docker"
        image = f"{REPOSITORY}:{image_tag()}" if docker_host else settings.demo.image
        self.scrape_targets = []
        self.deployed = {}
        for component, app, port in COMPONENTS:
            spec = ServiceSpec(
                name=app,
                component="demo",
                preempts=False,  # the service's stand-in: never at the cost of the monitoring it feeds
                image=image,
                # Relative to the project directory, where Pulumi runs the program: no machine path in the state.
                build=ImageBuild(".", "demo/Dockerfile") if docker_host else None,
                ports=[Port("http", port)],
                resources=RESOURCES,
                run_as_user=UID,
                args=["--component", component, f"--listen-address=:{port}"]
                     + ([f"--rps={settings.demo.rps}"] if component == "api" else []),
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint} if otlp_endpoint else {},
                liveness=HttpCheck("/health", "http"),
                readiness=HttpCheck("/health", "http"),
                # Discovered as docs/instrumentation.md tells the real service to be.
                pod_annotations={} if docker_host else {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"},
                allow_in=[Flow("prometheus", [(port, "TCP")]), Flow("blackbox-exporter", [(port, "TCP")])],
                allow_out=[Flow(otlp_peer, [(OTLP_GRPC_PORT, "TCP")])] if otlp_peer else [],
            )
            deployed = platform.deploy(spec, self)
            self.deployed[component] = deployed
            if docker_host:
                self.scrape_targets.append(ScrapeTarget(app, app, "http", addresses=[deployed.address("http")]))
        self.api_url = self.deployed["api"].url("http")
        self.register_outputs({"api_url": self.api_url})
