"""The kinds of value a setting can hold, each with its parser, its JSON Schema and what it allows.

Every parser takes the value as it arrives from Pulumi and returns the typed value, or raises an
``invalid_setting`` error whose text says what is allowed; the loader puts the key and the value in
front of it. Values arrive in two forms: top-level keys always as strings (``"true"``, ``"3"``), keys
inside an object as YAML gave them, so numbers and flags accept both.

The JSON Schemas describe the same values for editors; a few rules (ranges of a duration, a CPU
request above its limit) are left to the loader, so a value the schema accepts may still be refused.
Most kinds are a pattern (``text``): one regular expression serves the parser and the schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional, Union

from pydantic import BeforeValidator, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from components import cron

INVALID = "invalid_setting"


class Unreadable(Exception):
    """Raised on reading a setting that failed validation: a rule that needs it cannot be judged."""


def invalid(allowed: str) -> PydanticCustomError:
    return PydanticCustomError(INVALID, "{allowed}", {"allowed": allowed})


def setting(python_type: Any, parse: Callable[[Any], Any], schema: dict) -> Any:
    """A value type: ``parse`` alone decides what is accepted (no coercion by pydantic)."""
    return Annotated[python_type, PlainValidator(parse), WithJsonSchema(schema)]


def _empty(value: Any) -> bool:
    return value is None or value == ""


def text(pattern: str, allowed: str, check: Callable[[str], bool] = lambda value: True, *, optional: bool = False,
         strip: bool = False, schema: Optional[dict] = None) -> Any:
    """A string that ``pattern`` matches whole and ``check`` accepts; ``optional``: empty or unset is None.
    The pattern is the JSON Schema's too, unless ``schema`` says more."""
    compiled = re.compile(pattern)

    def parse(value: Any) -> Optional[str]:
        if optional and _empty(value):
            return None
        value = value.strip() if strip and isinstance(value, str) else value
        # fullmatch: Python's $ also matches before a final newline.
        if not isinstance(value, str) or not compiled.fullmatch(value) or not check(value):
            raise invalid(allowed)
        return value

    schema = schema or {"type": "string", "pattern": pattern}
    if optional:
        return setting(Optional[str], parse, {"anyOf": [{"type": "null"}, {"const": ""}, schema]})
    return setting(str, parse, schema)


# --------------------------------------------------------------------------- durations and sizes

