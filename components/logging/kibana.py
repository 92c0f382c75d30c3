"""Kibana: the logs UI, connected to Elasticsearch with the elastic/kibana service account token.

kibana.yml (a ConfigMap) holds everything but credentials; a second config file from a Secret
holds the service token and the saved-objects encryption key (Kibana merges both files). The
data view, saved search and dashboard are provisioned by the bootstrap Job (bootstrap.py).
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components.settings import Settings
from components.platform.workload import INGRESS, ConfigFiles, Flow, HttpCheck, Platform, Port, ServiceSpec
from components.logging import configs
from components.logging.elasticsearch import HTTP_PORT as ES_PORT
from components.logging.elasticsearch import Elasticsearch, _password

HTTP_PORT = 5601
CONFIG_DIR = "/etc/kibana/config"
SECRETS_DIR = "/etc/kibana/secrets"


class Kibana(pulumi.ComponentResource):
    internal_url: str
    external_url: Optional[str]

    def __init__(self, name: str, *, settings: Settings, platform: Platform, elasticsearch: Elasticsearch,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:logging:Kibana", name, None, opts)
        self.external_url = platform.public_url("kibana")
        encryption_key = _password("kibana-encryption-key", self, length=48)
        credentials = pulumi.Output.all(elasticsearch.kibana_token, encryption_key).apply(
            lambda values: configs.kibana_credentials_yml(*values))
        spec = ServiceSpec(
            name="kibana",
            preempts=False,
            component="logs-ui",
            image=settings.images["kibana"],
            ports=[Port("http", HTTP_PORT)],
            resources=settings.logging.kibana.resources,
            run_as_user=1000,
            # The image's entrypoint, then Kibana with our two config files (it merges them).
            args=["/usr/local/bin/kibana-docker", "--config", f"{CONFIG_DIR}/kibana.yml",
                  "--config", f"{SECRETS_DIR}/credentials.yml"],
            env={"NODE_OPTIONS": "--max-old-space-size="
                 + str(configs.heap_mb(settings.logging.kibana.resources.limits.memory, 60))},
            config=[
                ConfigFiles("config", CONFIG_DIR, {"kibana.yml": configs.kibana_yml(
                    es_url=elasticsearch.internal_url, ca_path=f"{SECRETS_DIR}/ca.crt", public_url=self.external_url)}),
                ConfigFiles("secrets", SECRETS_DIR, {"credentials.yml": pulumi.Output.secret(credentials),
                                                     "ca.crt": elasticsearch.ca_cert_pem}, secret=True),
            ],
            scratch_paths=["/usr/share/kibana/data", "/tmp"],
            liveness=HttpCheck("/login", "http"),
            readiness=HttpCheck("/login", "http"),
            allow_in=[Flow(INGRESS, [(HTTP_PORT, "TCP")]), Flow("logging-bootstrap", [(HTTP_PORT, "TCP")])],
            allow_out=[Flow("elasticsearch", [(ES_PORT, "TCP")])],
        )
        self.deployed = platform.deploy(spec, self)
        self.internal_url = self.deployed.url("http")
        if self.external_url:
            platform.expose(self.deployed, "http", parent=self)
        self.register_outputs({"internal_url": self.internal_url, "external_url": self.external_url})
