"""Typed, validated settings for one stack.

Every per-environment knob is a field of a pydantic model in ``models`` (type, default and
description, once); ``types`` holds the kinds of value they take, ``loading`` reads a stack's
configuration into a frozen ``Settings`` or refuses it with one message listing every problem, and
``reference`` turns the models into docs/settings.md, the JSON Schema of the stack files and the
config declarations of Pulumi.yaml.

Secrets (receiver URLs, database DSNs) are never parsed into plain values: they stay
``pulumi.Output`` objects marked secret. The names below are what the rest of the program uses.
"""

from components.settings.images import DEFAULT_IMAGES
from components.settings.loading import SettingsError, load_settings, read_config
from components.settings.models import (
    PROJECT, REPORT_APP, AlertingSettings, DockerSettings, EmailSettings, IngressSettings, LoggingSettings,
    ProbeTarget, Resources, Settings, StackConfig, StaticTarget, TeamContact, Timings)
from components.settings.reference import reference
from components.settings.secrets import SECRETS, NeededSecret, needed_secrets
from components.settings.types import duration_seconds, quantity_bytes
