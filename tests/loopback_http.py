"""Small HTTP(S) servers on loopback that stand in for what a program under test reaches: a scrape
target, an API's few routes. Each serves its handler from a daemon thread until closed."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


class Handler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (the test's output is the programs' logs) and answers
    with one call."""

    def answer(self, code: int, body: bytes, content_type: str, body_too: bool = True) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body_too:
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class LoopbackServer:
    """``handler`` served on a port of 127.0.0.1 the kernel picks at once (so nothing can take it
    between choosing and binding); over TLS with ``tls`` = (certificate, key)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: Optional[tuple[Path, Path]] = None):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metrics_target(body: bytes, content_type: str = PROMETHEUS_TEXT) -> LoopbackServer:
    """A scrape target answering every GET with ``body``."""

    class Target(Handler):
        def do_GET(self):  # noqa: N802 (http.server's names)
            self.answer(200, body, content_type)

    return LoopbackServer(Target)
