"""A deployed stack's outputs, as the commands that check or report on it read them: from a saved
`pulumi stack output --json` file, or from the pulumi CLI itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent


class OutputsError(Exception):
    """The outputs could not be read; the message says why and what to do."""


def read(stack: Optional[str], path: Optional[str], *, show_secrets: bool = False) -> dict:
    """The outputs in ``path`` (a saved file) or of ``stack``; {} when neither is given."""
    if path:
        try:
            outputs = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise OutputsError(f"cannot read the outputs {path}: {error}") from None
    elif stack:
        command = ["pulumi", "stack", "output", "--json", *(["--show-secrets"] if show_secrets else []),
                   "--stack", stack]
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise OutputsError("the pulumi CLI is not installed: install it, or pass --outputs FILE.json "
                               f"({' '.join(command)} > FILE.json)") from None
        except subprocess.TimeoutExpired:
            raise OutputsError("pulumi stack output did not answer within 120 s (backend login? passphrase?)") from None
        if done.returncode != 0:
            raise OutputsError(f"{' '.join(command)} failed: {done.stderr.strip()}")
        try:
            outputs = json.loads(done.stdout)
        except ValueError:
            raise OutputsError(f"{' '.join(command)} printed no JSON") from None
    else:
        return {}
    if not isinstance(outputs, dict):
        raise OutputsError("the stack outputs are not a JSON object")
    return outputs
