"""The service level report of a running stack (docs/report.md): SLO attainment and budget, the alerts
that fired, the API's error routes and latency, predictions and data collection, as Markdown and an HTML
page with charts.

Layer 3, beside the systems it reports on. The modules, bottom up: ``queries`` (the PromQL, pure),
``source`` (Prometheus' and Alertmanager's HTTP APIs), ``build`` (answers -> the report's figures and
what is missing), ``render`` (Markdown, HTML, matplotlib charts), ``webhook`` (the summary to the default
webhook), ``cli`` (``python -m components.report``); ``job`` declares the scheduled run (a CronJob, or a
long-running container on a Docker host) and is the only module that imports Pulumi, so the report's
image needs none of it.
"""
