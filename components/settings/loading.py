"""Reading a stack's configuration into ``Settings``, or one report of everything wrong with it.

Nothing is declared in Pulumi before this has succeeded, so bad input never leaves a half-applied
stack. Each problem is one line that names the key as the stack file spells it
(``football-monitoring:prometheus.retention``), the value, and what is allowed.
"""

from __future__ import annotations

import collections.abc
import difflib
import json
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Optional

import pulumi
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from components.settings.models import (
    PROJECT, Section, Settings, StackConfig, fields_by_alias, keys_of, section_type)
from components.settings.secrets import SECRETS, Secrets, needed_secrets, snake
from components.settings.types import INVALID, dns_label_problem


class SettingsError(pulumi.RunError):
    """Raised before any resource exists; Pulumi prints it without a traceback."""


def load_settings(stack: Optional[str] = None) -> Settings:
    """Read, validate and type the configuration of the current (or given) stack."""
    stack = stack or pulumi.get_stack()
    read = read_config(stack)
    config, problems = read.config, list(read.problems)
    needed = needed_secrets(config) if config is not None else []
    problems += [f"{PROJECT}:{need.key} {problem}" for need in needed
                 if need.key in read.secret_keys and need.key in read.given
                 and (problem := need.setting.problem(str(read.given[need.key])))]
    problems += [f"{PROJECT}:{need.key} is not set: expected a secret ({need.doc}); set it with "
                 f"`pulumi config set --secret {PROJECT}:{need.key} <value>`"
                 for need in needed if not need.optional and need.key not in read.given]
    if problems:
        raise SettingsError("invalid settings for stack {!r}:\n  - {}".format(stack, "\n  - ".join(problems)))

    pulumi_config = pulumi.Config(PROJECT)
    secrets = Secrets(**{snake(need.key): pulumi_config.require_secret(need.key)
                         for need in needed if need.key in read.given})
    return Settings.model_construct(**dict(config), stack=stack, secrets=secrets)


@dataclass(frozen=True)
class ReadConfig:
    """A stack's configuration as the engine passes it, validated but for its secrets' own checks
    (which secrets are needed, and their values, are judged from ``config``)."""

    config: Optional[StackConfig]  # the valid part; None when nothing of it is usable
    problems: list[str]
    given: dict[str, Any]  # every key set, as supplied (secrets included)
    secret_keys: set[str]  # the keys stored encrypted


def read_config(stack: str) -> ReadConfig:
    """The stack's settings from the configuration Pulumi passes (or a test, or
    ``tools.offline.file_config``, supplies), and every problem with them except the secrets'."""
    given, secret_keys = _engine_config()
    raw = {key: _decode(value, key in _CONTAINERS) for key, value in given.items()}
    # A value stored encrypted stays out of validation: a message would print it in clear, and a
    # setting read as plain text lands in the state unencrypted.
    plain = {key: value for key, value in raw.items() if key not in SECRETS and key not in secret_keys}
    problems: list[str] = [
        f"{PROJECT}:{key} is stored encrypted but is not a secret setting; set it without --secret"
        if key in fields_by_alias(StackConfig) else _unknown((key,))
        for key in raw if key in secret_keys and key not in SECRETS]

    if plain.get("environment") in (None, "") and "environment" not in secret_keys:
        problem = dns_label_problem(stack)
        if problem:
            problems.append(f"{PROJECT}:environment is not set and the stack name {stack!r} cannot stand in "
                            f"for it: expected {problem}")
        else:
            plain["environment"] = stack

    try:
        config: Optional[StackConfig] = StackConfig.model_validate(plain)
    except ValidationError as exc:
        problems.extend(describe(exc))
        config = valid_part(StackConfig, plain, [error["loc"] for error in exc.errors()])

    problems.extend(f"{PROJECT}:{key} is set in plain text: it is a secret, set it with "
                    f"`pulumi config set --secret {PROJECT}:{key} <value>`"
                    for key in SECRETS if key in raw and key not in secret_keys)
    if config is not None:
        problems += [f"{PROJECT}:{problem}" for problem in config.broken_rules()]
    return ReadConfig(config, problems, given, secret_keys)


