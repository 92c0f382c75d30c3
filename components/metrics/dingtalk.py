"""DingTalk relay: Alertmanager has no DingTalk receiver, so critical alerts
reach DingTalk through prometheus-webhook-dingtalk, the relay the ecosystem
uses. Alertmanager calls it as a webhook inside the cluster; the robot URL and
signing secret stay in the relay's own config, a Kubernetes Secret."""

from __future__ import annotations

from typing import Optional

import pulumi
import yaml

from components.settings import Settings
from components.platform.workload import ANYWHERE, ConfigFiles, Flow, HttpCheck, Platform, Port, ServiceSpec

PORT = 8060
NAME = "dingtalk-relay"
TARGET = "football"


def relay_config(robot_url: str, signing_secret: Optional[str]) -> str:
    target = {"url": robot_url}
    if signing_secret:
        target["secret"] = signing_secret
    return yaml.safe_dump({"targets": {TARGET: target}}, sort_keys=False)


class DingTalkRelay(pulumi.ComponentResource):
    url: str

    def __init__(self, name: str, *, settings: Settings, platform: Platform,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:dingtalk:DingTalkRelay", name, None, opts)
        secrets = settings.secrets
        config = pulumi.Output.all(secrets.dingtalk_webhook_url, secrets.dingtalk_secret).apply(
            lambda values: relay_config(values[0], values[1]))
        spec = ServiceSpec(
            name=NAME,
            component="alerting",
            image=settings.images["dingtalkRelay"],
            ports=[Port("http", PORT)],
            resources=settings.alertmanager.resources,
            run_as_user=65534,
            args=[f"--web.listen-address=:{PORT}", "--config.file=/etc/dingtalk/config.yml"],
            config=[ConfigFiles("config", "/etc/dingtalk", {"config.yml": config}, secret=True)],
            liveness=HttpCheck("/-/healthy", "http"),
            readiness=HttpCheck("/-/ready", "http"),
            allow_in=[Flow("alertmanager", [(PORT, "TCP")])],
            allow_out=[Flow(ANYWHERE, [(443, "TCP")])],
        )
        deployed = platform.deploy(spec, self)
        self.url = deployed.url("http", f"/dingtalk/{TARGET}/send")
        self.register_outputs({"url": self.url})
