"""The secrets a stack needs, by the rules the program applies (scripts/deploy asks this before `pulumi up`).

    .venv/bin/python -m scripts.required_secrets --stack dev

Reads Pulumi.<stack>.yaml as the engine passes it to the program, validates it with the program's
own loader and prints, for each secret the settings need (``needed_secrets``), one line of
tab-separated fields:

    <key>  required|optional  <what it is for>  <what the stack does without it (optional ones)>

A required secret is demanded: the program stops without it. An optional one is read when set.
Exits 1, with the loader's message, when the stack's settings are not valid: the program would
refuse them too, whatever secrets are set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pulumi

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.settings import NeededSecret, needed_secrets, read_config  # noqa: E402
from tools import offline  # noqa: E402


def for_stack(stack: str) -> list[NeededSecret]:
    """The secrets the stack file's settings need; SystemExit with the settings' problems when invalid."""
    if not (ROOT / f"Pulumi.{stack}.yaml").is_file():
        raise SystemExit(f"no stack file Pulumi.{stack}.yaml")
    config, secret_keys = offline.file_config(stack)
    pulumi.runtime.set_all_config(config, secret_keys)
    read = read_config(stack)
    if read.problems:
        raise SystemExit("invalid settings for stack {!r}:\n  - {}".format(stack, "\n  - ".join(read.problems)))
    return needed_secrets(read.config)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the stack, as in Pulumi.<stack>.yaml")
    args = parser.parse_args(argv)
    for need in for_stack(args.stack):
        kind = "optional" if need.optional else "required"
        print("\t".join((need.key, kind, need.doc, need.setting.without if need.optional else "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
