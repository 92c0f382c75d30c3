"""Wires the components of one environment together and returns its outputs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi

from . import docker, kubernetes
from .alertmanager import WEB_PORT as ALERTMANAGER_PORT
from .alertmanager import Alertmanager
from .configs.prometheus import ScrapeTarget
from .dingtalk import DingTalkRelay
from .exporters import BlackboxExporter, CAdvisor, DatabaseExporter, KubeStateMetrics, NodeExporter
from .grafana import HTTP_PORT as GRAFANA_PORT
from .grafana import Grafana
from .prometheus import WEB_PORT as PROMETHEUS_PORT
from .prometheus import Prometheus
from .settings import Settings

# The stack's own services and their metrics ports.
SELF_TARGETS = [
    (ScrapeTarget("prometheus", "prometheus", "web"), PROMETHEUS_PORT),
    (ScrapeTarget("alertmanager", "alertmanager", "web"), ALERTMANAGER_PORT),
    (ScrapeTarget("grafana", "grafana", "http"), GRAFANA_PORT),
]


class MonitoringStack(pulumi.ComponentResource):
    """The metrics half of the FootballPrediction monitoring system, on Kubernetes or one Docker host."""

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("football-monitoring:stack:MonitoringStack", name, None, opts)
        if settings.platform == "kubernetes":
            provider = kubernetes.provider("kubernetes", settings.kube_context, parent=self)
            ns = kubernetes.namespace(settings.namespace, provider, self)
            deny = kubernetes.default_deny(ns, settings.namespace, provider, self)
            priority = kubernetes.priority_class(f"{settings.namespace}-monitoring", provider, self)
            platform = kubernetes.KubernetesPlatform(
                namespace=settings.namespace,
                environment=settings.environment,
                provider=provider,
                storage_class=settings.storage_class,
                protect_data=settings.protect_data,
                reloader_image=settings.images["configReloader"],
                ingress=settings.ingress,
                priority_class=f"{settings.namespace}-monitoring",
                ingress_namespace=settings.ingress.controller_namespace,
            )
            in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[ns, deny, priority])
        else:
            provider = docker.provider("docker", settings.docker.host, parent=self)
            platform = docker.DockerPlatform(
                environment=settings.environment,
                provider=provider,
                network=docker.network(settings.environment, provider, self),
                settings=settings.docker,
                protect_data=settings.protect_data,
            )
            in_namespace = pulumi.ResourceOptions(parent=self)

        exporters: list = [NodeExporter("node-exporter", settings=settings, platform=platform, opts=in_namespace)]
        if platform.kind == "kubernetes":
            exporters.append(KubeStateMetrics("kube-state-metrics", settings=settings, platform=platform,
                                              opts=in_namespace))
        else:
            exporters.append(CAdvisor("cadvisor", settings=settings, platform=platform, opts=in_namespace))
        blackbox = BlackboxExporter("blackbox-exporter", settings=settings, platform=platform, opts=in_namespace)
        exporters.append(blackbox)
        if settings.exporters.postgres_enabled:
            exporters.append(DatabaseExporter("postgres-exporter", kind="postgres", settings=settings,
                                              platform=platform, connection=settings.secrets.postgres_dsn,
                                              opts=in_namespace))
        if settings.exporters.redis_enabled:
            exporters.append(DatabaseExporter("redis-exporter", kind="redis", settings=settings, platform=platform,
                                              connection=settings.secrets.redis_url, opts=in_namespace))

        dingtalk = (DingTalkRelay("dingtalk-relay", settings=settings, platform=platform, opts=in_namespace)
                    if settings.alerting.dingtalk else None)
        self.alertmanager = Alertmanager("alertmanager", settings=settings, platform=platform,
                                         dingtalk_url=dingtalk.url if dingtalk else None, opts=in_namespace)
        targets = [replace(t, addresses=[f"{platform.host_of(t.app)}:{port}"])
                   for t, port in SELF_TARGETS] + [t for exporter in exporters for t in exporter.scrape_targets]
        if platform.kind == "kubernetes":
            # The reload sidecars count the reloads they trigger (security rules tell them from
            # reloads by hand); on a Docker host a config change restarts the container instead.
            targets.append(ScrapeTarget("config-reloader", "prometheus|alertmanager", "reloader-web"))
        self.prometheus = Prometheus(
            "prometheus", settings=settings, platform=platform,
            alertmanagers=self.alertmanager.replica_addresses, components=targets,
            blackbox_address=blackbox.address, opts=in_namespace)
        self.grafana = Grafana("grafana", settings=settings, platform=platform,
                               prometheus_url=self.prometheus.internal_url,
                               alertmanager_url=self.alertmanager.internal_url, opts=in_namespace)
        self.outputs = stack_outputs(settings, self)
        self.register_outputs(self.outputs)


def stack_outputs(settings: Settings, stack: MonitoringStack) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "environment": settings.environment,
        "namespace": settings.namespace,
        "grafanaUrl": stack.grafana.internal_url,
        "prometheusUrl": stack.prometheus.internal_url,
        "alertmanagerUrl": stack.alertmanager.internal_url,
        "grafanaAdminUser": stack.grafana.admin_user,
        "grafanaAdminPassword": stack.grafana.admin_password,
    }
    for key, url in (("grafanaExternalUrl", stack.grafana.external_url),
                     ("prometheusExternalUrl", stack.prometheus.external_url),
                     ("alertmanagerExternalUrl", stack.alertmanager.external_url)):
        if url:
            outputs[key] = url
    return outputs


def build(settings: Settings) -> dict[str, Any]:
    return MonitoringStack("football-monitoring", settings).outputs
