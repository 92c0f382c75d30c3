"""Wires the components of one environment together and returns its outputs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import pulumi_random as random

from components.platform import docker
from components.platform import kubernetes
from components.metrics.alertmanager import WEB_PORT as ALERTMANAGER_PORT
from components.metrics.alertmanager import Alertmanager
from components.configs.prometheus import ScrapeTarget
from components.metrics.dingtalk import DingTalkRelay
from components.metrics.exporters import BlackboxExporter, CAdvisor, DatabaseExporter, KubeStateMetrics, NodeExporter
from components.metrics.grafana import HTTP_PORT as GRAFANA_PORT
from components.metrics.grafana import Grafana, LogsAccess
from components.logging import deploy as deploy_logging
from components.metrics.prometheus import WEB_PORT as PROMETHEUS_PORT
from components.metrics.prometheus import Prometheus, shard_name
from components.metrics import thanos_rule
from components.metrics.thanos_rule import ThanosRule
from components.metrics.prometheus import rule_files as prometheus_rule_files
from components.metrics import thanos as thanos_metrics
from components.settings import PROJECT, Settings
from components.platform.workload import ElasticsearchConnection
from components.tracing import Jaeger, OtelGateway
from components.demo import Demo, demo_apps
from components.report.job import ReportJob

# The stack's own services and their metrics ports.
SELF_TARGETS = [
    (ScrapeTarget("prometheus", "prometheus", "web"), PROMETHEUS_PORT),
    (ScrapeTarget("alertmanager", "alertmanager", "web"), ALERTMANAGER_PORT),
    (ScrapeTarget("grafana", "grafana", "http"), GRAFANA_PORT),
]


class MonitoringStack(pulumi.ComponentResource):
    """The metrics half of the FootballPrediction monitoring system, on Kubernetes or one Docker host."""

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        # The data files first: a bad rule or SLO file stops the program before it declares anything.
        rules = prometheus_rule_files(settings)
        super().__init__("football-monitoring:stack:MonitoringStack", name, None, opts)
        if settings.platform == "kubernetes":
            provider = kubernetes.provider("kubernetes", settings.kube_context, parent=self)
            ns = kubernetes.namespace(settings.namespace, provider, self)
            deny = kubernetes.default_deny(ns, settings.namespace, provider, self)
            node_ns = kubernetes.namespace(settings.host_namespace, provider, self, host_access=True)
            node_deny = kubernetes.default_deny(node_ns, settings.host_namespace, provider, self,
                                                resource_name="default-deny-node")  # Pulumi's name; in-cluster default-deny
            priority = kubernetes.priority_class(f"{settings.namespace}-monitoring", provider, self)
            waiting = kubernetes.priority_class(f"{settings.namespace}-monitoring-waiting", provider, self,
                                                preempts=False)
            platform = kubernetes.KubernetesPlatform(
                namespace=settings.namespace,
                environment=settings.environment,
                provider=provider,
                storage_class=settings.storage_class,
                protect_data=settings.protect_data,
                reloader_image=settings.images["configReloader"],
                ingress=settings.ingress,
                priority_class=f"{settings.namespace}-monitoring",
                waiting_priority_class=f"{settings.namespace}-monitoring-waiting",
                ingress_namespace=settings.ingress.controller_namespace,
                checksum_key=pulumi.Output.secret(random.RandomPassword(
                    "pod-checksum-key", length=40, special=False,
                    opts=pulumi.ResourceOptions(parent=self)).result),
                node_namespace=settings.host_namespace,
            )
            in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[ns, deny, node_ns, node_deny, priority, waiting])
        else:
            provider = docker.provider("docker", settings.docker.host, parent=self)
            platform = docker.DockerPlatform(
                environment=settings.environment,
                provider=provider,
                network=docker.network(settings.environment, provider, self),
                settings=settings.docker,
                protect_data=settings.protect_data,
            )
            in_namespace = pulumi.ResourceOptions(parent=self)

        exporters: list = [NodeExporter("node-exporter", settings=settings, platform=platform, opts=in_namespace)]
        if platform.kind == "kubernetes":
            exporters.append(KubeStateMetrics("kube-state-metrics", settings=settings, platform=platform,
                                              opts=in_namespace))
        else:
            exporters.append(CAdvisor("cadvisor", settings=settings, platform=platform, opts=in_namespace))
        blackbox = BlackboxExporter("blackbox-exporter", settings=settings, platform=platform, opts=in_namespace)
        exporters.append(blackbox)
        # What this stack leaves out for want of an optional secret: named in the preview and in an output.
        self.not_deployed: dict[str, str] = {}
        for kind, key, connection in (("postgres", "postgresDsn", settings.secrets.postgres_dsn),
                                      ("redis", "redisUrl", settings.secrets.redis_url)):
            if not getattr(settings.exporters, kind).enabled:
                continue
            if connection is None:
                self.not_deployed[f"{kind}-exporter"] = (
                    f"the {key} secret is not set (exporters.{kind}.required is false): set it with "
                    f"`pulumi config set --secret {PROJECT}:{key} <value>` to watch the service's {kind.title()}")
                continue
            exporters.append(DatabaseExporter(f"{kind}-exporter", kind=kind, settings=settings, platform=platform,
                                              connection=connection, opts=in_namespace))
        for name, why in self.not_deployed.items():
            pulumi.log.warn(f"{name} is left out: {why}", resource=self)

        dingtalk = (DingTalkRelay("dingtalk-relay", settings=settings, platform=platform, opts=in_namespace)
                    if settings.alerting.dingtalk.enabled else None)
        self.alertmanager = Alertmanager("alertmanager", settings=settings, platform=platform,
                                         dingtalk_url=dingtalk.url if dingtalk else None, opts=in_namespace)
        targets = [replace(t, addresses=[f"{platform.host_of(t.app)}:{port}"])
                   for t, port in SELF_TARGETS] + [t for exporter in exporters for t in exporter.scrape_targets]
        if platform.kind == "kubernetes":
            # The reload sidecars count the reloads they trigger (security rules tell them from
            # reloads by hand); on a Docker host a config change restarts the container instead.
            targets.append(ScrapeTarget("config-reloader", "prometheus|alertmanager", "reloader-web"))
        # Logging first: tracing may keep its spans in the logging stack's Elasticsearch.
        self.logging = deploy_logging(settings, platform, in_namespace)
        targets += self.logging.scrape_targets if self.logging else []
        self.jaeger, self.otel_gateway = deploy_tracing(settings, platform, self, in_namespace)
        for tracing in (self.jaeger, self.otel_gateway):
            targets += tracing.scrape_targets if tracing else []
        self.demo = None
        if settings.demo.enabled:
            ingest = self.otel_gateway or self.jaeger
            self.demo = Demo("demo", settings=settings, platform=platform,
                             otlp_endpoint=ingest.otlp_grpc_endpoint if ingest else None,
                             otlp_peer=(self.otel_gateway.deployed.name if self.otel_gateway
                                        else self.jaeger.collector.name) if ingest else None,
                             opts=in_namespace)
            targets += self.demo.scrape_targets
        if settings.thanos.enabled:
            targets += thanos_metrics.scrape_targets(settings)
        shards = settings.prometheus.shards
        self.rule = None
        if shards > 1:
            # The rules run in Thanos Ruler, over every shard (components/metrics/thanos_rule.py).
            self.rule = ThanosRule("thanos-rule", settings=settings, platform=platform, rules=rules,
                                   alertmanagers=self.alertmanager.replica_addresses, opts=in_namespace)
            targets.append(thanos_rule.scrape_target())
            targets = [replace(t, app=f"{t.app}|{thanos_rule.RULE}") if t.job == "config-reloader" else t
                       for t in targets]
        # Shard 0 is the Prometheus there was before sharding, under the same names.
        self.shards = [Prometheus(
            shard_name(shard), settings=settings, platform=platform,
            alertmanagers=self.alertmanager.replica_addresses, components=targets,
            blackbox_address=blackbox.address, rules=rules, shard=shard, opts=in_namespace) for shard in range(shards)]
        self.prometheus = self.shards[0]
        self.thanos = None
        metrics_url, metrics_peer = self.prometheus.internal_url, ("prometheus", PROMETHEUS_PORT)
        if settings.thanos.enabled:
            self.thanos = thanos_metrics.Thanos(
                "thanos", settings=settings, platform=platform,
                prometheus_grpc=[a for p in self.shards for a in p.deployed.replica_addresses("thanos-grpc")],
                rule_grpc=self.rule.grpc_addresses if self.rule else (),
                store_silence=self.rule.store_silence if self.rule else None, opts=in_namespace)
            metrics_url = self.thanos.query_url
            metrics_peer = (thanos_metrics.FRONTEND if settings.thanos.query_frontend else thanos_metrics.QUERY,
                            thanos_metrics.HTTP_PORT)
        self.grafana = Grafana("grafana", settings=settings, platform=platform,
                               prometheus_url=metrics_url, prometheus_peer=metrics_peer,
                               thanos=settings.thanos.enabled,
                               alertmanager_url=self.alertmanager.internal_url,
                               jaeger_url=self.jaeger.internal_url if self.jaeger else None,
                               logs_datasource=logs_datasource_uid(settings),
                               logs=LogsAccess(url=self.logging.elasticsearch_url,
                                               password=self.logging.grafana_password,
                                               ca_cert_pem=self.logging.elasticsearch.ca_cert_pem)
                               if self.logging else None,
                               opts=in_namespace)
        self.report = None
        if settings.report.enabled:
            self.report = ReportJob("report", settings=settings, platform=platform,
                                    prometheus_url=self.prometheus.internal_url,
                                    alertmanager_url=self.alertmanager.internal_url, opts=in_namespace)
        platform.finish()
        self.alert_delivery = alert_delivery(settings, self.alertmanager)
        if not settings.secrets.alertmanager_webhook_url:
            pulumi.log.warn(f"Alertmanager: {self.alert_delivery}", resource=self)
        else:
            for name, key, component in (("Prometheus", "prometheus", self.prometheus),
                                         ("Alertmanager", "alertmanager", self.alertmanager)):
                if not component.external_url:
                    # Notifications link to the alert's graph and to silences by this URL.
                    pulumi.log.warn(f"{name} has no public URL: the links in notifications point at "
                                    f"{component.internal_url}, which opens only inside the cluster; set "
                                    f"{PROJECT}:{key}.externalUrl (or an ingress host)", resource=self)
        self.outputs = stack_outputs(settings, self)
        self.register_outputs(self.outputs)


def stack_outputs(settings: Settings, stack: MonitoringStack) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "environment": settings.environment,
        "namespace": settings.namespace,
        **({"nodeNamespace": settings.host_namespace} if settings.platform == "kubernetes" else {}),
        "grafanaUrl": stack.grafana.internal_url,
        "prometheusUrl": stack.prometheus.internal_url,
        "alertmanagerUrl": stack.alertmanager.internal_url,
        **({"thanosQueryUrl": stack.thanos.query_url} if getattr(stack, "thanos", None) else {}),
        **({"thanosRuleUrl": stack.rule.internal_url} if getattr(stack, "rule", None) else {}),
        # How many shards share the targets: tools.verify checks that Thanos Query reaches each.
        **({"prometheusShards": settings.prometheus.shards} if settings.prometheus.shards > 1 else {}),
        "grafanaAdminUser": stack.grafana.admin_user,
        "grafanaAdminPassword": stack.grafana.admin_password,
        "alertDelivery": stack.alert_delivery,
    }
    if stack.not_deployed:
        outputs["notDeployed"] = dict(stack.not_deployed)
    if getattr(stack, "demo", None):
        # The stand-in's own API, for a first request by hand (its series are job football-prediction-api).
        outputs["demoApiUrl"] = stack.demo.api_url
    for key, url in (("grafanaExternalUrl", stack.grafana.external_url),
                     ("prometheusExternalUrl", stack.prometheus.external_url),
                     ("alertmanagerExternalUrl", stack.alertmanager.external_url)):
        if url:
            outputs[key] = url
    logging = getattr(stack, "logging", None)
    if logging:
        outputs["elasticsearchUrl"] = logging.elasticsearch.internal_url
        if logging.elasticsearch.external_url:
            outputs["elasticsearchExternalUrl"] = logging.elasticsearch.external_url
        # The stack's own CA (public): clients such as tools.verify trust Elasticsearch with it.
        outputs["elasticsearchCaCertificate"] = logging.elasticsearch.ca_cert_pem
        outputs["kibanaUrl"] = logging.kibana.internal_url
        if logging.kibana.external_url:
            outputs["kibanaExternalUrl"] = logging.kibana.external_url
        # A read-only monitoring user (cluster health, index stats), for scripts/verify and people.
        outputs["elasticsearchUser"] = "fm-exporter"
        outputs["elasticsearchPassword"] = logging.exporter_password
    jaeger, gateway = getattr(stack, "jaeger", None), getattr(stack, "otel_gateway", None)
    if jaeger:
        # Where the FootballPrediction app sends spans (OTEL_EXPORTER_OTLP_ENDPOINT, docs/tracing.md).
        ingest = gateway or jaeger
        outputs["jaegerUrl"] = jaeger.internal_url
        outputs["otlpGrpcEndpoint"] = ingest.otlp_grpc_endpoint
        outputs["otlpHttpEndpoint"] = ingest.otlp_http_endpoint
        if jaeger.external_url:
            outputs["jaegerExternalUrl"] = jaeger.external_url
    return outputs


def alert_delivery(settings: Settings, alertmanager: Alertmanager) -> str:
    """Where notifications go, in a sentence (the stack output alertDelivery)."""
    secrets, alerting = settings.secrets, settings.alerting
    channels = [name for name, on in (
        ("the default webhook", secrets.alertmanager_webhook_url is not None), ("Slack", alerting.slack.enabled),
        ("e-mail", alerting.email.enabled), ("DingTalk", alerting.dingtalk.enabled),
        ("the escalation webhook", secrets.escalation_webhook_url is not None),
        ("the heartbeat (Watchdog)", secrets.heartbeat_url is not None)) if on]
    if secrets.alertmanager_webhook_url is None and not (alerting.slack.enabled or alerting.email.enabled
                                                         or alerting.dingtalk.enabled
                                                         or secrets.escalation_webhook_url is not None):
        where = alertmanager.external_url or alertmanager.internal_url
        return (f"nothing is delivered: no receiver is set (alertmanagerWebhookUrl is not set and "
                f"alerting.webhook.required is false); alerts and their notifications stay visible in "
                f"Alertmanager's UI at {where}")
    return "delivered to " + ", ".join(channels)


def deploy_tracing(settings: Settings, platform, stack: MonitoringStack, opts: pulumi.ResourceOptions):
    """Jaeger and, when enabled, the OpenTelemetry Collector gateway in front of it."""
    tracing = settings.tracing
    if not tracing or not tracing.enabled:
        return None, None
    # The demo runs in the stack's namespace: it is let in by name, not as an application.
    clients = demo_apps() if settings.demo.enabled else ()
    jaeger = Jaeger("jaeger", settings=settings, platform=platform,
                    elasticsearch=tracing_elasticsearch(settings, stack), gateway=tracing.gateway.enabled,
                    otlp_clients=clients, opts=opts)
    gateway = None
    if tracing.gateway.enabled:
        gateway = OtelGateway("otel-gateway", settings=settings, platform=platform,
                              jaeger_otlp_pods_address=jaeger.otlp_grpc_pods_address,
                              jaeger_app=jaeger.collector.name,
                              otlp_clients=clients, opts=opts)
    return jaeger, gateway


def logging_enabled(settings: Settings) -> bool:
    return bool(getattr(getattr(settings, "logging", None), "enabled", False))


def logs_datasource_uid(settings: Settings):
    """Grafana's Elasticsearch logs datasource (uid `logs`, provisioned by the logging stack), if deployed."""
    return "logs" if logging_enabled(settings) else None


def tracing_elasticsearch(settings: Settings, stack: MonitoringStack):
    """The logging stack's Elasticsearch as Jaeger's span store (tracing.storage = elasticsearch).

    Settings validation admits storage elasticsearch only with logging enabled; the logging
    component (deployed first) then hands over its connection: in-cluster URL, the user
    fm-jaeger (index privileges on `<indexPrefix>-jaeger-*`) with its generated password, and
    the Secret with its CA certificate. Its Elasticsearch lets jaeger-collector, jaeger and
    jaeger-es-index-cleaner in.
    """
    if settings.tracing.storage != "elasticsearch":
        return None
    connection = getattr(getattr(stack, "logging", None), "elasticsearch_connection", None)
    if not isinstance(connection, ElasticsearchConnection):
        raise RuntimeError("tracing.storage = 'elasticsearch': the logging stack gave no Elasticsearch connection "
                           "(components/logging: Logging.elasticsearch_connection)")
    return connection


def build(settings: Settings) -> dict[str, Any]:
    return MonitoringStack("football-monitoring", settings).outputs
