"""The trace pipeline as prod and dev generate it, started on loopback with the real programs.

``ProdTraces`` runs what the prod stack declares (``offline.run("prod")``: the ConfigMaps
``otel-gateway-config``, ``jaeger-collector-config`` and ``jaeger-config``):

- two gateway replicas (otelcol built from exactly the gateway's components) on 127.0.0.11 and
  127.0.0.12, each with the routing tier (load_balancing by trace id) in front of tail sampling;
- the Jaeger collector and the Jaeger query as two processes, as prod splits them;
- a storage process that both of them use in place of Elasticsearch (see below).

``DevJaeger`` runs dev's all-in-one (``offline.run("dev")``, the container's uploaded config)
with its Badger store.

What changes from the generated configs, and nothing else (``changed_paths`` proves it):

- addresses: every listener moves from 0.0.0.0 to a free loopback port, and every in-cluster
  name (the gateway's Jaeger target, its peers) to the loopback address of the process here.
  No setting holds these (the ports are the renderers' constants, the names the platform's), so
  they are moved in the parsed config, as tests/test_gateway_routing.py and
  tests/test_trace_pipeline.py do. The routing tier's ``dns`` resolver becomes the ``static``
  resolver of the same exporter: no name lists two processes' ports on loopback
  (tests/test_gateway_routing.py has the reasoning); dev's Badger directories (/tmp/badger in
  the container's volume) move to a temp directory;
- the Jaeger storage backend, prod's only: Elasticsearch cannot run on these machines (no JVM
  service is started here, and the image is not available), so the backend named ``traces`` of
  the collector and of the query becomes Jaeger's ``grpc`` remote-storage backend. Badger on a
  shared directory cannot stand in: Badger flocks its directory (badger v4 dir_other.go,
  ``acquireDirectoryLock``), and a second Jaeger 2.14 on the same directories exits ("Cannot
  acquire directory lock ... Another process is using this Badger database"); the memory store
  lives inside one process. The ``grpc`` backend (jaeger v1.76.0 internal/storage/v2/grpc: reads
  through the ``endpoint``, writes OTLP to ``writer.endpoint``) reaches a third Jaeger process
  holding a memory store behind the ``remote_storage`` extension (the shape of upstream's
  cmd/jaeger/config-remote-storage-backend.yaml): collector and query stay two processes that
  share one store, as they share Elasticsearch in prod.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from tests import otel_policy
from tests.conftest import require_tool
from tools import offline
from tests.ports import free_port

GATEWAY_IPS = ("127.0.0.11", "127.0.0.12")
PEER_RECEIVER = "receivers.otlp/peers.protocols.grpc"
METRICS = "service.telemetry.metrics.readers[0]"
# Keys whose values are addresses (and Badger's directories, "keys"/"values"); a changed value under any
# other key is a change of behaviour.
ADDRESS_KEYS = {"endpoint", "host", "port", "hostnames", "keys", "values"}


def generated_prod(overrides: Optional[dict] = None, result: Optional[offline.RunResult] = None) -> dict[str, str]:
    result = result or offline.run("prod", overrides)
    return {name: result.one("ConfigMap", f"{name}-config")["data"]["config.yaml"]
            for name in ("otel-gateway", "jaeger-collector", "jaeger")}


def generated_dev() -> str:
    uploads = offline.run("dev").container("jaeger").inputs["uploads"]
    [config] = [u["content"] for u in uploads if u["file"] == "/etc/jaeger/config.yaml"]
    return config


def relocate(text: str, ip: str, fixed: Optional[dict[str, int]] = None) -> tuple[dict, dict[str, int]]:
    """The parsed config with every listener on `ip` (a free port, or the one `fixed` names for
    that listener): (config, where -> port)."""
    config = otel_policy.parse(text)
    ports = {}
    for where in otel_policy.listening_ports(config):
        ports[where] = (fixed or {}).get(where) or free_port(ip)
    for where, port in ports.items():
        _set_listener(config, where, f"{ip}:{port}")
    return config, ports


def _set_listener(config: dict, where: str, address: str) -> None:
    if where.startswith("service.telemetry.metrics.readers["):
        i = int(where.rsplit("[", 1)[1].rstrip("]"))
        prometheus = config["service"]["telemetry"]["metrics"]["readers"][i]["pull"]["exporter"]["prometheus"]
        host, port = address.rsplit(":", 1)
        prometheus.update(host=host, port=int(port))
        return
    kind, rest = where.split(".", 1)
    if kind == "receivers":
        rid, _, protocol = rest.rsplit(".", 2)
        config["receivers"][rid]["protocols"][protocol]["endpoint"] = address
    elif rest in config["extensions"]:  # health_check
        config["extensions"][rest]["endpoint"] = address
    else:
        eid, server = rest.rsplit(".", 1)
        config["extensions"][eid][server]["endpoint"] = address


def changed_paths(before: Any, after: Any, at: str = "") -> list[str]:
    """Every leaf path whose value differs (a key only on one side counts as one path)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after), key=str):
            where = f"{at}.{key}" if at else str(key)
            if key not in before or key not in after:
                found.append(where)
            else:
                found += changed_paths(before[key], after[key], where)
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [p for i, (b, a) in enumerate(zip(before, after)) for p in changed_paths(b, a, f"{at}[{i}]")]
    return [] if before == after else [at]


