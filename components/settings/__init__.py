"""Typed, validated settings for one stack.

Every per-environment knob is a field of a pydantic model in ``models`` (type, default and
description, once); ``types`` holds the kinds of value they take, ``loading`` reads a stack's
configuration into a frozen ``Settings`` or refuses it with one message listing every problem, and
``reference`` turns the models into docs/settings.md, the JSON Schema of the stack files and the
config declarations of Pulumi.yaml.

Secrets (receiver URLs, database DSNs) are never parsed into plain values: they stay
``pulumi.Output`` objects marked secret.
"""

from components.settings.images import DEFAULT_IMAGES
from components.settings.loading import ReadConfig, SettingsError, known_keys, load_settings, read_config
from components.settings.models import (
    PROJECT, REPORT_APP, TEAMS, AlertingSettings, AlertmanagerSettings, DockerSettings, EmailSettings, ExporterSettings,
    GrafanaSettings, IngressSettings, LoggingSettings, ProbeSettings, ProbeTarget, PrometheusSettings, Resources,
    Settings, SloSettings, SnapshotSettings, StackConfig, StaticTarget, TeamContact, Timings, TracingSettings)
from components.settings.reference import reference
from components.settings.secrets import SECRETS, NeededSecret, Secrets, SecretSetting, needed_secrets
from components.settings.types import cpu_millicores, duration_seconds, prometheus_size_bytes, quantity_bytes

__all__ = [
    "DEFAULT_IMAGES", "PROJECT", "REPORT_APP", "SECRETS", "TEAMS", "AlertingSettings", "AlertmanagerSettings", "DockerSettings",
    "EmailSettings", "ExporterSettings", "GrafanaSettings", "IngressSettings", "LoggingSettings", "NeededSecret",
    "ProbeSettings", "ProbeTarget", "PrometheusSettings", "ReadConfig", "Resources", "SecretSetting", "Secrets",
    "Settings", "SettingsError", "SloSettings",
    "SnapshotSettings", "StackConfig", "StaticTarget", "TeamContact", "Timings", "TracingSettings",
    "cpu_millicores", "duration_seconds", "known_keys", "load_settings", "needed_secrets", "read_config",
    "prometheus_size_bytes", "quantity_bytes", "reference",
]
