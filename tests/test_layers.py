"""The package's folders are its layers, and imports point down them only.

settings and data at the bottom, then the pure config renderers, then the platforms (the service
description, Kubernetes, Docker), then the systems (metrics, logging, tracing, each on its own),
then the stack that wires one environment, then the tools a person runs.
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "components.settings": 0,
    "components.data": 0,
    "components.cron": -1,  # a pure utility with no imports, under the settings that validate with it
    "components.stack_outputs": -1,  # reading a deployed stack's outputs: no project imports
    "components.units": -2,  # byte arithmetic with no imports, under everything that sizes memory
    "components.logstash_volume": -1,  # sizing arithmetic the settings validate with and the logging config uses
    "components.configs": 1,
    "components.platform": 2,
    "components.metrics": 3,
    "components.logging": 3,
    "components.tracing": 3,
    "components.demo": 3,
    "components.report": 3,
    "components.stack": 4,
    "tools": 5,
}


def package_of(module: str) -> str:
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return ""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the project imports by full name"
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n and n.split(".")[0] in ("components", "tools")]
    return found


def layering_problems(paths) -> list[str]:
    problems = []
    for path in paths:
        here = package_of(module_name(path))
        assert here, f"{path} lies in no layer: add its folder to LAYERS"
        for target in project_imports(path):
            there = package_of(target)
            if not there or there == here:
                continue
            if LAYERS[there] > LAYERS[here]:
                problems.append(f"{module_name(path)} imports {target}: up from layer {LAYERS[here]} to {LAYERS[there]}")
            elif LAYERS[there] == LAYERS[here]:
                problems.append(f"{module_name(path)} imports {target}: sideways between {here} and {there}")
    return problems


def project_modules():
    # The two package markers hold only a docstring.
    return [p for d in ("components", "tools") for p in sorted((ROOT / d).rglob("*.py")) if p.parent != ROOT / d or p.name != "__init__.py"]


def test_every_import_points_down_the_layers():
    assert layering_problems(project_modules()) == []


def test_the_demo_is_a_program_of_its_own():
    """demo/ runs in its own image: it imports nothing of the stack, the tools or the tests."""
    for path in sorted((ROOT / "demo").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not [n for n in names if n.split(".")[0] in ("components", "tools", "tests", "scripts")], \
                f"{path}: imports {names}"


def test_check_catches_an_upward_and_a_sideways_import(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "components" / "configs").mkdir(parents=True)
    (tmp_path / "components" / "logging").mkdir(parents=True)
    up = tmp_path / "components" / "configs" / "x.py"
    up.write_text("from components.stack import build\n")
    side = tmp_path / "components" / "logging" / "y.py"
    side.write_text("from components.metrics import exporters\n")
    problems = layering_problems([up, side])
    assert any("components.configs.x imports components.stack" in p and "up from layer 1 to 4" in p for p in problems)
    assert any("sideways between components.logging and components.metrics" in p for p in problems)
