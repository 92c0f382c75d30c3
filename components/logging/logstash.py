"""Logstash: beats in, FootballPrediction parsing and redaction, the logs data stream out.

The pipeline is data (pipelines/*.conf; the filter rendered from elastic/pipeline.yaml). The
persistent queue sits on a volume per replica, so a slow Elasticsearch causes backpressure to
Filebeat instead of loss. A logstash-exporter sidecar turns the local monitoring API
(/_node/stats) into Prometheus metrics.
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components import logstash_volume
from components.settings import Settings, quantity_bytes
from components.platform.workload import ConfigFiles, DataVolume, Flow, HttpCheck, Platform, Port, ServiceSpec, Sidecar
from components.logging import configs
from components.logging import pipeline
from components.logging.elasticsearch import HTTP_PORT as ES_PORT
from components.logging.elasticsearch import Elasticsearch

BEATS_PORT = 5044
API_PORT = 9600
EXPORTER_PORT = 9198
SETTINGS_DIR = "/etc/logstash"
PIPELINE_DIR = "/etc/logstash-pipeline"
CERTS_DIR = "/etc/logstash-certs"


class Logstash(pulumi.ComponentResource):
    address: str

    def __init__(self, name: str, *, settings: Settings, platform: Platform, elasticsearch: Elasticsearch,
                 password: pulumi.Output, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:logging:Logstash", name, None, opts)
        lg = settings.logging
        heap = logstash_volume.heap_mb(quantity_bytes(lg.logstash.resources.limits.memory))
        # The volume holds both queues and a heap dump: their caps come from its size.
        volume = configs.logstash_volume(lg.logstash.storage_size, heap)
        self.pipeline = pipeline.pipeline_files()
        spec = ServiceSpec(
            name="logstash",
            component="logs-pipeline",
            image=settings.images["logstash"],
            # The monitoring API (api) serves the probes and the exporter sidecar; the network
            # policy lets nothing else reach it.
            ports=[Port("beats", BEATS_PORT), Port("api", API_PORT)],
            resources=lg.logstash.resources,
            run_as_user=1000,
            # Logstash itself, not the image's entrypoint (which rewrites logstash.yml from the
            # environment, on a read-only filesystem); settings from our own directory.
            command=["/usr/share/logstash/bin/logstash"],
            args=["--path.settings", SETTINGS_DIR],
            env={"LS_JVM_OPTS": f"{SETTINGS_DIR}/jvm.options", "ELASTICSEARCH_URL": elasticsearch.internal_url,
                 "ELASTICSEARCH_USER": "fm-logstash"},
            # Logstash substitutes ${ELASTICSEARCH_PASSWORD} in the pipeline from the environment.
            secret_env={"ELASTICSEARCH_PASSWORD": password},
            config=[
                ConfigFiles("settings", SETTINGS_DIR, {
                    "logstash.yml": configs.logstash_yml(volume),
                    "pipelines.yml": configs.logstash_pipelines_yml(),
                    "jvm.options": configs.jvm_options(heap),
                    "log4j2.properties": configs.LOG4J2_CONSOLE,
                }),
                ConfigFiles("pipeline", PIPELINE_DIR, self.pipeline),
                ConfigFiles("certs", CERTS_DIR, {"ca.crt": elasticsearch.ca_cert_pem}, secret=True),
            ],
            data=DataVolume(configs.LS_DATA, lg.logstash.storage_size),
            # path.logs must be writable even though Logstash logs to the console only.
            scratch_paths=["/tmp", "/usr/share/logstash/logs"],
            scratch_exec=["/tmp"],  # java.io.tmpdir: JRuby unpacks its native FFI stub there
            liveness=HttpCheck("/", "api"),
            readiness=HttpCheck("/", "api"),
            replicas=lg.logstash.replicas,
            sidecars=[Sidecar("exporter", settings.images["logstashExporter"], Port("exporter", EXPORTER_PORT),
                              # logstash-exporter v1.9.1 serves /healthcheck (server/server.go), not
                              # /health; it answers 200 while Logstash's own API does.
                              lg.exporters.resources, HttpCheck("/healthcheck", "exporter"),
                              env={"LOGSTASH_URL": f"http://127.0.0.1:{API_PORT}", "PORT": str(EXPORTER_PORT)})],
            allow_in=[Flow("filebeat", [(BEATS_PORT, "TCP")]), Flow("prometheus", [(EXPORTER_PORT, "TCP")])],
            allow_out=[Flow("elasticsearch", [(ES_PORT, "TCP")])],
        )
        self.deployed = platform.deploy(spec, self)
        self.address = self.deployed.address("beats")
        self.register_outputs({"address": self.address})
