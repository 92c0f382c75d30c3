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

import asyncio
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from .settings import PROJECT, SECRETS

ROOT = Path(__file__).resolve().parent.parent
GENERATED_SECRET = "generated-secret-placeholder"


@dataclass
class Recorded:
    type: str
    name: str
    inputs: dict
    custom: bool
    options: dict = field(default_factory=dict)

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
        return [kubernetes_object(r) for r in self.resources if r.type.startswith("kubernetes:") and
                r.type != "pulumi:providers:kubernetes"]

    def find(self, kind: str, name: Optional[str] = None) -> list[dict]:
        return [o for o in self.kubernetes_objects()
                if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]

    def one(self, kind: str, name: str) -> dict:
        found = self.find(kind, name)
        if len(found) != 1:
            raise LookupError(f"expected one {kind} {name}, found {len(found)}")
        return found[0]


class _Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Recorded] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = copy.deepcopy(args.inputs)
        self.resources.append(Recorded(args.typ, args.name, inputs, bool(args.custom)))
        state = dict(inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = GENERATED_SECRET
        return [f"{args.name}-id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def stack_config(stack: str, overrides: Optional[dict[str, Any]] = None) -> tuple[dict[str, str], list[str]]:
    """Config of Pulumi.<stack>.yaml as the engine would pass it, secrets replaced by placeholders."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text()) if path.exists() else {}
    values = dict((document or {}).get("config") or {})
    values.update(overrides or {})
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in values.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        short = full.split(":", 1)[1]
        if isinstance(value, dict) and "secure" in value or short in SECRETS:
            secret_keys.append(full)
            value = SECRETS[short].placeholder if short in SECRETS else "secret-placeholder"
        config[full] = value if isinstance(value, str) else json.dumps(value)
    # Required secrets that a stack sets outside its file (pulumi config set --secret).
    for short, spec in SECRETS.items():
        full = f"{PROJECT}:{short}"
        if full not in config:
            config[full] = spec.placeholder
            secret_keys.append(full)
    return config, secret_keys


def run(stack: str, overrides: Optional[dict[str, Any]] = None, *, config: Optional[dict[str, str]] = None,
        secret_keys: Optional[list[str]] = None) -> RunResult:
    """Run __main__'s program for ``stack`` under mocks and return what it declared."""
    from .settings import load_settings
    from .stack import build

    if config is None:
        config, secret_keys = stack_config(stack, overrides)
    recorder = _Recorder()
    pulumi_settings.reset_options(project=PROJECT, stack=stack)
    pulumi_mocks.set_mocks(recorder, project=PROJECT, stack=stack, preview=False)
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