def non_address_changes(before: str, after: dict, allowed_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Changed paths that are neither addresses nor under an allowed prefix (the storage swap)."""
    return [p for p in changed_paths(otel_policy.parse(before), after)
            if not p.startswith(allowed_prefixes) and p.rsplit(".", 1)[-1].split("[")[0] not in ADDRESS_KEYS]


class Proc:
    """A program with a config, its output in directory/output.log; restartable."""

    def __init__(self, tool: str, config: dict, directory: Path, ports: dict[str, int], ip: str = "127.0.0.1"):
        directory.mkdir(parents=True, exist_ok=True)
        self.tool, self.ip, self.ports, self.directory = tool, ip, ports, directory
        self.config_path = directory / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = directory / "output.log"
        self.proc: Optional[subprocess.Popen] = None
        self.env: Optional[dict[str, str]] = None  # None: this process's environment
        # A cgroup's cgroup.procs that the program joins before its first instruction.
        self.cgroup_procs: Optional[Path] = None

    def start(self) -> "Proc":
        command = [require_tool(self.tool), f"--config={self.config_path}"]
        if self.cgroup_procs:
            # The shell joins and then becomes the program (exec keeps the pid): every page the
            # program touches is charged to the cgroup, as in its container.
            command = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.cgroup_procs), *command]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def url(self, where: str) -> str:
        return f"http://{self.ip}:{self.ports[where]}"

    def metrics(self) -> str:
        return http_get(f"{self.url(METRICS)}/metrics")

    def wait_serving(self, seconds: float = 30.0, also: Optional[str] = None) -> None:
        """Until its metrics answer, and the URL `also` if given (a listener that opens later)."""
        def up():
            if not self.alive():
                raise AssertionError(f"{self.directory.name} exited: {self.tail()}")
            try:
                return self.metrics() and (also is None or http_get(also) is not None)
            except OSError:
                return None
        wait_for(f"{self.directory.name} to serve its metrics{f' and {also}' if also else ''}", up, seconds)


def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read().decode()


def wait_for(what: str, check: Callable[[], Any], seconds: float = 30.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")
        time.sleep(every)


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples (exact name, every label given matching)."""
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        if head.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# ----------------------------------------------------------------------------------- storage

def storage_config(remote_port: int, otlp_port: int, metrics_port: int) -> dict:
    """A Jaeger holding a memory store behind the remote_storage extension: the stand-in for
    Elasticsearch (this file's docstring). Written here: prod has no such process."""
    return {
        "extensions": {
            "jaeger_storage": {"backends": {"store": {"memory": {"max_traces": 200000}}}},
            "remote_storage": {"endpoint": f"127.0.0.1:{remote_port}", "storage": "store"},
        },
        # The collector's storage writer sends each of its batches as one OTLP message.
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{otlp_port}",
                                                      "max_recv_msg_size_mib": 64}}}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "store"}},
        "service": {
            "extensions": ["jaeger_storage", "remote_storage"],
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"metrics": {"level": "basic", "readers": [{"pull": {"exporter": {"prometheus": {
                "host": "127.0.0.1", "port": metrics_port}}}}]}, "logs": {"level": "info"}},
        },
    }


def remote_backend(remote_port: int, otlp_port: int) -> dict:
    return {"grpc": {"endpoint": f"127.0.0.1:{remote_port}", "tls": {"insecure": True},
                     "writer": {"endpoint": f"127.0.0.1:{otlp_port}", "tls": {"insecure": True}}}}


STORAGE_SWAP = "extensions.jaeger_storage.backends.traces"


