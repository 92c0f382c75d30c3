"""The report as Markdown, as an HTML page with PNG charts (matplotlib), and as a short summary.

``write(report, directory)`` writes ``report.md``, ``report.html``, ``summary.txt`` and one PNG per
chart under ``charts/``; the page refers to its images relatively, so the directory can be copied or
served as it is. A chart is drawn only from data: where a part has none, the part says what is
missing instead of showing an empty frame.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from components.report.build import SEVERITIES, Chart, Part, Report

CHART_DIR = "charts"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def percent(value: Optional[float], digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:.{digits}f}%"


def number(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    if minutes < 1:
        return f"{int(round(seconds))} s"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours / 24:.1f} days"


def seconds_text(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


# --------------------------------------------------------------------------- tables (shared by both formats)

def _slo_table(report: Report) -> tuple[list, list]:
    head = ["SLO", "team", "objective", f"attained this {report.period.name}", "met",
            f"budget spent this {report.period.name}", "budget left (30 days)", "note"]
    rows = [[r.name, r.team, percent(r.objective, 2), percent(r.attainment, 3),
             "n/a" if r.met is None else ("yes" if r.met else "NO"), percent(r.budget_spent),
             percent(r.budget_left), r.note] for r in report.slo_rows]
    return head, rows


def _alert_tables(report: Report) -> list[tuple[str, list, list]]:
    tables = []
    groups: dict = {}
    for row in report.alert_rows:
        g = groups.setdefault((row.severity, row.team), [0, 0, 0.0, 0.0])
        g[0] += 1
        g[1] += len(row.episodes)
        g[2] += row.firing_seconds
        g[3] = max(g[3], row.longest)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    tables.append(("By severity and team", ["severity", "team", "alerts", "times fired", "firing in total", "longest"],
                   [[sev, team, str(a), str(n), duration(total), duration(longest)]
                    for (sev, team), (a, n, total, longest) in sorted(groups.items(),
                                                                      key=lambda kv: (order.get(kv[0][0], 9), kv[0][1]))]))
    rows = []
    for row in report.alert_rows:
        first = row.episodes[0]
        extra = ", ".join(f"{k}={v}" for k, v in sorted(row.labels.items())
                          if k not in ("alertname", "severity", "team", "environment"))
        since = "before the period" if first.open_at_start else _iso(first.start)
        rows.append([row.alertname, row.severity, row.team, str(len(row.episodes)), duration(row.firing_seconds),
                     duration(row.longest), since, "yes" if row.episodes[-1].open_at_end else "no", extra])
    tables.append(("Every alert", ["alert", "severity", "team", "times fired", "firing in total", "longest",
                                   "first fired", "firing at the end", "labels"], rows))
    if report.active_now is not None:
        now = [[(a.get("labels") or {}).get("alertname", "?"), (a.get("labels") or {}).get("severity", ""),
                (a.get("labels") or {}).get("team", ""), (a.get("status") or {}).get("state", ""),
                str(a.get("startsAt", ""))[:16].replace("T", " ")] for a in report.active_now]
        tables.append(("Held by Alertmanager now", ["alert", "severity", "team", "state", "since"], now))
    return tables


def _route_table(report: Report) -> tuple[list, list]:
    rows = [[handler, number(errors), number(requests), percent(errors / requests if requests else None, 2)]
            for handler, errors, requests in report.route_rows]
    return ["route", "server errors (5xx)", "requests", "error ratio"], rows


def _prediction_table(report: Report) -> tuple[list, list]:
    rows = [[model, number(n), number(bad), percent(bad / n if (bad is not None and n) else None, 2),
             percent(a7), percent(a30)] for model, n, bad, a7, a30 in report.prediction_rows]
    return ["model", "requests", "failed", "failed share", "accuracy (7 days)", "accuracy (30 days)"], rows


def _collection_table(report: Report) -> tuple[list, list]:
    rows = [[source, number(runs), number(bad), percent(1 - bad / runs if (bad is not None and runs) else None, 2)]
            for source, runs, bad in report.collection_rows]
    return ["source", "runs", "failed", "success"], rows


def summary(report: Report) -> str:
    """A few lines: the heading figures, for the webhook and the log."""
    lines = [f"Service level report of {report.environment}, {report.period.name} "
             f"{_iso(report.period.start)} to {_iso(report.period.end)}"]
    if report.unreachable:
        lines.append(f"Nothing could be read: {report.unreachable}")
        return "\n".join(lines)
    judged = [r for r in report.slo_rows if r.met is not None]
    missed = [r for r in judged if not r.met]
    lines.append(f"SLOs: {len(judged) - len(missed)} of {len(judged)} met"
                 + (f" ({len(report.slo_rows) - len(judged)} without data)" if len(judged) < len(report.slo_rows) else ""))
    for r in sorted(judged, key=lambda r: -(r.budget_spent or 0))[:3]:
        lines.append(f"  {r.name}: {percent(r.attainment, 3)} of {percent(r.objective, 2)}, "
                     f"{percent(r.budget_spent)} of the 30-day budget spent, {percent(r.budget_left)} left")
    fired = {s: sum(len(r.episodes) for r in report.alert_rows if r.severity == s) for s in SEVERITIES}
    if report.alerts_read:
        lines.append("Alerts fired: " + ", ".join(f"{n} {s}" for s, n in fired.items()))
    else:  # a failed query is no count of zero
        lines.append("Alerts fired: n/a (not read)")
    if report.route_rows:
        handler, errors, _ = report.route_rows[0]
        lines.append(f"Top error route: {handler} ({number(errors)} server errors)")
    if report.latency_p95 is not None:
        lines.append(f"API p95 latency: {seconds_text(report.latency_p95)}")
    if report.missing:
        lines.append(f"Missing: {len(report.missing)} item(s), listed in the report")
    return "\n".join(lines)


# --------------------------------------------------------------------------- charts

def draw(chart: Chart, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display in a job's container
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    scale = 100 if chart.unit == "percent" else 1
    figure, axes = plt.subplots(figsize=(9, 3.2), dpi=100)
    try:
        for label, points in chart.series:
            finite = [(t, v) for t, v in points if math.isfinite(v)]
            if not finite:
                continue
            axes.plot([datetime.fromtimestamp(t, timezone.utc) for t, _ in finite], [v * scale for _, v in finite],
                      label=label, linewidth=1.4)
        if chart.threshold is not None:
            axes.axhline(chart.threshold[0] * scale, color="#c0392b", linestyle="--", linewidth=1,
                         label=chart.threshold[1])
        axes.set_title(chart.title, fontsize=11)
        axes.set_ylabel({"percent": "%", "seconds": "seconds", "per_second": "per second"}.get(chart.unit, ""))
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=timezone.utc))
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="best")
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)


# --------------------------------------------------------------------------- Markdown

def _md_table(head: list, rows: list) -> list[str]:
    def cell(text):
        return str(text).replace("|", "\\|")

    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def _md_missing(part: Part) -> list[str]:
    return [f"- **missing**: {m}" for m in part.missing]


def markdown(report: Report, charts: dict) -> str:
    out = [f"# Service level report: {report.environment}, {report.period.name}", "",
           f"{_iso(report.period.start)} to {_iso(report.period.end)}; generated {_iso(report.generated)} "
           f"from {report.prometheus_url or 'Prometheus'}.", "", "```", summary(report), "```", ""]
    if report.unreachable:
        out += ["**Prometheus could not be read**: " + report.unreachable, ""]

    def charts_of(part: Part) -> list[str]:
        return [f"![{c.title}]({charts[c.key]})" for c in part.charts if c.key in charts] + [""]

    out += [f"## {report.slos.title}", "",
            f"Attained: the share of good events over the {report.period.name}. Budget spent: the share of the "
            f"30-day error budget those bad events used (a {report.period.name} exactly at the objective spends "
            f"{report.period.share_of_slo_period:.0%}). Budget left: of the rolling 30 days at the end; below 0 the "
            "objective is missed.", ""]
    out += _md_table(*_slo_table(report)) + [""] + charts_of(report.slos) + _md_missing(report.slos) + [""]
    out += [f"## {report.alerts.title}", ""]
    if not report.alert_rows:
        out += ["No alert fired in the period." if report.alerts.missing == [] else "No alert could be read.", ""]
    for title, head, rows in _alert_tables(report):
        if rows or title != "Every alert":
            out += [f"### {title}", ""] + (_md_table(head, rows) if rows else ["None."]) + [""]
    out += _md_missing(report.alerts) + [""]
    out += [f"## {report.errors.title}", ""]
    if report.route_rows:
        out += _md_table(*_route_table(report)) + [""]
    elif report.api_requests:
        out += [f"No server errors among {number(report.api_requests)} requests.", ""]
    out += _md_missing(report.errors) + [""]
    out += [f"## {report.latency.title}", "",
            f"p95 over the {report.period.name}: {seconds_text(report.latency_p95)}", ""]
    out += charts_of(report.latency) + _md_missing(report.latency) + [""]
    out += [f"## {report.predictions.title}", ""]
    if report.prediction_rows:
        out += _md_table(*_prediction_table(report)) + [""]
    out += charts_of(report.predictions) + _md_missing(report.predictions) + [""]
    out += [f"## {report.collection.title}", ""]
    if report.collection_rows:
        out += _md_table(*_collection_table(report)) + [""]
    out += charts_of(report.collection) + _md_missing(report.collection) + [""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- HTML

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
td.bad { color: #b00; font-weight: bold; }
pre { background: #f7f7f7; padding: 0.8em; }
.missing { color: #8a5a00; }
img { display: block; max-width: 100%; margin: 0.5em 0; }
"""


