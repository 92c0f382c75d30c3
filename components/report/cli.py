"""The command line: where Prometheus is, which environment and period, where the report goes.

    python -m components.report --stack prod --period week
    python -m components.report --prometheus-url http://127.0.0.1:9090 --environment prod --period day --out build/report

The URLs come from the flags, else from the stack's outputs (``pulumi stack output --json``, or a saved
copy with --outputs): ``prometheusExternalUrl`` then ``prometheusUrl``, ``alertmanagerExternalUrl`` then
``alertmanagerUrl``, as tools.verify picks them. The scheduled job passes them as flags. With
``--schedule`` the command stays up and writes a report at every time the cron schedule names (a Docker
host has no CronJob).

Exit status: 0 a report was written (what is missing is listed in it), 1 it was written but Prometheus
could not be read at all or the webhook refused the summary, 2 the command line or the outputs are wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, TextIO

from components import cron, stack_outputs
from components.configs import slo as slo_config
from components.data import slo_files
from components.report import build, render, webhook
from components.report.queries import PERIODS, Period
from components.report.source import Alertmanager, Prometheus

WEBHOOK_ENV = "REPORT_WEBHOOK_URL"  # the secret's value, given to the job through a Secret reference


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components.report",
                                description="Write the service level report of a running stack (docs/report.md).")
    where = p.add_argument_group("where the stack is")
    where.add_argument("--stack", help="read the URLs and the environment from this stack's outputs (pulumi CLI)")
    where.add_argument("--outputs", metavar="FILE.json", help="a saved `pulumi stack output --json`")
    where.add_argument("--prometheus-url", metavar="URL", help="Prometheus (overrides the outputs)")
    where.add_argument("--alertmanager-url", metavar="URL",
                       help="Alertmanager, for the alerts it holds now (overrides the outputs; optional)")
    p.add_argument("--environment", help="the environment label (default: the outputs', else the only one "
                                         "Prometheus has)")
    p.add_argument("--period", choices=sorted(PERIODS), default="week", help="the period before --end (default week)")
    p.add_argument("--end", metavar="TIME", help="end of the period: unix seconds or ISO 8601 (default: now)")
    p.add_argument("--out", metavar="DIR", default="build/report",
                   help="the report goes to DIR/<environment>-<period>-<end>/ (default build/report)")
    p.add_argument("--post-to-webhook", action="store_true",
                   help=f"post the summary to the URL in ${WEBHOOK_ENV} (the stack's default webhook)")
    p.add_argument("--webhook-url-file", metavar="FILE",
                   help="post the summary to the URL this file holds (the scheduled job's Secret file)")
    p.add_argument("--schedule", metavar="CRON", help="stay up and write a report at each time of this cron "
                                                      "schedule (UTC), e.g. '0 6 * * 1'")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds each request may take (default 60)")
    return p


class UsageError(Exception):
    pass


def read_outputs(args: argparse.Namespace) -> dict:
    try:
        return stack_outputs.read(args.stack, args.outputs)
    except stack_outputs.OutputsError as error:
        # Without outputs the flags name everything the report needs.
        hint = "; or give --prometheus-url and --environment" if "not installed" in str(error) else ""
        raise UsageError(f"{error}{hint}") from None


def _url(flag: Optional[str], outputs: dict, keys: tuple) -> tuple[Optional[str], str]:
    if flag:
        return flag.rstrip("/"), "flag"
    for key in keys:
        if isinstance(outputs.get(key), str):
            return outputs[key].rstrip("/"), key
    return None, ""


def _end(text: Optional[str]) -> int:
    if not text:
        return int(time.time())
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--end {text!r}: expected unix seconds or an ISO 8601 time such as 2026-05-04T06:00:00Z") \
            from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp())


def choose_environment(prometheus: Prometheus, period: Period, given: Optional[str], outputs: dict) -> str:
    if given:
        return given
    if isinstance(outputs.get("environment"), str):
        return outputs["environment"]
    answer = prometheus.label_values("environment", period.start, period.end)
    if not answer.ok:
        raise UsageError(f"cannot tell the environment: {answer.error}; pass --environment")
    found = sorted(s.labels["value"] for s in answer.series)
    if len(found) != 1:
        raise UsageError(f"Prometheus holds {'no' if not found else 'several'} environments "
                         f"({', '.join(found) or 'no environment label'}): pass --environment")
    return found[0]


def run_once(args: argparse.Namespace, outputs: dict, out: TextIO, end: Optional[int] = None) -> int:
    prometheus_url, source = _url(args.prometheus_url, outputs, ("prometheusExternalUrl", "prometheusUrl"))
    if not prometheus_url:
        raise UsageError("no Prometheus URL: pass --prometheus-url, or --stack / --outputs of a stack")
    alertmanager_url, _ = _url(args.alertmanager_url, outputs, ("alertmanagerExternalUrl", "alertmanagerUrl"))
    prometheus = Prometheus(prometheus_url, args.timeout)
    period = Period(args.period, end if end is not None else _end(args.end))
    try:
        environment = choose_environment(prometheus, period, args.environment, outputs)
    except UsageError:
        probe = prometheus.instant("vector(1)", period.end)
        if probe.unreachable:  # say what is wrong with the server before asking for a flag
            environment = args.environment or "unknown"
        else:
            raise
    slos = slo_config.parse_all(slo_files())
    alertmanager = Alertmanager(alertmanager_url, args.timeout) if alertmanager_url else None
    report = build.build(prometheus, environment, period, slos, prometheus_url, alertmanager)
    stamp = datetime.fromtimestamp(period.end, timezone.utc).strftime("%Y%m%dT%H%MZ")
    directory = Path(args.out) / f"{environment}-{period.name}-{stamp}"
    paths = render.write(report, directory)
    out.write(render.summary(report) + "\n")
    if not report.unreachable:  # else the summary said it: nothing was read
        for title, message in report.missing:
            out.write(f"missing ({title}): {message}\n")
    out.write(f"report: {paths['markdown']}\n        {paths['html']} ({len(paths['charts'])} charts)\n")
    if source not in ("flag", ""):
        out.write(f"Prometheus from the output {source}: {prometheus_url}\n")
    status = 1 if report.unreachable else 0
    if args.post_to_webhook or args.webhook_url_file:
        if args.webhook_url_file:
            try:
                url = Path(args.webhook_url_file).read_text().strip()
            except OSError as error:
                out.write(f"not posted: cannot read {args.webhook_url_file}: {error.strerror}\n")
                return 1
        else:
            url = os.environ.get(WEBHOOK_ENV, "").strip()
        if not url:
            out.write(f"not posted: no webhook URL (${WEBHOOK_ENV} or --webhook-url-file; the stack's "
                      "alertmanagerWebhookUrl secret)\n")
            return 1
        link = urllib.parse.urljoin(prometheus_url + "/", "graph") if prometheus_url else ""
        problem = webhook.post(url, webhook.message(render.summary(report), environment, period.name,
                                                    report.generated, link), args.timeout)
        out.write(f"summary not posted: {problem}\n" if problem else "summary posted to the webhook\n")
        status = status or (1 if problem else 0)
    return status


def main(argv: Optional[list[str]] = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    try:
        schedule = cron.parse(args.schedule) if args.schedule else None
        if schedule is not None:
            schedule.next_after(datetime.now(timezone.utc))  # one that never fires is refused here
    except cron.CronError as error:
        out.write(f"--schedule {args.schedule!r}: {error} ({cron.ALLOWED})\n")
        return 2
    try:
        outputs = read_outputs(args)
        if schedule is None:
            return run_once(args, outputs, out)
        out.write(f"writing a {args.period} report at {schedule.text!r} (UTC) to {args.out}\n")
        out.flush()
        while True:
            at = schedule.next_after(datetime.now(timezone.utc))
            out.write(f"next report at {at:%Y-%m-%d %H:%M} UTC\n")
            out.flush()
            time.sleep(max(0.0, at.timestamp() - time.time()))
            run_once(args, outputs, out, int(at.timestamp()))
            out.flush()
    except UsageError as error:
        out.write(f"cannot write the report: {error}\n")
        return 2
