"""Writes docs/settings.md from the settings schema (the test suite checks it is current).

    .venv/bin/python scripts/settings_reference.py > docs/settings.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.settings import PROJECT, reference  # noqa: E402

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
`pulumi config set --secret {PROJECT}:<key> <value>`. A secret set without `--secret` is refused.

| key | default | meaning |
| --- | --- | --- |
"""


def markdown() -> str:
    rows = [f"| `{key}` | {('`' + default + '`') if default else ''} | {doc} |" for key, default, doc in reference()]
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
