"""Secret settings: never parsed into plain values, never in the stack file in plain text.

The loader reads each one with ``pulumi.Config.require_secret``, so it stays a secret Output all the
way into the resources, and only when the settings need it: a URL for a receiver that is off is
neither demanded nor read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import pulumi


@dataclass(frozen=True)
class SecretSetting:
    doc: str
    placeholder: str  # a valid, obviously fake value for offline renders
    required_when: Callable[[Any], bool] = lambda settings: True  # given the validated StackConfig
    optional: bool = False  # read when set, never demanded


def _s3_snapshots(settings: Any) -> bool:
    snapshot = settings.logging.snapshot
    return settings.logging.enabled and snapshot.enabled and snapshot.type == "s3"


SECRETS: dict[str, SecretSetting] = {
    "alertmanagerWebhookUrl": SecretSetting(
        "URL of the webhook receiver that Alertmanager's default route notifies (mounted as a file, read through url_file)",
        "https://secret.invalid/alertmanagerWebhookUrl"),
    "postgresDsn": SecretSetting(
        "PostgreSQL connection string for postgres-exporter, e.g. "
        "postgresql://monitor:PASSWORD@postgres.app.svc:5432/football?sslmode=require",
        "postgresql://monitor:secret-placeholder@postgres.invalid:5432/postgres?sslmode=disable",
        lambda settings: settings.exporters.postgres_enabled),
    "redisUrl": SecretSetting(
        "Redis URL for redis-exporter, e.g. redis://:PASSWORD@redis.app.svc:6379",
        "redis://:secret-placeholder@redis.invalid:6379",
        lambda settings: settings.exporters.redis_enabled),
    "slackApiUrl": SecretSetting(
        "Slack incoming-webhook URL (mounted as a file, read through api_url_file)",
        "https://secret.invalid/slackApiUrl",
        lambda settings: settings.alerting.slack),
    "smtpPassword": SecretSetting(
        "password of alerting.email.username (mounted as a file, read through auth_password_file)",
        "smtp-password-placeholder",
        lambda settings: settings.alerting.email.enabled and bool(settings.alerting.email.username)),
    "dingtalkWebhookUrl": SecretSetting(
        "DingTalk robot URL with its access_token, held by the DingTalk relay",
        "https://secret.invalid/dingtalkWebhookUrl?access_token=placeholder",
        lambda settings: settings.alerting.dingtalk),
    "dingtalkSecret": SecretSetting(
        "DingTalk robot signing secret (when the robot has signing on)",
        "SECplaceholder",
        lambda settings: settings.alerting.dingtalk, optional=True),
    "heartbeatUrl": SecretSetting(
        "dead man's switch URL that expects the Watchdog every few minutes",
        "https://secret.invalid/heartbeatUrl",
        lambda settings: settings.alerting.heartbeat),
    "escalationWebhookUrl": SecretSetting(
        "on-call paging webhook that receives every critical alert",
        "https://secret.invalid/escalationWebhookUrl",
        lambda settings: settings.alerting.escalation),
    "loggingSnapshotAccessKey": SecretSetting(
        "access key of the S3 snapshot repository (logging.snapshot.type s3), kept in the Elasticsearch keystore",
        "snapshot-access-key-placeholder", _s3_snapshots),
    "loggingSnapshotSecretKey": SecretSetting(
        "secret key of the S3 snapshot repository (logging.snapshot.type s3), kept in the Elasticsearch keystore",
        "snapshot-secret-key-placeholder", _s3_snapshots),
}


@dataclass(frozen=True)
class Secrets:
    """Secret settings; values are secret Outputs, None where not needed."""
    alertmanager_webhook_url: pulumi.Output
    postgres_dsn: Optional[pulumi.Output] = None
    redis_url: Optional[pulumi.Output] = None
    slack_api_url: Optional[pulumi.Output] = None
    smtp_password: Optional[pulumi.Output] = None
    dingtalk_webhook_url: Optional[pulumi.Output] = None
    dingtalk_secret: Optional[pulumi.Output] = None
    heartbeat_url: Optional[pulumi.Output] = None
    escalation_webhook_url: Optional[pulumi.Output] = None
    logging_snapshot_access_key: Optional[pulumi.Output] = None
    logging_snapshot_secret_key: Optional[pulumi.Output] = None
