"""Pulumi.yaml and the stack files as the real Pulumi CLI reads them.

The CLI checks the project file, applies the defaults declared in its ``config:`` block to every
stack, and type-checks the stack's values against those declarations before it starts the program;
``pulumi config`` shows the merged result. Everything here runs the pinned CLI against a copy of the
project with a local backend. ``pulumi preview`` cannot start the program itself (no Python language
host is built here), so a preview that passes the configuration checks ends at the missing language
plugin: that error, and only that one, is the sign that the CLI took the configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from components.settings import PROJECT
from scripts import settings_reference
from tests.conftest import ROOT, require_tool
from tools import offline

STACKS = ("dev", "prod")
PROGRAM_NOT_STARTED = "failed to load language plugin python"


class Project:
    """A copy of the project's Pulumi files with its own local backend and Pulumi home."""

    def __init__(self, directory: Path):
        self.dir = directory / "project"
        self.dir.mkdir()
        for name in ["Pulumi.yaml", *(f"Pulumi.{stack}.yaml" for stack in STACKS)]:
            shutil.copy(ROOT / name, self.dir / name)
        (directory / "state").mkdir()
        self.env = {**os.environ, "PULUMI_HOME": str(directory / "home"),
                    "PULUMI_BACKEND_URL": f"file://{directory / 'state'}",
                    "PULUMI_CONFIG_PASSPHRASE": "test passphrase", "PULUMI_SKIP_UPDATE_CHECK": "true",
                    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}
        self.binary = require_tool("pulumi")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args, "--non-interactive"], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=60)

    def init(self, stack: str) -> None:
        done = self.run("stack", "init", stack)
        assert done.returncode == 0, done.stderr

    def stack_file(self, stack: str) -> Path:
        return self.dir / f"Pulumi.{stack}.yaml"

    def edit(self, stack: str, **values) -> None:
        document = yaml.safe_load(self.stack_file(stack).read_text())
        document.setdefault("config", {}).update({f"{PROJECT}:{key}": value for key, value in values.items()})
        self.stack_file(stack).write_text(yaml.safe_dump(document))

    def config(self, stack: str) -> dict[str, dict]:
        """``pulumi config --json``: the stack's values with the project's defaults applied."""
        shown = self.run("config", "--stack", stack, "--json", "--show-secrets")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    def preview_error(self, stack: str) -> str:
        previewed = self.run("preview", "--stack", stack)
        assert previewed.returncode != 0
        return " ".join(line for line in (previewed.stdout + previewed.stderr).splitlines()
                        if line.startswith("error:"))


@pytest.fixture()
def project(tmp_path) -> Project:
    project = Project(tmp_path)
    for stack in STACKS:
        project.init(stack)
    return project


def declarations() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_cli_takes_the_project_file_and_the_stack_file(project, stack):
    assert project.preview_error(stack) == (
        f"error: {PROGRAM_NOT_STARTED}: no language plugin 'pulumi-language-python' found in the workspace or on "
        "your $PATH")


WRONG_TYPE = {"boolean": "maybe", "string": {"not": "a string"}, "integer": "many"}


def test_a_value_of_another_type_than_declared_stops_the_cli_before_the_program(project):
    typed = {key: declaration["type"] for key, declaration in declarations().items() if "type" in declaration}
    assert {"boolean", "string"} <= set(typed.values())
    for key, kind in typed.items():
        project.init(f"wrong-{key.lower()}")
        project.edit(f"wrong-{key.lower()}", **{key: WRONG_TYPE[kind]})
        assert project.preview_error(f"wrong-{key.lower()}") == (
            f"error: validating stack config: Stack 'wrong-{key.lower()}' with configuration key '{key}' must be of "
            f"type '{kind}'")


