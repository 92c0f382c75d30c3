"""The gateway's memory limiter under a push it cannot drain, each replica in its pod's memory limit.

tests/trace_stack.py starts prod's trace pipeline on loopback (two gateway replicas with the
routing tier, Jaeger's collector and query). Here each gateway replica runs in a memory cgroup of
its own, a child of this process's cgroup, whose ``memory.limit_in_bytes`` is the gateway
container's ``resources.limits.memory`` in the rendered Deployment (prod's 1Gi: the push below
fills it in about 3 s, so no setting is lowered), with the Go runtime variables the container's
``env`` sets (GOMEMLIMIT) and no others. The image adds none: upstream's otelcol-contrib
Dockerfile is ``FROM scratch`` with the binary and sets no ``ENV``.

Why the cgroup is what the limiter reads (collector v0.161.0,
go.opentelemetry.io/collector/internal/memorylimiter): ``iruntime.TotalMemory`` asks
``cgroups.IsCGroupV2``, true only for a ``cgroup2`` mount at /sys/fs/cgroup itself (these machines
mount v1 controllers there and v2 at /sys/fs/cgroup/unified, so v1 is read); for v1 it finds the
process's memory cgroup through /proc/self/cgroup and the ``cgroup`` mount with the ``memory``
option in /proc/self/mountinfo, and reads that cgroup's ``memory.limit_in_bytes``; an unset limit
(9223372036854771712) or no memory cgroup falls back to the machine's memory (gopsutil). The
limiter logs the figure it took (``total_memory_mib``), which the first test compares. It refuses
at ``limit - spike`` of Go's heap (``runtime.MemStats.Alloc``) and forces a GC above ``limit``: with
the rendered percentages the applications' pipeline refuses at 60 % of the container's memory and
the sampling tier (``memory_limiter/peers``) at 70 %, both collect at 80 %, where GOMEMLIMIT is too.

What a refusal is on the wire (same release): the memory_limiter processor returns
``ErrDataRefused`` ("data refused due to high memory usage"), not a permanent error, and the OTLP
receiver (receiver/otlpreceiver internal/errors) makes that gRPC ``Unavailable`` and, over HTTP,
503 with the same status in the body: both retryable for OTLP clients, that is backpressure.

The push: four threads (each replica over OTLP/gRPC and OTLP/HTTP) send requests of 64 one-span
traces with 32 KiB of attributes each (2 MiB), every trace id new and every span an error, with
Jaeger's collector stopped: the tail sampler keeps every trace and all of it waits in the exporter's
queue, so nothing drains. Each replica gets PUSH_MIB_PER_SECOND, about half the limiter's spike
allowance (20 % of 1Gi per 1 s check): the growth between two checks that the rendered config is
meant to absorb. A flat-out push from these threads (250 to 400 MiB/s per replica) goes beyond that
allowance; what it did is in docs/tracing.md. The push stops by itself once each replica has
refused for HOLD_SECONDS (at most PUSH_DEADLINE).

Asserted: every replica refused over both protocols with exactly that answer and nothing else, and
its limiter counted at least the spans its clients saw refused; no replica died, none reached its
limit (the cgroup's ``memory.max_usage_in_bytes`` and ``memory.failcnt``) or met the OOM killer
(``memory.oom_control``); once Jaeger's collector is back, every replica takes a new trace over
both protocols and all of them reach Jaeger's query API. At this rate the push passes with or
without GOMEMLIMIT and the sampling tier's own limiter (within 1 % of the limit without the
former); a flat-out push needed both (docs/tracing.md), and tests/test_tracing.py holds GOMEMLIMIT
to the limiter's hard limit.
"""

from __future__ import annotations

import http.client
import os
import re
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import grpc
import pytest
import yaml
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from components.settings.types import quantity_bytes
from tests import trace_stack
from tests.trace_stack import ProdTraces, metric_sum, trace_by_id

MIB = 1024 * 1024
GO_RUNTIME = ("GOMEMLIMIT", "GOGC", "GODEBUG", "GOMAXPROCS")
MEMORY_ROOT = Path("/sys/fs/cgroup/memory")

