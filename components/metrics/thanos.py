"""Thanos over the Prometheus replicas (thanos.enabled, Kubernetes only).

A sidecar in each Prometheus pod serves its TSDB over gRPC (the StoreAPI) and uploads every block
Prometheus cuts to the bucket; Thanos Query fans a query out to the sidecars and the store gateway
(which serves the bucket's blocks) and merges the replicas' series along the replica label, so a
gap in one replica is filled from the other; the compactor, a singleton, compacts, downsamples
(5m, 1h) and applies the retention of each resolution. Grafana reads Thanos Query (or the query
frontend before it) instead of one Prometheus. The bucket's config holds the S3 keys: it is a
Secret's file, mounted only where the bucket is used.

Flags and config keys are those of the pinned release (cmd/thanos/*.go,
github.com/thanos-io/objstore providers); tests/test_command_lines.py starts each command line.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import yaml

from components.configs.grafana import DATA_PROXY_TIMEOUT_SECONDS
from components.configs.prometheus import SHARD_LABEL, ScrapeTarget
from components.settings import Settings
from components.settings.types import quantity_bytes
from components.units import mib_share
from components.platform.workload import (ANYWHERE, ConfigFiles, DataVolume, Flow, HttpCheck, Platform, Port,
                                          ServiceSpec, Sidecar)

GRPC_PORT = 10901  # every component's StoreAPI (upstream's default --grpc-address)
HTTP_PORT = 10902  # metrics, probes and the query API (upstream's default --http-address)
OBJSTORE_DIR = "/etc/thanos/objstore"
OBJSTORE_FILE = f"{OBJSTORE_DIR}/objstore.yml"
ENDPOINTS_DIR = "/etc/thanos/endpoints"
# nobody, like Prometheus and the sidecar in its pod (which must share its files), rather than the
# image's user 1001: a high uid shares no host user (checkov CKV_K8S_40), and the components' data is
# on volumes owned through fsGroup. The image's binary must be executable by it (upstream's Dockerfile
# copies it with the build's mode, owned by 1001).
RUN_AS_USER = 65534
# Prometheus cuts a block every 2h; a sidecar uploads only blocks Prometheus never compacts
# further, so the local compaction is held at that one size (Thanos' documented requirement).
PROMETHEUS_UPLOAD_ARGS = ("--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h")
QUERY, STORE, COMPACTOR, FRONTEND = "thanos-query", "thanos-store", "thanos-compactor", "thanos-query-frontend"
RULE = "thanos-rule"  # with scrape shards only (components/metrics/thanos_rule.py)
# The Rulers' own Query, with scrape shards only: the store timeout their rules need is not one for
# Grafana (Thanos.__init__).
QUERY_RULE = "thanos-query-rule"


# Grafana's Query gives up a store silent this long (--store.response-timeout) and answers from the
# others, with a warning, before Grafana's data proxy gives up the panel: a store that hangs would
# otherwise hold each panel's query in Query for --query.timeout (2m), long after Grafana stopped
# waiting, and fill its --query.max-concurrent places. A store merely slow between two frames (a
# cold store gateway over a long range) is waited for.
GRAFANA_STORE_SILENCE_SECONDS = DATA_PROXY_TIMEOUT_SECONDS * 2 // 3


def queries(settings: Settings) -> list[str]:
    """Every Thanos Query of the stack: what the stores let in."""
    return [QUERY, QUERY_RULE] if settings.prometheus.shards > 1 else [QUERY]


def objstore_config(settings: Settings) -> pulumi.Output:
    """The bucket's config file (objstore.yml); with S3 it holds the keys, so it is a secret Output."""
    store = settings.thanos.objstore
    if store.type == "filesystem":
        return pulumi.Output.from_input(yaml.safe_dump({"type": "FILESYSTEM", "config": {"directory": store.directory}}))
    secrets = settings.secrets
    if secrets.thanos_objstore_access_key is None or secrets.thanos_objstore_secret_key is None:
        raise ValueError("thanos.objstore.type s3 needs the thanosObjstoreAccessKey and thanosObjstoreSecretKey secrets")

    def render(keys: list) -> str:
        config = {"bucket": store.bucket, "endpoint": store.endpoint or "s3.amazonaws.com",
                  "access_key": keys[0], "secret_key": keys[1], "insecure": store.insecure}
        if store.region:
            config["region"] = store.region
        return yaml.safe_dump({"type": "S3", "config": config}, sort_keys=False)

    return pulumi.Output.secret(pulumi.Output.all(secrets.thanos_objstore_access_key,
                                                  secrets.thanos_objstore_secret_key).apply(render))


