"""Helpers shared by tests/test_dashboards.py and scripts/metric_coverage.py.

Pure functions, no pytest: load the metric contract (metrics/catalog.yaml,
metrics/exporters.yaml), the rule files (rules/*.yaml) and the dashboards
(dashboards/*.json); turn a Grafana/PromQL expression into the metric names
and label matchers it selects.

Grafana template variables are replaced before parsing:

* interval variables ($__rate_interval, $__interval, $__range, ...) become
  a PromQL duration ("5m", "1m", "1h");
* numeric ones ($__range_s, $__interval_ms, ...) become a number;
* every other variable ($environment, ${job}, ${handler:regex}) becomes the
  plain string ``VAR_<name>``, so ``environment="$environment"`` turns into
  ``environment="VAR_environment"`` and can still be checked afterwards.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import promql_parser
import yaml

# --------------------------------------------------------------------------
# template variables
# --------------------------------------------------------------------------

DURATION_VARS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__auto": "1m",
}
NUMBER_VARS = {
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
    "__interval_s": "60",
    "__rate_interval_ms": "300000",
}

# $name, ${name}, ${name:format}, [[name]] (the last is deprecated; it is
# substituted so that the expression parses, and flagged separately).
_VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def var_placeholder(name: str) -> str:
    return f"VAR_{name}"


def substitute_vars(expr: str) -> str:
    """Replace Grafana template variables by values that PromQL accepts."""

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in DURATION_VARS:
            return DURATION_VARS[name]
        if name in NUMBER_VARS:
            return NUMBER_VARS[name]
        return var_placeholder(name)

    return _VAR_RE.sub(repl, expr)


# --------------------------------------------------------------------------
# PromQL: selectors and names
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    name: str | None  # None: selector without a metric name ({job="x"})
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)

    def matcher(self, label: str) -> list[tuple[str, str]]:
        return [(op, v) for (n, op, v) in self.matchers if n == label]


_OPS = {
    "Equal": "=",
    "NotEqual": "!=",
    "Re": "=~",
    "NotRe": "!~",
}


def _op(m) -> str:
    key = str(m.op).rsplit(".", 1)[-1]  # "MatchOp.NotEqual" -> "NotEqual"
    if key not in _OPS:
        raise ValueError(f"unknown matcher operator {m.op!r}")
    return _OPS[key]


def parse(expr: str, substitute: bool = True):
    """Parse a PromQL expression (after template substitution); raises ValueError."""
    text = substitute_vars(expr) if substitute else expr
    try:
        return promql_parser.parse(text)
    except BaseException as exc:  # the Rust binding raises a plain ValueError/Exception
        raise ValueError(f"cannot parse {text!r}: {exc}") from None


def selectors(expr: str) -> list[Selector]:
    """All vector selectors (also those inside range vectors) of an expression."""
    ast = parse(expr)
    found: list[Selector] = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = []
            ms = node.matchers
            groups = [list(ms.matchers)] + [list(g) for g in (getattr(ms, "or_matchers", None) or [])]
            for group in groups:
                for m in group:
                    matchers.append((m.name, _op(m), m.value))
            name = node.name
            if not name:
                for n, op, v in matchers:
                    if n == "__name__" and op == "=":
                        name = v
            found.append(Selector(name=name, matchers=tuple(matchers)))
        return True

    promql_parser.walk(ast, visit)
    return found


def metric_names(expr: str) -> set[str]:
    return {s.name for s in selectors(expr) if s.name}


# label_values(metric{...}, label) / label_values(label) / query_result(expr) /
# metrics(regex) / label_names() in Grafana's Prometheus variable queries.
_LABEL_VALUES_RE = re.compile(r"^\s*label_values\s*\((?P<body>.*)\)\s*$", re.S)
_QUERY_RESULT_RE = re.compile(r"^\s*query_result\s*\((?P<body>.*)\)\s*$", re.S)


def variable_query_expr(query: str) -> str | None:
    """The PromQL part of a Grafana variable query, or None if it has none."""
    m = _LABEL_VALUES_RE.match(query)
    if m:
        body = m.group("body")
        if "," not in body:
            return None  # label_values(label): no selector
        selector, _, _label = body.rpartition(",")
        return selector.strip()
    m = _QUERY_RESULT_RE.match(query)
    if m:
        return m.group("body").strip()
    return None


# --------------------------------------------------------------------------
# the contract: catalog + exporters + recording rules
# --------------------------------------------------------------------------

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SUMMARY_SUFFIXES = ("_sum", "_count")


@dataclass
class Contract:
    app: dict[str, dict] = field(default_factory=dict)  # catalog name -> entry
    exporter_metrics: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (exporter, type)
    target_labels: set[str] = field(default_factory=set)
    app_target_labels: set[str] = field(default_factory=set)
    recording: dict[str, str] = field(default_factory=dict)  # record name -> expr

    # ---- name resolution -------------------------------------------------
    def _expand(self, name: str, mtype: str) -> set[str]:
        if mtype == "histogram":
            return {name + s for s in HISTOGRAM_SUFFIXES}
        if mtype == "summary":
            return {name} | {name + s for s in SUMMARY_SUFFIXES}
        return {name}

    def app_series(self) -> dict[str, str]:
        """Series name -> catalog metric name (histograms give 3 series)."""
        out = {}
        for name, entry in self.app.items():
            for series in self._expand(name, entry["type"]):
                out[series] = name
        return out

    def exporter_series(self) -> dict[str, str]:
        out = {}
        for name, (exporter, mtype) in self.exporter_metrics.items():
            for series in self._expand(name, mtype):
                out[series] = exporter
        return out

    def known(self) -> set[str]:
        return set(self.app_series()) | set(self.exporter_series()) | set(self.recording)

    def unknown_names(self, expr: str) -> set[str]:
        known = self.known()
        return {n for n in metric_names(expr) if n not in known}

    def bad_app_labels(self, expr: str) -> list[str]:
        """Matchers on an application metric that name a label it does not have."""
        series = self.app_series()
        problems = []
        for sel in selectors(expr):
            if sel.name not in series:
                continue
            entry = self.app[series[sel.name]]
            allowed = set(entry.get("labels") or []) | self.target_labels | self.app_target_labels | {"__name__"}
            if sel.name.endswith("_bucket") and entry["type"] == "histogram":
                allowed.add("le")
            for label, _op_, _v in sel.matchers:
                if label not in allowed:
                    problems.append(f"{sel.name}: label {label!r} is not in the catalog (allowed: {sorted(allowed)})")
        return problems

    def base_metrics(self, expr: str, _seen: frozenset = frozenset()) -> set[str]:
        """Catalog metric names an expression depends on, through recording rules too."""
        series = self.app_series()
        out: set[str] = set()
        for name in metric_names(expr):
            if name in series:
                out.add(series[name])
            elif name in self.recording and name not in _seen:
                out |= self.base_metrics(self.recording[name], _seen | {name})
        return out


def load_contract(root: Path) -> Contract:
    root = Path(root)
    catalog = yaml.safe_load((root / "metrics" / "catalog.yaml").read_text())
    c = Contract()
    c.target_labels = set(catalog.get("target_labels") or [])
    c.app_target_labels = set(catalog.get("app_target_labels") or [])
    for entry in catalog["metrics"]:
        c.app[entry["name"]] = entry
    exporters_file = root / "metrics" / "exporters.yaml"
    if exporters_file.exists():
        data = yaml.safe_load(exporters_file.read_text())
        for exporter, spec in (data.get("exporters") or {}).items():
            for name, mtype in (spec.get("metrics") or {}).items():
                c.exporter_metrics[name] = (exporter, mtype)
    for rule in iter_rules(root):
        if "record" in rule:
            c.recording[rule["record"]] = rule.get("expr", "")
    return c


# --------------------------------------------------------------------------
# rules/*.yaml
# --------------------------------------------------------------------------


def rule_files(root: Path) -> list[Path]:
    """rules/*.yaml and the rule files generated from slos/*.yaml: every rule file Prometheus loads."""
    d = Path(root) / "rules"
    if not d.is_dir():
        return []
    from tests import stack_rules  # imports the generator: only when rules are read

    generated = stack_rules.generated_rule_paths(root) if (Path(root) / "slos").is_dir() else []
    return sorted(list(d.glob("*.yaml")) + list(d.glob("*.yml"))) + generated


def _groups(doc) -> list:
    if not isinstance(doc, dict):
        return []
    if "groups" in doc:
        return doc.get("groups") or []
    spec = doc.get("spec")  # PrometheusRule custom resource
    if isinstance(spec, dict):
        return spec.get("groups") or []
    return []


def iter_rules(root: Path, path: Path | None = None) -> Iterator[dict]:
    """Every rule dict (with extra key '_file') of rules/*.yaml."""
    for f in [path] if path else rule_files(root):
        for doc in yaml.safe_load_all(f.read_text()):
            for group in _groups(doc):
                for rule in group.get("rules") or []:
                    if isinstance(rule, dict):
                        yield {**rule, "_file": f.name, "_group": group.get("name")}


# --------------------------------------------------------------------------
# dashboards
# --------------------------------------------------------------------------


def dashboard_files(root: Path) -> list[Path]:
    return sorted((Path(root) / "dashboards").glob("*.json"))


def load_dashboard(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def iter_panels(dashboard: dict) -> Iterator[dict]:
    """All panels, including those nested in collapsed rows."""
    for panel in dashboard.get("panels") or []:
        yield panel
        for inner in panel.get("panels") or []:
            yield inner


def iter_dashboard_exprs(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, expr) for every panel target and every variable query."""
    for panel in iter_panels(dashboard):
        for t in panel.get("targets") or []:
            if t.get("expr"):
                yield f"panel {panel.get('id')} {panel.get('title')!r} ref {t.get('refId')}", t["expr"]
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if isinstance(q, str):
            e = variable_query_expr(q)
            if e:
                yield f"variable {var.get('name')!r}", e


def iter_all_names(items: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
    for where, expr in items:
        for name in sorted(metric_names(expr)):
            yield where, expr, name