REFUSED = "data refused due to high memory usage"  # memorylimiter.ErrDataRefused
GRPC_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SERVICE = "memory-pressure"
REFUSED_SPANS = "otelcol_processor_memory_limiter_refused_spans_total"

SPANS_PER_REQUEST = 64
ATTRIBUTE_BYTES = 32 * 1024
PUSH_MIB_PER_SECOND = 100  # per replica
HOLD_SECONDS = 4.0
PUSH_DEADLINE = 30.0


# ------------------------------------------------------------------------------------- cgroup

def memory_cgroup_of(pid: "int | str") -> Optional[Path]:
    """A process's memory cgroup (v1) as a directory; None without one."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    found = [line.split(":", 2)[2] for line in lines if "memory" in line.split(":", 2)[1].split(",")]
    return MEMORY_ROOT / found[0].lstrip("/") if found else None


def own_memory_cgroup() -> Path:
    found = memory_cgroup_of("self")
    if found is None or not (found / "memory.limit_in_bytes").exists():
        pytest.fail("no cgroup v1 memory controller at /sys/fs/cgroup/memory for this process, so the gateway's "
                    "container limit cannot be set here; /proc/self/cgroup:\n" + Path("/proc/self/cgroup").read_text())
    return found


class MemoryCgroup:
    """A child of our own memory cgroup with one limit: a container's memory, as the kubelet sets it on v1."""

    def __init__(self, name: str, limit: int):
        parent = own_memory_cgroup()
        self.path, self.limit = parent / name, limit
        # A tighter limit above ours would be the one that holds (v1 limits are hierarchical).
        above = int((parent / "memory.limit_in_bytes").read_text())
        assert above >= limit, f"{parent} is limited to {above} bytes, below the container's {limit}"
        try:
            self.path.mkdir()
        except OSError as error:
            pytest.fail(f"cannot create the memory cgroup {self.path} ({error}); the test needs a writable cgroup v1 "
                        "memory controller (root)")
        try:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
        except OSError as error:
            self.path.rmdir()
            pytest.fail(f"cannot set {self.path}/memory.limit_in_bytes to {limit} ({error})")
        assert self.number("memory.limit_in_bytes") == limit

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def number(self, name: str) -> int:
        return int((self.path / name).read_text().split()[0])

    def oom_control(self) -> dict[str, int]:
        lines = (self.path / "memory.oom_control").read_text().splitlines()
        return {k: int(v) for k, v in (line.split() for line in lines)}

    def remove(self) -> None:
        deadline = time.monotonic() + 10
        while self.path.exists():
            try:
                self.path.rmdir()
            except OSError:  # busy until the kernel has let go of the last task
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def pod_environment(container: dict) -> dict[str, str]:
    """Our environment without the Go runtime's variables, plus those the container sets."""
    env = {k: v for k, v in os.environ.items() if k not in GO_RUNTIME}
    for entry in container.get("env", []):
        if entry["name"] in GO_RUNTIME:
            assert "value" in entry, f"only literal values are mirrored here: {entry}"
            env[entry["name"]] = entry["value"]
    return env


def process_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


# ---------------------------------------------------------------------------------- payloads

def export_request(trace_ids: list[bytes], attribute: str, status: int = Status.STATUS_CODE_UNSET) -> bytes:
    """One OTLP request of one-span traces, one per id, each span carrying `attribute`."""
    now = time.time_ns()
    spans = [Span(trace_id=tid, span_id=struct.pack(">Q", n + 1), name="GET /predictions/{match_id}",
                  kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=now - 50_000_000, end_time_unix_nano=now,
                  attributes=[KeyValue(key="prediction.explanation", value=AnyValue(string_value=attribute))],
                  status=Status(code=status))
             for n, tid in enumerate(trace_ids)]
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=SERVICE))])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString()


class Payloads:
    """A request built once; each use writes new trace ids at their places in a copy."""

    def __init__(self, thread: int):
        self.thread, self.count = thread, 0
        placeholders = [os.urandom(16) for _ in range(SPANS_PER_REQUEST)]
        self.template = export_request(placeholders, "x" * ATTRIBUTE_BYTES, Status.STATUS_CODE_ERROR)
        self.offsets = [self.template.index(p) for p in placeholders]

    def next(self) -> bytes:
        body = bytearray(self.template)
        for offset in self.offsets:
            self.count += 1
            body[offset:offset + 16] = struct.pack(">QQ", 0xF00D_0000 + self.thread, self.count)
        return bytes(body)


