"""The scheduled report (report.enabled): ``python -m components.report`` on report.schedule, writing into
a volume and, with report.postToWebhook, posting the summary to the default webhook.

On Kubernetes a CronJob runs it (the restricted PodSecurity profile's hardening of every workload, a
network policy that lets it reach only Prometheus, Alertmanager and the webhook's port), with its
volume a PersistentVolumeClaim. A Docker host has no CronJob: one container stays up and writes a
report at each time of the same schedule (``--schedule``), onto a named volume. A Docker host builds
the image from this repository (components/report/Dockerfile, tagged by the content of what goes
into it); Kubernetes runs report.image, pushed beforehand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import pulumi

from components.platform.workload import ANYWHERE, ConfigFiles, DataVolume, Flow, ImageBuild, Platform, ServiceSpec
from components.settings import REPORT_APP, Resources, Settings

ROOT = Path(__file__).resolve().parent.parent.parent
REPOSITORY = "football-monitoring-report"
RESOURCES = Resources.of(cpu_request="50m", memory_request="128Mi", memory_limit="512Mi")
UID = 10001  # the image's USER
REPORTS_DIR = "/reports"
WEBHOOK_DIR = "/etc/report"
PROMETHEUS_PORT, ALERTMANAGER_PORT = 9090, 9093


def image_inputs() -> list[Path]:
    """What the image is built from (the Dockerfile's COPY sources)."""
    report = sorted(p for p in (ROOT / "components" / "report").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return report + sorted((ROOT / "slos").glob("*.yaml")) + [ROOT / p for p in (
        "components/__init__.py", "components/cron.py", "components/data.py", "components/configs/__init__.py",
        "components/configs/slo.py")]


def image_tag() -> str:
    digest = hashlib.sha256()
    for path in image_inputs():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _port(url: str) -> int:
    parsed = urlparse(url)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


class ReportJob(pulumi.ComponentResource):
    def __init__(self, name: str, *, settings: Settings, platform: Platform, prometheus_url: str,
                 alertmanager_url: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:report:ReportJob", name, None, opts)
        report = settings.report
        docker_host = platform.kind == "docker"
        args = [f"--prometheus-url={prometheus_url}", f"--alertmanager-url={alertmanager_url}",
                f"--environment={settings.environment}", f"--period={report.period}", f"--out={REPORTS_DIR}"]
        allow_out = [Flow("prometheus", [(PROMETHEUS_PORT, "TCP")]), Flow("alertmanager", [(ALERTMANAGER_PORT, "TCP")])]
        config = []
        if report.post_to_webhook:
            webhook = settings.secrets.alertmanager_webhook_url
            # A file of a Secret, as Alertmanager reads the same URL (url_file): never in the pod spec or the environment.
            config.append(ConfigFiles("webhook", WEBHOOK_DIR, {"url": webhook}, secret=True))
            args.append(f"--webhook-url-file={WEBHOOK_DIR}/url")
            # The webhook's port (the port is not the secret): the policy opens only that one.
            allow_out.append(Flow(ANYWHERE, webhook.apply(lambda url: [(_port(url), "TCP")])))
        if docker_host:
            args.append(f"--schedule={report.schedule}")
        spec = ServiceSpec(
            name=REPORT_APP,
            component="report",
            image=f"{REPOSITORY}:{image_tag()}" if docker_host else report.image,
            build=ImageBuild(".", "components/report/Dockerfile") if docker_host else None,
            ports=[],
            resources=RESOURCES,
            run_as_user=UID,
            args=args,
            # matplotlib and fontconfig keep caches under HOME; the root filesystem is read-only.
            env={"HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib"},
            config=config,
            scratch_paths=["/tmp"],
            data=DataVolume(REPORTS_DIR, report.storage_size),
            schedule=None if docker_host else report.schedule,
            allow_out=allow_out,
        )
        self.deployed = platform.deploy(spec, self)
        self.register_outputs({})
