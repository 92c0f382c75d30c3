"""Grafana 12.4's expansion of `$` in what it reads at start, reimplemented to check the files we provision.

Two rules, both from Grafana's source (github.com/grafana/grafana, the 12.4 line; unchanged there):

- grafana.ini (pkg/setting/setting.go: loadConfiguration -> expandConfig, pkg/setting/expanders.go):
  every key's value goes through the registered expanders, matched by
  ``\\$(|__\\w+){([^}]+)}``: ``${NAME}`` and ``$__env{NAME}`` read the environment, ``$__file{PATH}``
  reads the file (trimmed); ``$__<other>{...}`` is left alone unless an expander of that name is
  registered (Enterprise adds ``vault``). ini values have no escape for ``$``.
- provisioning files (pkg/services/provisioning/values/values.go: interpolateValue, used by every
  StringValue/JSONValue/StringMapValue of datasources, dashboard providers, alerting, plugins): the
  raw string is split at ``$$``; each part goes through ``setting.ExpandVar`` (the same expanders as
  grafana.ini) and then Go's ``os.ExpandEnv`` (``$NAME``, ``${NAME}``, ``$1``, ``${}``...: Go's
  src/os/env.go); the parts are joined with a single ``$``. So ``$$`` is the only way to write a
  literal ``$``, and ``$__tags`` or ``${__trace.traceId}`` become "" (no such variable).

`expand_provisioned` / `expand_ini` return the value Grafana ends up with and every expansion made
on the way, so a check can tell a reference we mean from a `$` Grafana would eat.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from typing import Callable, Optional

import yaml

# pkg/setting/expanders.go: `var regex = regexp.MustCompile(`\$(|__\w+){([^}]+)}`)`.
# Go's \w is ASCII [0-9A-Za-z_]; Python's re.ASCII makes it the same.
EXPANDER = re.compile(r"\$(|__\w+)\{([^}]+)\}", re.ASCII)
# The expanders OSS Grafana registers, in the order ExpandVar runs them (sorted by priority in
# expandConfig at start: env -10, file -5).
EXPANDERS = ("env", "file")


@dataclass(frozen=True)
class Expansion:
    kind: str  # "env" (${X} or $__env{X}), "file" ($__file{X}) or "os.ExpandEnv" ($X, ${X}, $1, ${}...)
    text: str  # what was replaced, e.g. "$__file{/etc/x}"
    name: str  # the variable or path ("" for syntax Go's Expand eats)


def _apply_expander(s: str, name: str, lookup: Callable[[str, str], str], found: list[Expansion]) -> str:
    """applyExpander: every match found in the string as it was, each replaced once, first occurrence."""
    for match in list(EXPANDER.finditer(s)):
        prefix, argument = match.group(1), match.group(2)
        if prefix == "__" + name or (prefix == "" and name == "env"):
            text = match.group(0)
            found.append(Expansion(name, text, argument))
            s = s.replace(text, lookup(name, argument), 1)
    return s


def _is_shell_special(c: str) -> bool:
    return c in "*#$@!?-0123456789"


def _is_alnum(c: str) -> bool:
    return c == "_" or "0" <= c <= "9" or "a" <= c <= "z" or "A" <= c <= "Z"


def _shell_name(s: str) -> tuple[str, int]:
    """Go's os.getShellName."""
    if s[0] == "{":
        if len(s) > 2 and _is_shell_special(s[1]) and s[2] == "}":
            return s[1:2], 3
        for i in range(1, len(s)):
            if s[i] == "}":
                if i == 1:
                    return "", 2  # bad syntax; eat "${}"
                return s[1:i], i + 1
        return "", 1  # bad syntax; eat "${"
    if _is_shell_special(s[0]):
        return s[0:1], 1
    i = 0
    while i < len(s) and _is_alnum(s[i]):
        i += 1
    return s[:i], i


def _os_expand(s: str, getenv: Callable[[str], str], found: list[Expansion]) -> str:
    """Go's os.Expand(s, getenv) (os.ExpandEnv), byte for byte: the strings here are ASCII."""
    out: list[str] = []
    i = j = 0
    changed = False
    while j < len(s):
        if s[j] == "$" and j + 1 < len(s):
            changed = True
            out.append(s[i:j])
            name, w = _shell_name(s[j + 1:])
            if name == "" and w > 0:
                found.append(Expansion("os.ExpandEnv", s[j:j + 1 + w], ""))
            elif name == "":
                out.append("$")
            else:
                found.append(Expansion("os.ExpandEnv", s[j:j + 1 + w], name))
                out.append(getenv(name))
            j += w
            i = j + 1
        j += 1
    if not changed:
        return s
    return "".join(out) + s[i:]


def _lookup(env: dict[str, str], files: dict[str, str]) -> Callable[[str, str], str]:
    def lookup(kind: str, argument: str) -> str:
        if kind == "env":
            return env.get(argument, "")
        # fileExpander.Expand: os.Stat fails on a missing file; the check reports it as unresolved.
        return files.get(argument, "").strip()
    return lookup


def expand_provisioned(value: str, env: Optional[dict[str, str]] = None,
                       files: Optional[dict[str, str]] = None) -> tuple[str, list[Expansion]]:
    """values.interpolateValue: the value Grafana uses and the expansions made."""
    env, files = env or {}, files or {}
    lookup = _lookup(env, files)
    found: list[Expansion] = []
    parts = []
    for part in value.split("$$"):
        for name in EXPANDERS:
            part = _apply_expander(part, name, lookup, found)
        parts.append(_os_expand(part, lambda n: env.get(n, ""), found))
    return "$".join(parts), found


def expand_ini_value(value: str, env: Optional[dict[str, str]] = None,
                     files: Optional[dict[str, str]] = None) -> tuple[str, list[Expansion]]:
    """expandConfig on one key's value."""
    lookup = _lookup(env or {}, files or {})
    found: list[Expansion] = []
    for name in EXPANDERS:
        value = _apply_expander(value, name, lookup, found)
    return value, found


def strings_of(document, where: str = ""):
    """(where, string) for every string value of a parsed YAML document (keys are not expanded:
    transformMap expands values only)."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield from strings_of(value, f"{where}.{key}" if where else str(key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from strings_of(value, f"{where}[{index}]")
    elif isinstance(document, str):
        yield where, document


def ini_values(text: str):
    """(section.key, value) of a grafana.ini as go-ini reads it (comments are # and ; lines)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"),
                                       inline_comment_prefixes=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment]
    parser.read_string(text)
    for section in parser.sections():
        for key, value in parser.items(section, raw=True):
            yield f"{section}.{key}", value


def provisioned_documents(files: dict[str, str], provisioning_dir: str):
    """(path, parsed YAML) of every file under Grafana's provisioning directory."""
    prefix = provisioning_dir.rstrip("/") + "/"
    for path, text in sorted(files.items()):
        if path.startswith(prefix):
            yield path, yaml.safe_load(text)


def as_read(document, env: Optional[dict[str, str]] = None, files: Optional[dict[str, str]] = None):
    """A provisioning document with every string value as Grafana uses it."""
    if isinstance(document, dict):
        return {key: as_read(value, env, files) for key, value in document.items()}
    if isinstance(document, list):
        return [as_read(value, env, files) for value in document]
    if isinstance(document, str):
        return expand_provisioned(document, env, files)[0]
    return document