# ------------------------------------------------------------------------------------ clients

def grpc_sender(target: str) -> tuple[Callable[[bytes], str], Callable[[], None]]:
    """(send: request -> outcome, close); outcome "ok", "refused" (the limiter's answer) or what came."""
    channel = grpc.insecure_channel(target)
    export = channel.unary_unary(GRPC_EXPORT)

    def send(body: bytes) -> str:
        try:
            export(body, timeout=10)
            return "ok"
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE and error.details() == REFUSED:
                return "refused"
            return f"grpc {error.code().name}: {error.details()}"
    return send, channel.close


def http_sender(url: str) -> tuple[Callable[[bytes], str], Callable[[], None]]:
    host, path = url.split("//", 1)[1].split("/", 1)
    connection = http.client.HTTPConnection(host, timeout=10)

    def send(body: bytes) -> str:
        try:
            connection.request("POST", f"/{path}", body, {"Content-Type": "application/x-protobuf"})
            answer = connection.getresponse()
            code, data = answer.status, answer.read()
        except OSError as error:
            connection.close()
            return f"http {type(error).__name__}: {error}"
        if code == 200:
            return "ok"
        try:
            status = status_pb2.Status.FromString(data)
        except Exception:  # noqa: BLE001 - a body that is not an OTLP status is itself the finding
            return f"http {code}: {data[:200]!r}"
        if code == 503 and status.code == grpc.StatusCode.UNAVAILABLE.value[0] and status.message == REFUSED:
            return "refused"
        return f"http {code}: status {status.code} {status.message}"
    return send, connection.close


SENDERS = {"grpc": grpc_sender, "http": http_sender}


def endpoints(stack: ProdTraces) -> list[tuple[int, str, str]]:
    """(replica, protocol, where) for every replica and protocol."""
    return [(replica, protocol, where) for replica, pair in enumerate(stack.gateway_endpoints())
            for protocol, where in zip(("grpc", "http"), pair)]


# --------------------------------------------------------------------------------- the push

@dataclass
class Pressure:
    answers: Counter = field(default_factory=Counter)  # (replica, protocol, outcome) -> requests
    first_refusal: dict = field(default_factory=dict)  # replica -> seconds since the start
    seconds: float = 0.0
    sent_mib: float = 0.0
    alive_throughout: bool = True
    refused_spans: list = field(default_factory=list)  # each replica's REFUSED_SPANS after the push

    def count(self, outcome: str, replica: Optional[int] = None, protocol: Optional[str] = None) -> int:
        return sum(n for (r, p, o), n in self.answers.items()
                   if o == outcome and replica in (None, r) and protocol in (None, p))


def push(stack: ProdTraces) -> Pressure:
    result, lock, stop = Pressure(), threading.Lock(), threading.Event()
    started = time.monotonic()

    def run(replica: int, protocol: str, where: str, payloads: Payloads) -> None:
        send, close = SENDERS[protocol](where)
        # Each replica's two threads share its rate; a thread that fell behind does not catch up.
        interval = len(payloads.template) / (PUSH_MIB_PER_SECOND * MIB / 2)
        due = time.monotonic()
        try:
            while not stop.wait(max(0.0, due - time.monotonic())):
                due = max(due + interval, time.monotonic())
                outcome = send(payloads.next())
                with lock:
                    result.answers[(replica, protocol, outcome)] += 1
                    if outcome == "refused":
                        result.first_refusal.setdefault(replica, time.monotonic() - started)
        finally:
            close()

    threads = [(payloads, threading.Thread(target=run, args=(r, p, w, payloads), daemon=True))
               for n, (r, p, w) in enumerate(endpoints(stack)) for payloads in [Payloads(n)]]
    for _, thread in threads:
        thread.start()
    try:
        while time.monotonic() - started < PUSH_DEADLINE:
            if not all(g.alive() for g in stack.gateways):
                result.alive_throughout = False
                break
            firsts = dict(result.first_refusal)
            if len(firsts) == len(stack.gateways) and time.monotonic() - started - max(firsts.values()) > HOLD_SECONDS:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for _, thread in threads:
            thread.join(timeout=30)
    result.seconds = time.monotonic() - started
    result.sent_mib = sum(p.count for p, _ in threads) * ATTRIBUTE_BYTES / MIB
    result.refused_spans = [metric_sum(g.metrics(), REFUSED_SPANS) if g.alive() else None for g in stack.gateways]
    return result