def valid_part(model: type[Section], raw: Any, locations: list[tuple],
               default: Optional[Section] = None) -> Optional[Section]:
    """``raw`` as ``model`` without the settings that failed at ``locations``: reading one of them
    raises ``Unreadable``, so the rules and the secrets that do not depend on them are still judged.
    A section with a failure inside is itself a valid part; None when nothing of it is usable. A key
    the model itself has no default for (inside a component's resources) is judged with ``default``'s."""
    raw = model.given({} if raw is None else raw)
    if not isinstance(raw, dict) or () in locations:
        return None
    failed = {location[0] for location in locations}
    kept = {key: value for key, value in raw.items() if key not in failed}
    required = {name for name, field in model.model_fields.items() if (field.alias or name) in failed
                and field.is_required()}
    if required and default is not None:
        kept |= default.model_dump(by_alias=True, include=required)
    try:
        section = model.model_validate(kept)
    except ValidationError:
        return None
    for name, field in model.model_fields.items():
        alias = field.alias or name
        if alias not in failed:
            continue
        inner = [loc[1:] for loc in locations if loc[0] == alias]
        if section_type(field.annotation):
            part = valid_part(field.annotation, raw.get(alias), inner, section.__dict__[name])
        else:
            part = _valid_items(field.annotation, raw.get(alias), inner)
        if part is None:
            del section.__dict__[name]
        else:
            section.__dict__[name] = part
    return section


def _valid_items(annotation: Any, raw: Any, locations: list[tuple]) -> Optional[tuple]:
    """A list of sections with each failed item as its valid part, so that a rule across the items (a
    name unique in its list) still reads the others; None when the list itself failed."""
    kind = _unannotated(annotation)
    item = typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else None
    if not (section_type(item) and isinstance(raw, list)) or any(len(loc) < 2 for loc in locations):
        return None
    items = []
    for index, value in enumerate(raw):
        failed_here = {loc[1] for loc in locations if loc[0] == index}
        if not failed_here:
            items.append(item.model_validate(value))
        elif isinstance(value, dict) and None not in failed_here and failed_here <= set(fields_by_alias(item)):
            # The item's other keys, each validated alone; reading a failed one raises Unreadable.
            fields = fields_by_alias(item)
            items.append(item.model_construct(**{
                name: TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata
                                  else field.annotation).validate_python(value[alias])
                for alias, field in fields.items() for name in [_name_of(item, alias)]
                if alias in value and alias not in failed_here}))
        else:
            return None
    return tuple(items)


def _name_of(model: type[BaseModel], alias: str) -> str:
    return next(name for name, field in model.model_fields.items() if (field.alias or name) == alias)


# --------------------------------------------------------------------------- the report

def describe(exc: ValidationError) -> Iterator[str]:
    """One line per problem pydantic found, in the words of the stack file: the full place
    of the value (``probes.http[0].target``, ``alerting.teams.platform.email``), the value, what is allowed."""
    for error in exc.errors(include_url=False):
        location, kind = error["loc"], error["type"]
        if location[-1:] == ("[key]",):  # a key of a map that is not one of its keys
            yield f"{PROJECT}:{_key(location[:-1])} is not a known key: expected {_allowed(error)}"
        elif kind == "extra_forbidden":
            yield _unknown(location)
        else:
            # Where nothing or something else than an object was given, the type says what it takes.
            expected = _allowed_at(location) if kind in ("missing", "model_type") else _allowed(error)
            given = "is not set" if kind == "missing" else f"= {_format(error['input'])} is not valid"
            yield f"{PROJECT}:{_key(location)} {given}: expected {expected}"


def _unknown(location: tuple) -> str:
    if len(location) == 1 and location[0] in known_keys() and "." in location[0]:
        # `pulumi config set prometheus.retention 30d` without --path makes a top-level key of that name.
        return (f"{PROJECT}:{location[0]} is not a known setting: a key inside a section is set with --path, "
                f"`pulumi config rm {PROJECT}:{location[0]}` then `pulumi config set --path "
                f"'{PROJECT}:{location[0]}' <value>`")
    hint = _did_you_mean(location)
    return (f"{PROJECT}:{_key(location)} is not a known setting" + (f"; did you mean {hint}?" if hint else "")
            + " (see docs/settings.md)")


def _words(key: str) -> frozenset[str]:
    """``cpu_limit`` and ``limits.cpu`` both read {cpu, limit}."""
    return frozenset(word.lower().removesuffix("s")
                     for word in re.findall(r"[A-Za-z][a-z0-9]*|[0-9]+", key.replace("_", ".")))


