"""Run the Pulumi program for a stack without the Pulumi CLI or a cluster.

Pulumi's own mock runtime stands in for the engine: every resource the program
declares is recorded with its inputs, exactly as ``pulumi up`` would send them.
The render command and the test suite both use this, so what reviewers read is
what the tests check.

Secrets never reach this runner: every secret setting is replaced by an
obviously fake placeholder (``SECRETS[...].placeholder``) and generated
passwords by a fixed marker, so nothing it writes can hold a real secret.
"""

from __future__ import annotations

import atexit
import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from components.settings import PROJECT, SECRETS

ROOT = Path(__file__).resolve().parent.parent
LAST_RECORDER: "Optional[_Recorder]" = None  # what the latest run declared, even if it failed
GENERATED_SECRET = "generated-secret-placeholder"
# pulumi-tls outputs under mocks: PEM-shaped placeholders; private keys carry GENERATED_SECRET so
# the secrets checks see where a key would land.
PLACEHOLDER_KEY_PEM = f"-----BEGIN PRIVATE KEY-----\n{GENERATED_SECRET}\n-----END PRIVATE KEY-----\n"


def placeholder_pem(kind: str, name: str) -> str:
    return f"-----BEGIN {kind}-----\nplaceholder-{name}\n-----END {kind}-----\n"


def mock_id(resource_name: str) -> str:
    """The id the mock runtime gives a resource (what a reference to it, e.g. a container's
    network namespace, reads)."""
    return f"{resource_name}-id"


@dataclass
class Recorded:
    type: str
    name: str
    inputs: dict
    custom: bool
    parent_type: str = ""  # type token of the parent ("pulumi:pulumi:Stack" at the top)
    protect: bool = False
    retain_on_delete: bool = False
    urn: str = ""
    secret_inputs: frozenset = frozenset()  # top-level inputs that carry a secret value

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


