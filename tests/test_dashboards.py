"""Dashboards and rule expressions against the metric contract.

Checks every dashboards/*.json (loads, stable uid, refresh, environment
variable, datasources, panels, units, PromQL that parses and names only known
metrics, environment filter on every selector) and every `expr` of
rules/*.yaml (parses, names only known metrics).

Known metric names = metrics/catalog.yaml (the application's contract)
                   + metrics/exporters.yaml (exporter allow-lists)
                   + recording rules defined in rules/*.yaml.

Each check is a plain function returning a list of problems; the
`test_check_catches_*` tests run every check against a deliberately broken
copy of the repository data in a temp dir, to prove that it can fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool

sys.path.insert(0, str(Path(__file__).resolve().parent))
import promql_names as pn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

ALLOWED_DATASOURCES = {"prometheus": "prometheus", "alertmanager": "alertmanager"}  # uid -> type
UID_RE = re.compile(r"^fm-[a-z0-9]+(-[a-z0-9]+)*$")
NO_TARGET_TYPES = {"row", "text"}
# Grafana unit ids used by the dashboards; extend when a new one is really needed.
GRAFANA_UNITS = {
    "none", "short", "percent", "percentunit", "s", "ms", "bytes", "decbytes", "Bps", "bps",
    "reqps", "ops", "cps", "pps", "rps", "wps", "dateTimeAsIso", "dateTimeFromNow", "dtdurations",
}
ENV_VALUE = pn.var_placeholder("environment")


# ---------------------------------------------------------------- the checks
# Each takes (dashboard dict, context) and returns a list of problem strings.


def check_identity(d: dict, ctx: dict) -> list[str]:
    """uid present, stable (fm-<file name>), title, tags, schemaVersion."""
    out = []
    uid = d.get("uid")
    stem = ctx["path"].stem
    if not isinstance(uid, str) or not UID_RE.match(uid) or len(uid) > 40:
        out.append(f"uid {uid!r} must match {UID_RE.pattern} and be at most 40 characters")
    elif uid != f"fm-{stem}":
        out.append(f"uid {uid!r} must be 'fm-{stem}' (derived from the file name, so it never changes)")
    if not d.get("title"):
        out.append("title missing")
    if "football-monitoring" not in (d.get("tags") or []):
        out.append("tags must include 'football-monitoring'")
    if d.get("schemaVersion") != 39:
        out.append(f"schemaVersion {d.get('schemaVersion')!r} != 39")
    if "__inputs" in d or "__requires" in d or "${DS_" in json.dumps(d):
        out.append("import placeholders (__inputs / ${DS_...}) are not allowed; use the provisioned uids")
    if d.get("id") not in (None,):
        out.append("top-level 'id' must be null/absent (Grafana assigns it)")
    return out


def check_refresh(d: dict, ctx: dict) -> list[str]:
    return [] if d.get("refresh") == "30s" else [f"refresh {d.get('refresh')!r} != '30s'"]


def check_environment_variable(d: dict, ctx: dict) -> list[str]:
    variables = {v.get("name"): v for v in (d.get("templating") or {}).get("list") or []}
    v = variables.get("environment")
    if not v:
        return ["templating variable 'environment' missing"]
    out = []
    if v.get("type") != "query":
        out.append(f"variable environment: type {v.get('type')!r} != 'query'")
    ds = v.get("datasource") or {}
    if ds.get("uid") != "prometheus":
        out.append(f"variable environment: datasource {ds!r} is not uid 'prometheus'")
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if re.sub(r"\s", "", q or "") != "label_values(up,environment)":
        out.append(f"variable environment: query {q!r} != 'label_values(up, environment)'")
    return out


def _datasources(d: dict):
    for panel in pn.iter_panels(d):
        if panel.get("type") == "row":
            continue
        yield f"panel {panel.get('id')} {panel.get('title')!r}", panel.get("datasource"), panel.get("type")
        for t in panel.get("targets") or []:
            if "datasource" in t:
                yield f"panel {panel.get('id')} target {t.get('refId')}", t["datasource"], None
    for v in (d.get("templating") or {}).get("list") or []:
        if "datasource" in v:
            yield f"variable {v.get('name')!r}", v["datasource"], None
    for a in (d.get("annotations") or {}).get("list") or []:
        yield f"annotation {a.get('name')!r}", a.get("datasource"), None


def check_datasources(d: dict, ctx: dict) -> list[str]:
    out = []
    for where, ds, ptype in _datasources(d):
        if ds is None and ptype == "text":
            continue
        if not isinstance(ds, dict):
            out.append(f"{where}: datasource {ds!r} must be an object {{type, uid}}")
            continue
        uid, typ = ds.get("uid"), ds.get("type")
        if uid not in ALLOWED_DATASOURCES or ALLOWED_DATASOURCES[uid] != typ:
            out.append(f"{where}: datasource {ds!r} is not a provisioned one {ALLOWED_DATASOURCES}")
    return out


def check_panels(d: dict, ctx: dict) -> list[str]:
    """Every panel has gridPos, a unique id; every data panel has targets with expr and a unit."""
    out = []
    ids = set()
    for panel in pn.iter_panels(d):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        pid = panel.get("id")
        if not isinstance(pid, int):
            out.append(f"{where}: id must be an integer")
        elif pid in ids:
            out.append(f"{where}: duplicate panel id {pid}")
        ids.add(pid)
        if not panel.get("title") and panel.get("type") != "row":
            out.append(f"{where}: title missing")
        gp = panel.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")):
            out.append(f"{where}: gridPos {gp!r} needs integer x, y, w, h")
        elif gp["x"] < 0 or gp["w"] <= 0 or gp["h"] <= 0 or gp["x"] + gp["w"] > 24:
            out.append(f"{where}: gridPos {gp!r} outside the 24-column grid")
        if panel.get("type") in NO_TARGET_TYPES:
            continue
        tgts = [t for t in panel.get("targets") or [] if (t.get("expr") or "").strip()]
        if not tgts:
            out.append(f"{where}: no target with an expr")
        refs = [t.get("refId") for t in panel.get("targets") or []]
        if len(refs) != len(set(refs)):
            out.append(f"{where}: duplicate refId in {refs}")
        unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not unit:
            out.append(f"{where}: fieldConfig.defaults.unit missing")
        elif unit not in GRAFANA_UNITS and not unit.startswith(("suffix:", "prefix:")):
            out.append(f"{where}: unit {unit!r} is not a Grafana unit id we use ({sorted(GRAFANA_UNITS)})")
    return out


def check_variables_defined(d: dict, ctx: dict) -> list[str]:
    """Every $var / ${var} used in a query is a templating variable (or a Grafana built-in)."""
    defined = {v.get("name") for v in (d.get("templating") or {}).get("list") or []}
    out = []
    for where, expr in _raw_exprs(d):
        for m in pn._VAR_RE.finditer(expr):
            name = m.group(1) or m.group(2) or m.group(3)
            if m.group(3):
                out.append(f"{where}: deprecated [[{name}]] syntax; use ${name}")
            if name.startswith("__"):
                if name not in pn.DURATION_VARS and name not in pn.NUMBER_VARS:
                    out.append(f"{where}: unknown built-in variable ${name}")
            elif name not in defined:
                out.append(f"{where}: variable ${name} is not defined in templating")
    return out


def _raw_exprs(d: dict):
    for panel in pn.iter_panels(d):
        for t in panel.get("targets") or []:
            if t.get("expr"):
                yield f"panel {panel.get('id')} {panel.get('title')!r}", t["expr"]
    for v in (d.get("templating") or {}).get("list") or []:
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if isinstance(q, str):
            yield f"variable {v.get('name')!r}", q


def check_exprs_parse(d: dict, ctx: dict) -> list[str]:
    out = []
    for where, expr in pn.iter_dashboard_exprs(d):
        try:
            pn.parse(expr)
        except ValueError as exc:
            out.append(f"{where}: {exc}")
    return out


def check_metric_names(d: dict, ctx: dict) -> list[str]:
    contract: pn.Contract = ctx["contract"]
    out = []
    for where, expr in pn.iter_dashboard_exprs(d):
        try:
            unknown = contract.unknown_names(expr)
            bad_labels = contract.bad_app_labels(expr)
        except ValueError:
            continue  # reported by check_exprs_parse
        for name in sorted(unknown):
            out.append(f"{where}: unknown metric {name!r} (not in catalog, exporters or recording rules)")
        for problem in bad_labels:
            out.append(f"{where}: {problem}")
        if any(s.name is None for s in pn.selectors(expr)):
            out.append(f"{where}: selector without a metric name in {expr!r}")
    return out


def check_environment_filter(d: dict, ctx: dict) -> list[str]:
    """Every selector filters on environment="$environment" (or =~ with $environment in it)."""
    out = []
    for where, expr in pn.iter_dashboard_exprs(d):
        if where.startswith("variable"):
            name = where.split("'")[1] if "'" in where else ""
            if name == "environment":
                continue
        try:
            sels = pn.selectors(expr)
        except ValueError:
            continue
        for s in sels:
            ok = any(op in ("=", "=~") and ENV_VALUE in v for op, v in s.matcher("environment"))
            if not ok:
                out.append(f"{where}: selector {s.name} lacks environment=\"$environment\"")
    return out


DASHBOARD_CHECKS = [
    check_identity,
    check_refresh,
    check_environment_variable,
    check_datasources,
    check_panels,
    check_variables_defined,
    check_exprs_parse,
    check_metric_names,
    check_environment_filter,
]


def check_unique_uids(dashboards: dict[Path, dict]) -> list[str]:
    seen: dict[str, Path] = {}
    out = []
    for path, d in dashboards.items():
        uid = d.get("uid")
        if uid in seen:
            out.append(f"{path.name}: uid {uid!r} already used by {seen[uid].name}")
        seen[uid] = path
    return out


def check_rules(root: Path, contract: pn.Contract) -> list[str]:
    """Every expr in rules/*.yaml parses and names only known metrics."""
    out = []
    for rule in pn.iter_rules(root):
        name = rule.get("record") or rule.get("alert") or "?"
        where = f"{rule['_file']} group {rule['_group']!r} rule {name!r}"
        expr = rule.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            out.append(f"{where}: expr missing")
            continue
        try:
            unknown = contract.unknown_names(expr)
            bad_labels = contract.bad_app_labels(expr)
        except ValueError as exc:
            out.append(f"{where}: {exc}")
            continue
        for n in sorted(unknown):
            out.append(f"{where}: unknown metric {n!r} (not in catalog, exporters or recording rules)")
        out.extend(f"{where}: {p}" for p in bad_labels)
    return out


def check_contract(root: Path) -> list[str]:
    """The catalog itself: types, components, the metrics the application must expose."""
    catalog = yaml.safe_load((root / "metrics" / "catalog.yaml").read_text())
    out = []
    names = [m.get("name") for m in catalog.get("metrics") or []]
    if len(names) != len(set(names)):
        out.append("duplicate names in catalog")
    for m in catalog.get("metrics") or []:
        n = m.get("name", "?")
        if not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", n or ""):
            out.append(f"{n}: invalid metric name")
        if m.get("type") not in ("counter", "gauge", "histogram", "info"):
            out.append(f"{n}: type {m.get('type')!r} not counter|gauge|histogram|info")
        if m.get("component") not in (catalog.get("components") or {}):
            out.append(f"{n}: component {m.get('component')!r} not one of {list(catalog.get('components') or {})}")
        if m.get("type") == "counter" and not n.endswith("_total"):
            out.append(f"{n}: counters end in _total")
        if m.get("type") == "info" and not n.endswith("_info"):
            out.append(f"{n}: info metrics end in _info")
        if m.get("type") != "counter" and n.endswith("_total"):
            out.append(f"{n}: only counters end in _total")
        if not m.get("help") or not m.get("unit"):
            out.append(f"{n}: help and unit are required")
        if not isinstance(m.get("labels"), list):
            out.append(f"{n}: labels must be a list")
        elif set(m["labels"]) & (set(catalog.get("target_labels") or []) | set(catalog.get("app_target_labels") or [])):
            out.append(f"{n}: application labels collide with target labels")
    exporters = yaml.safe_load((root / "metrics" / "exporters.yaml").read_text())
    app = set(names)
    for exporter, spec in (exporters.get("exporters") or {}).items():
        for name, mtype in (spec.get("metrics") or {}).items():
            if mtype not in ("counter", "gauge", "histogram", "summary", "info", "untyped"):
                out.append(f"exporters.yaml {exporter}/{name}: bad type {mtype!r}")
            if name in app:
                out.append(f"exporters.yaml {exporter}/{name}: also in the application catalog")
    return out


REQUIRED_APP_METRICS = {
    "http_requests_total", "http_request_duration_seconds", "http_requests_in_progress",
    "prediction_requests_total", "prediction_duration_seconds", "prediction_accuracy",
    "predictions_stored_total", "active_users", "football_data_collection_total",
    "football_data_collection_errors_total", "football_data_collection_duration_seconds",
    "football_data_cleaning_total", "football_data_cleaning_errors_total",
    "football_scheduler_task_delay_seconds", "football_scheduler_task_failures_total",
    "football_table_row_count", "football_database_connections",
    "football_database_query_duration_seconds", "football_metrics_last_update_timestamp",
    "football_system_info", "cache_hits_total", "cache_misses_total", "celery_queue_length",
}


# ---------------------------------------------------------------- fixtures


def _load_all(root: Path) -> tuple[dict[Path, dict], list[str]]:
    dashboards, errors = {}, []
    for path in pn.dashboard_files(root):
        try:
            dashboards[path] = pn.load_dashboard(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            errors.append(f"{path.name}: does not load: {exc}")
    return dashboards, errors


def run_all_checks(root: Path) -> list[str]:
    """Every check over a repository tree; used by the mutation tests."""
    contract = pn.load_contract(root)
    dashboards, errors = _load_all(root)
    for path, d in dashboards.items():
        ctx = {"path": path, "contract": contract}
        for check in DASHBOARD_CHECKS:
            errors += [f"{path.name}: {check.__name__}: {p}" for p in check(d, ctx)]
    errors += check_unique_uids(dashboards)
    errors += check_rules(root, contract)
    errors += check_contract(root)
    return errors


@pytest.fixture(scope="module")
def contract() -> pn.Contract:
    return pn.load_contract(ROOT)


DASHBOARD_PATHS = pn.dashboard_files(ROOT)


# ---------------------------------------------------------------- the tests


def test_catalog_is_well_formed():
    assert check_contract(ROOT) == []


def test_catalog_has_the_required_application_metrics():
    catalog = yaml.safe_load((ROOT / "metrics" / "catalog.yaml").read_text())
    names = {m["name"] for m in catalog["metrics"]}
    assert REQUIRED_APP_METRICS - names == set()


def test_dashboards_exist():
    names = {p.stem for p in DASHBOARD_PATHS}
    expected = {"stack-health", "overview", "application", "prediction-performance",
                "infrastructure", "kubernetes", "postgresql", "redis"}
    assert expected - names == set()


@pytest.mark.parametrize("path", DASHBOARD_PATHS, ids=lambda p: p.stem)
def test_dashboard_loads(path):
    d = json.loads(path.read_text())
    assert isinstance(d, dict) and d.get("panels")


@pytest.mark.parametrize("check", DASHBOARD_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("path", DASHBOARD_PATHS, ids=lambda p: p.stem)
def test_dashboard(path, check, contract):
    d = pn.load_dashboard(path)
    problems = check(d, {"path": path, "contract": contract})
    assert problems == [], "\n".join(problems)


def test_dashboard_uids_unique():
    dashboards, errors = _load_all(ROOT)
    assert errors == []
    assert check_unique_uids(dashboards) == []


def test_prediction_accuracy_gauge():
    """The accuracy gauge: prediction_accuracy, percentunit 0..1, red < 0.70 <= yellow < 0.85 <= green."""
    d = pn.load_dashboard(ROOT / "dashboards" / "prediction-performance.json")
    gauges = [p for p in pn.iter_panels(d) if p.get("type") == "gauge"
              and any("prediction_accuracy" in pn.metric_names(t["expr"]) for t in p.get("targets") or [])]
    assert gauges, "no gauge panel on prediction_accuracy"
    for p in gauges:
        defaults = p["fieldConfig"]["defaults"]
        assert defaults["unit"] == "percentunit"
        assert (defaults.get("min"), defaults.get("max")) == (0, 1)
        steps = [(s["color"], s["value"]) for s in defaults["thresholds"]["steps"]]
        assert steps == [("red", None), ("yellow", 0.70), ("green", 0.85)]
        exprs = " ".join(t["expr"] for t in p["targets"])
        assert "football_data_collection" not in exprs, "accuracy must not be derived from collection counters"


def promtool_problems(root: Path, workdir: Path) -> str:
    """Every substituted dashboard expr checked by Prometheus' own parser ('' when all pass)."""
    rules = []
    for path in pn.dashboard_files(root):
        for i, (where, expr) in enumerate(pn.iter_dashboard_exprs(pn.load_dashboard(path))):
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:expr{i}",
                          "expr": pn.substitute_vars(expr)})
    f = workdir / "dashboard-exprs.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": rules}]}))
    res = subprocess.run([require_tool("promtool"), "check", "rules", str(f)], capture_output=True, text=True)
    return "" if res.returncode == 0 else res.stdout + res.stderr


def test_dashboard_exprs_pass_promtool(tmp_path):
    """Second opinion from Prometheus' parser (function argument types, etc.)."""
    assert promtool_problems(ROOT, tmp_path) == ""


def test_rule_expressions_use_known_metrics(contract):
    problems = check_rules(ROOT, contract)
    assert problems == [], "\n".join(problems)


# ------------------------------------- the checks can fail (broken copies)


@pytest.fixture()
def broken_root(tmp_path) -> Path:
    """A copy of dashboards/, metrics/, rules/ and slos/ that a test may break."""
    for sub in ("dashboards", "metrics", "rules", "slos"):
        src = ROOT / sub
        if src.is_dir():
            shutil.copytree(src, tmp_path / sub, ignore=shutil.ignore_patterns("tests"))
        else:
            (tmp_path / sub).mkdir()
    # a known-good recording + alerting rule file, so rule checks have input
    (tmp_path / "rules" / "zz-mutation-fixture.yaml").write_text(yaml.safe_dump({"groups": [{
        "name": "fixture",
        "rules": [
            {"record": "fixture:http_requests:rate5m",
             "expr": "sum by (environment, job) (rate(http_requests_total[5m]))"},
            {"alert": "FixtureAlert", "expr": "fixture:http_requests:rate5m > 100"},
        ]}]}))
    return tmp_path


def _edit_dashboard(root: Path, stem: str, fn):
    path = root / "dashboards" / f"{stem}.json"
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d, indent=2))


def _first_data_panel(d):
    return next(p for p in pn.iter_panels(d) if p.get("type") not in NO_TARGET_TYPES)


def _set_expr(d, expr):
    _first_data_panel(d)["targets"][0]["expr"] = expr


def _baseline(root):
    """Problems of the unbroken copy (recording rules written concurrently may still be missing)."""
    return set(run_all_checks(root))


MUTATIONS = {
    # name: (dashboard-level mutation, substring expected in a new problem)
    "json_does_not_load": (None, "does not load"),
    "uid_changed": (lambda d: d.update(uid="fm-Something Else"), "check_identity"),
    "uid_duplicate": (None, "already used by"),
    "import_placeholder": (lambda d: d.update(__inputs=[{"name": "DS_PROMETHEUS"}]), "import placeholders"),
    "refresh_wrong": (lambda d: d.update(refresh="5s"), "check_refresh"),
    "environment_variable_missing": (lambda d: d["templating"].update(list=[
        v for v in d["templating"]["list"] if v["name"] != "environment"]), "variable 'environment' missing"),
    "foreign_datasource": (lambda d: _first_data_panel(d).update(
        datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}), "check_datasources"),
    "panel_without_targets": (lambda d: _first_data_panel(d).update(targets=[]), "no target with an expr"),
    "panel_without_gridpos": (lambda d: _first_data_panel(d).pop("gridPos"), "gridPos"),
    "panel_without_unit": (lambda d: _first_data_panel(d)["fieldConfig"]["defaults"].pop("unit"), "unit missing"),
    "expr_does_not_parse": (lambda d: _set_expr(d, 'sum(rate(http_requests_total{environment="$environment"}[$__rate_interval])'),
                            "check_exprs_parse"),
    "app_metric_typo": (lambda d: _set_expr(d, 'sum(rate(http_request_total{environment="$environment"}[$__rate_interval]))'),
                        "unknown metric 'http_request_total'"),
    "exporter_metric_typo": (lambda d: _set_expr(d, 'sum(node_memory_MemAvailable{environment="$environment"})'),
                             "unknown metric 'node_memory_MemAvailable'"),
    "histogram_suffix_on_counter": (lambda d: _set_expr(d, 'sum(rate(cache_hits_total_bucket{environment="$environment"}[5m]))'),
                                    "unknown metric 'cache_hits_total_bucket'"),
    "unknown_recording_rule": (lambda d: _set_expr(d, 'sum(job:http_requests:rate1m{environment="$environment"})'),
                               "unknown metric 'job:http_requests:rate1m'"),
    "app_label_typo": (lambda d: _set_expr(d, 'sum(rate(http_requests_total{environment="$environment", endpoint="/x"}[5m]))'),
                       "label 'endpoint' is not in the catalog"),
    "environment_filter_missing": (lambda d: _set_expr(d, "sum(up)"), "lacks environment"),
    "variable_typo": (lambda d: _set_expr(d, 'sum(up{environment="$enviroment"})'), "$enviroment is not defined"),
    "unit_typo": (lambda d: _first_data_panel(d)["fieldConfig"]["defaults"].update(unit="percentunits"),
                  "unit 'percentunits'"),
    "environment_filter_hardcoded": (lambda d: _set_expr(d, 'sum(up{environment="prod"})'), "lacks environment"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_check_catches_broken_dashboard(broken_root, mutation):
    before = _baseline(broken_root)
    fn, expected = MUTATIONS[mutation]
    target = "stack-health"
    if mutation == "json_does_not_load":
        p = broken_root / "dashboards" / f"{target}.json"
        p.write_text(p.read_text()[:-20])
    elif mutation == "uid_duplicate":
        src = broken_root / "dashboards" / f"{target}.json"
        d = json.loads(src.read_text())
        (broken_root / "dashboards" / "zz-copy.json").write_text(json.dumps(d))
    else:
        _edit_dashboard(broken_root, target, fn)
    new = set(run_all_checks(broken_root)) - before
    assert any(expected in p for p in new), f"{mutation}: no new problem containing {expected!r}; new: {sorted(new)}"


RULE_MUTATIONS = {
    "rule_metric_typo": ({"alert": "Typo", "expr": "rate(football_data_colection_errors_total[5m]) > 0"},
                         "unknown metric 'football_data_colection_errors_total'"),
    "rule_missing_recording_rule": ({"alert": "Missing", "expr": "job:does_not_exist:rate5m > 1"},
                                    "unknown metric 'job:does_not_exist:rate5m'"),
    "rule_does_not_parse": ({"alert": "Broken", "expr": "sum by (job (up)"}, "cannot parse"),
    "rule_label_typo": ({"record": "x:y:z", "expr": "sum(rate(prediction_requests_total{models=\"a\"}[5m]))"},
                        "label 'models' is not in the catalog"),
}


@pytest.mark.parametrize("mutation", sorted(RULE_MUTATIONS))
def test_check_catches_broken_rule(broken_root, mutation):
    before = _baseline(broken_root)
    rule, expected = RULE_MUTATIONS[mutation]
    (broken_root / "rules" / "zz-broken.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "broken", "rules": [rule]}]}))
    new = set(run_all_checks(broken_root)) - before
    assert any(expected in p for p in new), f"{mutation}: new problems: {sorted(new)}"


def test_check_catches_recording_rule_removed(broken_root):
    """A dashboard or alert that uses a recording rule fails once the rule is gone."""
    (broken_root / "rules" / "zz-user.yaml").write_text(yaml.safe_dump({"groups": [{
        "name": "user", "rules": [{"alert": "UsesFixture", "expr": "fixture:http_requests:rate5m > 1"}]}]}))
    assert not [p for p in run_all_checks(broken_root) if "fixture:http_requests:rate5m" in p]
    (broken_root / "rules" / "zz-mutation-fixture.yaml").unlink()
    assert [p for p in run_all_checks(broken_root) if "unknown metric 'fixture:http_requests:rate5m'" in p]


def test_check_catches_expr_promtool_rejects(broken_root, tmp_path):
    assert promtool_problems(broken_root, tmp_path) == ""
    _edit_dashboard(broken_root, "stack-health",
                    lambda d: _set_expr(d, 'histogram_quantile(0.9, rate(up{environment="$environment"}))'))
    assert "could not parse expression" in promtool_problems(broken_root, tmp_path)


def test_check_catches_broken_catalog(broken_root):
    before = _baseline(broken_root)
    path = broken_root / "metrics" / "catalog.yaml"
    catalog = yaml.safe_load(path.read_text())
    catalog["metrics"].append({"name": "cache_evictions", "type": "counter", "component": "api",
                               "labels": [], "unit": "keys", "help": "x"})
    catalog["metrics"].append({"name": "queue_depth", "type": "gauge", "component": "scheduler",
                               "labels": ["job"], "unit": "tasks", "help": "x"})
    path.write_text(yaml.safe_dump(catalog))
    new = set(run_all_checks(broken_root)) - before
    for expected in ("counters end in _total", "component 'scheduler'", "collide with target labels"):
        assert any(expected in p for p in new), f"{expected!r} not in {sorted(new)}"


def test_check_catches_removed_catalog_metric(broken_root):
    """Dropping a metric from the contract breaks every dashboard that uses it."""
    before = _baseline(broken_root)
    path = broken_root / "metrics" / "catalog.yaml"
    catalog = yaml.safe_load(path.read_text())
    catalog["metrics"] = [m for m in catalog["metrics"] if m["name"] != "prediction_accuracy"]
    path.write_text(yaml.safe_dump(catalog))
    new = set(run_all_checks(broken_root)) - before
    assert any("unknown metric 'prediction_accuracy'" in p for p in new)


def test_template_substitution():
    e = pn.substitute_vars('rate(x{environment="$environment", h=~"${handler:regex}"}[$__rate_interval]) '
                           '/ ${__range_s} + increase(y[$__range]) + z{a="[[old]]"}')
    assert e == ('rate(x{environment="VAR_environment", h=~"VAR_handler"}[5m]) '
                 '/ 3600 + increase(y[1h]) + z{a="VAR_old"}')
    assert pn.metric_names("histogram_quantile(0.9, sum by (le) (rate(a_bucket[5m]))) / on() group_left b"
                           ' + count({__name__="c"})') == {"a_bucket", "b", "c"}



def panels_naming_alerts(root: Path) -> list[tuple[str, dict, list[dict]]]:
    """(dashboard, panel, alerts) for every panel whose description names alerts of rules/."""
    alerts = {r["alert"]: r for r in pn.iter_rules(root) if "alert" in r}
    found = []
    for path in pn.dashboard_files(root):
        for panel in pn.iter_panels(pn.load_dashboard(path)):
            named = [alerts[w] for w in re.findall(r"\b[A-Z]\w+\b", panel.get("description") or "") if w in alerts]
            if named:
                found.append((path.name, panel, named))
    return found


def selections(expr: str) -> dict[str, set[frozenset]]:
    """metric -> its matchers but environment (the dashboard's variable, the alert's every value)."""
    out: dict[str, set[frozenset]] = {}
    for s in pn.selectors(expr):
        out.setdefault(s.name, set()).add(frozenset(m for m in s.matchers if m[0] != "environment"))
    return out


def panels_reading_other_series_than_their_alerts(root: Path) -> list[str]:
    problems = []
    for dashboard, panel, alerts in panels_naming_alerts(root):
        for target in panel.get("targets") or []:
            panel_reads = selections(target.get("expr") or "")
            # A panel may show what several alerts watch (a health status's colours, one alert each).
            alert_reads: dict[str, set[frozenset]] = {}
            for alert in alerts:
                for metric, matchers in selections(alert["expr"]).items():
                    alert_reads.setdefault(metric, set()).update(matchers)
            names = ", ".join(a["alert"] for a in alerts)
            for metric in panel_reads.keys() & alert_reads.keys():
                for matchers in panel_reads[metric] - alert_reads[metric]:
                    problems.append(f"{dashboard} panel {panel.get('title')!r} reads {metric} with {sorted(matchers)}, "
                                    f"which {names} never select: {sorted(map(sorted, alert_reads[metric]))}")
    return problems


def test_a_panel_naming_an_alert_reads_the_series_the_alert_reads():
    """A panel that says which alert watches it (its description names the alert) shows what that
    alert computes: a panel counting calls the alert leaves out (Thanos Query's Info health checks,
    failing every 5 s against a replica that is down) shows an error ratio past the alert's
    threshold while the alert rightly stays quiet."""
    assert panels_naming_alerts(ROOT), "no panel names an alert: the check below reads nothing"
    problems = panels_reading_other_series_than_their_alerts(ROOT)
    assert not problems, "\n".join(problems)


def test_the_panel_and_alert_check_catches_a_panel_selecting_more(broken_root):
    path = broken_root / "dashboards" / "thanos.json"
    path.write_text(path.read_text().replace(r'grpc_method!=\"Info\", ', ""))
    assert any("ThanosQueryErrors" in p for p in panels_reading_other_series_than_their_alerts(broken_root))