class ProdTraces:
    """Prod's gateway replicas, Jaeger collector and Jaeger query (and the store) on loopback."""

    def __init__(self, work: Path, overrides: Optional[dict] = None):
        self.rendered = offline.run("prod", overrides)
        self.generated = generated_prod(result=self.rendered)
        self.work = work
        remote, writer, metrics = free_port(), free_port(), free_port()
        self.storage = Proc("jaeger", storage_config(remote, writer, metrics), work / "storage", {METRICS: metrics})

        self.jaeger: dict[str, Proc] = {}
        for name in ("jaeger-collector", "jaeger"):
            config, ports = relocate(self.generated[name], "127.0.0.1")
            config["extensions"]["jaeger_storage"]["backends"]["traces"] = remote_backend(remote, writer)
            extra = non_address_changes(self.generated[name], config, (STORAGE_SWAP,))
            assert extra == [], f"{name}: more than addresses and the store changed: {extra}"
            self.jaeger[name] = Proc("jaeger", config, work / name, ports)
        self.collector, self.query = self.jaeger["jaeger-collector"], self.jaeger["jaeger"]
        collector_otlp = self.collector.ports["receivers.otlp.protocols.grpc"]

        peer_ports = [free_port(ip) for ip in GATEWAY_IPS]
        peers = [f"{ip}:{port}" for ip, port in zip(GATEWAY_IPS, peer_ports)]
        self.gateways: list[Proc] = []
        text = self.generated["otel-gateway"]
        for i, ip in enumerate(GATEWAY_IPS):
            config, ports = relocate(text, ip, {PEER_RECEIVER: peer_ports[i]})
            jaeger_export = config["exporters"]["otlp_grpc/jaeger"]
            assert jaeger_export["endpoint"].startswith("dns:///"), jaeger_export
            # gRPC's dns resolver takes an address literal as it is.
            jaeger_export["endpoint"] = f"dns:///127.0.0.1:{collector_otlp}"
            resolver = config["exporters"]["load_balancing"]["resolver"]
            assert set(resolver) == {"dns"}, resolver
            config["exporters"]["load_balancing"]["resolver"] = {"static": {"hostnames": peers}}
            extra = non_address_changes(text, config, ("exporters.load_balancing.resolver",))
            assert extra == [], f"gateway: more than addresses changed: {extra}"
            self.gateways.append(Proc("otelcol", config, work / f"gateway-{i}", ports, ip))

    def processes(self) -> list[Proc]:
        return [self.storage, self.collector, self.query, *self.gateways]

    def start(self) -> "ProdTraces":
        for proc in self.processes():
            proc.start()
        for proc in self.processes():
            proc.wait_serving()
        return self

    def stop(self) -> None:
        for proc in reversed(self.processes()):
            proc.stop()

    def gateway_endpoints(self) -> list[tuple[str, str]]:
        """(OTLP/gRPC host:port, OTLP/HTTP traces URL) of each replica."""
        return [(f"{g.ip}:{g.ports['receivers.otlp.protocols.grpc']}",
                 f"{g.url('receivers.otlp.protocols.http')}/v1/traces") for g in self.gateways]

    def sampling_percentage(self) -> float:
        [config] = {json.dumps(_baseline(yaml.safe_load(g.config_path.read_text()))) for g in self.gateways}
        return float(json.loads(config))

    def query_url(self) -> str:
        return self.query.url("extensions.jaeger_query.http")


def _baseline(config: dict) -> float:
    policies = config["processors"]["tail_sampling"]["policies"]
    [share] = [p["probabilistic"]["sampling_percentage"] for p in policies if p["type"] == "probabilistic"]
    return share


class DevJaeger:
    """Dev's all-in-one Jaeger (Badger) on loopback."""

    def __init__(self, work: Path):
        self.generated = generated_dev()
        config, ports = relocate(self.generated, "127.0.0.1")
        badger = config["extensions"]["jaeger_storage"]["backends"]["traces"]["badger"]["directories"]
        for key in ("keys", "values"):
            badger[key] = str(work / "badger" / key)
        extra = non_address_changes(self.generated, config)
        assert extra == [], f"dev jaeger: more than addresses changed: {extra}"
        self.proc = Proc("jaeger", config, work / "jaeger-dev", ports)

    def start(self) -> "DevJaeger":
        # Its telemetry listens before the query extension does: on a busy machine the query API
        # refused connections for a moment after the metrics answered.
        self.proc.start().wait_serving(also=f"{self.proc.url('extensions.jaeger_query.http')}/api/services")
        return self

    def stop(self) -> None:
        self.proc.stop()


# ---------------------------------------------------------------------------- query API

def trace_by_id(query_url: str, trace_id: str) -> Optional[list[dict]]:
    """The spans Jaeger serves for one trace (None: not found)."""
    try:
        data = json.loads(http_get(f"{query_url}/api/traces/{trace_id}", timeout=30))["data"]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    return _with_processes(data[0]) if data else None


def traces_of(query_url: str, service: str, since_us: int, limit: int = 100000) -> dict[str, list[dict]]:
    """trace id -> spans of every trace with a span of `service` that started after `since_us`."""
    end = int(time.time() * 1e6) + 60_000_000
    data = json.loads(http_get(f"{query_url}/api/traces?service={service}&start={since_us}&end={end}"
                               f"&limit={limit}", timeout=60))["data"] or []
    return {t["traceID"].rjust(32, "0"): _with_processes(t) for t in data}


def _with_processes(trace: dict) -> list[dict]:
    """The trace's spans, each with its process (the query API keeps resources in a table per trace)."""
    return [dict(span, process=trace["processes"][span["processID"]]) for span in trace["spans"]]
