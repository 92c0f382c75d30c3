"""What a running exporter exposes, and what the rules and dashboards ask of it.

``Reading`` is what Prometheus took from a real exporter's /metrics with the generated scrape job:
every series name with the label names it carried (the exporter's own and those the job attaches),
each family's type as exposed (the scrape's metadata), and the labels of its build_info. Prometheus
reads the exposition here because it is the reader that matters: a text parser of another
library normalises names (prometheus_client appends _total to every counter sample, which
postgres_exporter's pg_stat_database_* counters do not carry). ``uses()`` walks PromQL
expressions for the metric names of one exporter and the labels selected on them: matchers,
``by (...)`` of aggregations and ``on (...)`` / ``group_left (...)`` of vector matching, each
attributed to the names in the subtree it applies to. ``problems()`` holds the uses against a
reading, and ``catalog_problems()`` holds an exporters.yaml section against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import promql_parser

from tests import promql_names as pn


@dataclass
class Reading:
    labels: dict[str, set[str]] = field(default_factory=dict)  # series name -> label names
    types: dict[str, str] = field(default_factory=dict)  # family name -> type, as exposed
    build_info: dict[str, str] = field(default_factory=dict)  # labels of <program>_build_info


def reading(series: list[dict], metadata: list[dict], build_info: str) -> Reading:
    """From Prometheus' /api/v1/series and /api/v1/targets/metadata answers for one job."""
    out = Reading()
    for labels in series:
        name = labels["__name__"]
        out.labels.setdefault(name, set()).update(k for k in labels if k != "__name__")
        if name == build_info:
            out.build_info = {k: v for k, v in labels.items() if k != "__name__"}
    for entry in metadata:
        out.types[entry["metric"]] = entry["type"]
    return out


SUFFIXES = {"counter": ("",), "gauge": ("",), "info": ("",), "untyped": ("",),
            "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
# How Prometheus' metadata names the type of a family listed as each type.
EXPOSED_AS = {"info": "gauge", "untyped": "unknown"}


def catalog_problems(metrics: dict[str, str], found: Reading) -> list[str]:
    """exporters.yaml's names (name -> type) that the reading lacks or types otherwise."""
    out = []
    for name, mtype in sorted(metrics.items()):
        missing = [name + suffix for suffix in SUFFIXES[mtype] if name + suffix not in found.labels]
        if missing:
            out.append(f"{', '.join(missing)}: not exposed")
        elif found.types.get(name) != EXPOSED_AS.get(mtype, mtype):
            out.append(f"{name}: exposed as a {found.types.get(name)}, listed as a {mtype}")
    return out


@dataclass(frozen=True)
class Use:
    where: str
    name: str
    label: str | None  # None: the name itself
    how: str  # "selector", "matcher", "by", "on", "group"


def _selector_names(node, ours: Callable[[str], bool]) -> set[str]:
    found: set[str] = set()

    def visit(n):
        if isinstance(n, promql_parser.VectorSelector):
            names = {n.name} if n.name else {m.value for m in n.matchers.matchers
                                                if m.name == "__name__" and pn._op(m) == "="}
            found.update(x for x in names if ours(x))
        return True

    promql_parser.walk(node, visit)
    return found


def uses(items: Iterable[tuple[str, str]], ours: Callable[[str], bool]) -> list[Use]:
    """Every use of one of our metric names in (where, expr) pairs."""
    out: list[Use] = []
    for where, expr in items:
        ast = pn.parse(expr)

        def visit(n, where=where):
            if isinstance(n, promql_parser.VectorSelector):
                for name in _selector_names(n, ours):
                    out.append(Use(where, name, None, "selector"))
                    groups = [list(n.matchers.matchers)] + [list(g) for g in (getattr(n.matchers, "or_matchers", None) or [])]
                    out.extend(Use(where, name, m.name, "matcher") for g in groups for m in g if m.name != "__name__")
            elif isinstance(n, promql_parser.AggregateExpr) and n.modifier is not None \
                    and str(n.modifier.type).endswith("By"):
                for name in _selector_names(n.expr, ours):
                    out.extend(Use(where, name, label, "by") for label in n.modifier.labels)
            elif isinstance(n, promql_parser.BinaryExpr) and n.modifier is not None:
                matching = n.modifier.matching
                if matching is not None and str(matching.type).endswith("Include"):
                    for side in (n.lhs, n.rhs):
                        for name in _selector_names(side, ours):
                            out.extend(Use(where, name, label, "on") for label in matching.labels)
                card = str(n.modifier.card)
                one = n.rhs if card.endswith("ManyToOne") else n.lhs if card.endswith("OneToMany") else None
                if one is not None:
                    for name in _selector_names(one, ours):
                        out.extend(Use(where, name, label, "group") for label in n.modifier.group_labels or [])
            return True

        promql_parser.walk(ast, visit)
    return out


def problems(found: list[Use], exposed: Reading) -> list[str]:
    """Uses of a name the exporter does not expose, or of a label its series do not carry."""
    out = set()
    for use in found:
        if use.name not in exposed.labels:
            out.add(f"{use.where}: {use.name} is not exposed")
        elif use.label is not None and use.label not in exposed.labels[use.name]:
            out.add(f"{use.where}: {use.name} has no label {use.label!r} ({use.how}); it has "
                    f"{sorted(exposed.labels[use.name])}")
    return sorted(out)
