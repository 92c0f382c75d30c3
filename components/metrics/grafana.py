"""Grafana: persistent, with a generated admin password, provisioned
datasources (stable uids) and the dashboards of dashboards/ (``dashboard_files``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_random as random

from components import data
from components.configs import grafana as grafana_config
from components.configs.grafana import DASHBOARDS_DIR, SECRETS_DIR
from components.settings import Settings
from components.platform.workload import ConfigFiles, DataVolume, Flow, HttpCheck, INGRESS, Platform, Port, ServiceSpec

HTTP_PORT = 3000


def dashboard_files(settings: Settings) -> dict[str, str]:
    """dashboards/*.json by file name, an optional part's (data.OPTIONAL_PARTS) only where it runs."""
    files = data.dashboards()
    for name in data.left_out(settings)[1]:
        del files[name]
    return files


@dataclass(frozen=True)
class LogsAccess:
    """The logging stack's Elasticsearch as Grafana's logs datasource (read-only user)."""

    url: str
    password: pulumi.Output  # secret; a file in Grafana's Secret
    ca_cert_pem: pulumi.Output
    peer: str = "elasticsearch"
    port: int = 9200

    def secret_files(self) -> dict:
        return {"logs-password": self.password, "logs-ca.crt": self.ca_cert_pem}


class Grafana(pulumi.ComponentResource):
    internal_url: str
    external_url: Optional[str]
    admin_password: pulumi.Output

    def __init__(self, name: str, *, settings: Settings, platform: Platform, prometheus_url: str,
                 alertmanager_url: str, jaeger_url: Optional[str] = None, logs_datasource: Optional[str] = None,
                 logs: Optional["LogsAccess"] = None, prometheus_peer: tuple[str, int] = ("prometheus", 9090),
                 thanos: bool = False, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:grafana:Grafana", name, None, opts)
        self.external_url = platform.public_url("grafana")
        internal_url = f"http://{platform.host_of('grafana')}:{HTTP_PORT}"
        password = random.RandomPassword(
            "grafana-admin-password", length=32, special=False, min_lower=4, min_upper=4, min_numeric=4,
            opts=pulumi.ResourceOptions(parent=self))
        # RandomPassword.result is already a secret; say so again so no refactor can lose it.
        self.admin_password = pulumi.Output.secret(password.result)
        self.admin_user = settings.grafana.admin_user

        cfg = grafana_config.GrafanaConfig(
            admin_user=settings.grafana.admin_user,
            root_url=grafana_config.root_url(self.external_url, internal_url),
            prometheus_url=prometheus_url,
            prometheus_type="Thanos" if thanos else "Prometheus",
            alertmanager_url=alertmanager_url,
            scrape_interval=settings.prometheus.scrape_interval,
            jaeger_url=jaeger_url,
            logs_datasource=logs_datasource,
            logs_url=logs.url if logs else None,
        )
        spec = ServiceSpec(
            name="grafana",
            component="dashboards",
            image=settings.images["grafana"],
            ports=[Port("http", HTTP_PORT)],
            resources=settings.grafana.resources,
            run_as_user=472,
            # The image's own GF_PATHS_* point at paths on the (read-only) root filesystem.
            env={
                "GF_PATHS_CONFIG": "/etc/grafana/config/grafana.ini",
                "GF_PATHS_DATA": "/var/lib/grafana",
                "GF_PATHS_LOGS": "/var/lib/grafana/log",
                "GF_PATHS_PLUGINS": "/var/lib/grafana/plugins",
                "GF_PATHS_PROVISIONING": "/etc/grafana/provisioning",
            },
            config=[
                ConfigFiles("config", "/etc/grafana/config", {"grafana.ini": grafana_config.render_ini(cfg)}),
                ConfigFiles("datasources", "/etc/grafana/provisioning/datasources",
                            {"datasources.yaml": grafana_config.render_datasources(cfg)}),
                ConfigFiles("dashboard-provider", "/etc/grafana/provisioning/dashboards",
                            {"football-monitoring.yaml": grafana_config.render_dashboard_provider(cfg)}),
                # Grafana re-reads dashboard files by itself (updateIntervalSeconds), so a
                # changed dashboard needs no restart. One ConfigMap each: together they are far
                # over what one object may hold for client-side apply.
                ConfigFiles("dashboards", DASHBOARDS_DIR, dashboard_files(settings), reload=True,
                            object_per_file=True),
                ConfigFiles("admin", SECRETS_DIR, {"admin-password": self.admin_password,
                                                   **(logs.secret_files() if logs else {})}, secret=True),
            ],
            data=DataVolume("/var/lib/grafana", settings.grafana.storage_size),
            scratch_paths=["/tmp"],
            liveness=HttpCheck("/api/health", "http"),
            readiness=HttpCheck("/api/health", "http"),
            allow_in=[Flow(INGRESS, [(HTTP_PORT, "TCP")]), Flow("prometheus", [(HTTP_PORT, "TCP")])],
            # The metrics datasource: one Prometheus, or Thanos Query (or its frontend) over them.
            allow_out=[Flow(prometheus_peer[0], [(prometheus_peer[1], "TCP")]), Flow("alertmanager", [(9093, "TCP")])]
            + ([Flow("jaeger", [(16686, "TCP")])] if jaeger_url else [])
            + ([Flow(logs.peer, [(logs.port, "TCP")])] if logs else []),
        )
        self.deployed = platform.deploy(spec, self)
        self.internal_url = self.deployed.url("http")
        if self.external_url:
            platform.expose(self.deployed, "http", parent=self)
        self.register_outputs({"internal_url": self.internal_url, "external_url": self.external_url,
                               "admin_password": self.admin_password})
