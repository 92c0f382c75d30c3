"""Shared fixtures: each stack's program, run once per test session under Pulumi's mocks."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import offline  # noqa: E402

# The dev stack runs on a Docker host; the Kubernetes checks use dev's settings on
# Kubernetes (the one-line switch a team makes when dev moves to a cluster).
# On a cluster the demo runs an image pushed beforehand (demo.image).
# So does the report's, and the Kubernetes checks see it post to the default webhook (its secret, and the
# flow to the webhook's port).
KUBERNETES = {"platform": "kubernetes", "demo": {"image": "registry.example.org/football-monitoring-demo:1.0.0"},
              "report": {"enabled": True, "schedule": "0 6 * * *", "period": "day", "postToWebhook": True,
                         "image": "registry.example.org/football-monitoring-report:1.0.0"}}


def run_on_kubernetes(stack: str, overrides: dict | None = None, **kwargs) -> offline.RunResult:
    return offline.run(stack, {**KUBERNETES, **(overrides or {})}, **kwargs)


@pytest.fixture(scope="session")
def runs() -> dict[str, offline.RunResult]:
    """dev and prod, both on Kubernetes."""
    return {"dev": run_on_kubernetes("dev"), "prod": offline.run("prod")}


@pytest.fixture(scope="session")
def dev(runs) -> offline.RunResult:
    return runs["dev"]


@pytest.fixture(scope="session")
def docker_dev() -> offline.RunResult:
    """The dev stack as Pulumi.dev.yaml has it: on a Docker host."""
    return offline.run("dev")


@pytest.fixture(scope="session")
def prod(runs) -> offline.RunResult:
    return runs["prod"]


# prod with every optional part on that prod leaves off: every UI behind an ingress, an ICMP probe,
# a static target, two scrape shards (and so Thanos Ruler). Checks of a class of defects run over
# dev, prod and this.
EVERY_PART = {
    "prometheus": {"shards": 2},
    "ingress": {"prometheusHost": "prometheus.football-prediction.example.org",
                "alertmanagerHost": "alertmanager.football-prediction.example.org",
                "jaegerHost": "jaeger.football-prediction.example.org",
                "authUrl": "https://auth.football-prediction.example.org/oauth2/auth"},
    "probes": {"icmp": [{"name": "api-node", "target": "football-prediction-api.football-prediction.svc"}]},
    "staticTargets": [{"job": "football-prediction-batch", "target": "batch.football-prediction.svc:9100"}],
}


@pytest.fixture(scope="session")
def every_part() -> offline.RunResult:
    return offline.run("prod", EVERY_PART)


@pytest.fixture(scope="session")
def every_stack(runs, every_part) -> dict[str, offline.RunResult]:
    """dev (on Kubernetes), prod, and prod with every optional part on."""
    return {**runs, "prod-every-part": every_part}


# The programs scripts/install-test-tools.sh builds from source at the versions the images pin.
BUILT_TOOLS = frozenset({
    "prometheus", "promtool", "alertmanager", "amtool", "node_exporter", "blackbox_exporter",
    "postgres_exporter", "redis_exporter", "elasticsearch_exporter", "kube-state-metrics",
    "prometheus-config-reloader", "otelcol", "jaeger", "es-index-cleaner", "pint", "sloth", "cyclonus",
    "pod-security-check", "etcd", "kube-apiserver", "kube-controller-manager", "thanos", "pulumi",
    # The previous minor Kubernetes release (TEST_TOOLS["kubernetesPrevious"]), under names of their own.
    "kube-apiserver-previous", "kube-controller-manager-previous",
})
# The commands scripts/install-test-tools.sh installs from npm (NPM_TEST_TOOLS), into the same directory.
NPM_TOOLS = frozenset({"yaml-language-server"})
DEBIAN_NAMES = {"prometheus-alertmanager": "alertmanager", "prometheus-node-exporter": "node_exporter",
                "prometheus-blackbox-exporter": "blackbox_exporter"}
INSTALL_HINT = "run scripts/install-test-tools.sh (it builds the tools from their Go modules; needs Go)"


@functools.lru_cache(maxsize=None)
def tools_bin_dir() -> Path:
    """The directory of built tools: $FM_TOOLS_BIN_DIR (scripts/test sets it), else the install
    script's answer (which builds what is missing)."""
    if os.environ.get("FM_TOOLS_BIN_DIR"):
        return Path(os.environ["FM_TOOLS_BIN_DIR"])
    proc = subprocess.run([str(ROOT / "scripts" / "install-test-tools.sh"), "--bin-dir"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(f"the test tools are not available: {INSTALL_HINT}\n{proc.stderr[-3000:]}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1])


def require_tool(name: str) -> str:
    """Path of a real binary the tests run; a missing tool fails, it never skips.

    Built tools come only from the tools directory (never a system package of another version);
    anything else (openssl) from PATH."""
    if name in BUILT_TOOLS | NPM_TOOLS:
        path = tools_bin_dir() / name
        if not os.access(path, os.X_OK):
            pytest.fail(f"{name} is not in {tools_bin_dir()}: {INSTALL_HINT}", pytrace=False)
        return str(path)
    if name in DEBIAN_NAMES:
        pytest.fail(f"{name} is a Debian package's binary (another version than the image); "
                    f"use the built {DEBIAN_NAMES[name]!r}", pytrace=False)
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT} (openssl, java, chromium, redis-server and PostgreSQL come from the system's packages)",
                    pytrace=False)
    return path