@dataclass
class Recovery:
    accepted_after: float  # seconds from Jaeger's restart until every replica took a new trace over both protocols
    stored_after: float  # ... until all of them were in Jaeger's query API
    trace_ids: list


def recover(stack: ProdTraces) -> Recovery:
    """Jaeger's collector back; one new trace to each replica over each protocol, each sent again
    while refused, then looked up in Jaeger. Errors, so that the tail sampler keeps them all."""
    stack.collector.start()
    stack.collector.wait_serving()
    started = time.monotonic()
    trace_ids = []
    for replica, protocol, where in endpoints(stack):
        trace_id = os.urandom(16)
        body = export_request([trace_id], "after the push", Status.STATUS_CODE_ERROR)
        send, close = SENDERS[protocol](where)
        outcomes = Counter()

        def accepted():
            outcomes[send(body)] += 1
            return outcomes["ok"]
        try:
            trace_stack.wait_for(f"replica {replica} to accept a trace over {protocol}", accepted, seconds=90, every=1)
        except AssertionError as error:
            raise AssertionError(f"{error}; answers {dict(outcomes)}\n{state(stack)}\n{logs(stack)}") from None
        finally:
            close()
        assert set(outcomes) <= {"ok", "refused"}, outcomes
        trace_ids.append(trace_id.hex())
    accepted_after = time.monotonic() - started
    for trace_id in trace_ids:
        trace_stack.wait_for(f"trace {trace_id} in Jaeger", lambda: trace_by_id(stack.query_url(), trace_id),
                             seconds=60, every=1)
    return Recovery(accepted_after, time.monotonic() - started, trace_ids)


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prod = ProdTraces(tmp_path_factory.mktemp("gateway-memory"))
    [container] = prod.rendered.one("Deployment", "otel-gateway")["spec"]["template"]["spec"]["containers"]
    limit = int(quantity_bytes(container["resources"]["limits"]["memory"]))
    prod.container, prod.cgroups = container, []
    try:
        for i, gateway in enumerate(prod.gateways):
            prod.cgroups.append(MemoryCgroup(f"fm-gateway-{os.getpid()}-{i}", limit))
            gateway.cgroup_procs = prod.cgroups[-1].procs
            gateway.env = pod_environment(container)
        prod.start()
        yield prod
    finally:
        prod.stop()
        for cgroup in prod.cgroups:
            cgroup.remove()


@pytest.fixture(scope="module")
def pressure(stack):
    stack.collector.stop()
    return push(stack)


@pytest.fixture(scope="module")
def recovery(stack, pressure):
    return recover(stack)


def logs(stack: ProdTraces) -> str:
    return "\n".join(f"--- {p.directory.name}\n{p.tail(2500)}" for p in stack.processes())