def objstore_files(settings: Settings) -> ConfigFiles:
    # Read at start only: a new key rolls the pods through the Secret's checksum.
    return ConfigFiles("objstore", OBJSTORE_DIR, {"objstore.yml": objstore_config(settings)}, secret=True)


def bucket_flows(settings: Settings) -> list[Flow]:
    """Where the bucket is: outside the cluster, at the endpoint's port (none for a test's directory)."""
    if settings.thanos.objstore.type == "filesystem":
        return []
    return [Flow(ANYWHERE, [(settings.thanos.objstore.port, "TCP")])]


def store_memory_args(memory_limit: str) -> list[str]:
    """The store gateway's two in-memory pools, sized from its container's limit. Upstream's defaults
    (2 GB of chunks, 250 MB of index cache) are more than the container may use, so a heavy
    long-range query got it OOM-killed, and Query answered from the rest without saying so (partial
    responses are on). Half the limit for chunks, an eighth for the index cache, the rest for the
    Go heap of the requests themselves."""
    mib = mib_share(quantity_bytes(memory_limit))
    return [f"--chunk-pool-size={mib // 2}MiB", f"--index-cache-size={mib // 8}MiB"]


def common_args(component: str) -> list[str]:
    # Without --enable-auto-gomemlimit (off upstream, unlike Prometheus 3's --auto-gomemlimit) the Go
    # runtime knows no limit: the heap doubles between collections until the kernel OOM-kills the
    # container at its memory limit. With it, GOMEMLIMIT is 90 % of the cgroup's limit
    # (cmd/thanos/config.go), so the collector works harder before the limit instead.
    return [component, f"--http-address=0.0.0.0:{HTTP_PORT}", "--log.format=logfmt", "--enable-auto-gomemlimit"]


def grpc_args() -> list[str]:
    return [f"--grpc-address=0.0.0.0:{GRPC_PORT}"]


def sidecar(settings: Settings, prometheus_port: int, tsdb_path: str) -> Sidecar:
    """The container beside each Prometheus: serves its TSDB to Thanos Query and ships its blocks."""
    return Sidecar(
        "thanos-sidecar",
        settings.images["thanos"],
        Port("thanos-http", HTTP_PORT),
        settings.thanos.sidecar_resources,
        # Ready once it has read Prometheus' external labels (the replica label among them).
        HttpCheck("/-/ready", "thanos-http"),
        args=common_args("sidecar") + grpc_args() + [
            f"--tsdb.path={tsdb_path}",
            f"--prometheus.url=http://127.0.0.1:{prometheus_port}",
            f"--objstore.config-file={OBJSTORE_FILE}",
        ],
        more_ports=(Port("thanos-grpc", GRPC_PORT),),
        # It records the blocks it shipped (thanos.shipper.json) beside them.
        data_path=tsdb_path,
        config=(objstore_files(settings),),
        run_as_user=65534,  # Prometheus' user: the blocks are its files
    )


def prometheus_flows(settings: Settings) -> list[Flow]:
    """What the sidecar lets into each Prometheus pod (its way out, to the bucket, Prometheus' own
    allows already: targets live anywhere)."""
    return [*(Flow(q, [(GRPC_PORT, "TCP")]) for q in queries(settings)), Flow("prometheus", [(HTTP_PORT, "TCP")])]


