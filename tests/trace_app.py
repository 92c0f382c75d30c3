"""A fake FootballPrediction that traces with the OpenTelemetry Python SDK, as the service does.

Several instances, each its own TracerProvider (a process of the service: its own resource with
``service.instance.id``) with a BatchSpanProcessor and an OTLP exporter, gRPC or HTTP, aimed at
one gateway replica, as pods spread over the gateway Service. One request makes one trace over
three instances: the API's ``GET /predictions/{match_id}`` on one instance, the worker's
``predict`` on another (the context carried in W3C trace-context headers, as over a queue), and
the API's ``POST /internal/results`` callback on a third. Span times are set explicitly, so a
"slow" trace is slow only across instances and an "error" trace fails only in its last span:
a replica that saw part of a trace would decide on a part.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional, Sequence

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

API, WORKER = "football-prediction-api", "football-prediction-worker"
PROPAGATOR = TraceContextTextMapPropagator()
MS = 1_000_000


class Counting(SpanExporter):
    """An exporter that counts what its wrapped exporter reported: spans exported and refused."""

    def __init__(self, inner: SpanExporter):
        self.inner = inner
        self.lock = threading.Lock()
        self.ok = self.failed = 0

    def export(self, spans):
        result = self.inner.export(spans)
        with self.lock:
            if result == SpanExportResult.SUCCESS:
                self.ok += len(spans)
            else:
                self.failed += len(spans)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _Keep(SpanProcessor):
    def __init__(self):
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


@dataclass
class Instance:
    service: str
    name: str
    protocol: str  # "grpc" or "http"
    endpoint: str  # host:port (gRPC) or the /v1/traces URL (HTTP)
    provider: TracerProvider = field(init=False)
    exporter: Counting = field(init=False)

    def __post_init__(self):
        resource = Resource.create({"service.name": self.service, "service.instance.id": self.name,
                                    "deployment.environment": "e2e"})
        self.provider = TracerProvider(resource=resource)
        inner = (GrpcExporter(endpoint=self.endpoint, insecure=True, timeout=10) if self.protocol == "grpc"
                 else HttpExporter(endpoint=self.endpoint, timeout=10))
        self.exporter = Counting(inner)
        # A queue that holds a whole burst: the test decides what is sent, not the SDK's queue.
        self.provider.add_span_processor(BatchSpanProcessor(
            self.exporter, max_queue_size=100_000, schedule_delay_millis=200, max_export_batch_size=512))
        self.tracer = self.provider.get_tracer("football_prediction")


@dataclass
class Sent:
    trace_id: str
    kind: str  # "error", "slow", "plain", "large"
    span_ids: list[str]


class FakeFootballPrediction:
    """Instances over both protocols and every gateway replica (``endpoints``: (gRPC, HTTP) of each)."""

    def __init__(self, endpoints: Sequence[tuple[str, str]]):
        self.instances: list[Instance] = []
        for i, (grpc_endpoint, http_url) in enumerate(endpoints):
            self.instances += [Instance(API, f"api-{i}-grpc", "grpc", grpc_endpoint),
                               Instance(API, f"api-{i}-http", "http", http_url),
                               Instance(WORKER, f"worker-{i}-grpc", "grpc", grpc_endpoint),
                               Instance(WORKER, f"worker-{i}-http", "http", http_url)]
        self.api = [i for i in self.instances if i.service == API]
        self.workers = [i for i in self.instances if i.service == WORKER]

    def request(self, n: int, kind: str, start_ns: int, attributes: Optional[dict] = None) -> Sent:
        """One prediction request as trace `n`, of `kind`, over three instances."""
        front = self.api[n % len(self.api)]
        worker = self.workers[(n // len(self.api) + n) % len(self.workers)]
        callback = self.api[(n + 1 + (n // len(self.api)) % (len(self.api) - 1)) % len(self.api)]
        # Durations: a slow trace is over 2 s only from the root's start to the callback's end.
        root_end, work, back = (1500, (1000, 1900), (1900, 2600)) if kind == "slow" else (200, (20, 150), (150, 190))
        attrs = attributes or {}
        root = front.tracer.start_span("GET /predictions/{match_id}", kind=SpanKind.SERVER, start_time=start_ns,
                                       attributes={"http.route": "/predictions/{match_id}", "match.id": n, **attrs})
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(root))
        job = worker.tracer.start_span("predict", kind=SpanKind.CONSUMER, context=PROPAGATOR.extract(carrier),
                                       start_time=start_ns + work[0] * MS, attributes={"model": "poisson", **attrs})
        carrier = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(job))
        result = callback.tracer.start_span("POST /internal/results", kind=SpanKind.SERVER,
                                            context=PROPAGATOR.extract(carrier), start_time=start_ns + back[0] * MS,
                                            attributes={"http.route": "/internal/results", **attrs})
        if kind == "error":
            result.set_status(Status(StatusCode.ERROR, "result store unavailable"))
        result.end(end_time=start_ns + back[1] * MS)
        job.end(end_time=start_ns + work[1] * MS)
        root.end(end_time=start_ns + root_end * MS)
        spans = [root, job, result]
        return Sent(format(root.get_span_context().trace_id, "032x"), kind,
                    [format(s.get_span_context().span_id, "016x") for s in spans])

    def one_export(self, instance: Instance, traces: int, attributes: dict) -> tuple[list[Sent], int, bool]:
        """`traces` error traces of two spans on `instance`, sent in one OTLP request by its
        exporter (as its BatchSpanProcessor hands over one batch): (sent, request bytes, accepted)."""
        kept = _Keep()
        provider = TracerProvider(resource=instance.provider.resource)
        provider.add_span_processor(kept)
        tracer = provider.get_tracer("football_prediction")
        sent = []
        for n in range(traces):
            root = tracer.start_span("POST /predictions/batch", kind=SpanKind.SERVER, attributes=attributes)
            child = tracer.start_span("predict", context=trace.set_span_in_context(root), attributes=attributes)
            child.set_status(Status(StatusCode.ERROR, "model timed out"))
            child.end()
            root.end()
            sent.append(Sent(format(root.get_span_context().trace_id, "032x"), "large",
                             [format(s.get_span_context().span_id, "016x") for s in (root, child)]))
        size = encode_spans(kept.spans).ByteSize()
        return sent, size, instance.exporter.export(kept.spans) == SpanExportResult.SUCCESS

    def flush(self, timeout_millis: int = 60_000) -> None:
        for instance in self.instances:
            assert instance.provider.force_flush(timeout_millis), f"{instance.name} did not flush"

    def exported(self) -> tuple[int, int]:
        """(spans the gateway accepted, spans it refused) over every instance."""
        return (sum(i.exporter.ok for i in self.instances), sum(i.exporter.failed for i in self.instances))

    def shutdown(self) -> None:
        for instance in self.instances:
            instance.provider.shutdown()
