"""The logging stack: Elasticsearch, Logstash, Kibana, Filebeat, their exporters and the
bootstrap Job, on either platform (see docs/logging.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from components.configs.prometheus import ScrapeTarget
from components.settings import Settings
from components.platform.workload import ElasticsearchConnection, Platform, single_host_labels
from components.logging.bootstrap import LoggingBootstrap
from components.logging.elasticsearch import Elasticsearch, ElasticsearchExporter, _password
from components.logging.filebeat import Filebeat
from components.logging.kibana import Kibana
from components.logging.logstash import Logstash

# Services that talk to Elasticsearch's HTTP port (besides Elasticsearch itself).
ELASTICSEARCH_CLIENTS = ("kibana", "logstash", "elasticsearch-exporter", "logging-bootstrap", "grafana")
# Read-only user of the Grafana logs datasource (created by the bootstrap Job).
GRAFANA_USER = "fm-grafana"
# Jaeger's pods, when tracing keeps its spans in this Elasticsearch.
JAEGER_CLIENTS = ("jaeger-collector", "jaeger", "jaeger-es-index-cleaner")
# A Secret holding only the CA certificate (key ca.crt): the exporter's, made by the workload layer.
CA_SECRET = "elasticsearch-exporter-ca"


@dataclass
class Logging:
    elasticsearch: Elasticsearch
    kibana: Kibana
    logstash: Logstash
    filebeat: Filebeat
    bootstrap: LoggingBootstrap
    grafana_password: pulumi.Output
    scrape_targets: list
    exporter_password: pulumi.Output
    elasticsearch_connection: Optional[ElasticsearchConnection] = None  # for Jaeger

    @property
    def elasticsearch_url(self) -> str:
        return self.elasticsearch.internal_url


def deploy(settings: Settings, platform: Platform, opts: pulumi.ResourceOptions,
           extra_clients: Sequence[str] = ()) -> Optional[Logging]:
    """The logging components for ``settings`` (None when logging is off)."""
    if not settings.logging or not settings.logging.enabled:
        return None
    tracing = getattr(settings, "tracing", None)
    jaeger = bool(tracing and tracing.enabled and tracing.storage == "elasticsearch")
    clients = list(ELASTICSEARCH_CLIENTS) + list(extra_clients) + (list(JAEGER_CLIENTS) if jaeger else [])
    es = Elasticsearch("elasticsearch", settings=settings, platform=platform, clients=clients, opts=opts)
    users = ("logstash", "exporter", "grafana") + (("jaeger",) if jaeger else ())
    passwords = {user: _password(f"elasticsearch-{user}-password", es) for user in users}
    es_exporter = ElasticsearchExporter("elasticsearch-exporter", settings=settings, platform=platform,
                                        elasticsearch=es, password=passwords["exporter"], opts=opts)
    logstash = Logstash("logstash", settings=settings, platform=platform, elasticsearch=es,
                        password=passwords["logstash"], opts=opts)
    filebeat = Filebeat("filebeat", settings=settings, platform=platform, logstash_address=logstash.address, opts=opts)
    kibana = Kibana("kibana", settings=settings, platform=platform, elasticsearch=es, opts=opts)
    bootstrap = LoggingBootstrap("logging-bootstrap", settings=settings, platform=platform, elasticsearch=es,
                                 kibana_url=kibana.internal_url, passwords=passwords,
                                 jaeger_index_prefix=tracing.index_prefix if jaeger else None, opts=opts)
    # Kubernetes finds these by pod discovery; a Docker host by address (the exporter sidecars
    # answer at their service's address).
    targets = [
        ScrapeTarget("elasticsearch-exporter", "elasticsearch-exporter", "metrics",
                     addresses=[es_exporter.deployed.address("metrics")]),
        ScrapeTarget("logstash", "logstash", "exporter", addresses=[logstash.deployed.address("exporter")]),
        ScrapeTarget("filebeat", "filebeat", "exporter", instance_from_node=True,
                     addresses=[filebeat.deployed.address("exporter")],
                     labels=single_host_labels(settings.environment), namespace=filebeat.deployed.namespace),
    ]
    connection = None
    if jaeger:
        connection = ElasticsearchConnection(url=es.internal_url, username="fm-jaeger", password=passwords["jaeger"],
                                             ca_secret_name=CA_SECRET, ca_key="ca.crt", peer="elasticsearch")
    return Logging(es, kibana, logstash, filebeat, bootstrap, passwords["grafana"], targets, passwords["exporter"],
                   connection)
