"""The services and their URLs: an override, else the outputs, else a port-forward hint."""

from __future__ import annotations

import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Service:
    name: str
    option: str  # argparse dest of the URL override
    outputs: tuple[str, ...]  # output keys holding its URL, most reachable first
    port: int  # usual port, for port-forward hints
    optional: bool = False  # checked only when one of its outputs (or the override) exists


SERVICES = {
    s.name: s for s in (
        Service("prometheus", "prometheus_url", ("prometheusExternalUrl", "prometheusUrl"), 9090),
        Service("alertmanager", "alertmanager_url", ("alertmanagerExternalUrl", "alertmanagerUrl"), 9093),
        Service("grafana", "grafana_url", ("grafanaExternalUrl", "grafanaUrl"), 3000),
        # Logging (on Kubernetes) and tracing (tracing.enabled) are not in every stack: their checks run
        # where these outputs exist (components/stack.py:outputs).
        Service("elasticsearch", "elasticsearch_url", ("elasticsearchExternalUrl", "elasticsearchUrl"), 9200,
                optional=True),
        Service("jaeger", "jaeger_url", ("jaegerExternalUrl", "jaegerUrl"), 16686, optional=True),
        # With scrape shards the rules run in Thanos Ruler, not in any Prometheus.
        Service("rules", "rules_url", ("thanosRuleUrl",), 10902, optional=True),
        # With scrape shards the targets are read through Thanos Query, which reaches every shard.
        Service("thanos-query", "thanos_query_url", ("thanosQueryUrl",), 10902, optional=True),
    )
}


@dataclass
class Endpoint:
    service: str
    url: Optional[str]  # None: not usable (see problem) or not deployed
    source: str = ""  # where the URL came from: an option or an output name
    problem: str = ""  # why there is no usable URL, with what to do
    absent: bool = False  # an optional service without any URL output: not deployed


def resolves(host: str, timeout: float = 3.0) -> bool:
    """getaddrinfo with a bound (it has no timeout of its own)."""
    found: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None)
            found.append(True)
        except (OSError, UnicodeError):
            found.append(False)

    worker = threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(found and found[0])


def port_forward_hint(service: Service, url: str, namespace: str) -> Optional[str]:
    """The kubectl port-forward command for an in-cluster ``<svc>.<namespace>.svc`` URL, if it is one."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?", host)
    if not match:
        return None
    svc, ns = match.group(1), match.group(2) or namespace
    port = parts.port or service.port
    option = "--" + service.option.replace("_", "-")
    return (f"{host} is an in-cluster address that does not resolve here; in another terminal run\n"
            f"            kubectl --namespace {ns} port-forward svc/{svc} {port}:{port}\n"
            f"          then add {option} http://127.0.0.1:{port}")


def find_endpoint(service: Service, outputs: dict, override: Optional[str],
                  resolver: Callable[[str], bool] = resolves) -> Endpoint:
    option = "--" + service.option.replace("_", "-")
    if override:
        return Endpoint(service.name, override.rstrip("/"), option)
    candidates = [(key, outputs[key]) for key in service.outputs if isinstance(outputs.get(key), str)]
    if not candidates:
        if service.optional:
            return Endpoint(service.name, None, absent=True,
                            problem=f"no {' or '.join(service.outputs)} output (not deployed in this stack)")
        return Endpoint(service.name, None, problem=f"the outputs have no {' or '.join(service.outputs)}: "
                                                    f"pass {option} URL")
    for key, url in candidates:
        host = urllib.parse.urlsplit(url).hostname
        if host and resolver(host):
            return Endpoint(service.name, url.rstrip("/"), key)
    key, url = candidates[-1]  # the in-cluster URL
    hint = port_forward_hint(service, url, str(outputs.get("namespace") or ""))
    tried = ", ".join(f"{k}={u}" for k, u in candidates)
    return Endpoint(service.name, None, key,
                    problem=hint or f"no host of {tried} resolves from here: pass {option} with a reachable URL "
                                    f"(on a Docker host the UIs are published on docker.bindAddress)")


class Endpoints(dict):
    """Service name -> Endpoint, found (and its host resolved) on first use only."""

    def __init__(self, find: Callable[[str], Endpoint]) -> None:
        super().__init__()
        self._find = find

    def __missing__(self, service: str) -> Endpoint:
        self[service] = endpoint = self._find(service)
        return endpoint
