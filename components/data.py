"""The versioned data files of the repository: alert rules, SLOs, dashboards and the exporters' metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
DASHBOARDS_DIR = ROOT / "dashboards"
SLOS_DIR = ROOT / "slos"
EXPORTER_METRICS = ROOT / "metrics" / "exporters.yaml"
# The data files that speak only of one optional part of the stack (its section's `enabled`): its
# rule file and its dashboard are shipped to Prometheus and Grafana where it runs, so that a stack
# without it has no rule that cannot fire and no dashboard that can only be empty
# (components/metrics/prometheus.py, components/metrics/grafana.py).
OPTIONAL_PARTS: dict[str, tuple[str, str]] = {
    "thanos": ("thanos.yaml", "thanos.json"),
    "tracing": ("tracing.yaml", "tracing.json"),
    "logging": ("logging.yaml", "logging.json"),
}
THANOS_RULE_FILE, THANOS_DASHBOARD = OPTIONAL_PARTS["thanos"]


def left_out(settings: Any) -> tuple[set[str], set[str]]:
    """(rule files, dashboards) of the optional parts a stack's settings leave off (each part's
    section, ``settings.<part>.enabled``)."""
    off = [files for part, files in OPTIONAL_PARTS.items() if not getattr(settings, part).enabled]
    return {rules for rules, _ in off}, {dashboard for _, dashboard in off}

# What one ConfigMap may hold: the API server takes at most 1 MiB of data, and kubectl's client-side
# apply copies the whole object, JSON-escaped, into its last-applied-configuration annotation, where
# all annotations of an object share 256 KiB (apimachinery's TotalAnnotationSizeLimitB). Raw text
# within this budget stays under both once escaped.
CONFIGMAP_BUDGET = 160 * 1024


class DataFileError(ValueError):
    pass


def rule_files() -> dict[str, str]:
    """rules/*.yaml by file name (rules/tests/ holds promtool tests, not rules)."""
    files = {}
    for path in sorted(RULES_DIR.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise DataFileError(f"{path.relative_to(ROOT)} is not valid YAML: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
            raise DataFileError(f"{path.relative_to(ROOT)} must be a Prometheus rule file with a 'groups' list")
        files[path.name] = text
    check_budget("rules/*.yaml", files)
    return files


def slo_files() -> dict[str, str]:
    """slos/*.yaml by file name: one service level objective each (components/configs/slo.py reads them)."""
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(SLOS_DIR.glob("*.yaml"))}


def exporter_metrics(exporter: str) -> dict[str, str]:
    """The metric names (and their types) metrics/exporters.yaml lists for one exporter: what the
    rules, dashboards and runbooks may read of it."""
    try:
        document = yaml.safe_load(EXPORTER_METRICS.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataFileError(f"{EXPORTER_METRICS.relative_to(ROOT)} is not valid YAML: {exc}") from None
    metrics = ((document.get("exporters") or {}).get(exporter) or {}).get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise DataFileError(f"{EXPORTER_METRICS.relative_to(ROOT)} lists no metrics of {exporter}")
    return dict(metrics)


def dashboards() -> dict[str, str]:
    """dashboards/*.json by file name, each checked to be JSON with a uid."""
    files = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{path.relative_to(ROOT)} is not valid JSON: {exc}") from None
        if not isinstance(document, dict) or not document.get("uid"):
            raise DataFileError(f"{path.relative_to(ROOT)} has no dashboard uid")
        if len(text.encode()) > CONFIGMAP_BUDGET:
            raise DataFileError(f"{path.relative_to(ROOT)} is larger than {CONFIGMAP_BUDGET} bytes")
        files[path.name] = text
    return files


def check_budget(what: str, files: dict[str, str]) -> None:
    size = sum(len(text.encode()) for text in files.values())
    if size > CONFIGMAP_BUDGET:
        raise DataFileError(f"{what} add up to {size} bytes, more than one ConfigMap holds ({CONFIGMAP_BUDGET})")
