"""Shared fixtures: each stack's program, run once per test session under Pulumi's mocks."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components import offline  # noqa: E402

STACKS = ("dev", "prod")


@pytest.fixture(scope="session")
def runs() -> dict[str, offline.RunResult]:
    return {stack: offline.run(stack) for stack in STACKS}


@pytest.fixture(scope="session")
def dev(runs) -> offline.RunResult:
    return runs["dev"]


@pytest.fixture(scope="session")
def prod(runs) -> offline.RunResult:
    return runs["prod"]


def require_tool(name: str) -> str:
    """Path of a real binary the tests run; a missing tool fails, it never skips."""
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: run scripts/install-test-tools.sh (Debian packages prometheus, "
                    "prometheus-alertmanager, prometheus-node-exporter, prometheus-blackbox-exporter)")
    return path
