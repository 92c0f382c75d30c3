"""Elasticsearch: a StatefulSet of master-eligible data nodes, TLS on both layers, security on.

- 1 node (dev): discovery.type single-node. 3 or more (prod): one cluster that forms through
  the headless Service, spread over nodes and zones, with a disruption budget of one.
- Certificates from the stack's own CA (certs.py); the elastic password from pulumi-random,
  delivered only through a Secret (the keystore's bootstrap.password on the first start).
- cluster.initial_master_nodes is added by the init step only when the node's data directory
  holds no cluster state (configs.init_script), so it is never present on a restart.
- Heap: logging.elasticsearch.heapPercent (50) of the memory limit.
- Index files are memory-mapped (logging.elasticsearch.allowMmap): the init step refuses to start
  a node whose kernel has vm.max_map_count below 262144.
- GC logs go to stderr with the rest of the node's output (the image writes up to 2 GB of them
  into path.logs, an emptyDir).
- Readiness: the node answers (configs.probe_command), so one red index does not empty the client
  Service; a new pod is ready only once the cluster is green, which paces rolling restarts.
  The exporter reads health through the headless Service, which also lists unready nodes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import pulumi_random as random

from components.settings import Settings
from components.platform.workload import (ANYWHERE, CommandCheck, ConfigFiles, DataVolume, Flow, HttpCheck, InitStep, Platform, Port,
                        ServiceSpec, SharedVolume)
from components.logging import configs
from components.logging.certs import ElasticCertificates

HTTP_PORT = 9200
TRANSPORT_PORT = 9300
EXPORTER_PORT = 9114
ELASTIC_UID = 1000  # the image's own user


def _password(name: str, parent: pulumi.Resource, length: int = 32) -> pulumi.Output:
    generated = random.RandomPassword(name, length=length, special=False, min_lower=4, min_upper=4, min_numeric=4,
                                      opts=pulumi.ResourceOptions(parent=parent))
    return pulumi.Output.secret(generated.result)


def _s3_port(endpoint: Optional[str]) -> int:
    return int(endpoint.rsplit(":", 1)[1]) if endpoint and ":" in endpoint else 443


class Elasticsearch(pulumi.ComponentResource):
    internal_url: str
    ca_cert_pem: pulumi.Output
    elastic_password: pulumi.Output
    kibana_token: pulumi.Output

    def __init__(self, name: str, *, settings: Settings, platform: Platform, clients: Sequence[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:logging:Elasticsearch", name, None, opts)
        lg, es = settings.logging, settings.logging.elasticsearch
        self.certs = ElasticCertificates(environment=settings.environment,
                                         dns_names=configs.http_dns_names(settings.namespace, es.nodes), parent=self)
        self.ca_cert_pem = self.certs.ca_cert_pem
        self.elastic_password = _password("elastic-password", self)
        # Kibana's service account token, generated here: Elasticsearch gets only its hash (a
        # file-based service token), Kibana the token, both through Secrets. Works on the very
        # first start, with no API call and no superuser for Kibana.
        token_secret = _password("kibana-service-token", self, length=40)
        self.kibana_token = pulumi.Output.secret(token_secret.apply(configs.service_token))
        tokens_file = pulumi.Output.secret(token_secret.apply(configs.service_tokens_file))

        snapshot = lg.snapshot
        repository = snapshot.type if snapshot.enabled else None
        secret_files = {
            "ca.crt": self.ca_cert_pem,
            "http.crt": self.certs.certs["http"], "http.key": self.certs.keys["http"],
            "transport.crt": self.certs.certs["transport"], "transport.key": self.certs.keys["transport"],
            "elastic-password": self.elastic_password,
            "service_tokens": tokens_file,
        }
        if repository == "s3":
            secret_files["s3-access-key"] = settings.secrets.logging_snapshot_access_key
            secret_files["s3-secret-key"] = settings.secrets.logging_snapshot_secret_key
        headless = platform.every_replica_host("elasticsearch")
        heap = configs.heap_mb(es.resources.limits.memory, es.heap_percent)
        self.heap_mb = heap

        allow_out = [Flow("elasticsearch", [(TRANSPORT_PORT, "TCP")])]
        if repository == "s3":
            allow_out.append(Flow(ANYWHERE, [(_s3_port(snapshot.endpoint), "TCP")]))
        spec = ServiceSpec(
            name="elasticsearch",
            component="logs-storage",
            image=settings.images["elasticsearch"],
            ports=[Port("https", HTTP_PORT)],
            cluster_peers=[Port("transport", TRANSPORT_PORT)],
            resources=es.resources,
            run_as_user=ELASTIC_UID,
            # The image's own entrypoint and command, spelled out: a platform without init
            # containers (Docker) runs the init step in this container, then execs exactly this.
            command=["/bin/tini", "--", "/usr/local/bin/docker-entrypoint.sh"],
            args=["eswrapper"],
            env={"ES_PATH_CONF": configs.ES_CONF, "ES_JAVA_OPTS": configs.es_java_opts(heap), "ES_TMPDIR": "/tmp"},
            env_from_pod={"POD_NAME": "metadata.name"},
            config=[
                ConfigFiles("config", configs.ES_CONFIG_MOUNT, {"elasticsearch.yml": configs.elasticsearch_yml(
                    environment=settings.environment, nodes=es.nodes, headless=headless,
                    snapshot_type=repository, s3_endpoint=snapshot.endpoint, allow_mmap=es.allow_mmap)}),
                ConfigFiles("secrets", configs.ES_SECRETS_MOUNT, secret_files, secret=True),
            ],
            data=DataVolume(configs.ES_DATA, es.storage_size),
            scratch_paths=[configs.ES_CONF, "/tmp", f"{configs.ES_HOME}/logs"],
            scratch_exec=["/tmp"],  # ES_TMPDIR: JNA loads its native library from there
            init=[InitStep("prepare-config", ["/bin/sh", "-c", configs.init_script(
                nodes=es.nodes, s3_keys=repository == "s3", allow_mmap=es.allow_mmap)])],
            liveness=CommandCheck(configs.probe_command("alive")),
            readiness=CommandCheck(configs.probe_command("ready", es.nodes)),
            replicas=es.nodes,
            shared_volumes=[SharedVolume(snapshot.claim_name, configs.ES_SNAPSHOTS)] if repository == "fs" else [],
            allow_in=[Flow("elasticsearch", [(HTTP_PORT, "TCP"), (TRANSPORT_PORT, "TCP")])]
            + [Flow(client, [(HTTP_PORT, "TCP")]) for client in clients],
            allow_out=allow_out,
        )
        self.deployed = platform.deploy(spec, self)
        self.internal_url = f"https://{platform.host_of('elasticsearch')}:{HTTP_PORT}"
        # Published only on a Docker host (its loopback, for verification); never an ingress.
        self.external_url = platform.public_url("elasticsearch", scheme="https")
        # Every node, ready or not (health must be readable while the cluster is red).
        self.headless_url = f"https://{platform.every_replica_host('elasticsearch')}:{HTTP_PORT}"
        self.register_outputs({"internal_url": self.internal_url, "external_url": self.external_url})


class ElasticsearchExporter(pulumi.ComponentResource):
    """prometheus-community elasticsearch_exporter: cluster health, shards, every node's disk."""

    def __init__(self, name: str, *, settings: Settings, platform: Platform, elasticsearch: Elasticsearch,
                 password: pulumi.Output, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:logging:ElasticsearchExporter", name, None, opts)
        spec = ServiceSpec(
            name="elasticsearch-exporter",
            component="exporter",
            image=settings.images["elasticsearchExporter"],
            ports=[Port("metrics", EXPORTER_PORT)],
            resources=settings.logging.exporters.resources,
            run_as_user=65534,
            args=[f"--es.uri={elasticsearch.headless_url}", "--es.all", "--es.ca=/etc/elasticsearch-exporter/ca.crt",
                  "--es.timeout=10s", f"--web.listen-address=:{EXPORTER_PORT}"],
            env={"ES_USERNAME": "fm-exporter"},
            # The exporter reads its password only from the environment (through a Secret reference).
            secret_env={"ES_PASSWORD": password},
            config=[ConfigFiles("ca", "/etc/elasticsearch-exporter", {"ca.crt": elasticsearch.ca_cert_pem}, secret=True)],
            liveness=HttpCheck("/healthz", "metrics"),
            readiness=HttpCheck("/healthz", "metrics"),
            allow_in=[Flow("prometheus", [(EXPORTER_PORT, "TCP")])],
            allow_out=[Flow("elasticsearch", [(HTTP_PORT, "TCP")])],
        )
        self.deployed = platform.deploy(spec, self)
        self.register_outputs({})
