"""Writes what the settings models say, where people and tools read it (the tests check each is current):

- docs/settings.md, the reference of every key;
- schemas/stack-config.schema.json, the JSON Schema of a Pulumi.<stack>.yaml (the stack files name it
  in their first line, for editors);
- the config: declarations at the end of Pulumi.yaml, so that `pulumi config` knows every key.

    .venv/bin/python -m scripts.settings_reference --write
    .venv/bin/python -m scripts.settings_reference            # docs/settings.md on standard output
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.settings import PROJECT, SECRETS, reference  # noqa: E402
from components.settings.reference import project_config, stack_file_schema  # noqa: E402

REFERENCE = ROOT / "docs" / "settings.md"
SCHEMA = ROOT / "schemas" / "stack-config.schema.json"
PROJECT_FILE = ROOT / "Pulumi.yaml"
SCHEMA_COMMENT = "# yaml-language-server: $schema=./schemas/stack-config.schema.json"

HEADER = f"""# Settings reference

Every setting lives under the `{PROJECT}` namespace of `Pulumi.<stack>.yaml`. Nested keys are
YAML objects: `prometheus.retention` is written

```yaml
config:
  {PROJECT}:prometheus:
    retention: 30d
```

or set from the command line with `pulumi config set --path '{PROJECT}:prometheus.retention' 30d`.
Anything not set takes the default below. Unknown keys and bad values stop `pulumi preview` and
`pulumi up` before any resource is touched, with one message listing every problem.

Secrets are never written in the stack file: set them with
`pulumi config set --secret {PROJECT}:<key> <value>`. A secret set without `--secret` is refused, and so
is any other setting set with it (it would be read, and kept in the state, in plain text).

Editors that read the first line of a stack file (`{SCHEMA_COMMENT}`) check it
against [the JSON Schema](../schemas/stack-config.schema.json) made from the same models as this page.

| key | default | meaning |
| --- | --- | --- |
"""

# Everything from this line to the end of Pulumi.yaml is written by this script.
PROJECT_CONFIG_HEADER = """\
# The declarations below come from components/settings (python -m scripts.settings_reference --write;
# a test checks they are current), so that `pulumi config` knows every top-level key. Pulumi applies
# a declared default to every stack that does not set the key, and demands of every stack a key
# declared without one, so each default means "as if unset". The sections carry no type: the type
# `object` exists only in recent Pulumi CLIs, which older ones refuse in the whole file, and the
# program's own messages report a bad section better; docs/settings.md has the keys inside them.
# Secrets are not declared: a secret has no plain default, and most are needed only when their
# receiver or exporter is on.
"""


SECRETS_HEADER = """
## Secrets

Which secret a stack needs follows from its settings, by the rules the program applies
(`needed_secrets` in components/settings/secrets.py); `scripts/deploy <stack>` asks the same
function and lists the ones still unset (`python -m scripts.required_secrets --stack <stack>`
prints them). A required secret stops the deploy until it is set; an optional one is read when
set, and the stack deploys without it as the last column says. The stacks of this repository:

| secret | what it holds | dev | prod | without it, where it is optional |
| --- | --- | --- | --- | --- |
"""


def stack_needs(stack: str) -> dict[str, str]:
    """secret -> "required" / "optional" for a committed stack; absent: not needed."""
    from scripts import required_secrets

    return {need.key: "optional" if need.optional else "required" for need in required_secrets.for_stack(stack)}


def secrets_markdown() -> str:
    stacks = {stack: stack_needs(stack) for stack in ("dev", "prod")}
    rows = []
    for key, spec in SECRETS.items():
        columns = [stacks[stack].get(key, "not needed") for stack in stacks]
        rows.append(f"| `{key}` | {spec.doc} | " + " | ".join(columns) + f" | {spec.without} |")
    return SECRETS_HEADER + "\n".join(rows) + "\n"


def markdown() -> str:
    rows = [f"| `{key}` | {('`' + default + '`') if default else ''} | {doc} |" for key, default, doc in reference()]
    return HEADER + "\n".join(rows) + "\n" + secrets_markdown()


def schema_text() -> str:
    return json.dumps(stack_file_schema(), indent=2, ensure_ascii=False) + "\n"


def project_config_text() -> str:
    return PROJECT_CONFIG_HEADER + yaml.safe_dump({"config": project_config()}, sort_keys=False, width=110)


def project_file_text(current: str) -> str:
    """Pulumi.yaml with its generated part (the config: declarations at its end) made current."""
    start = current.find(PROJECT_CONFIG_HEADER.splitlines()[0])
    kept = current if start < 0 else current[:start]
    return kept.rstrip("\n") + "\n" + project_config_text()


def write() -> list[Path]:
    SCHEMA.parent.mkdir(exist_ok=True)
    outputs = {REFERENCE: markdown(), SCHEMA: schema_text(),
               PROJECT_FILE: project_file_text(PROJECT_FILE.read_text())}
    changed = [path for path, text in outputs.items() if not path.exists() or path.read_text() != text]
    for path in changed:
        path.write_text(outputs[path])
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.settings_reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="write docs/settings.md, the stack file schema and Pulumi.yaml's config declarations")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(markdown())
        return 0
    for path in write():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
