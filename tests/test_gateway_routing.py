"""Tail sampling on two gateway replicas, with the real collector: each trace is sampled whole.

Two collectors (built from exactly the gateway's components, at the image's release) run the
rendered two-replica gateway config on their own loopback addresses, as two pods would. Each one's
Jaeger export goes to its own OTLP receiver stand-in (a gRPC TraceService from the OpenTelemetry
protocol package, which only records what arrives), so the stand-in that got a span tells which
replica sampled it. Every trace is sent half to one replica and half to the other, as an
application's pods spread over the gateway Service would; every span has status ERROR, so the
`errors` policy keeps whatever each replica's sampler sees.

Only addresses change from the rendered config, and one thing more: the routing tier's resolver.
The rendered `dns` resolver looks up the gateway's headless Service, whose name lists every pod
with one port; on loopback no name lists two processes' peer receivers (a name resolves to
addresses, not to the two ports or the 127.0.0.x addresses the processes listen on), so the test
names the two peer receivers with the exporter's `static` resolver, which feeds the same
consistent-hashing ring (tests/test_otel_validate.py starts the `dns` resolver as rendered).

With the routing tier every trace must reach one stand-in whole, and both replicas must sample
some; the single-tier config of one replica, run twice, splits every trace over both.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests import otel_policy
from tests.test_otel_validate import JAEGER_NAMES
from tests.test_tracing_config import program, render
from tests.ports import free_port

TRACES = 24
SPANS_PER_TRACE = 4  # the first half goes to one replica, the second to the other
# Tail sampling waits decision_wait for a trace's spans, the batch processor up to its timeout.
DEADLINE_SECONDS = 90


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that records (trace id, span id) of every span it accepts."""

    def __init__(self, ip: str):
        self.spans: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"{ip}:0")
        self.address = f"{ip}:{self.port}"

    def Export(self, request, context):  # noqa: N802 (the gRPC method's name)
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans += [(span.trace_id.hex(), span.span_id.hex()) for span in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def received(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.spans)


PEER_RECEIVER = "receivers.otlp/peers.protocols.grpc"


def on_address(text: str, ip: str, jaeger: str, peers: list[str], peer_port: int) -> tuple[str, dict[str, int]]:
    """The rendered config with its listeners on `ip` (free ports; the peer receiver on
    `peer_port`), its Jaeger export aimed at a stand-in and, for the routing tier, the peer
    receivers named by a static resolver."""
    config = otel_policy.parse(text)
    ports = {}
    for where, port in otel_policy.listening_ports(config).items():
        free = ports[where] = peer_port if where == PEER_RECEIVER else free_port(ip)
        text = text.replace(f"0.0.0.0:{port}\n", f"{ip}:{free}\n").replace(f"port: {port}\n", f"port: {free}\n")
    text = text.replace("host: 0.0.0.0", f"host: {ip}")
    for name in JAEGER_NAMES:
        text = text.replace(name, jaeger)
    config = otel_policy.parse(text)
    if "load_balancing" in config["exporters"]:
        config["exporters"]["load_balancing"]["resolver"] = {"static": {"hostnames": peers}}
    return yaml.safe_dump(config, sort_keys=False), ports


def otlp_json(spans: list[tuple[str, str]]) -> bytes:
    now = time.time_ns()
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "football-prediction-api"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "GET /predictions/{match_id}", "kind": 2,
            "startTimeUnixNano": str(now - 25_000_000), "endTimeUnixNano": str(now), "status": {"code": 2}}
            for trace_id, span_id in spans]}]}]}).encode()


def wait_until_healthy(url: str, proc: subprocess.Popen, log: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the collector exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not healthy after {seconds:.0f}s: {log.read_text()[-3000:]}")


def run_two_replicas(name: str, tmp_path: Path) -> tuple[list[list[tuple[str, str]]], list[tuple[str, str]], list[str]]:
    """Two replicas of the config `name` on 127.0.0.11 and .12, each exporting to its own stand-in:
    (what each stand-in received, every span sent, each replica's log)."""
    ips = ["127.0.0.11", "127.0.0.12"]
    sinks = [Sink(f"127.0.0.{21 + i}") for i in range(2)]
    text = render(name)
    # Each replica's peer receiver port, chosen before either starts: the static list names both.
    peer_ports = [free_port(ip) for ip in ips]
    peers = [f"{ip}:{port}" for ip, port in zip(ips, peer_ports)]
    procs, logs, configs = [], [], []
    for i, ip in enumerate(ips):
        adapted, ports = on_address(text, ip, sinks[i].address, peers, peer_ports[i])
        path = tmp_path / f"replica-{i}.yaml"
        path.write_text(adapted)
        configs.append((ip, ports))
        logs.append(tmp_path / f"replica-{i}.log")
    for sink in sinks:
        sink.server.start()
    try:
        for i in range(2):
            with open(logs[i], "wb") as log:
                procs.append(subprocess.Popen([program("contrib"), f"--config={tmp_path / f'replica-{i}.yaml'}"],
                                              stdout=log, stderr=subprocess.STDOUT))
        for proc, log, (ip, ports) in zip(procs, logs, configs):
            wait_until_healthy(f"http://{ip}:{ports['extensions.health_check']}/", proc, log)
        traces = [secrets.token_hex(16) for _ in range(TRACES)]
        spans = {t: [secrets.token_hex(8) for _ in range(SPANS_PER_TRACE)] for t in traces}
        half = SPANS_PER_TRACE // 2
        sent = []
        for i, (ip, ports) in enumerate(configs):
            part = [(t, s) for t in traces for s in spans[t][i * half:(i + 1) * half]]
            sent += part
            request = urllib.request.Request(f"http://{ip}:{ports['receivers.otlp.protocols.http']}/v1/traces",
                                             data=otlp_json(part), method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline and sum(len(s.received()) for s in sinks) < len(sent):
            time.sleep(0.5)
        # A little longer: a span that arrives twice would show now.
        time.sleep(1)
        received = [s.received() for s in sinks]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        for sink in sinks:
            sink.server.stop(grace=None)
    return received, sent, [log.read_text() for log in logs]


def sinks_of_each_trace(received: list[list[tuple[str, str]]]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for i, spans in enumerate(received):
        for trace_id, _ in spans:
            found.setdefault(trace_id, set()).add(i)
    return found


@pytest.mark.parametrize("name", ["gateway-tail-routed", "gateway-tail"], ids=["routed", "one-replica-config"])
def test_every_trace_is_sampled_whole_by_one_replica(name, tmp_path):
    received, sent, logs = run_two_replicas(name, tmp_path)
    everything = sorted(s for spans in received for s in spans)
    assert everything == sorted(sent), (f"{len(everything)} spans arrived of {len(sent)} sent\n"
                                        + "\n".join(log[-2000:] for log in logs))
    where = sinks_of_each_trace(received)
    if name == "gateway-tail-routed":
        split = {t: sorted(s) for t, s in where.items() if len(s) > 1}
        assert split == {}, f"traces sampled in parts by both replicas: {split}"
        # Both replicas sample a share: the routing really spreads traces (all 24 on one replica
        # has a chance of 2^-23).
        assert all(received), [len(r) for r in received]
    else:
        # Without the routing tier each replica samples the half it was sent: every trace in two parts.
        assert all(len(s) == 2 for s in where.values()), where