def state(stack: ProdTraces) -> str:
    """Where each replica's memory is, for a failure's message."""
    lines = []
    for gateway, cgroup in zip(stack.gateways, stack.cgroups):
        if not gateway.alive():
            lines.append(f"{gateway.directory.name}: exited {gateway.proc.returncode}")
            continue
        text = gateway.metrics()
        queues = {e: metric_sum(text, "otelcol_exporter_queue_size", exporter=e)
                  for e in ("load_balancing", "otlp_grpc/jaeger")}
        heap = metric_sum(text, "otelcol_process_runtime_heap_alloc_bytes") / MIB
        sampler = metric_sum(text, "otelcol_processor_tail_sampling_sampling_traces_on_memory")
        lines.append(f"{gateway.directory.name}: cgroup {cgroup.number('memory.usage_in_bytes') / MIB:.0f} MiB, "
                     f"Go heap {heap:.0f} MiB, queues {queues}, traces in the sampler {sampler}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- tests

def test_each_replica_runs_in_its_pods_memory_and_environment(stack):
    limiters = [p for name, p in yaml.safe_load(stack.generated["otel-gateway"])["processors"].items()
                if name.split("/")[0] == "memory_limiter"]
    container_go = {e["name"]: e["value"] for e in stack.container.get("env", []) if e["name"] in GO_RUNTIME}
    for gateway, cgroup in zip(stack.gateways, stack.cgroups):
        pid = gateway.proc.pid
        assert memory_cgroup_of(pid) == cgroup.path
        go = {k: v for k, v in process_environment(pid).items() if k in GO_RUNTIME}
        assert go == container_go, (go, container_go)
        # What the limiter took as the memory it has, and the limits it derived from it.
        log = gateway.log.read_text()
        assert set(re.findall(r'"total_memory_mib":(\d+)', log)) == {str(cgroup.limit // MIB)}, gateway.tail()
        derived = sorted((cgroup.limit * p["limit_percentage"] // 100 // MIB,
                          cgroup.limit * p["spike_limit_percentage"] // 100 // MIB) for p in limiters)
        logged = sorted((int(a), int(b)) for a, b in re.findall(r'"limit_mib":(\d+),"spike_limit_mib":(\d+)', log))
        assert logged == derived, (logged, derived)
    print(f"\neach replica: limit {stack.cgroups[0].limit / MIB:.0f} MiB, Go runtime environment {container_go}, "
          f"limiters (hard, soft) in MiB {[(hard, hard - spike) for hard, spike in derived]}")


def test_the_push_is_refused_with_the_limiters_answer(stack, pressure):
    print(f"\npush: {pressure.seconds:.1f} s, {pressure.sent_mib:.0f} MiB of attributes; first refusal after "
          f"{ {r: round(t, 1) for r, t in sorted(pressure.first_refusal.items())} } s; answers "
          f"{dict(sorted(pressure.answers.items()))}; refused spans (gateway metric) {pressure.refused_spans}")
    assert pressure.alive_throughout, logs(stack)
    for replica in range(len(stack.gateways)):
        for protocol in ("grpc", "http"):
            assert pressure.count("refused", replica, protocol) > 0, (replica, protocol, dict(pressure.answers))
            assert pressure.count("ok", replica, protocol) > 0, (replica, protocol, dict(pressure.answers))
    others = {k: n for k, n in pressure.answers.items() if k[2] not in ("ok", "refused")}
    assert others == {}, others
    # Every refusal the clients saw was counted by that replica's limiter (which also counts what
    # it refused to the other replica's routing tier).
    for replica, counted in enumerate(pressure.refused_spans):
        assert counted >= pressure.count("refused", replica) * SPANS_PER_REQUEST, (replica, counted)


def test_after_the_push_new_traces_are_accepted_and_stored(stack, recovery):
    print(f"\nafter Jaeger's restart: every replica accepted after {recovery.accepted_after:.1f} s, "
          f"all in Jaeger after {recovery.stored_after:.1f} s")
    assert len(recovery.trace_ids) == 2 * len(stack.gateways)


def test_the_gateway_stayed_alive_and_under_its_limit(stack, pressure, recovery):
    assert pressure.alive_throughout and all(g.alive() for g in stack.gateways), logs(stack)
    for gateway, cgroup in zip(stack.gateways, stack.cgroups):
        peak, failcnt = cgroup.number("memory.max_usage_in_bytes"), cgroup.number("memory.failcnt")
        oom = cgroup.oom_control()
        print(f"\n{gateway.directory.name}: limit {cgroup.limit / MIB:.0f} MiB, peak {peak / MIB:.1f} MiB, "
              f"failcnt {failcnt}, oom_control {oom}")
        assert oom["oom_kill"] == 0 and oom["under_oom"] == 0, oom
        # The kernel counts every time usage reached the limit (and it had to reclaim).
        assert failcnt == 0, f"usage reached the limit {failcnt} times"
        assert peak < cgroup.limit, (peak, cgroup.limit)
