"""A stack file in an editor: the schema comment of its first line, read by yaml-language-server.

yaml-language-server is the engine of VS Code's YAML extension and of the other editors that speak its
protocol; it is started here as they start it, and each document is handed to it as an editor does.
What the stack files promise a user who types in one: the committed files show no problem, a value
the program refuses is marked, a value the program takes is not, and the keys of a section are
offered with their descriptions.
"""

from __future__ import annotations

import pytest
import yaml

from components.settings import PROJECT
from scripts import settings_reference
from tests.conftest import ROOT, require_tool
from tests.test_settings import REFUSED_FORMS, TAKEN_EDGES
from tests.yaml_language_server import YamlLanguageServer
from tools import offline

# Documents that exist only in the editor: their schema comment resolves beside them, to schemas/.
UNSAVED = ROOT / "Pulumi.editor-check.yaml"


@pytest.fixture(scope="module")
def editor():
    server = YamlLanguageServer(require_tool("yaml-language-server"), ROOT)
    yield server
    server.close()


class _QuotedStrings(yaml.SafeDumper):
    """Every string quoted: an editor reads YAML 1.2, where a bare 1e1 is a number (PyYAML reads a string)."""


_QuotedStrings.add_representer(str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value,
                                                                                  style='"'))


def stack_text(overrides: dict) -> str:
    """dev's stack file with ``overrides`` merged into its sections, as a user would have edited it."""
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    for key, value in overrides.items():
        full = f"{PROJECT}:{key}"
        config = document["config"]
        config[full] = offline.deep_merge(config[full], value) if full in config else value
    return settings_reference.SCHEMA_COMMENT + "\n" + yaml.dump(document, Dumper=_QuotedStrings, sort_keys=False)


def errors(diagnostics: list[dict]) -> list[str]:
    return [d["message"] for d in diagnostics if d.get("severity", 1) == 1]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_committed_stack_files_show_no_problem(editor, stack):
    path = ROOT / f"Pulumi.{stack}.yaml"
    assert editor.diagnostics(path, path.read_text()) == []


def test_the_schema_comment_is_what_the_editor_validates_with(editor):
    marked = editor.diagnostics(UNSAVED, stack_text({"prometheus": {"retentoin": "3d"}}))
    assert [d["message"] for d in marked] == ["Property retentoin is not allowed."]
    assert marked[0]["source"] == f"yaml-schema: Pulumi stack file of {PROJECT}"
    # Without the comment the same document is not checked at all.
    unnamed = stack_text({"prometheus": {"retentoin": "3d"}}).split("\n", 1)[1]
    assert editor.diagnostics(ROOT / "Pulumi.editor-check-unnamed.yaml", unnamed) == []


@pytest.mark.parametrize("overrides, loader_message", REFUSED_FORMS)
def test_a_value_the_program_refuses_is_marked(editor, overrides, loader_message):
    assert errors(editor.diagnostics(UNSAVED, stack_text(overrides))), loader_message


@pytest.mark.parametrize("overrides", TAKEN_EDGES)
def test_a_value_the_program_takes_is_not_marked(editor, overrides):
    assert editor.diagnostics(UNSAVED, stack_text(overrides)) == []


def test_a_section_offers_its_keys_with_their_descriptions(editor):
    text = f"{settings_reference.SCHEMA_COMMENT}\nconfig:\n  {PROJECT}:prometheus:\n    retention: 30d\n    \n"
    path = ROOT / "Pulumi.editor-check-completion.yaml"
    assert editor.diagnostics(path, text) == []
    offered = {item["label"]: item for item in editor.completion(path, 4, 4)}
    from components.settings.models import PrometheusSettings, fields_by_alias
    keys = set(fields_by_alias(PrometheusSettings))
    assert keys - {"retention"} <= set(offered), sorted(offered)
    documentation = offered["scrapeInterval"].get("documentation")
    shown = documentation["value"] if isinstance(documentation, dict) else documentation or ""
    assert "default scrape interval" in shown + offered["scrapeInterval"].get("detail", "")
    assert "how long samples are kept" in (editor.hover(path, 3, 6) or "")
