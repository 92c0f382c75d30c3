"""Offline render: what a stack would deploy, written as files for review.

    python -m tools.render --stack prod --out build/prod

Runs the same program as ``pulumi up`` (under Pulumi's mock runtime, with no
CLI and no cluster) and writes:

    kubernetes/<kind>-<name>.yaml   every Kubernetes object, Secret values shown as "[secret]"
                                    (<kind>-<name>.<namespace>.yaml where a name is in several namespaces)
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
from collections import Counter
from pathlib import Path

import yaml

from tools import offline
from components.settings import SettingsError

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


def compose_view(result: offline.RunResult, secret_values: set[str]) -> dict:
    """A docker-compose-like listing of the containers a Docker-host stack runs (not for `docker compose`)."""
    services = {}
    by_id = {offline.mock_id(c.name): c.name for c in result.containers()}
    for c in result.containers():
        i = c.inputs
        network_mode = i.get("networkMode")
        if network_mode and network_mode.startswith("container:"):
            # A sidecar: in its service's network namespace (Compose says service:<name>).
            network_mode = "service:" + by_id.get(network_mode.split(":", 1)[1], network_mode)
        env = [(e.split("=", 1)[0] + "=" + SECRET_MARK) if any(v in e for v in secret_values) else e
               for e in i.get("envs", [])]
        service = {
            "container_name": i["name"],
            "image": next((r.inputs["name"] for r in result.resources
                           if r.type == "docker:index/remoteImage:RemoteImage" and r.name == f"{c.name}-image"),
                          i.get("image")),  # else an image the program builds (the container names it)
            "entrypoint": i.get("entrypoints", []),
            "command": i.get("command", []),
            "environment": env,
            "user": i.get("user"),
            "read_only": i.get("readOnly"),
            "cap_drop": i.get("capabilities", {}).get("drops", []),
            "security_opt": i.get("securityOpts", []),
            "restart": i.get("restart"),
            "restart_max_retries": i.get("maxRetryCount"),
            "mem_limit": f"{i.get('memory')}m",
            "healthcheck": i.get("healthcheck"),
            "networks": [a for n in i.get("networksAdvanced", []) for a in n.get("aliases", [])],
            "network_mode": network_mode,
            "ports": [f"{p['ip']}:{p['external']}:{p['internal']}" for p in i.get("ports", [])],
            "volumes": [f"{v.get('volumeName', '(per-container)')}:{v['containerPath']}" for v in i.get("volumes", [])],
            "tmpfs": [f"{path}:{options}" for path, options in sorted(i.get("tmpfs", {}).items())],
            "mounts": [f"{m['source']}:{m['target']}:ro" for m in i.get("mounts", [])],
            "files": [u["file"] for u in i.get("uploads", [])],
        }
        services[c.name] = {k: v for k, v in service.items() if v not in (None, [], {})}
    return {"services": services}


def container_files(result: offline.RunResult) -> dict[str, str]:
    files = {}
    for c in result.containers():
        for upload in c.inputs.get("uploads", []):
            files[f"{c.name}{upload['file']}"] = upload["content"].replace(offline.GENERATED_SECRET, SECRET_MARK)
    return files


# Kubernetes readers expect these first; every other key is sorted so that two renders of the
# same stack are byte-identical (the recorded inputs come back in no fixed order).
_LEADING_KEYS = ("apiVersion", "kind", "metadata", "name")


def _ordered(value):
    if isinstance(value, dict):
        keys = [k for k in _LEADING_KEYS if k in value] + sorted(k for k in value if k not in _LEADING_KEYS)
        return {k: _ordered(value[k]) for k in keys}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


def _yaml(value) -> str:
    return yaml.safe_dump(_ordered(value), sort_keys=False, width=120)


def write(result: offline.RunResult, out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    files: dict[Path, str] = {}
    if result.containers():
        from components.settings import SECRETS
        secret_values = {spec.placeholder for spec in SECRETS.values()} | {offline.GENERATED_SECRET}
        files[out / "docker" / "containers.yaml"] = (
            "# What the Docker host runs (a review listing, not a compose file).\n"
            + _yaml(compose_view(result, secret_values)))
        files.update({out / "config" / rel: text for rel, text in container_files(result).items()})
    objects = result.kubernetes_objects()
    names = Counter((obj["kind"], obj["metadata"]["name"]) for obj in objects)
    for obj in objects:
        stem = f"{obj['kind'].lower()}-{obj['metadata']['name']}"
        # A name in several namespaces (each namespace's default-deny) names its namespace in every
        # file of it, so a file's name does not depend on the order the objects were recorded in.
        if names[obj["kind"], obj["metadata"]["name"]] > 1:
            stem += f".{obj['metadata']['namespace']}"
        files[out / "kubernetes" / f"{stem}.yaml"] = _yaml(_redacted(obj))
    files.update({out / "config" / rel: text for rel, text in config_files(result).items()})
    outputs = {k: (SECRET_MARK if k in result.secret_outputs else v) for k, v in sorted(result.outputs.items())}
    files[out / "outputs.json"] = json.dumps(outputs, indent=2) + "\n"
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__.split("\n\n")[0])
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
    if result.containers():
        print(f"{args.stack}: {len(result.containers())} Docker containers and {len(container_files(result))} "
              f"config files written to {out}/ ({len(written)} files)")
    else:
        print(f"{args.stack}: {len(result.kubernetes_objects())} Kubernetes objects and "
              f"{len(config_files(result))} config files written to {out}/ ({len(written)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
