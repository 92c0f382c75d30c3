"""Post-deploy verification: check the live monitoring system of a stack and report.

    .venv/bin/python -m tools.verify --stack prod
    .venv/bin/python -m tools.verify --outputs outputs.json --prometheus-url http://127.0.0.1:9090 ...

It reads the stack outputs (``pulumi stack output --json --show-secrets``, or a saved copy), finds
each service's URL (an override, else the ``*ExternalUrl`` output, else the in-cluster URL; for an
in-cluster ``*.svc`` address that does not resolve here it prints the ``kubectl port-forward``
command to run), then runs the checks of ``CHECKS`` in order and prints one line per result:
``PASS``/``WARN``/``FAIL``/``SKIP``, the check, the numbers and, for a failure, what to do. The exit
status is 1 when anything failed, 2 when the outputs cannot be read, else 0. See docs/verify.md.

Checks are independent functions registered with ``@check(name, needs=(services...))``; a service's
``*.ready`` check gates the rest of its checks. Optional services (Elasticsearch, Jaeger) are only
checked when their URL output (``elasticsearchUrl``, ``jaegerUrl``) or override exists.

The Alertmanager delivery check POSTs uniquely labelled test alerts (one per receiver with an
integration, labels chosen by walking the route tree), confirms through Alertmanager's own
metrics that every integration delivered and none failed, then resolves the test alerts.

Standard library plus PyYAML only, so it runs wherever the project's venv exists. Every request has
a timeout and every wait is bounded.

The modules, bottom up:

- ``project``: the checkout's root and the project's name;
- ``report``: ``Result`` and ``Report`` (the printed lines and the exit status);
- ``http``: the HTTP client (``Http``, ``Response``, ``Unreachable``);
- ``endpoints``: the services (``SERVICES``) and how their URLs are found;
- ``checks``: the registry (``check``, ``CHECKS``, ``run_checks``) and the ``Context`` a check gets;
- ``routing``: Alertmanager's route tree walked in Python (for where amtool is absent);
- one module per checked system: ``prometheus``, ``alertmanager`` (with the delivery test),
  ``grafana``, ``logging`` (Elasticsearch), ``tracing`` (Jaeger);
- ``cli``: the command line (``main``); ``__main__`` runs it.

This package re-exports the names other code and the tests use.
"""

from tools.verify.project import PROJECT, ROOT
from tools.verify.report import FAIL, PASS, SKIP, WARN, Report, Result
from tools.verify.http import MAX_BODY, Http, Response, Unreachable, join
from tools.verify.endpoints import SERVICES, Endpoint, Endpoints, Service, find_endpoint, port_forward_hint, resolves
from tools.verify.checks import CHECKS, Check, Context, Options, check, ready, run_checks, select_checks
from tools.verify.routing import (ROUTE_DEFAULTS, Matcher, Route, build_route, group_key, labels_for_receiver,
                                  match_routes, parse_duration, parse_matchers)
# The check modules in the order their checks run (they register on import; cli.py imports them the same way).
from tools.verify.prometheus import (checkout_alerting_rules, prometheus_alerting_rules, prometheus_alertmanagers,
                                     prometheus_ready, prometheus_rules, prometheus_targets, prometheus_watchdog)
from tools.verify.alertmanager import (METRICS, PEER_TIMEOUT, TEST_ALERTNAME, TEST_SERVICE, Counters, Outcome,
                                       TestAlert, alertmanager_cluster, alertmanager_delivery, alertmanager_ready,
                                       alertmanager_receivers, measure, parse_metrics, receiver_integrations)
from tools.verify.grafana import GRAFANA_DATASOURCES, grafana_datasources, grafana_health
from tools.verify.logging import elasticsearch_health
from tools.verify.tracing import jaeger_traces
from tools.verify.cli import main, parser, read_outputs

__all__ = [
    "PROJECT", "ROOT",
    "FAIL", "PASS", "SKIP", "WARN", "Report", "Result",
    "MAX_BODY", "Http", "Response", "Unreachable", "join",
    "SERVICES", "Endpoint", "Endpoints", "Service", "find_endpoint", "port_forward_hint", "resolves",
    "CHECKS", "Check", "Context", "Options", "check", "ready", "run_checks", "select_checks",
    "ROUTE_DEFAULTS", "Matcher", "Route", "build_route", "group_key", "labels_for_receiver", "match_routes",
    "parse_duration", "parse_matchers",
    "checkout_alerting_rules", "prometheus_alerting_rules", "prometheus_alertmanagers", "prometheus_ready",
    "prometheus_rules", "prometheus_targets", "prometheus_watchdog",
    "METRICS", "PEER_TIMEOUT", "TEST_ALERTNAME", "TEST_SERVICE", "Counters", "Outcome", "TestAlert",
    "alertmanager_cluster", "alertmanager_delivery", "alertmanager_ready", "alertmanager_receivers", "measure",
    "parse_metrics", "receiver_integrations",
    "GRAFANA_DATASOURCES", "grafana_datasources", "grafana_health",
    "elasticsearch_health",
    "jaeger_traces",
    "main", "parser", "read_outputs",
]