def _html_table(head: list, rows: list) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    bad = ' class="bad"'
    body = "".join("<tr>" + "".join(f"<td{bad if c == 'NO' else ''}>{html.escape(str(c))}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _html_part(part: Part, charts: dict, body: str) -> str:
    images = "".join(f'<img src="{html.escape(charts[c.key])}" alt="{html.escape(c.title)}">'
                     for c in part.charts if c.key in charts)
    missing = "".join(f'<li class="missing">missing: {html.escape(m)}</li>' for m in part.missing)
    return (f'<section><h2>{html.escape(part.title)}</h2>{body}{images}'
            + (f"<ul>{missing}</ul>" if missing else "") + "</section>")


def page(report: Report, charts: dict) -> str:
    title = f"Service level report: {report.environment}, {report.period.name}"
    alerts = ""
    for name, head, rows in _alert_tables(report):
        if rows or name != "Every alert":
            alerts += f"<h3>{html.escape(name)}</h3>" + (_html_table(head, rows) if rows else "<p>None.</p>")
    if not report.alert_rows:
        alerts = "<p>No alert fired in the period.</p>" + alerts
    routes = (_html_table(*_route_table(report)) if report.route_rows else
              f"<p>No server errors among {number(report.api_requests)} requests.</p>" if report.api_requests else "")
    parts = [
        _html_part(report.slos, charts, _html_table(*_slo_table(report))),
        _html_part(report.alerts, charts, alerts),
        _html_part(report.errors, charts, routes),
        _html_part(report.latency, charts,
                   f"<p>p95 over the {report.period.name}: {html.escape(seconds_text(report.latency_p95))}</p>"),
        _html_part(report.predictions, charts,
                   _html_table(*_prediction_table(report)) if report.prediction_rows else ""),
        _html_part(report.collection, charts,
                   _html_table(*_collection_table(report)) if report.collection_rows else ""),
    ]
    unreachable = (f'<p class="missing"><b>Prometheus could not be read</b>: {html.escape(report.unreachable)}</p>'
                   if report.unreachable else "")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{_iso(report.period.start)} to {_iso(report.period.end)}; generated {_iso(report.generated)} from "
            f"{html.escape(report.prometheus_url or 'Prometheus')}.</p><pre>{html.escape(summary(report))}</pre>"
            f"{unreachable}{''.join(parts)}</body></html>\n")


def write(report: Report, directory: Path) -> dict:
    """report.md, report.html, summary.txt and charts/*.png in ``directory``; returns the paths written."""
    directory = Path(directory)
    (directory / CHART_DIR).mkdir(parents=True, exist_ok=True)
    charts = {}
    for part in report.parts:
        for chart in part.charts:
            if chart.has_data:
                draw(chart, directory / CHART_DIR / f"{chart.key}.png")
                charts[chart.key] = f"{CHART_DIR}/{chart.key}.png"
    paths = {"markdown": directory / "report.md", "html": directory / "report.html",
             "summary": directory / "summary.txt"}
    paths["markdown"].write_text(markdown(report, charts), encoding="utf-8")
    paths["html"].write_text(page(report, charts), encoding="utf-8")
    paths["summary"].write_text(summary(report) + "\n", encoding="utf-8")
    return {**paths, "charts": [directory / p for p in charts.values()]}
