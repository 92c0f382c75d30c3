"""Shared fixtures: each stack's program, run once per test session under Pulumi's mocks."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import offline  # noqa: E402

# The dev stack runs on a Docker host; the Kubernetes checks use dev's settings on
# Kubernetes (the one-line switch a team makes when dev moves to a cluster).
KUBERNETES = {"platform": "kubernetes"}


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


def require_tool(name: str) -> str:
    """Path of a real binary the tests run; a missing tool fails, it never skips."""
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: run scripts/install-test-tools.sh (Debian packages prometheus, "
                    "prometheus-alertmanager, prometheus-node-exporter, prometheus-blackbox-exporter, openssl)")
    return path