def _did_you_mean(location: tuple) -> Optional[str]:
    """The key meant by the unknown one at ``location``: in its own section the same name written
    another way (retention_size, sender for `from`) or the same words as a key below it (cpu_limit:
    limits.cpu); else the same name in another section; else the closest name in its own section.
    Never the section itself nor one around it."""
    *parent, name = location
    model = StackConfig if not parent else _unannotated(_place(tuple(parent))[0])
    if not (isinstance(name, str) and isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    at = _key(tuple(parent)) + "." if parent else ""
    # A sibling answers to its key and to its Python name (alerting.email.from is `sender` in code).
    siblings = {alias.lower(): alias for alias in fields_by_alias(model)}
    siblings |= {field_name.replace("_", ""): field.alias or field_name
                 for field_name, field in model.model_fields.items()}
    if not parent:
        siblings |= {key.lower(): key for key in SECRETS}
    plain = name.lower().replace("_", "").replace("-", "")
    if plain in siblings:
        return at + siblings[plain]
    below = [key for key, _ in keys_of(model) if "." in key]
    same_words = [key for key in below if _words(key) == _words(name)]
    if same_words:
        return at + same_words[0]
    # A secret written inside a section (thanos.objstore.accessKey: thanosObjstoreAccessKey).
    flattened = "".join(str(part) for part in location).lower()
    secrets = [key for key in SECRETS if parent and flattened.endswith(key.lower())]
    if secrets:
        return f"the secret {secrets[0]}, a top-level key: `pulumi config set --secret {PROJECT}:{secrets[0]} <value>`"
    # A key of this section that holds the name whole (thanos.storageSize: ruleStorageSize, ...), or
    # the name a key with more after it (retentionTime: retention).
    holding = [alias for alias in fields_by_alias(model) if len(plain) >= 4 and (
        alias.lower().endswith(plain) or alias.lower().startswith(plain) or plain.startswith(alias.lower()))]
    if holding:
        return " or ".join(", ".join(at + alias for alias in holding[:3]).rsplit(", ", 1))
    # The same name in another section is a surer sign than a loosely similar one in this section.
    elsewhere = [key for key in known_keys() if key.rsplit(".", 1)[-1].lower().replace("_", "") == plain
                 and not (at and key.startswith(at)) and not at.startswith(key + ".")]
    if elsewhere:
        return " or ".join(", ".join(elsewhere[:3]).rsplit(", ", 1))
    close = difflib.get_close_matches(plain, list(siblings), n=1, cutoff=0.5)
    return at + siblings[close[0]] if close else None


def _key(location: tuple) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _place(location: tuple) -> tuple[Any, Optional[FieldInfo]]:
    """(the type of the value at ``location``, the field that holds it when a model does)."""
    annotation: Any = StackConfig
    field: Optional[FieldInfo] = None
    for part in location:
        annotation = _unannotated(annotation)
        origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is tuple and isinstance(part, int):
            annotation, field = arguments[0], None
        elif origin in (dict, collections.abc.Mapping):
            annotation, field = arguments[1], None
        else:
            field = fields_by_alias(annotation)[part]
            annotation = field.annotation
    return annotation, field


def _allowed_at(location: tuple) -> str:
    """What the field at ``location`` allows, in the words its type refuses a value with."""
    annotation, field = _place(location)
    model = _unannotated(annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return "an object with keys " + ", ".join(fields_by_alias(model))
    try:
        TypeAdapter(Annotated[(annotation, *field.metadata)] if field and field.metadata else annotation
                    ).validate_python(None)
    except ValidationError as exc:
        return _allowed(exc.errors()[0])
    return "a value"


def _unannotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _allowed(error: dict) -> str:
    return error["ctx"]["allowed"] if error["type"] == INVALID else error["msg"].lower()


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def known_keys() -> list[str]:
    """Every key a stack file may set, sections included, in the file's spelling."""
    return [key for key, _ in keys_of(StackConfig)] + list(SECRETS)


# --------------------------------------------------------------------------- what Pulumi passes

def _engine_config() -> tuple[dict[str, Any], set[str]]:
    """Every configuration value of this project, as the engine (or a test) supplied it, and the keys
    stored encrypted."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    ours = len(PROJECT) + 1
    return ({key[ours:]: value for key, value in merged.items() if key.startswith(PROJECT + ":")},
            {key[ours:] for key in secret if key.startswith(PROJECT + ":")})


def _top_level_containers() -> frozenset[str]:
    """The top-level keys that hold a section, a list or a map."""
    return frozenset(alias for alias, field in fields_by_alias(StackConfig).items()
                     if section_type(field.annotation) or typing.get_origin(_unannotated(field.annotation))
                     in (tuple, dict, collections.abc.Mapping))


_CONTAINERS = _top_level_containers()


def _decode(value: Any, container: bool = False) -> Any:
    """Config values arrive as strings; objects and lists arrive JSON-encoded. A key of a section or
    a list written with nothing after it (`football-monitoring:ingress:`) arrives as "" (the CLI
    warns that it will pass null instead): both stand for nothing set there."""
    if container and value in ("", "null"):
        return None
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
