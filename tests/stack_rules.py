"""The rule files a stack's Prometheus loads, staged as its rules directory.

Prometheus gets rules/*.yaml and one rule file generated from each of slos/*.yaml (slo-<name>.yaml,
components/configs/slo.py). The rule checks run on that set: `stage()` copies rules/*.yaml and
rules/tests/ into a temporary directory and writes beside them the generated rule files and their
promtool tests (tests/slo_scenarios.py), so that a promtool test finds its rule file where Prometheus
would. The SLO rules carry the environment of the tests' input series and are rendered for the
interval the promtool tests evaluate at.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

import yaml

from components.configs import slo as slo_config

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = "prod"
# The stack's default prometheus.evaluationInterval; tests/slo_scenarios.py and the side-by-side runs
# evaluate at it (their STEP).
EVALUATION_SECONDS = 30


def _slo_files(root: Path) -> tuple[tuple[str, str], ...]:
    return tuple((p.name, p.read_text(encoding="utf-8")) for p in sorted((Path(root) / "slos").glob("*.yaml")))


@functools.lru_cache(maxsize=None)
def _parsed(files: tuple[tuple[str, str], ...]) -> tuple[slo_config.Slo, ...]:
    return tuple(slo_config.parse_all(dict(files)))


@functools.lru_cache(maxsize=None)
def _rendered(files: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(slo_config.rule_files(_parsed(files), ENVIRONMENT, EVALUATION_SECONDS).items())


def slos(root: Path = ROOT) -> list[slo_config.Slo]:
    return list(_parsed(_slo_files(root)))


def generated_rule_files(root: Path = ROOT) -> dict[str, str]:
    """Rule file name -> text, rendered once per content of slos/."""
    return dict(_rendered(_slo_files(root)))


def _temporary(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.lru_cache(maxsize=None)
def _written(key: str, files: tuple[tuple[str, str], ...]) -> Path:
    directory = _temporary("fm-slo-rules-")
    for name, text in files:
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def generated_rule_paths(root: Path = ROOT) -> list[Path]:
    """The generated rule files of `root`'s slos/, written to a temporary directory (once per content)."""
    files = tuple(sorted(generated_rule_files(root).items()))
    directory = _written(hashlib.sha256(repr(files).encode()).hexdigest(), files)
    return [directory / name for name, _ in files]


def scenario_tests(root: Path = ROOT) -> dict[str, str]:
    """slo-<name>_test.yaml: the promtool tests of each SLO's alerts."""
    from tests import slo_scenarios

    out = {}
    for slo in slos(root):
        name = slo_config.rule_file_name(slo)
        rules = yaml.safe_load(generated_rule_files(root)[name])
        annotations = {r["alert"]: r["annotations"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
        document = slo_scenarios.test_document(slo, f"../{name}", annotations)
        out[name.replace(".yaml", "_test.yaml")] = yaml.safe_dump(document, sort_keys=False, width=200)
    return out


@functools.lru_cache(maxsize=None)
def stage(root: Path = ROOT) -> Path:
    """A directory laid out like rules/ as Prometheus gets it: every rule file, and tests/ with every test."""
    root = Path(root)
    directory = _temporary("fm-rules-")
    (directory / "tests").mkdir()
    for path in sorted((root / "rules").glob("*.yaml")):
        shutil.copy(path, directory / path.name)
    for name, text in generated_rule_files(root).items():
        if (directory / name).exists():
            raise RuntimeError(f"rules/{name} has the name of a generated SLO rule file")
        (directory / name).write_text(text, encoding="utf-8")
    for path in sorted((root / "rules" / "tests").glob("*.yaml")):
        shutil.copy(path, directory / "tests" / path.name)
    for name, text in scenario_tests(root).items():
        (directory / "tests" / name).write_text(text, encoding="utf-8")
    return directory
