"""The HTTP client: urllib with a timeout on every request, loopback without proxies."""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Optional

from tools.verify.project import PROJECT


class Unreachable(Exception):
    """No HTTP answer at all (DNS, connection refused, timeout, TLS)."""


@dataclass
class Response:
    status: int
    body: bytes
    url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as error:
            raise ValueError(f"{self.url}: not JSON ({error}): {self.body[:120]!r}") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


MAX_BODY = 64 << 20  # /api/v1/targets of a large cluster is tens of MiB; a truncated body would not parse
_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[?::1\]?)$")


class Http:
    """urllib with a timeout on every request; credentials are never forwarded on a redirect."""

    def __init__(self, timeout: float = 10.0, insecure: bool = False, extra_ca_pem: Optional[str] = None) -> None:
        self.timeout = timeout
        self.context = ssl.create_default_context()
        if extra_ca_pem:
            # The stack's own CA (output elasticsearchCaCertificate), trusted besides the system's.
            try:
                self.context.load_verify_locations(cadata=extra_ca_pem)
            except (ssl.SSLError, ValueError) as error:
                raise ValueError(f"elasticsearchCaCertificate is not a PEM certificate: {error}") from None
        if insecure:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        https = urllib.request.HTTPSHandler(context=self.context)
        self._proxied = urllib.request.build_opener(https)
        self._direct = urllib.request.build_opener(https, urllib.request.ProxyHandler({}))

    def request(self, method: str, url: str, *, body: Any = None, auth: Optional[tuple[str, str]] = None,
                timeout: Optional[float] = None) -> Response:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", f"{PROJECT}-verify")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {token}")
        host = urllib.parse.urlsplit(url).hostname or ""
        opener = self._direct if _LOOPBACK.match(host) else self._proxied  # port-forwards bypass proxies
        try:
            with opener.open(request, timeout=timeout or self.timeout) as response:
                return Response(response.status, response.read(MAX_BODY), url)
        except urllib.error.HTTPError as error:
            try:
                payload = error.read(1 << 16)
            except OSError:
                payload = b""
            return Response(error.code, payload, url)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise Unreachable(f"{method} {url}: {reason}") from None

    def get(self, url: str, **kwargs) -> Response:
        return self.request("GET", url, **kwargs)


def join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")
