"""Offline render: what a stack would deploy, written as files for review.

    python -m components.render --stack prod --out build/prod

Runs the same program as ``pulumi up`` (under Pulumi's mock runtime, with no
CLI and no cluster) and writes:

    kubernetes/<kind>-<name>.yaml   every Kubernetes object, Secret values shown as "[secret]"
    config/<object>/<file>          every generated config file (prometheus.yml, rules,
                                    alertmanager.yml, Grafana provisioning, blackbox.yml)
    outputs.json                    stack outputs, secret ones shown as "[secret]"

Secret settings are replaced by placeholders before the program runs, so no
real secret can reach these files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

from . import offline
from .settings import SettingsError

SECRET_MARK = "[secret]"


def _redacted(obj: dict) -> dict:
    if obj["kind"] != "Secret":
        return obj
    obj = dict(obj)
    for key in ("stringData", "data"):
        if key in obj:
            obj[key] = {name: SECRET_MARK for name in obj[key]}
    return obj


def config_files(result: offline.RunResult) -> dict[str, str]:
    """Relative path -> content of every file the stack mounts from a ConfigMap or Secret."""
    files = {}
    for obj in result.kubernetes_objects():
        if obj["kind"] in ("ConfigMap", "Secret"):
            content = obj.get("data") if obj["kind"] == "ConfigMap" else obj.get("stringData")
            if not content or obj["kind"] == "Secret" and obj["metadata"]["name"].endswith("-env"):
                continue  # environment Secrets hold single values, not files
            for name, text in content.items():
                files[f"{obj['metadata']['name']}/{name}"] = text.replace(offline.GENERATED_SECRET, SECRET_MARK)
    return files


def write(result: offline.RunResult, out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    written = []
    for obj in result.kubernetes_objects():
        path = out / "kubernetes" / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(_redacted(obj), sort_keys=False, width=120))
        written.append(path)
    for rel, text in config_files(result).items():
        path = out / "config" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    outputs = {k: (SECRET_MARK if k in result.secret_outputs else v) for k, v in sorted(result.outputs.items())}
    (out / "outputs.json").write_text(json.dumps(outputs, indent=2) + "\n")
    written.append(out / "outputs.json")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name; its settings come from Pulumi.<stack>.yaml")
    parser.add_argument("--out", type=Path, help="output folder (default: build/<stack>)")
    args = parser.parse_args(argv)
    out = args.out or Path("build") / args.stack
    try:
        result = offline.run(args.stack)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = write(result, out)
    print(f"{args.stack}: {len(result.kubernetes_objects())} Kubernetes objects and "
          f"{len(config_files(result))} config files written to {out}/ ({len(written)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
