"""The metric contract (metrics/catalog.yaml) as prometheus-client metrics: made from the catalog, so
that the demo (and the end-to-end tests' stand-in) cannot drift from it."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# The repository's (and the image's) metrics/catalog.yaml, beside this package.
CATALOG = Path(__file__).resolve().parents[1] / "metrics" / "catalog.yaml"


def catalog(component: str, path: Path = CATALOG) -> list[dict]:
    """The catalog's metrics of one component (api or worker)."""
    return [m for m in yaml.safe_load(path.read_text())["metrics"] if m["component"] == component]


def make_metric(spec: dict, registry: CollectorRegistry):
    name, labels, doc = spec["name"], spec.get("labels") or [], spec.get("help", spec["name"])
    kind = spec["type"]
    if kind == "counter":
        return Counter(name.removesuffix("_total"), doc, labels, registry=registry)
    if kind == "gauge":
        return Gauge(name, doc, labels, registry=registry)
    if kind == "histogram":
        return Histogram(name, doc, labels, buckets=spec["buckets"], registry=registry)
    if kind == "info":
        return Info(name.removesuffix("_info"), doc, registry=registry)
    raise ValueError(f"metric {name}: unknown type {kind}")


def registry_for(component: str) -> tuple[CollectorRegistry, dict]:
    registry = CollectorRegistry()
    return registry, {spec["name"]: make_metric(spec, registry) for spec in catalog(component)}