def test_pulumi_config_shows_every_declared_key_with_the_default_the_program_has(project):
    project.init("bare")
    shown = project.config("bare")
    assert sorted(shown) == sorted(f"{PROJECT}:{key}" for key in declarations())
    rows = {key: default for key, default, _ in settings_reference.reference()}
    for key, entry in shown.items():
        short = key.split(":", 1)[1]
        assert not entry["secret"]
        if short in rows:  # a plain value: the program's own default, "" standing for none
            assert entry["value"] == rows[short], key
        else:  # a section or a list: empty, so the program's defaults apply
            assert entry["objectValue"] in ({}, []), key


def _as_the_engine_passes(shown: dict[str, dict], stack: str) -> tuple[dict[str, str], list[str]]:
    """The configuration the CLI hands the program: its merged values, every secret a placeholder."""
    placeholders, secret_keys = offline.stack_config(stack)
    return {**{key: entry["value"] for key, entry in shown.items()},
            **{key: placeholders[key] for key in secret_keys}}, secret_keys


@pytest.mark.parametrize("stack", STACKS)
def test_the_defaults_the_cli_applies_change_nothing_the_program_declares(project, stack):
    shown = project.config(stack)
    file_values, _ = offline.file_config(stack)
    assert set(shown) > set(file_values), "the CLI added no declared default"

    def declared(result: offline.RunResult) -> list:
        return sorted((r.type, r.name, json.dumps(r.inputs, sort_keys=True)) for r in result.resources)

    plain = offline.run(stack)
    config, secret_keys = _as_the_engine_passes(shown, stack)
    through_the_cli = offline.run(stack, config=config, secret_keys=secret_keys)
    assert declared(through_the_cli) == declared(plain) and through_the_cli.outputs == plain.outputs


def test_config_set_writes_the_stack_file_the_settings_reference_describes(project):
    # docs/settings.md: `pulumi config set --path 'football-monitoring:prometheus.retention' 30d`.
    for args in (["--path", f"{PROJECT}:prometheus.retention", "30d"],
                 ["--secret", f"{PROJECT}:slackApiUrl", "https://hooks.slack.invalid/services/T0/B0/x"]):
        done = project.run("config", "set", "--stack", "dev", *args)
        assert done.returncode == 0, done.stderr
    written = yaml.safe_load(project.stack_file("dev").read_text())
    committed = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    prometheus = written["config"][f"{PROJECT}:prometheus"]
    assert prometheus == {**committed["config"][f"{PROJECT}:prometheus"], "retention": "30d"}
    assert set(written["config"][f"{PROJECT}:slackApiUrl"]) == {"secure"}
    assert "hooks.slack.invalid" not in project.stack_file("dev").read_text()  # encrypted, not encoded
    # The file as the CLI wrote it (salt and ciphertext included) is one the schema takes.
    schema = json.loads(settings_reference.SCHEMA.read_text())
    jsonschema.Draft202012Validator(schema).validate(written)

    shown = project.config("dev")
    assert shown[f"{PROJECT}:slackApiUrl"]["secret"]
    # The program reads the value the CLI passes: Prometheus keeps samples 30d, not the committed 3d.
    config, secret_keys = _as_the_engine_passes(shown, "dev")
    declared = json.dumps([r.inputs for r in offline.run("dev", config=config, secret_keys=secret_keys).resources])
    assert "retention:\\n      time: 30d" in declared and "time: 3d" not in declared


def test_a_plain_setting_set_as_a_secret_is_refused_by_the_schema_and_the_program(project):
    done = project.run("config", "set", "--stack", "dev", "--secret", f"{PROJECT}:namespace", "monitoring-dev")
    assert done.returncode == 0, done.stderr
    written = yaml.safe_load(project.stack_file("dev").read_text())
    schema = json.loads(settings_reference.SCHEMA.read_text())
    assert not jsonschema.Draft202012Validator(schema).is_valid(written)
    shown = project.config("dev")
    assert shown[f"{PROJECT}:namespace"]["secret"]
    config, secret_keys = _as_the_engine_passes(shown, "dev")
    with pytest.raises(Exception, match=f"{PROJECT}:namespace is stored encrypted but is not a secret setting"):
        offline.run("dev", config=config, secret_keys=[*secret_keys, f"{PROJECT}:namespace"])


