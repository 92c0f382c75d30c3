"""The service level report (components/report/) against a real Prometheus: the synthetic week with an
incident, a period without traffic, an empty environment, an unreachable server, and alerts as the
pinned Prometheus itself writes them; the HTML page in headless Chromium.

The week (tests/slo_week.py) is back-filled like the SLO budget test's: OpenMetrics -> promtool blocks,
then the recording rules the report reads (the SLO rules' 5-minute series at each evaluation, their
30-day ratio and budget remaining every 10 minutes: only their last values and a chart read them).
What the report must show comes from the history's closed form, never from Prometheus.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from components.configs import slo as slo_config
from components.report import build, cli, render
from components.report.queries import Period, Queries
from components.report.source import Prometheus
from scripts import dashboard_query_benchmark as bench
from tests import promql_names as pn
from tests import slo_week as sw
from tests import stack_rules
from tests import synthetic_fleet as sf
from tests.conftest import ROOT, require_tool

STEP = 60  # seconds between samples and between rule evaluations: a week at half the cost of 30 s
# The SLOs' 30-day ratio and budget remaining, back-filled at a coarser interval: each evaluation sums 30 days.
COARSE = {slo_config.SLI_ERROR_RATIO.format(window=slo_config.PERIOD), slo_config.BUDGET_REMAINING}


def recording_rules_read(exprs) -> set[str]:
    """The recording rules the expressions read, with the rules those read."""
    contract = pn.load_contract(ROOT)
    found, todo = set(), [n for e in exprs for n in pn.metric_names(e)]
    while todo:
        name = todo.pop()
        if name in contract.recording and name not in found:
            found.add(name)
            todo += pn.metric_names(contract.recording[name])
    return found


def _rule_file(path: Path, wanted: set[str]) -> Path:
    groups = []
    for rule_path in pn.rule_files(ROOT):
        for group in yaml.safe_load(rule_path.read_text())["groups"]:
            rules = [r for r in group["rules"] if r.get("record") in wanted]
            if rules:
                groups.append({"name": group["name"], "rules": rules})
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


LIVE_RULES = {"groups": [{"name": "report-probe", "interval": "1s", "rules": [{
    # Active during the first 5 s of every 10 s, firing after a `for` of 2 s.
    "alert": "ReportProbe", "expr": "vector(1) and on () (vector(time() % 10) < 5)", "for": "2s",
    "labels": {"severity": "warning", "team": "platform"}}]}]}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A Prometheus of its own, evaluating a flapping alert from now on: started before the week's
    back-fill, so that it has fired a few times when the test reads it."""
    work = tmp_path_factory.mktemp("report-live")
    (work / "tsdb").mkdir()
    rules = work / "probe.yaml"
    rules.write_text(yaml.safe_dump(LIVE_RULES))
    with bench.Prometheus(require_tool("prometheus"), work / "tsdb", work, [rules]) as prom:
        prom.start()
        yield prom, time.time()


@pytest.fixture(scope="module")
def week(tmp_path_factory, live):
    promtool, prometheus = require_tool("promtool"), require_tool("prometheus")
    work = tmp_path_factory.mktemp("report-week")
    tsdb = work / "tsdb"
    tsdb.mkdir()
    end = (int(time.time()) - 3600) // sw.DAY * sw.DAY
    spec = sf.FleetSpec(seconds=sw.WEEK, step=STEP, end=end)
    sw.write_history(spec, sw.report_families(spec), work, tsdb, promtool)
    wanted = recording_rules_read(Queries("prod", Period("week", end)).all().values())
    fine, coarse = _rule_file(work / "fine.yaml", wanted - COARSE), _rule_file(work / "coarse.yaml", wanted & COARSE)
    with bench.Prometheus(prometheus, tsdb, work, [], retention="60d") as prom:
        prom.start()
        bench.backfill_rules(prom, promtool, [fine], spec.start, spec.end, work, eval_interval=STEP, name="fine",
                             max_block="168h")
        # Under the 5-minute lookback, so that the budget remaining finds the 30-day ratio it reads.
        bench.backfill_rules(prom, promtool, [coarse], spec.start, spec.end, work, eval_interval=240, name="coarse",
                             max_block="168h")
        yield spec, prom


