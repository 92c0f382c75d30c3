"""Alertmanager: a StatefulSet keeping silences and the notification log on a
volume; with more than one replica the pods form one gossip cluster through a
headless Service, and every Prometheus sends every alert to every replica."""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlparse

import pulumi

from components.configs import alertmanager as alertmanager_config
from components.metrics import dingtalk
from components.settings import REPORT_APP, Settings
from components.platform.workload import ANYWHERE, ConfigFiles, DataVolume, Flow, HttpCheck, INGRESS, Platform, Port, Reloader, ServiceSpec

WEB_PORT = 9093
MESH_PORT = 9094
CONFIG_DIR = "/etc/alertmanager/config"


class Alertmanager(pulumi.ComponentResource):
    internal_url: str
    external_url: Optional[str]

    def __init__(self, name: str, *, settings: Settings, platform: Platform,
                 dingtalk_url: Optional[str] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:alertmanager:Alertmanager", name, None, opts)
        am = settings.alertmanager
        # Notification and alert links carry this URL: the ingress (or a Docker host's published port),
        # else the address people reach it at some other way, else the cluster-internal one.
        public = platform.public_url("alertmanager")
        self.external_url = am.external_url or public
        internal_url = f"http://{platform.host_of('alertmanager')}:{WEB_PORT}"
        secrets = settings.secrets
        # Every receiver credential is a file beside the config, so the config holds no secret
        # and is a ConfigMap that `kubectl get` shows as deployed.
        self.config = alertmanager_config.render(alertmanager_config.AlertmanagerConfig(
            environment=settings.environment,
            heartbeat=secrets.heartbeat_url is not None,
            escalation=secrets.escalation_webhook_url is not None,
            webhook=secrets.alertmanager_webhook_url is not None,
            timings=settings.alerting.timings,
            teams=settings.alerting.teams,
            quiet=settings.alerting.quiet,
            slack=settings.alerting.slack.enabled,
            email=settings.alerting.email,
            dingtalk_url=dingtalk_url,
        ))
        files = alertmanager_config.WEBHOOK_URL_FILES
        credentials = {}
        for name, value in (("webhook", secrets.alertmanager_webhook_url), ("heartbeat", secrets.heartbeat_url),
                            ("escalation", secrets.escalation_webhook_url)):
            if value is not None:
                credentials[files[name]] = value
        if secrets.slack_api_url is not None:
            credentials["slack-api-url"] = secrets.slack_api_url
        if secrets.smtp_password is not None:
            credentials["smtp-password"] = secrets.smtp_password

        args = [
            f"--config.file={CONFIG_DIR}/alertmanager.yml",
            "--storage.path=/alertmanager",
            f"--data.retention={am.retention}",
            f"--web.external-url={self.external_url or internal_url}",
            "--web.route-prefix=/",
        ]
        if am.replicas > 1:
            args += [f"--cluster.listen-address=0.0.0.0:{MESH_PORT}",
                     f"--cluster.advertise-address=$(POD_IP):{MESH_PORT}",
                     "--cluster.reconnect-timeout=5m"]
            args += [f"--cluster.peer={host}:{MESH_PORT}" for host in platform.replica_hosts("alertmanager", am.replicas)]
        else:
            # A lone replica must not wait for peers that will never come.
            args.append("--cluster.listen-address=")

        spec = ServiceSpec(
            name="alertmanager",
            component="alerting",
            image=settings.images["alertmanager"],
            ports=[Port("web", WEB_PORT)],
            cluster_peers=[Port("mesh-tcp", MESH_PORT), Port("mesh-udp", MESH_PORT, "UDP")] if am.replicas > 1 else [],
            resources=am.resources,
            run_as_user=65534,
            args=args,
            env_from_pod={"POD_IP": "status.podIP"},
            config=[
                ConfigFiles("config", CONFIG_DIR, {"alertmanager.yml": self.config}, reload=True),
                ConfigFiles("templates", alertmanager_config.TEMPLATES_DIR, alertmanager_config.templates(),
                            reload=True),
                # Alertmanager reads each credential file when it sends a notification (v0.35
                # notify/webhook, notify/slack, notify/email: os.ReadFile in Notify), so a changed
                # credential needs neither a reload nor a restart.
                *([ConfigFiles("credentials", alertmanager_config.CREDENTIALS_DIR, credentials, secret=True,
                               reload=True)]
                  if credentials else []),
            ],
            data=DataVolume("/alertmanager", am.storage_size),
            liveness=HttpCheck("/-/healthy", "web"),
            readiness=HttpCheck("/-/ready", "web"),
            replicas=am.replicas,
            reloader=Reloader(f"http://127.0.0.1:{WEB_PORT}/-/reload", scraped_by=("prometheus",)),
            allow_in=[Flow("prometheus", [(WEB_PORT, "TCP")]), Flow("grafana", [(WEB_PORT, "TCP")]),
                      Flow("alertmanager", [(WEB_PORT, "TCP"), (MESH_PORT, "TCP"), (MESH_PORT, "UDP")]),
                      Flow(INGRESS, [(WEB_PORT, "TCP")])]
            + ([Flow(REPORT_APP, [(WEB_PORT, "TCP")])] if settings.report.enabled else [])
            # With scrape shards the alerts come from Thanos Ruler (components/metrics/thanos_rule.py).
            + ([Flow("thanos-rule", [(WEB_PORT, "TCP")])] if settings.prometheus.shards > 1 else []),
            # Peers gossip on the mesh port; receivers are reached on their own ports only.
            allow_out=[Flow("alertmanager", [(MESH_PORT, "TCP"), (MESH_PORT, "UDP")])]
            + ([Flow(dingtalk.NAME, [(dingtalk.PORT, "TCP")])] if dingtalk_url else [])
            + [Flow(ANYWHERE, receiver_ports(settings))],
        )
        self.deployed = platform.deploy(spec, self)
        self.internal_url = self.deployed.url("web")
        self.replica_addresses = self.deployed.replica_addresses("web")
        if public:
            platform.expose(self.deployed, "web", parent=self)
        self.register_outputs({"internal_url": self.internal_url, "external_url": self.external_url})


def receiver_ports(settings: Settings) -> pulumi.Output:
    """The TCP ports of the receivers outside the stack: each webhook, heartbeat, escalation and
    Slack URL's port (443 for https, 80 for http, else the URL's own), and the SMTP smarthost's.

    The URLs are secrets; their ports are not, and a NetworkPolicy that showed nothing in a
    preview would hide what Alertmanager may reach."""
    secrets = settings.secrets
    urls = [u for u in (secrets.alertmanager_webhook_url, secrets.heartbeat_url, secrets.escalation_webhook_url,
                        secrets.slack_api_url) if u is not None]
    email = settings.alerting.email
    smtp = {int(email.smarthost.rsplit(":", 1)[1])} if email.enabled and email.smarthost else set()

    def ports(values) -> list:
        found = set(smtp)
        for url in values:
            parsed = urlparse(url)
            found.add(parsed.port or (443 if parsed.scheme == "https" else 80))
        return [(port, "TCP") for port in sorted(found)]

    return pulumi.Output.unsecret(pulumi.Output.all(*urls).apply(ports))
