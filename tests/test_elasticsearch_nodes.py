"""How each generated stack's Elasticsearch nodes start and when they count as ready, with the
generated commands run for real (sh, curl) against a loopback stand-in of a node's HTTP API.

- Readiness is the node answering, not the cluster's health: one red index must not take every
  node out of the client Service. A new pod becomes ready only once the cluster is green (yellow
  for a single node), which paces a StatefulSet's rolling update: the next node restarts only
  after the shards of the previous one have recovered.
- Memory-mapped index files need vm.max_map_count >= 262144 on the node; the init step refuses to
  start a node without it, and node.store.allow_mmap follows the setting.
"""

from __future__ import annotations

import json
import subprocess
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from components.logging import configs
from tests import command_lines
from tests.conftest import require_tool
from tests.loopback_http import Handler, LoopbackServer
from tests.test_logging import init_script, run_init_step

ORDER = {"red": 0, "yellow": 1, "green": 2}


class NodeStandIn:
    """A node's HTTP API as far as the probes use it: GET / (200 with the right password) and
    GET /_cluster/health, which answers 408 when wait_for_status is not reached, as
    Elasticsearch's RestClusterHealthAction does on a timeout."""

    def __init__(self, credentials: command_lines.Credentials, password: str):
        self.status = "green"
        stand_in = self

        class Node(Handler):
            def do_GET(self):  # noqa: N802 (http.server's names)
                import base64
                auth = self.headers.get("Authorization", "")
                if auth != "Basic " + base64.b64encode(f"elastic:{password}".encode()).decode():
                    return self._send(401, {"error": "unauthorized"})
                url = urlparse(self.path)
                if url.path == "/":
                    return self._send(200, {"name": "stand-in", "tagline": "You Know, for Search"})
                if url.path == "/_cluster/health":
                    wanted = parse_qs(url.query).get("wait_for_status", [None])[0]
                    timed_out = bool(wanted) and ORDER[stand_in.status] < ORDER[wanted]
                    return self._send(408 if timed_out else 200, {"status": stand_in.status, "timed_out": timed_out})
                return self._send(404, {})

            def _send(self, code, body):
                # As Elasticsearch writes it: no spaces.
                self.answer(code, json.dumps(body, separators=(",", ":")).encode(), "application/json")

        self.server = LoopbackServer(Node, tls=(credentials.cert, credentials.key))

    @property
    def address(self) -> str:
        return self.server.address

    def close(self):
        self.server.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    root = tmp_path_factory.mktemp("es-node")
    credentials = command_lines.Credentials.create(root, require_tool("openssl"))
    stand_in = NodeStandIn(credentials, "probe-password")
    yield stand_in, credentials
    stand_in.close()


def readiness(result) -> list[str]:
    container = result.one("StatefulSet", "elasticsearch")["spec"]["template"]["spec"]["containers"][0]
    return container["readinessProbe"]["exec"]["command"]


class Pod:
    """One Elasticsearch pod's view of its files, on this machine."""

    def __init__(self, root, command: list[str], node: NodeStandIn, credentials):
        secrets = root / "secrets"
        secrets.mkdir(parents=True)
        (secrets / "elastic-password").write_text("probe-password")
        self.marker = root / "ready-once"
        self.init_stat = root / "init-stat"  # the container's first process
        self.restart()
        script = command[2].replace(f"{configs.ES_CONF}/certs/ca.crt", str(credentials.cert)) \
            .replace(configs.ES_SECRETS_MOUNT, str(secrets)).replace(configs.READY_ONCE_MARKER, str(self.marker)) \
            .replace(configs.CONTAINER_INIT_STAT, str(self.init_stat)).replace("127.0.0.1:9200", node.address)
        assert script != command[2]
        self.argv = [command[0], command[1], script]

    def restart(self) -> None:
        """The container starts (again): its first process has a new start time; the emptyDir stays."""
        self.starts = getattr(self, "starts", 0) + 1
        self.init_stat.write_text(f"1 (tini) S 0 1 1 0 -1 4194560 {' '.join(['0'] * 12)} {1000 * self.starts} 0\n")

    def ready(self) -> bool:
        proc = subprocess.run(self.argv, capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin"})
        return proc.returncode == 0


@pytest.mark.parametrize("stack", ["dev", "prod", "prod-every-part"])
def test_readiness_is_the_node_answering_after_one_green_start(every_stack, node, stack, tmp_path):
    require_tool("curl")
    stand_in, credentials = node
    result = every_stack[stack]
    nodes = result.one("StatefulSet", "elasticsearch")["spec"]["replicas"]
    pod = Pod(tmp_path, readiness(result), stand_in, credentials)
    try:
        # A new pod: the cluster's health gates it (a rolling update waits here).
        stand_in.status = "yellow"
        assert pod.ready() is (nodes == 1), "a new node of a cluster is ready before the cluster is green"
        stand_in.status = "green"
        assert pod.ready()
        # Once ready, a red index does not take the node out of the Service; only a silent node does.
        stand_in.status = "red"
        assert pod.ready(), "one red index makes a running node unready"
        # A container restart (crash, OOM kill) in the same pod waits for the cluster's health again.
        pod.restart()
        stand_in.status = "yellow" if nodes > 1 else "red"
        assert not pod.ready(), "a restarted container is ready while its shards recover"
        stand_in.status = "green"
        assert pod.ready()
    finally:
        stand_in.status = "green"
    assert pod.marker.exists()


def test_readiness_fails_for_a_node_that_does_not_answer(prod, node, tmp_path):
    stand_in, credentials = node
    pod = Pod(tmp_path, readiness(prod), stand_in, credentials)
    pod.argv[2] = pod.argv[2].replace(stand_in.address, "127.0.0.1:9")  # nothing listens there
    pod.marker.write_text(pod.init_stat.read_text().split()[21] + "\n")
    assert not pod.ready()


@pytest.mark.parametrize("stack", ["dev", "prod", "prod-every-part"])
def test_mmap_follows_the_setting_and_the_kernel_is_checked(every_stack, stack, tmp_path):
    result = every_stack[stack]
    es_yml = yaml.safe_load(result.one("ConfigMap", "elasticsearch-config")["data"]["elasticsearch.yml"])
    mmap = es_yml["node.store.allow_mmap"]
    assert mmap is (stack != "dev")  # prod's default; dev's file turns it off for hosts left at 65530
    script = init_script(result)
    run_init_step(script, tmp_path, existing_state=False, max_map_count=configs.MAX_MAP_COUNT)
    if mmap:
        said = run_init_step(script, tmp_path, existing_state=False, max_map_count=65530, expect_success=False)
        assert "vm.max_map_count is 65530" in said and "allowMmap" in said
    else:
        run_init_step(script, tmp_path, existing_state=False, max_map_count=65530)