def _report(prom, environment="prod", end=None, spec=None) -> build.Report:
    return build.build(Prometheus(prom.url), environment, Period("week", end or spec.end), stack_rules.slos(),
                       prom.url)


@pytest.fixture(scope="module")
def written(week, tmp_path_factory):
    """The CLI's report of the week, as a person runs it."""
    spec, prom = week
    out = tmp_path_factory.mktemp("report-out")
    lines = []

    class Out:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    status = cli.main(["--prometheus-url", prom.url, "--environment", "prod", "--period", "week",
                       "--end", str(spec.end), "--out", str(out)], Out())
    directory = next(out.iterdir())
    return status, "".join(lines), directory


def test_every_query_parses_and_names_only_the_contract():
    contract = pn.load_contract(ROOT)
    queries = Queries("prod", Period("week", 0)).all()
    assert len(queries) >= 15
    for name, expr in queries.items():
        pn.parse(expr)
        assert contract.unknown_names(expr) == set(), (name, expr)
        assert contract.bad_app_labels(expr) == [], (name, expr)
        for selector in pn.selectors(expr):
            assert selector.matcher("environment"), (name, "selects every environment", expr)


def test_the_report_shows_the_budget_the_incident_burned(week, written):
    spec, _ = week
    status, printed, directory = written
    assert status == 0, printed
    slo = next(s for s in stack_rules.slos() if s.name == sw.SLO_NAME)
    expected = sw.expected_share(spec, slo, spec.start, spec.end)
    assert expected > 0.2, expected
    row = next(line for line in (directory / "report.md").read_text().splitlines()
               if line.startswith(f"| {sw.SLO_NAME} |"))
    shown = float(row.split("|")[6].strip().rstrip("%")) / 100  # "budget spent this week"
    print(f"\nbudget burned in the week: the report shows {shown:.4f}, the history's closed form {expected:.4f}")
    assert abs(shown - expected) <= sw.TOLERANCE, (row, expected)
    bad, total = sw.Traffic(spec, "bad"), sw.Traffic(spec, "all")
    attained = 1 - (bad.bad(spec.end) - bad.bad(spec.start)) / (total.total(spec.end) - total.total(spec.start))
    assert row.split("|")[4].strip() == render.percent(attained, 3) and "| NO |" in row, row
    assert (directory / "report.html").read_text().count("<img ") == len(list((directory / "charts").glob("*.png")))


def test_figures_of_the_week(week):
    spec, prom = week
    report = _report(prom, spec=spec)
    rows = {r.name: r for r in report.slo_rows}
    assert rows["api-latency"].attainment is not None and rows["data-collection-success"].attainment is not None
    # The SLOs whose inputs the week lacks are named as missing, not shown as met.
    for name in ("monitoring-availability", "notification-delivery", "prediction-freshness"):
        assert rows[name].attainment is None and rows[name].met is None
        assert any(name in m for _, m in report.missing), report.missing
    # Collection: the failed share of each source, as the counters say.
    for source, runs, failed in report.collection_rows:
        rate, share = sw.SOURCES[source]
        assert math.isclose(runs, rate * sw.WEEK, rel_tol=0.02) and math.isclose(failed / runs, share, rel_tol=0.05)
    models = {m: (n, bad, a7) for m, n, bad, a7, _ in report.prediction_rows}
    assert set(models) == set(sw.MODELS)
    for model, (n, bad, accuracy) in models.items():
        assert math.isclose(bad / n, sw.MODELS[model][1], rel_tol=0.1) and abs(accuracy - sw.MODELS[model][2]) < 0.03
    # The error routes leave the health probe out, though it fails all the time.
    bad = sw.Traffic(spec, "bad")
    assert [r[0] for r in report.route_rows] == [sw.LABELS["handler"]]
    assert math.isclose(report.route_rows[0][1], bad.bad(spec.end) - bad.bad(spec.start), rel_tol=0.02)
    assert 0.04 < report.latency_p95 < 2.5
    assert {c.key for p in report.parts for c in p.charts} == {
        "slo-budget", "latency-p95", "predictions-volume", "predictions-accuracy", "collection-success"}, report.missing