def test_a_section_or_list_written_with_nothing_under_it_reads_as_its_defaults(project):
    # `football-monitoring:ingress:` alone is YAML null: the CLI passes it as "" (and warns it will pass null).
    project.edit("prod", ingress=None, staticTargets=None)
    shown = project.config("prod")
    assert shown[f"{PROJECT}:ingress"]["value"] in ("", "null")
    config, secret_keys = _as_the_engine_passes(shown, "prod")
    result = offline.run("prod", config=config, secret_keys=secret_keys)
    without = offline.run("prod", {"ingress": None, "staticTargets": None})
    assert sorted(r.name for r in result.resources) == sorted(r.name for r in without.resources)
    for empty in ("", "null"):
        config[f"{PROJECT}:ingress"] = empty
        offline.run("prod", config=config, secret_keys=secret_keys)


def test_a_nested_key_set_without_path_is_named_with_the_command_that_sets_it(project):
    done = project.run("config", "set", "--stack", "dev", "prometheus.retention", "30d")
    assert done.returncode == 0, done.stderr
    shown = project.config("dev")
    assert shown[f"{PROJECT}:prometheus.retention"]["value"] == "30d"
    config, secret_keys = _as_the_engine_passes(shown, "dev")
    with pytest.raises(Exception, match=f"`pulumi config set --path '{PROJECT}:prometheus.retention' <value>`"):
        offline.run("dev", config=config, secret_keys=secret_keys)


# Scalars that YAML 1.1 (PyYAML) and the CLI's YAML 1.2 parser read differently, top-level and in a section.
SCALARS = ["yes", "on", "3.0", "1e1", "0o17", "010", "~", "0x1F", ".5", "1_000", "True", "12:30", "2026-01-01",
           "-0", "1.50", "'quoted'", "''", "null", "false", "0b101"]


def test_the_offline_runner_reads_a_stack_file_as_the_cli_passes_it(project):
    project.init("scalars")
    lines = [f"  {PROJECT}:key{index}: {scalar}" for index, scalar in enumerate(SCALARS)]
    lines += [f"  {PROJECT}:section:"] + [f"    key{index}: {scalar}" for index, scalar in enumerate(SCALARS)]
    salt = yaml.safe_load(project.stack_file("scalars").read_text())["encryptionsalt"]
    project.stack_file("scalars").write_text("config:\n" + "\n".join(lines) + f"\nencryptionsalt: {salt}\n")
    shown = project.config("scalars")
    read, _ = offline.engine_config(offline.read_stack_file(project.stack_file("scalars"))["config"])
    for index, scalar in enumerate(SCALARS):
        key = f"{PROJECT}:key{index}"
        assert read[key] == shown[key]["value"], f"{scalar}: the CLI passes {shown[key]['value']!r}"
    section = json.loads(shown[f"{PROJECT}:section"]["value"])
    assert json.loads(read[f"{PROJECT}:section"]) == section


@pytest.mark.parametrize("written, taken", [("true", True), ("false", True), ("'true'", True), ("'True'", False),
                                            ("'yes'", False), ("TRUE", True)])
def test_the_cli_the_program_and_the_schema_agree_on_a_flag(project, written, taken):
    project.init("flag")
    text = project.stack_file("flag").read_text()
    project.stack_file("flag").write_text(f"config:\n  {PROJECT}:protectData: {written}\n{text}")
    error = project.preview_error("flag")
    assert (PROGRAM_NOT_STARTED in error) == taken, error
    config, secret_keys = _as_the_engine_passes(project.config("flag"), "dev")
    try:
        offline.run("dev", config=config, secret_keys=secret_keys)
        loaded = True
    except Exception as refused:
        assert "protectData" in str(refused)
        loaded = False
    schema = json.loads(settings_reference.SCHEMA.read_text())
    valid = jsonschema.Draft202012Validator(schema).is_valid(yaml.safe_load(project.stack_file("flag").read_text()))
    assert loaded == valid == taken
