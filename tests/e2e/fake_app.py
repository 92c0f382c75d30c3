"""A stand-in for the FootballPrediction API (or its Celery worker) that exposes the metric contract.

Every metric of ``metrics/catalog.yaml`` for the chosen component is created from the catalog
(type, labels, histogram buckets) by the demo workload's own code (demo/metrics.py), so the stand-in
cannot drift from the contract. Its traffic is steadier than the demo's: the alert tests need a
healthy baseline that only the switches below change. The API serves
real HTTP endpoints and instruments them the way the application does (``http_requests_total``
by method, route template and status, ``http_request_duration_seconds`` measured); a bounded
background thread calls them a few times a second, so request rates, error ratios and
latencies are genuine. Switches:

- ``errors = True``: the API routes answer 500 (5xx error ratio goes to ~100%);
- ``healthy = False``: ``/health`` answers 503 (what the blackbox probe sees).

Everything binds 127.0.0.1 and stops at ``stop()``.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from demo.metrics import registry_for

ROUTES = ["/api/v1/predictions/{match_id}", "/api/v1/matches", "/api/v1/matches/{match_id}/odds"]
MODEL = "poisson-v3"


class FakeApp:
    """One fake FootballPrediction workload: component 'api' or 'worker'."""

    def __init__(self, component: str = "api", *, traffic_rps: float = 8.0, max_runtime: float = 900.0) -> None:
        self.component = component
        self.errors = False
        self.healthy = True
        self.traffic_rps = traffic_rps
        self.max_runtime = max_runtime  # the traffic thread stops by itself after this long
        self.registry, self.metrics = registry_for(component)
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._threads = [
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                             name=f"fake-{component}-http", daemon=True),
            threading.Thread(target=self._background, name=f"fake-{component}-traffic", daemon=True),
        ]
        self._set_healthy_values()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeApp":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    # ------------------------------------------------------------------ metric values
    def _m(self, name: str):
        return self.metrics.get(name)

    def _set_healthy_values(self) -> None:
        """Static values every rule of rules/ considers healthy."""
        if self.component == "api":
            self._m("football_system_info").info({"version": "1.4.2", "commit": "e2e", "python_version": "3.11"})
            for table, rows in (("matches", 52_000), ("odds", 410_000), ("predictions", 130_000)):
                self._m("football_table_row_count").labels(table).set(rows)
            self._m("football_database_connections").labels("active").set(3)
            self._m("football_database_connections").labels("idle").set(7)
            self._m("active_users").set(42)
            self._m("football_metrics_last_update_timestamp").set(time.time())
        else:
            for window, accuracy in (("7d", 0.54), ("30d", 0.53)):
                self._m("prediction_accuracy").labels(MODEL, window).set(accuracy)
            for queue in ("celery", "data_collection"):
                self._m("celery_queue_length").labels(queue).set(2)
            for task in ("collect_fixtures", "collect_odds", "evaluate_models"):
                self._m("football_scheduler_task_delay_seconds").labels(task).set(1.5)
                self._m("football_scheduler_task_failures_total").labels(task)  # series exists at 0

    def _tick(self) -> None:
        """Work the application does on its own every second: refreshes and collections."""
        if self.component == "api":
            self._m("football_metrics_last_update_timestamp").set(time.time())
            for op in ("select", "insert"):
                self._m("football_database_query_duration_seconds").labels(op).observe(random.uniform(0.002, 0.03))
        else:
            for source in ("fixtures", "odds", "scores"):
                self._m("football_data_collection_total").labels(source).inc()
                self._m("football_data_collection_duration_seconds").labels(source).observe(random.uniform(0.6, 3))
            self._m("football_data_cleaning_total").inc()

    # ------------------------------------------------------------------ HTTP
    def _handler_class(self):
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = generate_latest(app.registry)
                    self._reply(200, body, CONTENT_TYPE_LATEST)
                    return
                if app.component != "api":
                    self._reply(404, b"not found")
                    return
                start = time.perf_counter()
                handler, status = app._route(path)
                self._reply(status, b'{"status": "ok"}' if status < 400 else b'{"detail": "error"}',
                            "application/json")
                app._observe("GET", handler, status, time.perf_counter() - start)

            def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def _route(self, path: str) -> tuple[str, int]:
        if path == "/health":
            return "/health", 200 if self.healthy else 503
        if path.startswith("/api/v1/predictions/"):
            handler = "/api/v1/predictions/{match_id}"
            ok = not self.errors
            self._m("prediction_requests_total").labels(MODEL, "success" if ok else "error").inc()
            if ok:
                self._m("prediction_duration_seconds").labels(MODEL).observe(random.uniform(0.02, 0.15))
                self._m("predictions_stored_total").inc()
                cache = self._m("cache_hits_total") if random.random() < 0.9 else self._m("cache_misses_total")
                cache.labels("predictions").inc()
            return handler, 200 if ok else 500
        if path.startswith("/api/v1/matches/") and path.endswith("/odds"):
            return "/api/v1/matches/{match_id}/odds", 500 if self.errors else 200
        if path == "/api/v1/matches":
            return "/api/v1/matches", 500 if self.errors else 200
        return "not_found", 404

    def _observe(self, method: str, handler: str, status: int, seconds: float) -> None:
        self._m("http_requests_total").labels(method, handler, str(status)).inc()
        self._m("http_request_duration_seconds").labels(method, handler).observe(seconds)

    # ------------------------------------------------------------------ traffic
    def _background(self) -> None:
        deadline = time.monotonic() + self.max_runtime
        max_iterations = int(self.max_runtime * max(self.traffic_rps, 1) * 2) + 10
        last_tick = 0.0
        for _ in range(max_iterations):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            now = time.monotonic()
            if now - last_tick >= 1.0:
                self._tick()
                last_tick = now
            if self.component == "api":
                self._request(random.choice(("/api/v1/predictions/%d" % random.randint(1, 9999),
                                             "/api/v1/matches", "/api/v1/matches/%d/odds" % random.randint(1, 9999))))
                self._stop.wait(1.0 / self.traffic_rps)
            else:
                self._stop.wait(1.0)

    def _request(self, path: str) -> Optional[int]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None
