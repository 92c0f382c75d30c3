"""Every script a person runs loads: the benchmarks run by hand, not by the suite, so a name they import
that moves breaks them unnoticed (the Ruler benchmark imported a helper that had been replaced)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPTS = sorted(path.stem for path in (ROOT / "scripts").glob("*.py") if path.stem != "__init__")


def test_the_scripts_are_found():
    assert {"capacity_benchmark", "ruler_latency_benchmark", "settings_reference"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_imports(name):
    importlib.import_module(f"scripts.{name}")


@pytest.mark.parametrize("name", [name for name in SCRIPTS if name.endswith("_benchmark")])
def test_every_benchmark_answers_help(name):
    done = subprocess.run([sys.executable, "-m", f"scripts.{name}", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
