"""The command line: read the outputs, find the endpoints, run the checks, print the report."""

from __future__ import annotations

import argparse
import io
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, TextIO

from components import stack_outputs
from tools.verify.checks import Context, Options, run_checks, select_checks
from tools.verify.endpoints import SERVICES, Endpoints, find_endpoint, resolves
from tools.verify.http import Http
from tools.verify.report import Report, _iso

# The checks register when their module is imported: this order is the order they run in.
from tools.verify import prometheus, alertmanager, grafana, logging, tracing

SYSTEMS = (prometheus, alertmanager, grafana, logging, tracing)


def read_outputs(args: argparse.Namespace) -> dict:
    try:
        return stack_outputs.read(args.stack, args.outputs, show_secrets=True)
    except stack_outputs.OutputsError as error:
        raise SystemExit(str(error)) from None


def _receiver_labels(values: list[str]) -> dict[str, dict[str, str]]:
    parsed: dict[str, dict[str, str]] = {}
    for value in values:
        receiver, _, pairs = value.partition(":")
        labels = dict(pair.split("=", 1) for pair in pairs.split(",") if "=" in pair)
        if not receiver or not labels:
            raise argparse.ArgumentTypeError(f"--receiver-labels {value!r}: expected RECEIVER:key=value,...")
        parsed[receiver] = {k.strip(): v.strip() for k, v in labels.items()}
    return parsed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.verify",
                                description="Check a deployed football-monitoring stack (see docs/verify.md).")
    source = p.add_argument_group("outputs")
    source.add_argument("--stack", help="stack whose outputs to read with pulumi stack output")
    source.add_argument("--outputs", metavar="FILE.json", help="saved `pulumi stack output --json --show-secrets`")
    urls = p.add_argument_group("URLs (override the outputs; use them with kubectl port-forward)")
    for service in SERVICES.values():
        urls.add_argument("--" + service.option.replace("_", "-"), dest=service.option, metavar="URL")
    p.add_argument("--alertmanager-replicas", type=int, metavar="N",
                   help="expected Alertmanager replicas (default: Prometheus' Alertmanager targets, "
                        "else Pulumi.<stack>.yaml)")
    p.add_argument("--skip-delivery", action="store_true", help="do not send test alerts")
    p.add_argument("--delivery-timeout", type=float, metavar="SECONDS",
                   help="how long to wait for the test notifications (default: from the route timings)")
    p.add_argument("--receiver", action="append", default=[], metavar="NAME", help="test only these receivers")
    p.add_argument("--skip-receiver", action="append", default=[], metavar="NAME", help="do not test this receiver")
    p.add_argument("--receiver-labels", action="append", default=[], metavar="NAME:k=v,...",
                   help="labels of the test alert for a receiver (default: found from the route tree)")
    p.add_argument("--grafana-password-file", metavar="FILE", help="Grafana admin password (default: the output)")
    p.add_argument("--only", action="append", default=[], metavar="CHECK",
                   help="run only checks with this name or prefix (prometheus, alertmanager.cluster, ...)")
    p.add_argument("--timeout", type=float, default=10.0, help="timeout of each HTTP request (default 10s)")
    p.add_argument("--insecure-skip-tls-verify", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--json", action="store_true", help="print only a JSON document of the results")
    p.add_argument("-v", "--verbose", action="store_true", help="details of passing checks too")
    return p


def main(argv: Optional[list[str]] = None, out: TextIO = sys.stdout,
         resolver: Callable[[str], bool] = resolves) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.stack and not args.outputs:
        p.error("give --stack STACK or --outputs FILE.json")
    try:
        receiver_labels = _receiver_labels(args.receiver_labels)
    except argparse.ArgumentTypeError as error:
        p.error(str(error))
    try:
        outputs = read_outputs(args)
    except SystemExit as error:
        out.write(f"cannot read the stack outputs: {error}\n")
        return 2
    except (OSError, ValueError) as error:
        out.write(f"cannot read the stack outputs: {error}\n")
        return 2
    if not isinstance(outputs, dict):
        out.write("cannot read the stack outputs: not a JSON object\n")
        return 2

    options = Options(stack=args.stack, alertmanager_replicas=args.alertmanager_replicas,
                      delivery=not args.skip_delivery, delivery_timeout=args.delivery_timeout,
                      receivers=args.receiver, skip_receivers=args.skip_receiver, receiver_labels=receiver_labels,
                      grafana_password_file=args.grafana_password_file, only=args.only)
    secrets = [v for k, v in outputs.items() if "password" in k.lower() and isinstance(v, str)]
    report = Report(io.StringIO() if args.json else out, verbose=args.verbose, redact=secrets)
    endpoints = Endpoints(lambda name: find_endpoint(SERVICES[name], outputs, getattr(args, SERVICES[name].option),
                                                     resolver))
    ca = outputs.get("elasticsearchCaCertificate")
    try:
        http = Http(args.timeout, args.insecure_skip_tls_verify, ca if isinstance(ca, str) else None)
    except ValueError as error:
        out.write(f"cannot read the stack outputs: {error}\n")
        return 2
    ctx = Context(outputs, endpoints, http, options, report)

    title = args.stack or Path(args.outputs).name
    report.line(f"football-monitoring verify: {title} (environment {outputs.get('environment', '?')}), "
                f"{_iso(datetime.now(timezone.utc))}")
    for service in dict.fromkeys(s for c in select_checks(options.only) for s in c.needs):
        endpoint = endpoints[service]
        if endpoint.url:
            report.line(f"  {endpoint.service:<14} {endpoint.url}  ({endpoint.source})")
    if any(c.name == "prometheus.targets" for c in select_checks(options.only)) and ctx.shards != 1 \
            and endpoints["thanos-query"].url:
        endpoint = endpoints["thanos-query"]  # where prometheus.targets reads a sharded stack's targets
        report.line(f"  {endpoint.service:<14} {endpoint.url}  ({endpoint.source})")
    report.line()
    run_checks(ctx)
    report.summary()
    if args.json:  # only the JSON document on stdout
        document = {"exit": report.exit_code(), "results": [r.__dict__ for r in report.results]}
        out.write(report._clean(json.dumps(document, indent=2)) + "\n")
    return report.exit_code()