def test_alerts_with_their_durations(week):
    spec, prom = week
    report = _report(prom, spec=spec)
    got = {(r.alertname, r.labels.get("source", "")): r for r in report.alert_rows}
    for labels, active, first, last in sw.alert_episodes(spec):
        if last < spec.start + STEP:
            continue
        row = got[(labels["alertname"], labels.get("source", ""))]
        assert (row.severity, row.team) == (labels["severity"], labels["team"])
        episode = next(e for e in row.episodes if abs(e.start - max(first, spec.end - sw.WEEK)) <= 2 * STEP)
        assert abs(episode.seconds - (min(last, spec.end) - max(first, spec.end - sw.WEEK))) <= 2 * STEP, episode
        if active >= spec.end - sw.WEEK:
            assert episode.active_since == pytest.approx(active, abs=1), episode
    assert len(got[("FootballDataCollectionErrors", "odds")].episodes) == 2
    watchdog = got[("Watchdog", "")]
    assert watchdog.episodes[0].open_at_start and watchdog.episodes[-1].open_at_end
    labels, _, first, last = next(e for e in sw.alert_episodes(spec) if e[0]["severity"] == "critical")
    fired = render.duration(last - first + STEP)  # the last evaluation counts for one interval
    assert f"| critical | backend | 1 | 1 | {fired} | {fired} |" in render.markdown(report, {})


def test_alerts_as_the_pinned_prometheus_writes_them(live, week):
    """ALERTS (alertstate firing, pending) and ALERTS_FOR_STATE (the time the alert became active) of a
    real rule that flaps: the report finds each firing and the `for` before it."""
    prom, started = live
    time.sleep(max(0.0, started + 16 - time.time()))  # a few flaps, on a fast machine too
    # The first episode may be cut by the start; on a loaded machine the first whole one can come
    # late: read again, for a bounded time, until one has closed.
    deadline = time.monotonic() + 30
    while True:
        read = build._Reader(Prometheus(prom.url), Queries("prod", Period("day", int(time.time()))))
        _, rows = build._alert_part(read)
        probe = next(r for r in rows if r.alertname == "ReportProbe")
        closed = [e for e in probe.episodes if not e.open_at_end and e.start > started + 5]
        if closed or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert len(closed) >= 1, probe.episodes
    for e in closed:
        assert 2 <= e.seconds <= 4.5, e  # 5 s active, 2 s of them pending
        assert e.active_since is not None and 1.5 <= e.start - e.active_since <= 3.5, e


def test_a_period_without_traffic_says_so(week):
    spec, prom = week
    report = _report(prom, sw.QUIET_ENVIRONMENT, spec=spec)
    row = next(r for r in report.slo_rows if r.name == sw.SLO_NAME)
    assert row.events == 0 and row.attainment is None and row.met is None and row.note == "no traffic in the period"
    assert any("no traffic" in m for title, m in report.missing if title == "Top error routes")
    assert not report.route_rows and report.latency_p95 is None


def test_an_environment_without_data_writes_a_report_of_what_is_missing(week, tmp_path):
    spec, prom = week
    report = _report(prom, "nowhere", spec=spec)
    # Alerts but the Watchdog's carry their environment; the Watchdog's (vector(1)) has none to tell.
    assert {r.alertname for r in report.alert_rows} == {"Watchdog"}
    assert all(part.missing for part in report.parts if part is not report.alerts), report.missing
    assert all(r.attainment is None for r in report.slo_rows)
    paths = render.write(report, tmp_path)
    assert paths["charts"] == [] and "<img" not in paths["html"].read_text()
    assert "missing" in paths["markdown"].read_text()


def test_an_unreachable_prometheus_gives_a_report_that_says_so(tmp_path):
    lines = []
    out = type("Out", (), {"write": lambda self, t: lines.append(t), "flush": lambda self: None})()
    status = cli.main(["--prometheus-url", f"http://127.0.0.1:{bench.free_port()}", "--environment", "prod",
                       "--period", "day", "--out", str(tmp_path)], out)
    printed = "".join(lines)
    assert status == 1 and "is unreachable" in printed, printed
    markdown = next(tmp_path.glob("*/report.md")).read_text()
    assert "Prometheus could not be read" in markdown and "n/a" in markdown


