"""Filebeat: one per node, shipping every container's log lines with the container's metadata.

A filestream input with a fixed, unique id reads /var/log/containers/*.log with Kubernetes
metadata, or on a Docker host Docker's json-file logs with the container's name and labels
(HOST_ACCESS["log-collection"] / ["docker-log-collection"]). Its registry (the read offsets)
outlives the container (a host directory on the node, a volume on a Docker host), so a restarted
or upgraded Filebeat resumes where it stopped: no duplicates, no gaps. RBAC (Kubernetes):
get/list/watch on pods, namespaces and nodes, for the metadata, and nothing else. A beat-exporter sidecar turns Filebeat's own stats
endpoint (/stats on 5066) into Prometheus metrics.
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components.settings import Settings
from components.platform.workload import ANYWHERE, API_SERVER_PORTS, AccessRule, ConfigFiles, Flow, HttpCheck, Platform, Port, ServiceSpec, Sidecar
from components.logging import configs
from components.logging.logstash import BEATS_PORT

STATS_PORT = 5066
EXPORTER_PORT = 9479

# What add_kubernetes_metadata reads: the pod of each log file, its namespace and node.
METADATA_ACCESS = (AccessRule(api_groups=[""], resources=["pods", "namespaces", "nodes"]),)


class Filebeat(pulumi.ComponentResource):
    def __init__(self, name: str, *, settings: Settings, platform: Platform, logstash_address: str,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:logging:Filebeat", name, None, opts)
        lg = settings.logging
        spec = ServiceSpec(
            name="filebeat",
            component="logs-shipper",
            image=settings.images["filebeat"],
            ports=[Port("stats", STATS_PORT)],
            resources=lg.filebeat.resources,
            run_as_user=0,  # HOST_ACCESS["log-collection"]: the node's log files are root's
            # One registry directory per stack namespace, so two stacks on one cluster never share it.
            args=["-c", "/etc/filebeat/filebeat.yml", "--path.data", f"/usr/share/filebeat/data/{settings.namespace}"],
            env_from_pod={"NODE_NAME": "spec.nodeName"},
            config=[ConfigFiles("config", "/etc/filebeat", {"filebeat.yml": configs.filebeat_yml(
                logstash=logstash_address, namespace=settings.namespace, platform=platform.kind)})],
            scratch_paths=["/tmp", "/usr/share/filebeat/logs"],
            liveness=HttpCheck("/", "stats"),
            readiness=HttpCheck("/", "stats"),
            every_node=True,
            # Where the container runtime keeps the logs differs; see each entry's reason.
            host_access="log-collection" if platform.kind == "kubernetes" else "docker-log-collection",
            api_access=METADATA_ACCESS,
            sidecars=[Sidecar("exporter", settings.images["beatExporter"], Port("exporter", EXPORTER_PORT),
                              lg.exporters.resources, HttpCheck("/", "exporter"),
                              args=[f"-beat.uri=http://127.0.0.1:{STATS_PORT}",
                                    f"-web.listen-address=:{EXPORTER_PORT}"])],
            allow_in=[Flow("prometheus", [(EXPORTER_PORT, "TCP")])],
            allow_out=[Flow("logstash", [(BEATS_PORT, "TCP")]), Flow(ANYWHERE, API_SERVER_PORTS)],
        )
        self.deployed = platform.deploy(spec, self)
        self.register_outputs({})
