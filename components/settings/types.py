"""The kinds of value a setting can hold, each with its parser, its JSON Schema and what it allows.

Every parser takes the value as it arrives from Pulumi and returns the typed value, or raises an
``invalid_setting`` error whose text says what is allowed; the loader puts the key and the value in
front of it. Values arrive in two forms: top-level keys always as strings (``"true"``, ``"3"``), keys
inside an object as YAML gave them, so numbers and flags accept both.

The JSON Schemas describe the same values for editors; a few rules (ranges of a duration, a CPU
request above its limit) are left to the loader, so a value the schema accepts may still be refused.
"""

from __future__ import annotations

import re
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


def _optional(schema: dict) -> dict:
    return {"anyOf": [{"type": "null"}, {"const": ""}, schema]}


def _empty(value: Any) -> bool:
    return value is None or value == ""


# --------------------------------------------------------------------------- durations and sizes

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_DURATION_ALLOWED = "a Prometheus duration such as 30s, 5m, 36h or 15d"


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration string such as ``1d12h`` or ``30s``."""
    match = _DURATION_RE.match(text)
    if not text or not match:
        raise ValueError(text)
    return sum(int(g) * unit for g, unit in zip(match.groups(), _DURATION_UNITS) if g)


def _human_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"


def Duration(minimum: float = 1, maximum: float = 10 * 365 * 86400) -> Any:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise invalid(_DURATION_ALLOWED)
        try:
            seconds = duration_seconds(value)
        except ValueError:
            raise invalid(_DURATION_ALLOWED) from None
        if not minimum <= seconds <= maximum:
            raise invalid(f"{_DURATION_ALLOWED}, between {_human_seconds(minimum)} and {_human_seconds(maximum)}")
        return value

    return setting(str, parse, {"type": "string", "pattern": _DURATION_RE.pattern, "minLength": 2})


_PROM_SIZE_RE = re.compile(r"^(\d+)(B|KB|MB|GB|TB|PB)$")
_PROM_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}


def prometheus_size_bytes(text: str) -> int:
    match = _PROM_SIZE_RE.match(text)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * _PROM_SIZE_UNITS[match.group(2)]


def _prometheus_size(value: Any) -> str:
    if not isinstance(value, str) or not _PROM_SIZE_RE.match(value) or prometheus_size_bytes(value) == 0:
        raise invalid("a size in Prometheus units such as 500MB, 40GB or 2TB (B, KB, MB, GB, TB, PB)")
    return value


PrometheusSize = setting(str, _prometheus_size, {"type": "string", "pattern": _PROM_SIZE_RE.pattern})

_QUANTITY_RE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_QUANTITY_WITH_UNIT = r"^\d+(?:\.\d+)?(?:Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)$"
_QUANTITY_UNITS = {
    None: 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
}


def quantity_bytes(text: str) -> float:
    match = _QUANTITY_RE.match(text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _QUANTITY_UNITS[match.group(2)]


def _quantity(allowed: str, minimum_bytes: int) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        match = _QUANTITY_RE.match(value) if isinstance(value, str) else None
        if not match or match.group(2) is None or quantity_bytes(value) < minimum_bytes:
            raise invalid(allowed)
        return value

    return parse


StorageQuantity = setting(
    str, _quantity("a Kubernetes storage quantity with a unit, such as 512Mi, 20Gi or 1Ti", 2**20),
    {"type": "string", "pattern": _QUANTITY_WITH_UNIT})
MemoryQuantity = setting(
    str, _quantity("a Kubernetes memory quantity such as 64Mi, 512Mi or 2Gi", 4 * 2**20),
    {"type": "string", "pattern": _QUANTITY_WITH_UNIT})

_CPU_RE = re.compile(r"^(?:[1-9]\d*m|\d+(?:\.\d{1,3})?)$")
_CPU_SCHEMA = {"anyOf": [{"type": "string", "pattern": _CPU_RE.pattern}, {"type": "number", "exclusiveMinimum": 0}]}


def cpu_millicores(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def _cpu(value: Any) -> str:
    # YAML reads `cpu: 1` as a number; Kubernetes wants the quantity as a string.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _CPU_RE.match(value) or cpu_millicores(value) <= 0:
        raise invalid("a Kubernetes CPU quantity such as 50m, 500m or 2")
    return value


CpuQuantity = setting(str, _cpu, _CPU_SCHEMA)
OptionalCpuQuantity = setting(Optional[str], lambda v: None if _empty(v) else _cpu(v), _optional(_CPU_SCHEMA))


# --------------------------------------------------------------------------- numbers, flags, choices

_INTEGER_TEXT = r"^\s*-?\d+\s*$"


def WholeNumber(minimum: int, maximum: int) -> Any:
    allowed = f"a whole number from {minimum} to {maximum}"

    def parse(value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise invalid(allowed)
        return value

    return setting(int, parse, {"anyOf": [{"type": "integer", "minimum": minimum, "maximum": maximum},
                                          {"type": "string", "pattern": _INTEGER_TEXT}]})


Port = WholeNumber(0, 65535)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid("true or false")


Flag = setting(bool, _flag, {"anyOf": [{"type": "boolean"},
                                       {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"}]})


def Choice(*choices: str) -> Any:
    def parse(value: Any) -> str:
        if value not in choices:
            raise invalid("one of " + ", ".join(choices))
        return value

    return setting(str, parse, {"enum": list(choices)})


def _percentage(value: Any) -> Union[int, float]:
    allowed = "a percentage above 0 and at most 100, such as 100, 10 or 0.5"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise invalid(allowed) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise invalid(allowed)
    return value  # kept as written: 10 stays 10 in the rendered collector config, not 10.0


Percentage = setting(Union[int, float], _percentage, {
    "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 100},
              {"type": "string", "pattern": r"^\d+(\.\d+)?$"}]})


# --------------------------------------------------------------------------- names and addresses

def _matching(pattern: re.Pattern, allowed: str, optional: bool = False, strip: bool = False) -> Any:
    def parse(value: Any) -> Optional[str]:
        if optional and _empty(value):
            return None
        text = value.strip() if strip and isinstance(value, str) else value
        # fullmatch: Python's $ also matches before a final newline.
        if not isinstance(text, str) or not pattern.fullmatch(text):
            raise invalid(allowed)
        return text

    schema = {"type": "string", "pattern": pattern.pattern}
    return setting(Optional[str] if optional else str, parse, _optional(schema) if optional else schema)


_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_LABEL_ALLOWED = ("a DNS label: lower-case letters, digits and '-', at most 63 characters, "
                      "starting and ending with a letter or digit")
DnsLabel = _matching(_DNS_LABEL_RE, _DNS_LABEL_ALLOWED)
OptionalDnsLabel = _matching(_DNS_LABEL_RE, _DNS_LABEL_ALLOWED, optional=True)


def dns_label_problem(text: str) -> Optional[str]:
    """What is wrong with ``text`` as a DNS label, or None when it is one."""
    return None if _DNS_LABEL_RE.match(text) else _DNS_LABEL_ALLOWED


_DNS_SUBDOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OptionalObjectName = _matching(
    _DNS_SUBDOMAIN_RE, "a Kubernetes object name (a DNS subdomain): lower-case letters, digits, '-' and '.', at "
    "most 253 characters, starting and ending with a letter or digit, or empty", optional=True)

LabelName = _matching(re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$"),
                      "a Prometheus label name: letters, digits and '_', not starting with a digit")

_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
OptionalHostname = _matching(_HOSTNAME_RE, "a lower-case DNS host name such as grafana.example.org, or empty",
                             optional=True)

# 1 to 65535 as a pattern, so that the JSON Schema refuses what the loader refuses.
_PORT = r"(?:[1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])"
_HOSTPORT_RE = re.compile(rf"^[A-Za-z0-9.-]+:{_PORT}$")
HostPort = _matching(_HOSTPORT_RE, "host:port such as api.football-prediction.svc:8000 (port 1 to 65535)")
OptionalHostPort = _matching(
    _HOSTPORT_RE, "host:port such as smtp.example.org:587 (port 1 to 65535), or empty", optional=True)

_ENDPOINT_RE = re.compile(rf"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:{_PORT})?$")
OptionalEndpoint = _matching(
    _ENDPOINT_RE, "a host or host:port (port 1 to 65535) of an S3-compatible service, such as minio.storage.svc:9000, "
    "or empty (AWS S3)", optional=True)

_IPV4_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def _ipv4(value: Any) -> str:
    if not isinstance(value, str) or not _IPV4_RE.fullmatch(value) or any(int(p) > 255 for p in value.split(".")):
        raise invalid("an IPv4 address such as 127.0.0.1 (0.0.0.0 publishes on every interface)")
    return value


IPv4Address = setting(str, _ipv4, {"type": "string", "pattern": _IPV4_RE.pattern})

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Email = _matching(_EMAIL_RE, "an e-mail address such as platform-oncall@example.org")
OptionalEmail = _matching(_EMAIL_RE, "an e-mail address, or empty", optional=True)
SlackChannel = _matching(re.compile(r"^[#@][a-z0-9._-]{1,80}$"), "a Slack channel such as #platform-alerts")

_ES_CRON_RE = re.compile(r"^[0-9*?/,LW#A-Za-z-]+( [0-9*?/,LW#A-Za-z-]+){5,6}$")
ElasticsearchCron = _matching(
    _ES_CRON_RE, "an Elasticsearch cron expression with seconds first, such as '0 30 1 * * ?' (01:30 every day)",
    strip=True)

def _cron(value: Any) -> str:
    problem = cron.problem(value) if isinstance(value, str) else "not a string"
    if problem:
        raise invalid(f"{cron.ALLOWED} ({problem})")
    return value.strip()


# A Kubernetes CronJob's schedule (robfig/cron's standard parser, components/cron.py), UTC.
CronSchedule = setting(str, _cron, {"type": "string", "minLength": 1})

_URL_RE = re.compile(rf"^https?://[A-Za-z0-9.-]+(?::{_PORT})?(?:/[^\s]*)?$")
HttpUrl = _matching(
    _URL_RE, "an http(s) URL such as http://football-prediction-api.app.svc:8000/health (port 1 to 65535)")
# nginx expands variables in auth-url, and oauth2-proxy is often reached on the request's own host.
_AUTH_URL_RE = re.compile(rf"^https?://(?:[A-Za-z0-9.-]+|\$[a-z_]+)(?::{_PORT})?(?:[/?][^\s]*)?$")
OptionalAuthUrl = _matching(
    _AUTH_URL_RE, "an absolute http(s) URL such as https://oauth2-proxy.auth.svc/oauth2/auth or "
    "https://$host/oauth2/auth, or empty", optional=True)
OptionalHttpUrl = _matching(_URL_RE, "an http(s) URL such as https://prometheus.example.org (port 1 to 65535), "
                            "or empty", optional=True)
Host = _matching(re.compile(r"^[A-Za-z0-9.-]+$"), "a host name such as postgres.app.svc")


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
_IMAGE_RE = re.compile(rf"^(?P<repo>{_REPOSITORY})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_MOVING_TAGS = ("latest", "main", "master")
_IMAGE_ALLOWED = ("an image reference with registry, repository and an exact version tag or digest, "
                  "such as quay.io/prometheus/prometheus:v3.5.0 (not 'latest')")


def _image(value: Any) -> str:
    match = _IMAGE_RE.match(value) if isinstance(value, str) else None
    if not match or not (match.group("tag") or match.group("digest")) or match.group("tag") in _MOVING_TAGS:
        raise invalid(_IMAGE_ALLOWED)
    registry = value.split("/")[0]
    if "." not in registry and ":" not in registry:
        raise invalid(_IMAGE_ALLOWED)
    return value


ImageReference = setting(str, _image, {
    "type": "string",
    # The parser's rule for editors: a registry host first, then a tag or a digest, never a moving tag.
    "pattern": rf"^(?=[^/]*[.:]){_REPOSITORY}(?::{_TAG}(?:@{_DIGEST})?|@{_DIGEST})$",
    "not": {"pattern": ":(" + "|".join(_MOVING_TAGS) + ")$"},
})


# --------------------------------------------------------------------------- collections

def listed(allowed: str) -> BeforeValidator:
    """A list setting: empty or unset is the empty list, anything but a list is refused whole."""

    def check(value: Any) -> Any:
        if _empty(value):
            return []
        if not isinstance(value, (list, tuple)):
            raise invalid(allowed)
        return value

    return BeforeValidator(check)


def mapping(allowed: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if _empty(value):
            return {}
        if not isinstance(value, dict):
            raise invalid(allowed)
        return value

    return BeforeValidator(check)
