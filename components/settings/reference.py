"""What the models say about the settings, in the three forms people read them.

- ``reference()``: (key, default, meaning) rows, for docs/settings.md;
- ``stack_file_schema()``: a JSON Schema of a whole ``Pulumi.<stack>.yaml``, for editors (the stack
  files name it in their first line) and for the test that checks the committed stacks;
- ``project_config()``: the ``config:`` declarations of Pulumi.yaml, so that ``pulumi config``
  knows every top-level key.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Optional, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from components.settings.models import (
    PROJECT, RESOURCES_OF, Resources, StackConfig, fields_by_alias, keys_of, section_type)
from components.settings.secrets import SECRETS

SECRET_HOW = "set it with `pulumi config set --secret {key} <value>`; a value in plain text is refused"


def _default(field: FieldInfo) -> Any:
    """The default as a stack file would spell it (JSON types, camelCase keys)."""
    if field.default is PydanticUndefined:
        return None
    return to_jsonable_python(field.default, by_alias=True)


def reference() -> list[tuple[str, str, str]]:
    """(key, default, description) for every setting, for docs/settings.md."""
    def shown(default: Any) -> str:
        return "" if default is None else default if isinstance(default, str) else json.dumps(default)

    rows: list[tuple[str, str, str]] = []
    components: list[str] = []  # the keys holding a component's resources, whose rows come from their defaults
    for key, field in keys_of(StackConfig):
        if isinstance(field.default, Resources):
            components.append(key + ".")
            whose = field.description.removeprefix(RESOURCES_OF)
            rows += [(f"{key}.{inner}", shown(functools.reduce(getattr, inner.split("."), field.default)),
                      part.description.replace("the container", whose))
                     for inner, part in keys_of(Resources) if section_type(part.annotation) is None]
        elif section_type(field.annotation) is None and not key.startswith(tuple(components)):
            rows.append((key, shown(_default(field)), field.description or ""))
    return rows + [(key, "(secret)", spec.doc) for key, spec in SECRETS.items()]


# --------------------------------------------------------------------------- JSON Schema

ENCRYPTED = {
    "description": "a value encrypted by `pulumi config set --secret`",
    "type": "object",
    "properties": {"secure": {"type": "string", "description": "the ciphertext"}},
    "required": ["secure"],
    "additionalProperties": False,
}


def _without_titles(schema: Any) -> Any:
    # pydantic titles every property after its Python name, which editors then show instead of the key.
    if isinstance(schema, dict):
        return {k: _without_titles(v) for k, v in schema.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [_without_titles(v) for v in schema]
    return schema


_KEPT_OUTSIDE = ("description", "default")


def _empty_allowed(properties: dict, definitions: dict, top: bool) -> None:
    """As the loader: a section written with nothing under it (null) takes its defaults, and so does a
    top-level one set to "" (what the CLI passes for it); a list or a map also reads null and "" as
    empty. pydantic's schema knows none of this: the loader's own conversions come before the types."""
    for key, schema in properties.items():
        section = definitions.get(schema.get("$ref", "").removeprefix("#/$defs/"), {}).get("type") == "object"
        container = schema.get("type") in ("array", "object")
        if not (section or container):
            continue
        kept = {k: schema[k] for k in _KEPT_OUTSIDE if k in schema}
        inner = {k: v for k, v in schema.items() if k not in _KEPT_OUTSIDE}
        properties[key] = {"anyOf": [inner, {"type": "null"}, *([{"const": ""}] if top or container else [])],
                           **kept}


def stack_file_schema() -> dict:
    config = _without_titles(StackConfig.model_json_schema(by_alias=True))
    definitions = config.pop("$defs")
    _empty_allowed(config["properties"], definitions, top=True)
    for definition in definitions.values():
        _empty_allowed(definition.get("properties", {}), definitions, top=False)
    # As the loader: a secret only encrypted, every other setting only in clear.
    keys = {f"{PROJECT}:{alias}": schema for alias, schema in config["properties"].items()}
    for key, spec in SECRETS.items():
        how = SECRET_HOW.format(key=f"{PROJECT}:{key}")
        keys[f"{PROJECT}:{key}"] = {"description": f"secret: {spec.doc} ({how})", "$ref": "#/$defs/encrypted"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Pulumi stack file of {PROJECT}",
        "description": (f"Pulumi.<stack>.yaml of {PROJECT}; every setting is described in docs/settings.md. "
                        "Generated from components/settings by `python -m scripts.settings_reference --write`."),
        "type": "object",
        "properties": {
            "config": {
                "description": f"the stack's configuration: {PROJECT}:<setting> keys, and keys of other "
                               "namespaces (such as kubernetes:context)",
                "type": "object",
                "properties": keys,
                "patternProperties": {f"^(?!{PROJECT}:)[^:\\s]+:.+$": {
                    "description": "a key of another namespace (a provider's, for instance), not checked here"}},
                "additionalProperties": False,
            },
            "secretsprovider": {"type": "string", "description": "the secrets provider of the stack"},
            "encryptedkey": {"type": "string", "description": "the data key of a cloud secrets provider, encrypted"},
            "encryptionsalt": {"type": "string", "description": "the salt of the passphrase secrets provider"},
            "environment": {"description": "Pulumi ESC environments imported into the stack",
                            "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}]},
        },
        "additionalProperties": False,
        "$defs": {**definitions, "encrypted": ENCRYPTED},
    }


# --------------------------------------------------------------------------- Pulumi.yaml

def _pulumi_type(annotation: Any) -> Optional[str]:
    """The project config type of a plain top-level setting (string, integer, boolean); sections get none,
    since only recent Pulumi CLIs know `object`."""
    if get_origin(annotation) is Union:
        options = [a for a in get_args(annotation) if a is not type(None)]
        annotation = options[0] if len(options) == 1 else None
    return {bool: "boolean", int: "integer", str: "string"}.get(annotation)


def project_config() -> dict:
    """Declarations of every top-level setting, for the ``config:`` block of Pulumi.yaml.

    Pulumi demands of every stack a project key declared without a default, and applies the
    default where a stack does not set the key, so each default here means "as if unset": the
    code's own default for plain values, "" for an optional one, {} or [] for a section or a list.
    Secrets are not declared: a secret may not have a plain default, and most are needed only
    when a receiver or an exporter is on.
    """
    declarations: dict[str, dict] = {}
    for alias, field in fields_by_alias(StackConfig).items():
        kind = _pulumi_type(field.annotation)
        declaration: dict[str, Any] = {"description": field.description}
        if kind is not None:
            declaration["type"] = kind
            default = _default(field)
            declaration["default"] = "" if default is None else default
        else:
            declaration["default"] = [] if get_origin(field.annotation) is tuple else {}
        declarations[alias] = declaration
    return declarations
