"""The pinned Prometheus run for its discovery alone: started on a config whose jobs scrape nothing
in the test's time (1h intervals), polled until every expected scrape pool has targets and the
counts hold still, then stopped. Used against a loopback stand-in of the Kubernetes API
(tests/test_pod_discovery.py) and against the real API server (tests/test_kube_discovery.py)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.conftest import require_tool


def discovered(config: Path, root: Path, expected_pools: set, wait: float, stable_rounds: int = 3,
               optional_pools: frozenset = frozenset()) -> dict:
    """Prometheus' /api/v1/targets data (activeTargets and droppedTargets) once discovery settled:
    every expected pool has targets, and no other pool but the optional ones (a scrape shard's
    share, which may be none of a few pods)."""
    port = free_port()
    log_path = root / "prometheus.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([require_tool("prometheus"), f"--config.file={config}",
                                 f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                 # How often the scrape manager takes discovery's news (hidden flag, 5s by default).
                                 "--scrape.discovery-reload-interval=500ms"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, last, stable = time.monotonic() + wait, None, 0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
                    data = json.load(r)["data"]
            except OSError:
                continue
            pools = Counter(t["scrapePool"] for t in data["activeTargets"])
            settled = set(expected_pools) <= set(pools) <= set(expected_pools) | set(optional_pools)
            stable = stable + 1 if pools == last and settled else 0
            last = pools
            if stable >= stable_rounds:
                return data
        pytest.fail(f"Prometheus did not list targets for every expected job in {wait} s: {last}\n"
                    f"{log_path.read_text()[-3000:]}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def pod_port_labels(namespace: str, pod: str, node: str, template: dict, container: str, port: dict) -> dict[str, str]:
    """The meta labels Prometheus' pod discovery gives one port of one container of a running pod
    of this template: for static targets that stand in for the discovery, so that a generated
    job's own relabelling decides as it would in the cluster."""
    def sanitized(name: str) -> str:
        return "".join(c if c.isalnum() or c == "_" else "_" for c in name)

    labels = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod,
              "__meta_kubernetes_pod_node_name": node, "__meta_kubernetes_pod_container_name": container,
              "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
              "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
              "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP"),
              "__meta_kubernetes_pod_ready": "true", "__meta_kubernetes_pod_phase": "Running"}
    for key, value in template["metadata"]["labels"].items():
        labels[f"__meta_kubernetes_pod_label_{sanitized(key)}"] = value
        labels[f"__meta_kubernetes_pod_labelpresent_{sanitized(key)}"] = "true"
    return labels
