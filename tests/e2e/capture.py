"""Notification sinks for the e2e test: an HTTP server recording every POST and a tiny SMTP server.

Both bind 127.0.0.1 on a port chosen by the OS, serve from daemon threads and keep what they
received in memory (thread-safe lists). Nothing here talks to the outside world.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

MAX_BODY = 1 << 20  # 1 MiB: an Alertmanager notification is a few KiB
MAX_RECORDS = 10_000  # bound on memory if something loops


@dataclass
class Post:
    path: str
    body: Any  # parsed JSON, or the raw text when it is not JSON
    time: float  # time.time() when received
    headers: dict = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw.decode("utf-8"))
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.server.owner._record(Post(self.path, body, time.time(), dict(self.headers)))
        # Answer as the real endpoints do: a Slack incoming webhook says "ok" as text/html (Alertmanager
        # 0.35 parses a JSON answer as Slack's API error object), a webhook receiver an empty JSON object.
        content_type, answer = ("text/html", b"ok") if self.path.startswith("/slack") else ("application/json", b"{}")
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of notifications at once: the default backlog of 5 resets some on a loaded machine.
    request_queue_size = 128
    owner: "_Recorder"


class _Recorder:
    """A loopback server in a thread that keeps (at most MAX_RECORDS of) what it receives."""

    def __init__(self, server_class: type, handler: type, name: str, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self._records: list = []
        self._server = server_class((host, port), handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record(self, item: Any) -> None:
        with self._lock:
            if len(self._records) < MAX_RECORDS:
                self._records.append(item)

    def _snapshot(self) -> list:
        with self._lock:
            return list(self._records)


class CaptureServer(_Recorder):
    """Records every POST (path, JSON body, time). Use .url(path) in receiver configs."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_Server, _Handler, "capture-http", host, port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self, path: Optional[str] = None) -> list[Post]:
        return [p for p in self._snapshot() if path is None or p.path == path]


# --------------------------------------------------------------------------- SMTP

@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage
    time: float
    auth: Optional[tuple[str, str]] = None  # (user, password) from AUTH PLAIN/LOGIN

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for Go's net/smtp client: EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA."""

    server: "_SmtpTCPServer"
    timeout = 30  # per connection socket timeout: a stuck client cannot hold a thread forever

    def _send(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())
        self.wfile.flush()

    def _line(self) -> Optional[str]:
        raw = self.rfile.readline(MAX_BODY)
        return None if not raw else raw.decode("utf-8", "replace").rstrip("\r\n")

    def handle(self) -> None:
        sender, recipients, auth = "", [], None
        self._send("220 127.0.0.1 e2e-capture ESMTP")
        for _ in range(1000):  # bounded conversation
            line = self._line()
            if line is None:
                return
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("EHLO", "HELO"):
                self._send("250-127.0.0.1 hello")
                self._send("250-AUTH PLAIN LOGIN")
                self._send("250 8BITMIME")
            elif verb == "AUTH":
                parts = arg.split()
                if parts and parts[0].upper() == "PLAIN":
                    payload = parts[1] if len(parts) > 1 else None
                    if payload is None:
                        self._send("334 ")
                        payload = self._line() or ""
                    fields = base64.b64decode(payload).split(b"\0")
                    auth = (fields[1].decode(), fields[2].decode()) if len(fields) >= 3 else None
                    self._send("235 2.7.0 Authentication successful")
                elif parts and parts[0].upper() == "LOGIN":
                    self._send("334 VXNlcm5hbWU6")
                    user = base64.b64decode(self._line() or "").decode()
                    self._send("334 UGFzc3dvcmQ6")
                    password = base64.b64decode(self._line() or "").decode()
                    auth = (user, password)
                    self._send("235 2.7.0 Authentication successful")
                else:
                    self._send("504 5.5.4 mechanism not supported")
            elif verb == "MAIL":
                sender, recipients = arg.split(":", 1)[-1].strip().strip("<>").split(">")[0], []
                self._send("250 2.1.0 OK")
            elif verb == "RCPT":
                recipients.append(arg.split(":", 1)[-1].strip().strip("<>").split(">")[0])
                self._send("250 2.1.5 OK")
            elif verb == "DATA":
                self._send("354 end with <CRLF>.<CRLF>")
                lines = []
                for _ in range(100_000):
                    data = self._line()
                    if data is None or data == ".":
                        break
                    lines.append(data[1:] if data.startswith("..") else data)
                message = email.message_from_string("\r\n".join(lines) + "\r\n", policy=email.policy.default)
                self.server.owner._record(Mail(sender, list(recipients), message, time.time(), auth))
                self._send("250 2.0.0 queued")
            elif verb == "RSET":
                sender, recipients = "", []
                self._send("250 2.0.0 OK")
            elif verb == "NOOP":
                self._send("250 2.0.0 OK")
            elif verb == "QUIT":
                self._send("221 2.0.0 bye")
                return
            else:
                self._send("502 5.5.2 command not implemented")


class _SmtpTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "_Recorder"


class SmtpCapture(_Recorder):
    """A plain-text SMTP server on loopback that keeps every message it receives."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_SmtpTCPServer, _SmtpHandler, "capture-smtp", host, port)

    def mails(self) -> list[Mail]:
        return self._snapshot()