@dataclass
class RunResult:
    stack: str
    resources: list[Recorded]
    outputs: dict[str, Any]
    secret_outputs: set[str]

    def kubernetes_objects(self) -> list[dict]:
        objects = [kubernetes_object(r) for r in self.resources if r.type.startswith("kubernetes:")]
        return sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"]))

    def containers(self) -> list[Recorded]:
        """Docker containers, when the stack runs on a Docker host."""
        return sorted((r for r in self.resources if r.type == "docker:index/container:Container"),
                      key=lambda r: r.name)

    def container(self, name: str) -> Recorded:
        found = [c for c in self.containers() if c.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one container {name}, found {len(found)}")
        return found[0]

    def find(self, kind: str, name: Optional[str] = None) -> list[dict]:
        return [o for o in self.kubernetes_objects()
                if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]

    def one(self, kind: str, name: str) -> dict:
        found = self.find(kind, name)
        if len(found) != 1:
            raise LookupError(f"expected one {kind} {name}, found {len(found)}")
        return found[0]


class _Recorder(pulumi.runtime.Mocks):
    """Records what the program declares; resource options come from the monitor below."""

    def __init__(self) -> None:
        self.resources: list[Recorded] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = _unwrap_secrets(copy.deepcopy(args.inputs))
        state = dict(inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = GENERATED_SECRET
        elif args.typ == "tls:index/privateKey:PrivateKey":
            state.update(privateKeyPem=PLACEHOLDER_KEY_PEM, privateKeyPemPkcs8=PLACEHOLDER_KEY_PEM,
                         publicKeyPem=placeholder_pem("PUBLIC KEY", args.name))
        elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            state["certPem"] = placeholder_pem("CERTIFICATE", args.name)
        elif args.typ == "tls:index/certRequest:CertRequest":
            state["certRequestPem"] = placeholder_pem("CERTIFICATE REQUEST", args.name)
        return [mock_id(args.name), state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


# The mock monitor runs in reused worker threads that each make an event loop;
# closing those at exit (not at interpreter teardown) keeps shutdown quiet.
_WORKER_LOOPS: set = set()


@atexit.register
def _close_worker_loops() -> None:
    for loop in list(_WORKER_LOOPS):
        if not loop.is_running() and not loop.is_closed():
            loop.close()


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """Sees each registration request whole: parent, protect and retainOnDelete included."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__(recorder)
        self.recorder = recorder

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        _WORKER_LOOPS.add(_ensure_event_loop())
        if request.type == "pulumi:pulumi:Stack":
            return response
        wire = rpc.deserialize_properties(request.object)
        secret_inputs = frozenset(k for k, v in wire.items() if _holds_secret(v))
        inputs = _unwrap_secrets(wire)
        parent_type = request.parent.split("::")[-2].split("$")[-1] if request.parent else ""
        self.recorder.resources.append(Recorded(
            request.type, request.name, copy.deepcopy(dict(inputs)), request.custom, parent_type,
            request.protect, request.retainOnDelete, response.urn, secret_inputs))
        return response


_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a serialized secret value
_SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"


def _holds_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get(_SECRET_SIG) == _SECRET_SIG_VALUE or any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def _unwrap_secrets(value: Any) -> Any:
    """Inputs as the program gave them: secrets unwrapped from their wire form, whole numbers whole."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == _SECRET_SIG_VALUE:
            return _unwrap_secrets(value.get("value"))
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format carries every number as a double
    return value


def deep_merge(base: Any, override: Any) -> Any:
    """Objects merge key by key; anything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


class StackFileLoader(yaml.SafeLoader):
    """A stack file's scalars as the Pulumi CLI reads them (Go's yaml.v3) and hands them to the program.

    PyYAML follows YAML 1.1, the CLI does not: ``yes``/``on`` stay text, ``12:30`` is not a number
    of minutes, ``1e1``, ``0o17`` and ``0x1F`` are numbers, a whole float reaches the program as an
    integer (``3.0`` arrives as 3), and a date arrives in Go's time format (``2026-01-01 00:00:00
    +0000 UTC``; a timestamp with a time of day stays as written here). tests/test_pulumi_project.py
    holds this to the real CLI's ``pulumi config --json`` over a corpus of such values.
    """


StackFileLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                           "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_V3_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_V3_INT = re.compile(r"^[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$")
_V3_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$")
StackFileLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _V3_BOOL, list("tTfF"))
StackFileLoader.add_implicit_resolver("tag:yaml.org,2002:int", _V3_INT, list("-+0123456789"))
StackFileLoader.add_implicit_resolver("tag:yaml.org,2002:float", _V3_FLOAT, list("-+0123456789."))


def _v3_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
    # strconv.ParseInt with base 0, as yaml.v3: 0b, 0o and 0x prefixes, and a leading 0 for octal.
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return sign * int(digits, 8)
    return sign * int(digits, 0)


def _v3_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = float(loader.construct_scalar(node).replace("_", ""))
    # The CLI passes objects to the program as JSON from Go values: a whole float64 prints as 3.
    return int(value) if value.is_integer() else value


_V3_DATE = re.compile(r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$")
StackFileLoader.add_implicit_resolver("tag:yaml.org,2002:timestamp", _V3_DATE, list("0123456789"))


def _v3_date(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    year, month, day = _V3_DATE.match(loader.construct_scalar(node)).groups()
    return f"{int(year):04d}-{int(month):02d}-{int(day):02d} 00:00:00 +0000 UTC"


StackFileLoader.add_constructor("tag:yaml.org,2002:timestamp", _v3_date)
StackFileLoader.add_constructor("tag:yaml.org,2002:int", _v3_int)
StackFileLoader.add_constructor("tag:yaml.org,2002:float", _v3_float)


def read_stack_file(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=StackFileLoader) or {}  # noqa: S506 (a SafeLoader)


def file_config(stack: str, overrides: Optional[dict[str, Any]] = None) -> tuple[dict[str, str], list[str]]:
    """Config of Pulumi.<stack>.yaml as the engine passes it to the program: every value a string
    (objects and lists JSON-encoded), and the keys stored encrypted, whose values are left as the
    file has them (the ciphertext).

    ``overrides`` (short or full keys) merge into the file's sections, so
    ``{"prometheus": {"scrapeInterval": "15s"}}`` changes that one key and keeps the stack's
    replicas and retention; lists are replaced whole, and a section overridden with None is
    removed (back to the defaults in code).
    """
    path = ROOT / f"Pulumi.{stack}.yaml"
    document = read_stack_file(path) if path.exists() else {}
    values = {(k if ":" in k else f"{PROJECT}:{k}"): v for k, v in ((document or {}).get("config") or {}).items()}
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            values.pop(full, None)
        else:
            values[full] = deep_merge(values[full], value) if full in values else copy.deepcopy(value)
    return engine_config(values)


def engine_config(values: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A stack file's ``config:`` as the engine passes it: every value a string (objects and lists
    JSON-encoded), and the keys stored encrypted, whose values are the ciphertext."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for full, value in values.items():
        if isinstance(value, dict) and "secure" in value:
            secret_keys.append(full)
            value = value["secure"]
        # A key with nothing after it: the CLI passes "" (and warns that it will pass null one day).
        config[full] = value if isinstance(value, str) else "" if value is None else json.dumps(value)
    return config, secret_keys


def stack_config(stack: str, overrides: Optional[dict[str, Any]] = None, *,
                 secrets: Optional[Any] = None) -> tuple[dict[str, str], list[str]]:
    """Config of Pulumi.<stack>.yaml as the engine would pass it, secrets replaced by placeholders.

    ``overrides`` as in ``file_config``. Every secret the file holds becomes its placeholder, and so
    does every other secret setting (as if set with `pulumi config set --secret`), unless
    ``secrets`` names the ones that are set: then only those.
    """
    config, secret_keys = file_config(stack, overrides)
    for full in list(config):
        short = full.split(":", 1)[1]
        if full in secret_keys or short in SECRETS:
            if full not in secret_keys:
                secret_keys.append(full)
            config[full] = SECRETS[short].placeholder if short in SECRETS else "secret-placeholder"
    # The secrets a stack sets outside its file (pulumi config set --secret).
    for short, spec in SECRETS.items():
        full = f"{PROJECT}:{short}"
        if full not in config and (secrets is None or short in secrets):
            config[full] = spec.placeholder
            secret_keys.append(full)
    return config, secret_keys


def run(stack: str, overrides: Optional[dict[str, Any]] = None, *, config: Optional[dict[str, str]] = None,
        secret_keys: Optional[list[str]] = None) -> RunResult:
    """Run __main__'s program for ``stack`` under mocks and return what it declared."""
    from components.settings import load_settings
    from components.stack import build

    if config is None:
        config, secret_keys = stack_config(stack, overrides)
    global LAST_RECORDER
    recorder = LAST_RECORDER = _Recorder()
    pulumi_settings.reset_options(project=PROJECT, stack=stack)
    pulumi_mocks.set_mocks(recorder, project=PROJECT, stack=stack, preview=False,
                           monitor=_RecordingMonitor(recorder))
    pulumi.runtime.set_all_config(config, secret_keys or [])
    outputs: dict[str, Any] = {}

    def program() -> None:
        outputs.update(build(load_settings(stack)))

    _sync_await(run_pulumi_func(program))
    resolved, secret = _sync_await(_resolve_outputs(outputs))
    return RunResult(stack, recorder.resources, resolved, secret)


async def _resolve_outputs(outputs: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    resolved, secret = {}, set()
    for key, value in outputs.items():
        output = pulumi.Output.from_input(value)
        resolved[key] = await output.future()
        if await output.is_secret():
            secret.add(key)
    return resolved, secret


def kubernetes_object(resource: Recorded) -> dict:
    """The manifest a pulumi-kubernetes resource sends to the API server."""
    _, api_version, kind = resource.type.split(":")  # e.g. kubernetes:apps/v1:StatefulSet
    obj = {"apiVersion": "v1" if api_version == "core/v1" else api_version, "kind": kind}
    obj.update({k: v for k, v in resource.inputs.items() if k not in ("apiVersion", "kind")})
    return obj
