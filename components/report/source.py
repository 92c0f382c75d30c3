"""Reading a running stack: Prometheus' query API and Alertmanager's alerts, over HTTP with timeouts.

Every failure becomes a message, never an exception out of here: an unreachable server, a refused
query, an answer that is not Prometheus' JSON. The report says what it could not read and why.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|::1)$")


@dataclass
class Series:
    labels: dict
    values: list  # [(unix seconds, float)], one pair for an instant vector


@dataclass
class Answer:
    series: list = field(default_factory=list)
    error: Optional[str] = None
    unreachable: bool = False  # no HTTP answer at all

    @property
    def ok(self) -> bool:
        return self.error is None

    def by(self, label: str) -> dict:
        """label value -> the last finite value (instant vectors: the value)."""
        out = {}
        for s in self.series:
            finite = [v for _, v in s.values if math.isfinite(v)]
            if finite:
                out[s.labels.get(label, "")] = finite[-1]
        return out


class Http:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self._proxied = urllib.request.build_opener()
        self._direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, url: str, data: Optional[bytes] = None, headers: Optional[dict] = None) -> tuple[int, bytes]:
        """(status, body); raises OSError-like ConnectionError with the reason when nothing answered."""
        # The URL may be a secret (the webhook's): no message here names it, and a malformed one is a
        # clear refusal, not a traceback.
        try:
            request = urllib.request.Request(url, data=data, headers={"Accept": "application/json", **(headers or {})})
            host = urllib.parse.urlsplit(url).hostname or ""
        except ValueError:
            raise ConnectionError("the URL is not an http(s) URL with a host") from None
        opener = self._direct if _LOOPBACK.match(host) else self._proxied  # port-forwards bypass proxies
        try:
            with opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            try:
                return error.code, error.read(1 << 16)
            except OSError:
                return error.code, b""
        except urllib.error.URLError as error:
            reason = error.reason
            raise ConnectionError(reason.strerror if isinstance(reason, OSError) and reason.strerror
                                  else type(reason).__name__ if not isinstance(reason, str) else reason) from None
        except http.client.InvalidURL:  # its message quotes the URL
            raise ConnectionError("the URL is not valid") from None
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise ConnectionError(getattr(error, "strerror", None) or type(error).__name__) from None


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


class Prometheus:
    """Prometheus' HTTP API (/api/v1)."""

    def __init__(self, url: str, timeout: float = 60.0, http: Optional[Http] = None):
        self.url = url.rstrip("/")
        self.http = http or Http(timeout)

    def _api(self, path: str, params: dict) -> Answer:
        body = urllib.parse.urlencode(params).encode()
        try:
            status, payload = self.http.call(f"{self.url}{path}", body,
                                             {"Content-Type": "application/x-www-form-urlencoded"})
        except ConnectionError as error:
            return Answer(error=f"Prometheus at {self.url} is unreachable: {error}", unreachable=True)
        try:
            document = json.loads(payload)
        except ValueError:
            return Answer(error=f"Prometheus at {self.url} answered HTTP {status} with no API answer "
                                f"({payload[:120]!r}): is this Prometheus' address?")
        if not isinstance(document, dict) or document.get("status") != "success":
            what = document.get("error") if isinstance(document, dict) else None
            return Answer(error=f"Prometheus refused the query (HTTP {status}): {what or str(document)[:200]}")
        data = document.get("data")
        if path.startswith("/api/v1/label"):
            return Answer([Series({"value": v}, []) for v in data or []])
        kind, result = (data or {}).get("resultType"), (data or {}).get("result") or []
        if kind == "scalar":
            return Answer([Series({}, [(float(result[0]), _float(result[1]))])])
        if kind == "vector":
            return Answer([Series(dict(r.get("metric") or {}), [(float(r["value"][0]), _float(r["value"][1]))])
                           for r in result])
        if kind == "matrix":
            return Answer([Series(dict(r.get("metric") or {}), [(float(t), _float(v)) for t, v in r.get("values") or []])
                           for r in result])
        return Answer(error=f"Prometheus answered an unexpected result type {kind!r}")

    def instant(self, expr: str, at: float) -> Answer:
        return self._api("/api/v1/query", {"query": expr, "time": at})

    def range(self, expr: str, start: float, end: float, step: int) -> Answer:
        return self._api("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})

    def label_values(self, label: str, start: float, end: float) -> Answer:
        return self._api(f"/api/v1/label/{label}/values", {"start": start, "end": end})


class Alertmanager:
    """The alerts Alertmanager holds now (/api/v2/alerts): firing, silenced or inhibited."""

    def __init__(self, url: str, timeout: float = 30.0, http: Optional[Http] = None):
        self.url = url.rstrip("/")
        self.http = http or Http(timeout)

    def alerts(self) -> tuple[list, Optional[str]]:
        try:
            status, payload = self.http.call(f"{self.url}/api/v2/alerts")
        except ConnectionError as error:
            return [], f"Alertmanager at {self.url} is unreachable: {error}"
        try:
            alerts = json.loads(payload)
        except ValueError:
            alerts = None
        if status != 200 or not isinstance(alerts, list):
            return [], f"Alertmanager at {self.url} answered HTTP {status} without its alert list"
        return alerts, None
