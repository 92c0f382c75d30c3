"""Secret settings: never parsed into plain values, never in the stack file in plain text.

The loader reads each one with ``pulumi.Config.require_secret``, so it stays a secret Output all the
way into the resources, and only when the settings need it: a URL for a receiver that is off is
neither demanded nor read. The value of each one it reads is checked (not empty; a receiver's URL
an http(s) URL), and a message about it never shows it.

``needed_secrets`` says which secrets a stack needs; the loader and ``scripts/deploy`` (through
``python -m scripts.required_secrets``) both ask it, so the list a person is shown before a deploy
is the list the program demands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, make_dataclass
from typing import Any, Callable, Optional

import pulumi

from components.settings.types import Unreadable


@dataclass(frozen=True)
class SecretSetting:
    doc: str
    placeholder: str  # a valid, obviously fake value for offline renders
    required_when: Callable[[Any], bool] = lambda settings: True  # given the validated StackConfig
    # Read when set, never demanded: always (True), or where this says so, given the validated StackConfig.
    optional: "bool | Callable[[Any], bool]" = False
    url: bool = False  # an http(s) URL that a receiver posts to
    without: str = ""  # what the stack does without it, where it is optional

    def problem(self, value: str) -> Optional[str]:
        """What is wrong with the secret's value, in words that do not show it; None when nothing."""
        if not value.strip():
            return "is set but empty"
        if self.url and not _HTTP_URL.fullmatch(value):
            return "is not valid: expected an http(s) URL, without spaces (the value is not shown)"
        return None


_HTTP_URL = re.compile(r"https?://[^\s/?#]+\S*")


def _s3_snapshots(settings: Any) -> bool:
    snapshot = settings.logging.snapshot
    return settings.logging.enabled and snapshot.enabled and snapshot.type == "s3"


def _s3_thanos(settings: Any) -> bool:
    return settings.thanos.enabled and settings.thanos.objstore.type == "s3"


SECRETS: dict[str, SecretSetting] = {
    "alertmanagerWebhookUrl": SecretSetting(
        "URL of the webhook receiver that Alertmanager's default route notifies (mounted as a file, read through "
        "url_file); the service level report posts its summary there with report.postToWebhook",
        "https://secret.invalid/alertmanagerWebhookUrl", url=True,
        optional=lambda settings: not settings.alerting.webhook.required and not (
            settings.report.enabled and settings.report.post_to_webhook),
        without="notifications reach no one: they stay visible in Alertmanager's UI, and the stack output "
                "alertDelivery says so"),
    "postgresDsn": SecretSetting(
        "PostgreSQL connection string for postgres-exporter, e.g. "
        "postgresql://monitor:PASSWORD@postgres.app.svc:5432/football?sslmode=require; the role needs pg_monitor "
        "(GRANT pg_monitor TO monitor): without it PostgreSQL hides other sessions' state and transaction start, "
        "and the connection and long-transaction alerts never fire; connect_timeout is added (half of "
        "prometheus.scrapeTimeout) unless the string sets its own, so that a server that hangs reads as down",
        "postgresql://monitor:secret-placeholder@postgres.invalid:5432/postgres?sslmode=disable",
        lambda settings: settings.exporters.postgres.enabled,
        optional=lambda settings: not settings.exporters.postgres.required,
        without="postgres-exporter is left out (the stack output notDeployed names it)"),
    "redisUrl": SecretSetting(
        "Redis URL for redis-exporter, e.g. redis://:PASSWORD@redis.app.svc:6379",
        "redis://:secret-placeholder@redis.invalid:6379",
        lambda settings: settings.exporters.redis.enabled,
        optional=lambda settings: not settings.exporters.redis.required,
        without="redis-exporter is left out (the stack output notDeployed names it)"),
    "slackApiUrl": SecretSetting(
        "Slack incoming-webhook URL (mounted as a file, read through api_url_file)",
        "https://secret.invalid/slackApiUrl",
        lambda settings: settings.alerting.slack.enabled, url=True),
    "smtpPassword": SecretSetting(
        "password of alerting.email.username (mounted as a file, read through auth_password_file)",
        "smtp-password-placeholder",
        lambda settings: settings.alerting.email.enabled and bool(settings.alerting.email.username)),
    "dingtalkWebhookUrl": SecretSetting(
        "DingTalk robot URL with its access_token, held by the DingTalk relay",
        "https://secret.invalid/dingtalkWebhookUrl?access_token=placeholder",
        lambda settings: settings.alerting.dingtalk.enabled, url=True),
    "dingtalkSecret": SecretSetting(
        "DingTalk robot signing secret (when the robot has signing on)",
        "SECplaceholder",
        lambda settings: settings.alerting.dingtalk.enabled, optional=True,
        without="the relay calls the robot unsigned (a robot with signing on refuses it)"),
    "heartbeatUrl": SecretSetting(
        "dead man's switch URL that expects the Watchdog every few minutes",
        "https://secret.invalid/heartbeatUrl",
        lambda settings: settings.alerting.heartbeat.enabled, url=True),
    "escalationWebhookUrl": SecretSetting(
        "on-call paging webhook that receives every critical alert",
        "https://secret.invalid/escalationWebhookUrl",
        lambda settings: settings.alerting.escalation.enabled, url=True),
    "loggingSnapshotAccessKey": SecretSetting(
        "access key of the S3 snapshot repository (logging.snapshot.type s3), kept in the Elasticsearch keystore",
        "snapshot-access-key-placeholder", _s3_snapshots),
    "loggingSnapshotSecretKey": SecretSetting(
        "secret key of the S3 snapshot repository (logging.snapshot.type s3), kept in the Elasticsearch keystore",
        "snapshot-secret-key-placeholder", _s3_snapshots),
    "thanosObjstoreAccessKey": SecretSetting(
        "access key of Thanos' S3 bucket (thanos.objstore.type s3), in the bucket config file the sidecars, the "
        "store gateway and the compactor mount from a Secret",
        "thanos-access-key-placeholder", _s3_thanos),
    "thanosObjstoreSecretKey": SecretSetting(
        "secret key of Thanos' S3 bucket (thanos.objstore.type s3), in the same file",
        "thanos-secret-key-placeholder", _s3_thanos),
}


@dataclass(frozen=True)
class NeededSecret:
    """A secret a stack needs: ``optional`` ones are read when set and never demanded."""

    key: str
    setting: SecretSetting
    optional: bool

    @property
    def doc(self) -> str:
        return self.setting.doc


def needed_secrets(settings: Any) -> list[NeededSecret]:
    """The secrets a stack with these (validated) settings needs, in the order of ``SECRETS``.

    A secret whose rule reads a setting that failed validation is left out: that setting's own
    message comes first, and whether the secret is needed cannot be told before it is fixed.
    """
    needed = []
    for key, spec in SECRETS.items():
        try:
            if spec.required_when(settings):
                optional = spec.optional(settings) if callable(spec.optional) else spec.optional
                needed.append(NeededSecret(key, spec, bool(optional)))
        except Unreadable:
            continue
    return needed


def snake(key: str) -> str:
    """A secret's attribute in ``Secrets``: ``postgresDsn`` is ``postgres_dsn``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


# Secret settings by their attribute names; values are secret Outputs, None where not needed.
Secrets = make_dataclass("Secrets", [(snake(key), Optional[pulumi.Output], None) for key in SECRETS], frozen=True)
