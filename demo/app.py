"""A FootballPrediction stand-in with realistic traffic: the API or the Celery worker.

The API serves HTTP routes shaped like the service's own, instrumented as docs/instrumentation.md
says (``http_requests_total`` by route template and status, durations measured); a bounded traffic
thread calls them: prediction requests (cache, feature query, model), match and odds lookups,
logins that sometimes fail, a few unknown matches (404) and model errors (500), now and then a slow
query. The worker does what Celery does for the service: data collection runs per source (some
failing: timeouts, HTTP errors, rate limits), cleaning runs, scheduled tasks starting late, queues
that fill and drain, and the models' accuracy after results come in.

Every request and task writes one JSON line on standard output in the format the Logstash pipeline
parses (elastic/pipeline.yaml: timestamp, level, logger, message, request_id, trace_id, span_id,
user_id, path, status, duration_ms) and, as a real service sometimes does, things that must never
reach the index: e-mail addresses and passwords in messages, tokens in query strings, a stray
``password`` field and request headers. With an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``) it
sends a trace per request and per task: the server span and its database, cache and model
children.
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Optional

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from demo.metrics import registry_for

SERVICE = {"api": "football-prediction-api", "worker": "football-prediction-worker"}
PORTS = {"api": 8000, "worker": 9808}  # metrics/catalog.yaml: components
MODELS = ("poisson-v3", "xgb-v7")
SOURCES = ("fixtures", "odds", "scores")
TASKS = ("collect_fixtures", "collect_odds", "evaluate_models")
QUEUES = ("celery", "data_collection")
USERS = ("alice@example.org", "bob@example.org", "carol@example.org")


@dataclass(frozen=True)
class ErrorRates:
    """How often things go wrong. The defaults keep the demo inside every SLO of slos/ (a newcomer's
    stack must not page from its first minute); INCIDENT is an outage's rates, which fill every error
    panel within seconds and burn the budgets (the tests use it)."""

    prediction_failure_every: int = 5000  # one prediction in N fails with a 500, the (N-1)th first
    collection_failure: float = 0.002  # the share of data collection runs that fail
    cleaning_failure: float = 0.01  # the share of cleaning runs that fail
    scheduler_failure: float = 0.0005  # per second, the chance that a scheduled task fails


INCIDENT = ErrorRates(prediction_failure_every=40, collection_failure=0.08, cleaning_failure=0.1,
                      scheduler_failure=0.02)
# Every error_type label value the service uses (docs/instrumentation.md): created at zero, so that the
# first failure of each is counted by rate() and increase() like the others.
COLLECTION_ERRORS = ("timeout", "http_error", "parse_error", "rate_limited")


class Tracing:
    """The OpenTelemetry tracer of one component, or nothing when no endpoint is given."""

    def __init__(self, service: str, endpoint: Optional[str]):
        self.provider = None
        if not endpoint:
            self.tracer = None
            return
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.provider = TracerProvider(resource=Resource.create({"service.name": service,
                                                                 "service.namespace": "football-prediction",
                                                                 "deployment.environment": "demo"}))
        insecure = endpoint.startswith("http://")
        self.provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, insecure=insecure), schedule_delay_millis=1000))
        self.tracer = self.provider.get_tracer("football-prediction-demo")

    def span(self, name: str, kind: str = "INTERNAL", **attributes):
        if self.tracer is None:
            return _NoSpan()
        from opentelemetry.trace import SpanKind

        return self.tracer.start_as_current_span(name, kind=getattr(SpanKind, kind), attributes=attributes)

    def stop(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


class _NoSpan:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_attribute(self, *args):
        pass

    def set_status(self, *args):
        pass


def _ids() -> tuple[str, str]:
    """(trace_id, span_id) of the current span, made up when nothing is traced (logs still link)."""
    try:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    except ImportError:
        pass
    return secrets.token_hex(16), secrets.token_hex(8)


class Workload:
    """One component of the demo: ``api`` or ``worker``, serving /metrics and /health on ``port``."""

    def __init__(self, component: str, *, host: str = "0.0.0.0", port: Optional[int] = None, rps: float = 5.0,
                 otlp_endpoint: Optional[str] = None, log: IO[str] = sys.stdout, max_runtime: float = 0,
                 seed: Optional[int] = None, errors: ErrorRates = ErrorRates()):
        if component not in SERVICE:
            raise ValueError(f"component {component!r}: expected api or worker")
        self.component, self.rps, self.max_runtime, self.log = component, rps, max_runtime, log
        self.random = random.Random(seed)
        self.errors = errors
        self.registry, self.metrics = registry_for(component)
        self.tracing = Tracing(SERVICE[component], otlp_endpoint)
        self._lock = threading.Lock()
        # Model errors come at a steady share, not by chance: with INCIDENT every dashboard of errors
        # has data within the first minute, however little traffic a loaded machine lets through.
        self._predictions = itertools.count(1)
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer((host, PORTS[component] if port is None else port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._threads = [threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name=f"demo-{component}-http", daemon=True),
                         threading.Thread(target=self._loop, name=f"demo-{component}-work", daemon=True)]
        self.rows = {"matches": 52_000, "odds": 410_000, "predictions": 130_000}
        self._initial_values()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Workload":
        for thread in self._threads:
            thread.start()
        self.write_log("info", "demo.main", f"{SERVICE[self.component]} demo listening on :{self.port}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.tracing.stop()

    def wait(self) -> None:
        while not self._stop.wait(1.0):
            pass

    # ------------------------------------------------------------------ logs
    def write_log(self, level: str, logger: str, message: str, **fields) -> None:
        now = datetime.now(timezone.utc)
        record = {"timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                  "level": level.upper(), "logger": logger, "message": message, **fields}
        line = json.dumps(record)
        with self._lock:
            self.log.write(line + "\n")
            self.log.flush()

    # ------------------------------------------------------------------ metric values
    def _m(self, name: str):
        return self.metrics[name]

    def _initial_values(self) -> None:
        if self.component == "api":
            self._m("football_system_info").info({"version": "1.4.2", "commit": "demo",
                                                  "python_version": sys.version.split()[0]})
            for model in MODELS:
                for status in ("success", "error"):
                    self._m("prediction_requests_total").labels(model, status)
            self._refresh_api()
        else:
            for task in TASKS:
                self._m("football_scheduler_task_failures_total").labels(task)
            for source in SOURCES:
                for error in COLLECTION_ERRORS:
                    self._m("football_data_collection_errors_total").labels(source, error)
            self._m("football_data_cleaning_errors_total")
            self._refresh_worker()

    def _refresh_api(self) -> None:
        """The service's metrics collector: row counts, pool, sessions, last refresh."""
        r = self.random
        for table in self.rows:
            self.rows[table] += r.randint(0, 5)
            self._m("football_table_row_count").labels(table).set(self.rows[table])
        active = r.randint(1, 6)
        self._m("football_database_connections").labels("active").set(active)
        self._m("football_database_connections").labels("idle").set(10 - active)
        self._m("active_users").set(max(1, int(40 + 15 * r.uniform(-1, 1))))
        self._m("football_metrics_last_update_timestamp").set(time.time())

    def _refresh_worker(self) -> None:
        r = self.random
        for model in MODELS:
            for window, base in (("7d", 0.55), ("30d", 0.53)):
                self._m("prediction_accuracy").labels(model, window).set(round(base + r.uniform(-0.03, 0.03), 4))
        for queue in QUEUES:
            self._m("celery_queue_length").labels(queue).set(r.choice((0, 1, 2, 3, 5, 8, 13)))

    # ------------------------------------------------------------------ the API
    def _handler(self):
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(app.registry), CONTENT_TYPE_LATEST)
                elif path == "/health":
                    self._reply(200, b'{"status": "ok"}', "application/json")
                elif app.component != "api":
                    self._reply(404, b"not found")
                else:
                    status = app.serve("GET", self.path, self.headers.get("Authorization"))
                    self._reply(status, b'{"status": "ok"}' if status < 400 else b'{"detail": "error"}',
                                "application/json")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = app.serve("POST", self.path, self.headers.get("Authorization"), body)
                self._reply(status, b"{}", "application/json")

            def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # the access log is the JSON one
                pass

        return Handler

    def _query(self, operation: str, table: str, slow: bool = False) -> None:
        with self.tracing.span(f"{operation.upper()} {table}", "CLIENT", **{"db.system": "postgresql",
                                                                           "db.operation": operation,
                                                                           "db.sql.table": table}):
            seconds = self.random.uniform(0.3, 0.6) if slow else self.random.uniform(0.002, 0.03)
            time.sleep(seconds)
            self._m("football_database_query_duration_seconds").labels(operation).observe(seconds)

    def _cache(self, cache: str) -> bool:
        with self.tracing.span(f"GET {cache}", "CLIENT", **{"db.system": "redis"}):
            time.sleep(0.001)
            hit = self.random.random() < 0.8
            (self._m("cache_hits_total") if hit else self._m("cache_misses_total")).labels(cache).inc()
            return hit

    def serve(self, method: str, raw_path: str, authorization: Optional[str] = None, body: bytes = b"") -> int:
        """One API request: (status); measured, traced and logged like the service's."""
        path = raw_path.split("?", 1)[0]
        handler, work = self._route(method, path)
        request_id = f"req-{secrets.token_hex(4)}"
        user = self.random.choice(("17", "42", "108", "256"))
        in_progress = self._m("http_requests_in_progress").labels(method, handler)
        in_progress.inc()
        start = time.perf_counter()
        with self.tracing.span(f"{method} {handler}", "SERVER", **{"http.request.method": method,
                                                                  "http.route": handler,
                                                                  "url.path": path}) as span:
            trace_id, span_id = _ids()
            try:
                status, level, message, extra = work(path, body)
            finally:
                in_progress.dec()
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                from_status(span)
        seconds = time.perf_counter() - start
        self._m("http_requests_total").labels(method, handler, str(status)).inc()
        self._m("http_request_duration_seconds").labels(method, handler).observe(seconds)
        self.write_log(level, "api.access", message, request_id=request_id, trace_id=trace_id, span_id=span_id,
                       user_id=user, path=raw_path, status=str(status), duration_ms=round(seconds * 1000, 2),
                       **extra)
        return status

    def _route(self, method: str, path: str):
        if method == "POST" and path == "/api/v1/login":
            return "/api/v1/login", self._login
        if path.startswith("/api/v1/predictions/"):
            return "/api/v1/predictions/{match_id}", self._predict
        if path.startswith("/api/v1/matches/") and path.endswith("/odds"):
            return "/api/v1/matches/{match_id}/odds", self._odds
        if path == "/api/v1/matches":
            return "/api/v1/matches", self._matches
        return "not_found", lambda p, b: (404, "warning", f"no route for {p}", {})

    def _predict(self, path: str, body: bytes):
        model = self.random.choice(MODELS)
        match_id = path.rsplit("/", 1)[-1]
        if self.random.random() < 0.03:
            self._query("select", "matches")
            return 404, "warning", f"match {match_id} not found", {}
        if not self._cache("predictions"):
            self._query("select", "matches", slow=self.random.random() < 0.02)
            self._query("select", "odds")
        started = time.perf_counter()
        with self.tracing.span("model.predict", model=model) as span:
            time.sleep(self.random.uniform(0.01, 0.12))
            every = self.errors.prediction_failure_every
            failed = next(self._predictions) % every == every - 1
            if failed:
                from_status(span)
        self._m("prediction_requests_total").labels(model, "error" if failed else "success").inc()
        if failed:
            return 500, "error", f"prediction for match {match_id} failed: model {model} raised ValueError", {}
        self._m("prediction_duration_seconds").labels(model).observe(time.perf_counter() - started)
        self._query("insert", "predictions")
        self._m("predictions_stored_total").inc()
        return 200, "info", f"GET /api/v1/predictions/{match_id} 200", {}

    def _matches(self, path: str, body: bytes):
        if not self._cache("matches"):
            self._query("select", "matches")
        return 200, "info", "GET /api/v1/matches 200", {}

    def _odds(self, path: str, body: bytes):
        self._query("select", "odds", slow=self.random.random() < 0.03)
        return 200, "info", f"GET {path} 200", {}

    def _login(self, path: str, body: bytes):
        user = self.random.choice(USERS)
        self._query("select", "users")
        if self.random.random() < 0.7:
            return 200, "info", f"login of {user} succeeded", {}
        # What a careless service logs on a failed login: the pipeline must mask or drop all of it.
        password = "hunter" + str(self.random.randint(2, 99))
        return 401, "warning", f"login failed for {user} with password={password}", {
            "password": password,
            "headers": {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl"}}

    # ------------------------------------------------------------------ the worker
    def _collect(self, source: str) -> None:
        """One data collection run, traced with its fetch and its inserts, then logged."""
        r = self.random
        seconds = r.uniform(0.6, 4.0)
        error = None
        if r.random() < self.errors.collection_failure:
            error = r.choice(COLLECTION_ERRORS)
        task = f"collect_{source}" if source != "scores" else "collect_fixtures"
        with self.tracing.span(f"run/{task}", "CONSUMER", **{"messaging.system": "celery", "celery.task": task,
                                                             "football.source": source}) as span:
            trace_id, span_id = _ids()
            with self.tracing.span(f"GET https://data.football.example/{source}", "CLIENT",
                                   **{"http.request.method": "GET"}):
                time.sleep(0.005)
            if error:
                from_status(span)
            else:
                with self.tracing.span("INSERT " + source, "CLIENT", **{"db.system": "postgresql"}):
                    time.sleep(0.002)
        self._m("football_data_collection_total").labels(source).inc()
        self._m("football_data_collection_duration_seconds").labels(source).observe(seconds)
        fields = {"trace_id": trace_id, "span_id": span_id, "duration_ms": round(seconds * 1000, 1)}
        if error:
            self._m("football_data_collection_errors_total").labels(source, error).inc()
            self.write_log("error", "celery.worker",
                           f"Task {task} failed: {error} fetching https://data.football.example/{source}"
                           f"?api_key=sk_live_{secrets.token_hex(8)}", **fields)
        else:
            self.write_log("info", "celery.worker", f"Task {task} succeeded: {r.randint(10, 400)} rows from {source}",
                           **fields)

    def _tick_worker(self, second: int) -> None:
        r = self.random
        if second % 5 == 0:
            self._collect(SOURCES[(second // 5) % len(SOURCES)])
        if second % 15 == 0:
            self._m("football_data_cleaning_total").inc()
            if r.random() < self.errors.cleaning_failure:
                self._m("football_data_cleaning_errors_total").inc()
                self.write_log("error", "celery.worker", "Task clean_matches failed: duplicate key value")
        for task in TASKS:
            self._m("football_scheduler_task_delay_seconds").labels(task).set(round(r.uniform(0.2, 6.0), 2))
        if r.random() < self.errors.scheduler_failure:
            task = r.choice(TASKS)
            self._m("football_scheduler_task_failures_total").labels(task).inc()
            self.write_log("warning", "celery.beat", f"Scheduled task {task} failed and will be retried")
        if second % 10 == 0:
            self._refresh_worker()

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        """The component's own work: bounded, it stops at stop() or after max_runtime (0: never)."""
        began = time.monotonic()
        second = 0
        next_tick = began
        while not self._stop.is_set():
            now = time.monotonic()
            if self.max_runtime and now - began > self.max_runtime:
                return
            if now >= next_tick:
                if self.component == "api":
                    self._refresh_api()
                else:
                    self._tick_worker(second)
                second += 1
                next_tick += 1.0
            if self.component == "api" and self.rps > 0:
                self._request()
                self._stop.wait(self.random.expovariate(self.rps))
            else:
                self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def _request(self) -> Optional[int]:
        r = self.random
        roll = r.random()
        if roll < 0.55:
            path, data = f"/api/v1/predictions/{r.randint(1, 9999)}", None
        elif roll < 0.75:
            path, data = "/api/v1/matches", None
        elif roll < 0.9:
            path, data = f"/api/v1/matches/{r.randint(1, 9999)}/odds?token=tk_{secrets.token_hex(6)}", None
        elif roll < 0.98:
            path, data = "/api/v1/login", b'{"user": "demo"}'
        else:
            path, data = "/api/v1/unknown", None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None


def from_status(span) -> None:
    """Marks the span failed (an error trace, which tail sampling keeps)."""
    try:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR))
    except ImportError:
        pass