def test_the_page_renders_in_chromium_with_every_chart(written, tmp_path):
    _, _, directory = written
    chromium = require_tool("chromium")
    # A copy of the page that writes, once loaded, how many of its images decoded.
    check = directory / "check.html"
    check.write_text((directory / "report.html").read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
        "document.body.setAttribute('data-images', imgs.length + '/' + imgs.filter("
        "i => i.complete && i.naturalWidth > 0).length); });</script></body>")))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", check.as_uri()], capture_output=True, text=True,
                         timeout=120)
    match = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert match, dom.stdout[-2000:] + dom.stderr[-2000:]
    shown, loaded = int(match.group(1)), int(match.group(2))
    assert shown == len(list((directory / "charts").glob("*.png"))) >= 5 and loaded == shown, match.group(0)
    screenshot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, f"--screenshot={screenshot}", "--window-size=1100,2600",
                    (directory / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert screenshot.stat().st_size > 20000
    print(f"\nscreenshot of the report: {screenshot}")


def test_the_summary_goes_to_the_webhook_as_alertmanager_sends(week, tmp_path):
    """The CLI posts Alertmanager's webhook message (the fields of the pinned v0.35.0's notify/webhook)
    to the URL of its Secret file; the receiver here is a loopback HTTP server."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    spec, prom = week
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    url_file = tmp_path / "url"
    url_file.write_text(f"http://127.0.0.1:{server.server_address[1]}/hook\n")
    lines = []
    out = type("Out", (), {"write": lambda self, t: lines.append(t), "flush": lambda self: None})()
    status = cli.main(["--prometheus-url", prom.url, "--environment", "prod", "--period", "day", "--end",
                       str(spec.end), "--out", str(tmp_path / "out"), "--webhook-url-file", str(url_file)], out)
    server.server_close()
    assert status == 0 and "summary posted" in "".join(lines), lines
    (message,) = received
    assert {"version", "groupKey", "truncatedAlerts", "receiver", "status", "alerts", "groupLabels", "commonLabels",
            "commonAnnotations", "externalURL"} <= set(message)
    alert = message["alerts"][0]
    assert alert["labels"] == {"alertname": "ServiceLevelReport", "severity": "info", "environment": "prod",
                               "period": "day"}
    assert alert["annotations"]["description"] == message["text"] and "SLOs:" in message["text"]


def test_the_schedule_settings_are_checked():
    from components.settings import loading
    from tools import offline

    for report, expected in (
            ({"enabled": True, "schedule": "0 25 * * *"}, "report.schedule"),
            ({"enabled": True, "schedule": "TZ=UTC 0 6 * * *"}, "time zone"),
            ({"enabled": True}, "report.image is not set"),  # prod runs on Kubernetes
    ):
        with pytest.raises(loading.SettingsError, match=re.escape(expected)):
            offline.run("prod", {"report": report})
    # Posting demands the webhook's secret even where alerting does not (dev).
    config, secret_keys = offline.stack_config("dev")
    config["football-monitoring:report"] = {"enabled": True, "postToWebhook": True}
    config.pop("football-monitoring:alertmanagerWebhookUrl", None)
    with pytest.raises(loading.SettingsError, match="alertmanagerWebhookUrl is not set"):
        offline.run("dev", config=config, secret_keys=secret_keys)


def test_cron_schedules_fire_when_kubernetes_would():
    from datetime import datetime, timezone

    from components import cron

    monday = datetime(2026, 5, 4, 6, 0, tzinfo=timezone.utc)  # a Monday
    assert cron.parse("0 6 * * 1").next_after(monday).isoformat() == "2026-05-11T06:00:00+00:00"
    assert cron.parse("@daily").next_after(monday).isoformat() == "2026-05-05T00:00:00+00:00"
    assert cron.parse("*/15 * * * *").next_after(monday).isoformat() == "2026-05-04T06:15:00+00:00"
    # Both day fields restricted: either matches (robfig/cron's dayMatches).
    assert cron.parse("0 0 13 * fri").next_after(monday).isoformat() == "2026-05-08T00:00:00+00:00"
    for bad in ("0 6 * *", "60 * * * *", "0 0 * * 7", "@every 1h", "5-1 * * * *"):
        assert cron.problem(bad), bad


# ---------------------------------------------------------------- review findings, each a class


def test_alert_queries_parse_for_any_environment_name(live):
    """Environment names are DNS labels with hyphens: every query of the report must still parse in the
    pinned Prometheus (re.escape's '\\-' does not)."""
    prom, _ = live
    for environment in ("prod-eu", "a.b", "dev"):
        for name, expr in Queries(environment, Period("day", int(time.time()))).all().items():
            answer = prom.get("/api/v1/query", {"query": expr})
            assert answer["status"] == "success", (environment, name, answer)


def test_a_failed_alert_query_is_no_count_of_zero():
    class Refusing:
        def instant(self, expr, at):
            from components.report.source import Answer
            return Answer(error="bad_data: parse error") if "ALERTS" in expr else Answer(series=[])

        def range(self, expr, start, end, step):
            return self.instant(expr, end)

    report = build.build(Refusing(), "prod", Period("day", int(time.time())), stack_rules.slos())
    summary = render.summary(report)
    assert "Alerts fired: n/a (not read)" in summary and "0 critical" not in summary, summary


def test_a_malformed_webhook_url_is_refused_without_being_named(tmp_path):
    from components.report.source import Http

    for url in ("hooks.example.com/services/T0/B0/SECRETTOKEN", "http://ho st/SECRETTOKEN"):
        with pytest.raises(ConnectionError) as refused:
            Http(2).call(url)
        assert "SECRETTOKEN" not in str(refused.value)


def test_a_schedule_that_never_fires_is_refused():
    from components import cron

    assert "never fires" in cron.problem("0 0 30 2 *")
    assert cron.problem("0 6 * * \u0663")  # a digit Go's strconv.Atoi does not read
    assert cli.main(["--schedule", "0 0 30 2 *", "--prometheus-url", "http://127.0.0.1:9"], out=open("/dev/null", "w")) == 2


def test_the_fingerprint_is_alertmanagers(tmp_path):
    """The posted alert's fingerprint is the one the pinned Alertmanager computes for the same labels."""
    import json
    import urllib.request

    from components.report import webhook
    from tests.ports import free_port

    labels = {"alertname": webhook.ALERTNAME, "severity": "info", "environment": "prod-eu", "period": "day"}
    (tmp_path / "am.yml").write_text("route: {receiver: x}\nreceivers: [{name: x}]\n")
    port = free_port()
    proc = subprocess.Popen([require_tool("alertmanager"), f"--config.file={tmp_path / 'am.yml'}",
                             f"--storage.path={tmp_path}", f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/v2/alerts"
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(url, data=json.dumps([{"labels": labels}]).encode(),
                                                 headers={"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with urllib.request.urlopen(url, timeout=5) as r:
            (alert,) = json.load(r)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert webhook.fingerprint(labels) == alert["fingerprint"]
    body = webhook.message("summary", "prod-eu", "day", time.time())
    assert body["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert {"notification_reason", "routeLabels"} <= set(body)


def test_the_image_owns_the_report_volumes_mount_point():
    """A Docker volume mounted on a path the image lacks is created root-owned: the image makes the
    report directory, owned by the user the job runs as."""
    from components.report import job

    text = (ROOT / "components" / "report" / "Dockerfile").read_text()
    made = text.index(f"RUN mkdir {job.REPORTS_DIR} && chown {job.UID}:{job.UID} {job.REPORTS_DIR}")
    assert made < text.index(f"USER {job.UID}:{job.UID}")


def test_every_cronjob_reads_its_schedule_in_utc(every_stack):
    """Unset, the controller-manager reads a schedule in its own local zone; the settings say UTC."""
    for stack, result in every_stack.items():
        jobs = result.find("CronJob")
        assert jobs, stack
        assert {j["metadata"]["name"]: j["spec"].get("timeZone") for j in jobs} == \
            {j["metadata"]["name"]: "Etc/UTC" for j in jobs}, stack