def endpoints_file(prometheus_grpc: Sequence[str], store_grpc: str) -> str:
    """Thanos Query's endpoint.sd-config: every sidecar by its replica's stable name (each one is a
    replica to merge, so none may stand behind a shared address), and the store gateway."""
    return yaml.safe_dump({"endpoints": [{"address": a} for a in [*prometheus_grpc, store_grpc]]}, sort_keys=False)


def scrape_targets(settings: Settings) -> list:
    """The Thanos jobs (rules/thanos.yaml reads them by these names); the sidecar's is per Prometheus pod."""
    # The Rulers' Query is one more Query to the rules and dashboards that read job thanos-query
    # (its pod label tells the two apart).
    jobs = [ScrapeTarget("thanos-sidecar", "prometheus", "thanos-http"),
            ScrapeTarget(QUERY, "|".join(queries(settings)), "http"),
            ScrapeTarget(STORE, STORE, "http"), ScrapeTarget(COMPACTOR, COMPACTOR, "http")]
    if settings.thanos.query_frontend:
        jobs.append(ScrapeTarget(FRONTEND, FRONTEND, "http"))
    return jobs


def probes() -> dict:
    return {"liveness": HttpCheck("/-/healthy", "http"), "readiness": HttpCheck("/-/ready", "http")}


