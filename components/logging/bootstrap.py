"""The bootstrap Job: applies users, roles, lifecycle and snapshot policies, the index template
and Kibana's saved objects (elastic/bootstrap.sh), idempotently.

It runs once per content: the Job's name carries the hash of its script and policy files, so a
changed retention or policy runs a new Job and an unchanged one runs nothing. Hardened like
every pod (non-root, read-only root filesystem, no capabilities), with a pinned curl image;
credentials only from a Secret.
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components.settings import Resources, Settings
from components.platform.workload import ConfigFiles, Flow, Platform, ServiceSpec
from components.logging import configs
from components.logging.elasticsearch import HTTP_PORT as ES_PORT
from components.logging.elasticsearch import Elasticsearch
from components.logging.kibana import HTTP_PORT as KIBANA_PORT

BASE = "/etc/logging-bootstrap"
RESOURCES = Resources.of(cpu_request="10m", memory_request="32Mi", memory_limit="64Mi")


class LoggingBootstrap(pulumi.ComponentResource):
    def __init__(self, name: str, *, settings: Settings, platform: Platform, elasticsearch: Elasticsearch,
                 kibana_url: str, passwords: dict, jaeger_index_prefix: Optional[str] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:logging:LoggingBootstrap", name, None, opts)
        self.files = configs.bootstrap_files(settings.logging, jaeger_index_prefix)
        secrets = {"ca.crt": elasticsearch.ca_cert_pem, "elastic-password": elasticsearch.elastic_password,
                   **{f"{user}-password": password for user, password in passwords.items()}}
        spec = ServiceSpec(
            name="logging-bootstrap",
            component="logs-bootstrap",
            image=settings.images["curl"],
            ports=[],
            resources=RESOURCES,
            run_as_user=65534,
            args=["sh", f"{BASE}/script/bootstrap.sh"],
            env={"ELASTICSEARCH_URL": elasticsearch.internal_url, "KIBANA_URL": kibana_url},
            config=[
                ConfigFiles("script", f"{BASE}/script", {"bootstrap.sh": configs.bootstrap_script()}),
                ConfigFiles("policies", f"{BASE}/policies", self.files),
                ConfigFiles("secrets", f"{BASE}/secrets", secrets, secret=True),
            ],
            scratch_paths=["/tmp"],
            run_once=True,
            allow_out=[Flow("elasticsearch", [(ES_PORT, "TCP")]), Flow("kibana", [(KIBANA_PORT, "TCP")])],
        )
        self.deployed = platform.deploy(spec, self)
        self.register_outputs({})