_DURATION = r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_DURATION_ALLOWED = "a Prometheus duration such as 30s, 5m, 36h or 15d"
# Go programs that read a duration flag with kingpin's Duration (str2duration) know w and d, not y.
_DURATION_WITHOUT_YEARS = _DURATION.replace(r"(?:(\d+)y)?", "")


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration string such as ``1d12h`` or ``30s``."""
    match = re.fullmatch(_DURATION, text)
    if not text or not match:
        raise ValueError(text)
    return sum(int(g) * unit for g, unit in zip(match.groups(), _DURATION_UNITS) if g)


def _human_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class DurationRange:
    """What a duration setting takes, for the checks that start the programs with its edges."""

    minimum: float
    maximum: float
    years: bool


def Duration(minimum: float = 1, maximum: float = 10 * 365 * 86400, *, years: bool = True) -> Any:
    """A Prometheus duration within [minimum, maximum] seconds; ``years=False`` for a value that ends up
    in a flag parsed by str2duration, which has no y."""
    pattern = _DURATION if years else _DURATION_WITHOUT_YEARS
    allowed = _DURATION_ALLOWED if years else f"{_DURATION_ALLOWED} (in weeks, days or smaller units: no y)"

    def parse(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise invalid(allowed)
        try:
            seconds = duration_seconds(value)
        except ValueError:
            raise invalid(allowed) from None
        if not minimum <= seconds <= maximum:
            raise invalid(f"{allowed}, between {_human_seconds(minimum)} and {_human_seconds(maximum)}")
        return value

    return Annotated[setting(str, parse, {"type": "string", "pattern": pattern, "minLength": 2}),
                     DurationRange(minimum, maximum, years)]


_PROM_SIZE = r"^(\d+)(B|KB|MB|GB|TB|PB)$"
_PROM_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}


def prometheus_size_bytes(text: str) -> int:
    match = re.fullmatch(_PROM_SIZE, text)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * _PROM_SIZE_UNITS[match.group(2)]


PrometheusSize = text(_PROM_SIZE, "a size in Prometheus units such as 500MB, 40GB or 2TB (B, KB, MB, GB, TB, PB)",
                      lambda value: prometheus_size_bytes(value) > 0)

_QUANTITY_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
                   "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_QUANTITY_WITH_UNIT = r"^\d+(?:\.\d+)?(?:Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)$"


def quantity_bytes(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _QUANTITY_UNITS[match.group(2) or ""]


StorageQuantity = text(_QUANTITY_WITH_UNIT, "a Kubernetes storage quantity with a unit, such as 512Mi, 20Gi or 1Ti",
                       lambda value: quantity_bytes(value) >= 2**20)
MemoryQuantity = text(_QUANTITY_WITH_UNIT, "a Kubernetes memory quantity such as 64Mi, 512Mi or 2Gi",
                      lambda value: quantity_bytes(value) >= 4 * 2**20)


def cpu_millicores(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def _cpu(optional: bool) -> Any:
    pattern = r"^(?:[1-9]\d*m|\d+(?:\.\d{1,3})?)$"
    kind = text(pattern, "a Kubernetes CPU quantity such as 50m, 500m or 2", lambda value: cpu_millicores(value) > 0,
                optional=optional, schema={"anyOf": [{"type": "string", "pattern": pattern},
                                                     {"type": "number", "exclusiveMinimum": 0}]})
    # YAML reads `cpu: 1` as a number; Kubernetes wants the quantity as a string.
    return Annotated[kind, BeforeValidator(
        lambda value: str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value)]


CpuQuantity, OptionalCpuQuantity = _cpu(optional=False), _cpu(optional=True)


# --------------------------------------------------------------------------- numbers, flags, choices

def WholeNumber(minimum: int, maximum: int) -> Any:
    allowed = f"a whole number from {minimum} to {maximum}"

    def parse(value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise invalid(allowed)
        return value

    return setting(int, parse, {"anyOf": [{"type": "integer", "minimum": minimum, "maximum": maximum},
                                          {"type": "string", "pattern": r"^\s*-?\d+\s*$"}]})


Port = WholeNumber(0, 65535)


def _flag(value: Any) -> bool:
    # As Pulumi's own check of a declared boolean (workspace.ValidateConfigValue): a YAML boolean, or
    # the text true or false in lower case.
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise invalid("true or false")


Flag = setting(bool, _flag, {"anyOf": [{"type": "boolean"}, {"enum": ["true", "false"]}]})


def Choice(*choices: str, allowed: str = "one of ") -> Any:
    """One of ``choices``, refused with ``allowed`` and the list of them."""

    def parse(value: Any) -> str:
        if value not in choices:
            raise invalid(allowed + ", ".join(choices))
        return value

    return setting(str, parse, {"enum": list(choices)})


_PERCENTAGE = r"^\d+(\.\d+)?$"


def _percentage(value: Any) -> Union[int, float]:
    allowed = "a percentage above 0 and at most 100, such as 100, 10 or 0.5"
    if isinstance(value, str):
        # As the schema's pattern: float() would also take "1e1", " 10" or "1_0", which editors flag.
        if not re.fullmatch(_PERCENTAGE, value):
            raise invalid(allowed)
        value = float(value) if "." in value else int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise invalid(allowed)
    return value  # kept as written: 10 stays 10 in the rendered collector config, not 10.0


Percentage = setting(Union[int, float], _percentage, {
    "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 100},
              {"type": "string", "pattern": _PERCENTAGE}]})


# --------------------------------------------------------------------------- names and addresses

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_LABEL_ALLOWED = ("a DNS label: lower-case letters, digits and '-', at most 63 characters, "
                      "starting and ending with a letter or digit")
DnsLabel = text(_DNS_LABEL, _DNS_LABEL_ALLOWED)
OptionalDnsLabel = text(_DNS_LABEL, _DNS_LABEL_ALLOWED, optional=True)


def dns_label_problem(value: str) -> Optional[str]:
    """What is wrong with ``value`` as a DNS label, or None when it is one."""
    return None if re.fullmatch(_DNS_LABEL, value) else _DNS_LABEL_ALLOWED


OptionalObjectName = text(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "a Kubernetes object name (a DNS subdomain): lower-case letters, digits, '-' and '.', at most 253 characters, "
    "starting and ending with a letter or digit, or empty", optional=True)
LabelName = text(r"^[a-zA-Z_][a-zA-Z0-9_]*$", "a Prometheus label name: letters, digits and '_', not starting with a digit")
OptionalHostname = text(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$",
                        "a lower-case DNS host name such as grafana.example.org, or empty", optional=True)

# 1 to 65535 as a pattern, so that the JSON Schema refuses what the loader refuses.
_PORT = r"(?:[1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])"
_HOSTPORT = rf"^[A-Za-z0-9.-]+:{_PORT}$"
HostPort = text(_HOSTPORT, "host:port such as api.football-prediction.svc:8000 (port 1 to 65535)")
OptionalHostPort = text(_HOSTPORT, "host:port such as smtp.example.org:587 (port 1 to 65535), or empty",
                        optional=True)
OptionalEndpoint = text(
    rf"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:{_PORT})?$", "a host or host:port (port 1 to 65535) of an S3-compatible "
    "service, such as minio.storage.svc:9000, or empty (AWS S3)", optional=True)
IPv4Address = text(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$",
                   "an IPv4 address such as 127.0.0.1 (0.0.0.0 publishes on every interface)",
                   lambda value: all(int(part) <= 255 for part in value.split(".")))

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
Email = text(_EMAIL, "an e-mail address such as platform-oncall@example.org")
OptionalEmail = text(_EMAIL, "an e-mail address, or empty", optional=True)
SlackChannel = text(r"^[#@][a-z0-9._-]{1,80}$", "a Slack channel such as #platform-alerts")
_ES_CRON = r"[0-9*?/,LW#A-Za-z-]+( [0-9*?/,LW#A-Za-z-]+){5,6}"
ElasticsearchCron = text(
    f"^{_ES_CRON}$", "an Elasticsearch cron expression with seconds first, such as '0 30 1 * * ?' (01:30 every day)",
    strip=True, schema={"type": "string", "pattern": rf"^\s*{_ES_CRON}\s*$"})


def _cron(value: Any) -> str:
    problem = cron.problem(value) if isinstance(value, str) else "not a string"
    if problem:
        raise invalid(f"{cron.ALLOWED} ({problem})")
    return value.strip()


# A Kubernetes CronJob's schedule (robfig/cron's standard parser, components/cron.py), UTC.
CronSchedule = setting(str, _cron, {"type": "string", "minLength": 1})

_URL = rf"^https?://[A-Za-z0-9.-]+(?::{_PORT})?(?:/[^\s]*)?$"
HttpUrl = text(_URL, "an http(s) URL such as http://football-prediction-api.app.svc:8000/health (port 1 to 65535)")
OptionalHttpUrl = text(_URL, "an http(s) URL such as https://prometheus.example.org (port 1 to 65535), or empty",
                       optional=True)
# nginx expands variables in auth-url, and oauth2-proxy is often reached on the request's own host.
OptionalAuthUrl = text(
    rf"^https?://(?:[A-Za-z0-9.-]+|\$[a-z_]+)(?::{_PORT})?(?:[/?][^\s]*)?$", "an absolute http(s) URL such as "
    "https://oauth2-proxy.auth.svc/oauth2/auth or https://$host/oauth2/auth, or empty", optional=True)
Host = text(r"^[A-Za-z0-9.-]+$", "a host name such as postgres.app.svc")


def _optional_text(value: Any) -> Optional[str]:
    if _empty(value):
        return None
    if not isinstance(value, str):
        raise invalid("a string")
    return value


OptionalText = setting(Optional[str], _optional_text, {"type": ["string", "null"]})


# --------------------------------------------------------------------------- images

_REPOSITORY = r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
_MOVING_TAGS = ("latest", "main", "master")


def _pinned(value: str) -> bool:
    tag, digest = re.fullmatch(rf"{_REPOSITORY}(?::({_TAG}))?(?:@({_DIGEST}))?", value).groups()
    registry = value.split("/")[0]
    return bool(tag or digest) and tag not in _MOVING_TAGS and ("." in registry or ":" in registry)


_IMAGE = rf"^{_REPOSITORY}(?::{_TAG})?(?:@{_DIGEST})?$"
_IMAGE_ALLOWED = ("an image reference with registry, repository and an exact version tag or digest, such as "
                  "quay.io/prometheus/prometheus:v3.5.0 (not 'latest')")
_IMAGE_SCHEMA = {
    "type": "string",
    # The parser's rule for editors: a registry host first, then a tag or a digest, never a moving tag.
    "pattern": rf"^(?=[^/]*[.:]){_REPOSITORY}(?::{_TAG}(?:@{_DIGEST})?|@{_DIGEST})$",
    "not": {"pattern": ":(" + "|".join(_MOVING_TAGS) + f")(@{_DIGEST})?$"},
}
ImageReference = text(_IMAGE, _IMAGE_ALLOWED, _pinned, schema=_IMAGE_SCHEMA)
OptionalImageReference = text(_IMAGE, _IMAGE_ALLOWED + ", or empty", _pinned, optional=True, schema=_IMAGE_SCHEMA)


# --------------------------------------------------------------------------- collections

def collection(kind: type, allowed: str) -> BeforeValidator:
    """A list (``kind`` tuple) or a map (``kind`` dict) setting: empty or unset is an empty one, anything
    else than one is refused whole."""

    def check(value: Any) -> Any:
        if _empty(value):
            return kind()
        if not isinstance(value, (list, tuple) if kind is tuple else kind):
            raise invalid(allowed)
        return value

    return BeforeValidator(check)