class Thanos(pulumi.ComponentResource):
    """Query, store gateway, compactor and (optionally) the query frontend; the sidecars are part of
    the Prometheus pods (``sidecar``)."""

    query_url: str  # what Grafana reads: the query frontend when there is one

    def __init__(self, name: str, *, settings: Settings, platform: Platform, prometheus_grpc: Sequence[str],
                 rule_grpc: Sequence[str] = (), store_silence: Optional[int] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("football-monitoring:thanos:Thanos", name, None, opts)
        thanos, image = settings.thanos, settings.images["thanos"]
        scraped = Flow("prometheus", [(HTTP_PORT, "TCP")])
        ports = [Port("http", HTTP_PORT), Port("grpc", GRPC_PORT)]
        store_address = f"{platform.host_of(STORE)}:{GRPC_PORT}"

        self.store = platform.deploy(ServiceSpec(
            name=STORE, component="metrics-storage", image=image, ports=ports,
            resources=thanos.store_resources, run_as_user=RUN_AS_USER,
            args=common_args("store") + grpc_args() + [
                "--data-dir=/var/thanos/store", f"--objstore.config-file={OBJSTORE_FILE}",
                *store_memory_args(thanos.store_resources.limits.memory)],
            config=[objstore_files(settings)],
            data=DataVolume("/var/thanos/store", thanos.store_storage_size),
            **probes(),
            allow_in=[*(Flow(q, [(GRPC_PORT, "TCP")]) for q in queries(settings)), scraped],
            allow_out=bucket_flows(settings),
        ), self)

        self.compactor = platform.deploy(ServiceSpec(
            name=COMPACTOR, component="metrics-storage", image=image, ports=[Port("http", HTTP_PORT)],
            resources=thanos.compactor_resources, run_as_user=RUN_AS_USER,
            args=common_args("compact") + [
                # A long-running singleton: two compactors on one bucket would corrupt it.
                "--wait", "--data-dir=/var/thanos/compact", f"--objstore.config-file={OBJSTORE_FILE}",
                f"--retention.resolution-raw={thanos.retention_raw}",
                f"--retention.resolution-5m={thanos.retention5m}",
                f"--retention.resolution-1h={thanos.retention1h}"],
            config=[objstore_files(settings)],
            data=DataVolume("/var/thanos/compact", thanos.compactor_storage_size),
            replicas=1,
            **probes(),
            allow_in=[scraped],
            allow_out=bucket_flows(settings),
        ), self)

        # Grafana's only way in is the frontend when there is one.
        clients = [Flow(FRONTEND if thanos.query_frontend else "grafana", [(HTTP_PORT, "TCP")])]
        sharded = settings.prometheus.shards > 1
        # Each target is scraped by one shard, but its shard follows its address, which changes when
        # its pod is replaced (a StatefulSet's pod keeps its name): deduplicating along the shard
        # label too keeps such a series one series, as with one Prometheus (rate() unbroken, an
        # alert's for: not restarted, rules that match series from two shards still matching).
        dedup = [f"--query.replica-label={SHARD_LABEL}"] if sharded else []
        # With scrape shards, Query reads the Rulers' recorded series and alerts too
        # (components/metrics/thanos_rule.py).
        endpoints = ConfigFiles("endpoints", ENDPOINTS_DIR,
                                {"endpoints.yaml": endpoints_file([*prometheus_grpc, *rule_grpc], store_address)})

        def query(name: str, clients: list[Flow], more_args: Sequence[str] = ()):
            return platform.deploy(ServiceSpec(
                name=name, component="metrics-query", image=image, ports=ports,
                resources=thanos.query_resources, run_as_user=RUN_AS_USER,
                args=common_args("query") + grpc_args() + [
                    f"--query.replica-label={thanos.replica_label}", *dedup,
                    f"--endpoint.sd-config-file={ENDPOINTS_DIR}/endpoints.yaml",
                    # Grafana asks without max_source_resolution: a range's step picks the downsampled
                    # blocks (step / 5), which is what makes a week's panel cheap.
                    "--query.auto-downsampling", *more_args],
                # Re-read every --endpoint.sd-config-reload-interval, but a new endpoint rolls the pods
                # through the checksum all the same: it takes effect at once, not within 5 minutes.
                config=[endpoints],
                replicas=thanos.query_replicas,
                **probes(),
                allow_in=[*clients, scraped],
                allow_out=[Flow("prometheus", [(GRPC_PORT, "TCP")]), Flow(STORE, [(GRPC_PORT, "TCP")])]
                + ([Flow(RULE, [(GRPC_PORT, "TCP")])] if sharded else []),
            ), self)

        self.query = query(QUERY, clients, [f"--store.response-timeout={GRAFANA_STORE_SILENCE_SECONDS}s"])
        self.rule_query = None
        if sharded:
            if not store_silence:
                raise ValueError("with scrape shards the Rulers' Query needs the rules' store silence")
            # The Rulers' own Query, over the same stores: a store silent this long is given up for
            # the rule query (components/metrics/thanos_rule.py store_silence_seconds), which on
            # Grafana's would leave a merely slow store out of panels. Apart from Grafana's, as the
            # timeout has to be Query's own: the Ruler giving up leaves the store call running in
            # Query. Same size and replicas as Grafana's: it runs every rule of the stack, and the
            # rules stop while it is down.
            self.rule_query = query(QUERY_RULE, [Flow(RULE, [(HTTP_PORT, "TCP")])],
                                    [f"--store.response-timeout={store_silence}s"])
        self.query_url = self.query.url("http")

        self.frontend = None
        if thanos.query_frontend:
            self.frontend = platform.deploy(ServiceSpec(
                name=FRONTEND, component="metrics-query", image=image, ports=[Port("http", HTTP_PORT)],
                resources=thanos.query_frontend_resources, run_as_user=RUN_AS_USER,
                args=common_args("query-frontend") + [f"--query-frontend.downstream-url={self.query_url}"],
                replicas=thanos.query_replicas,
                **probes(),
                allow_in=[Flow("grafana", [(HTTP_PORT, "TCP")]), scraped],
                allow_out=[Flow(QUERY, [(HTTP_PORT, "TCP")])],
            ), self)
            self.query_url = self.frontend.url("http")
        self.register_outputs({"query_url": self.query_url})
