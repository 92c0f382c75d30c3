"""A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager,
built by scripts/install-test-tools.sh at the release TEST_TOOLS pins, on loopback only.

No kubelet and no scheduler run: Pods the controllers create stay Pending, which is enough for
admission (PodSecurity judges a Pod when it is created). Every address is 127.0.0.1: the service
range is only numbers the API server hands out (no proxy routes them), and Nodes the tests create
carry loopback addresses.

The certificates and the service-account signing key are made with openssl for the session. The
tests talk to the API server as a client certificate in system:masters, over the standard library's
HTTPS (no client library is a dependency); every `Warning:` header the server sends is kept.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import require_tool

READY_TIMEOUT = 60  # seconds each component may take to report ready
SERVICE_RANGE = "10.0.0.0/16"  # the range upstream's own API server test fixture uses


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:2000]}")
        self.status, self.body = status, body


@dataclass
class KubeCluster:
    url: str
    host: str
    port: int
    directory: Path
    ca_file: Path
    client_cert: Path
    client_key: Path
    logs: dict[str, Path]
    start_seconds: float
    warnings: list[str] = field(default_factory=list)  # "METHOD path: warning", every one the server sent

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def request(self, method: str, path: str, body: object = None, content_type: str = "application/json",
                expect: tuple[int, ...] = (200, 201)) -> tuple[int, dict | None]:
        """(status, decoded body); a status outside `expect` raises ApiError."""
        connection = http.client.HTTPSConnection(self.host, self.port, context=self._context(), timeout=30)
        try:
            payload = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = content_type
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read().decode()
            for warning in response.headers.get_all("Warning") or []:
                self.warnings.append(f"{method} {path}: {warning}")
        finally:
            connection.close()
        if response.status not in expect:
            raise ApiError(method, path, response.status, raw)
        return response.status, (json.loads(raw) if raw else None)

    def get(self, path: str) -> dict:
        return self.request("GET", path)[1]

    def exists(self, path: str) -> bool:
        return self.request("GET", path, expect=(200, 404))[0] == 200

    def apply(self, obj: dict, manager: str) -> dict:
        """Server-side apply of one object (force: these tests own every field they set)."""
        path = object_path(obj) + f"?fieldManager={quote(manager)}&force=true"
        return self.request("PATCH", path, json.dumps(obj), "application/apply-patch+yaml")[1]

    def log_tail(self, name: str, lines: int = 40) -> str:
        text = self.logs[name].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# group/version -> kind -> (plural, namespaced), for the kinds the stacks render and those the
# tests read back; anything else fails loudly rather than guessing a plural.
RESOURCES = {
    "v1": {"Namespace": ("namespaces", False), "ConfigMap": ("configmaps", True), "Secret": ("secrets", True),
           "Service": ("services", True), "ServiceAccount": ("serviceaccounts", True), "Pod": ("pods", True),
           "Node": ("nodes", False), "PersistentVolumeClaim": ("persistentvolumeclaims", True),
           "Event": ("events", True)},
    "apps/v1": {"Deployment": ("deployments", True), "StatefulSet": ("statefulsets", True),
                "DaemonSet": ("daemonsets", True), "ReplicaSet": ("replicasets", True)},
    "batch/v1": {"Job": ("jobs", True), "CronJob": ("cronjobs", True)},
    "networking.k8s.io/v1": {"NetworkPolicy": ("networkpolicies", True), "Ingress": ("ingresses", True)},
    "policy/v1": {"PodDisruptionBudget": ("poddisruptionbudgets", True)},
    "rbac.authorization.k8s.io/v1": {kind: (kind.lower() + "s", kind in ("Role", "RoleBinding"))
                                     for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")},
    "scheduling.k8s.io/v1": {"PriorityClass": ("priorityclasses", False)},
}


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    plural, namespaced = RESOURCES[api_version][kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} is namespaced: a namespace is needed")
        return f"{base}/namespaces/{namespace}/{plural}"
    return f"{base}/{plural}"


def object_path(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{collection_path(obj['apiVersion'], obj['kind'], meta.get('namespace'))}/{meta['name']}"


def openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run([require_tool("openssl"), *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr}")


def make_certificates(d: Path) -> None:
    """A CA, the API server's serving certificate (loopback and the in-cluster names), an admin client
    certificate in system:masters, and the service-account signing key pair."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d)
    leaves = {
        "apiserver": ("/CN=kube-apiserver", "serverAuth",
                      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
                      "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"),
        "admin": ("/O=system:masters/CN=test-admin", "clientAuth", None),
    }
    for name, (subject, usage, san) in leaves.items():
        openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
        extensions = [f"extendedKeyUsage={usage}", "keyUsage=critical,digitalSignature",
                      "basicConstraints=critical,CA:FALSE"] + ([san] if san else [])
        (d / f"{name}.ext").write_text("\n".join(extensions) + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=d)
    openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def write_kubeconfig(d: Path, url: str) -> Path:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": url, "certificate-authority": str(d / "ca.crt")}}],
        "users": [{"name": "admin", "user": {"client-certificate": str(d / "admin.crt"),
                                             "client-key": str(d / "admin.key")}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
    }
    path = d / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def wait_for(what: str, check, timeout: float, logs: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{logs.read_text(errors='replace')[-4000:]}")
        try:
            if check():
                return
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready within {timeout} s:\n{logs.read_text(errors='replace')[-4000:]}")


def https_ok(port: int, path: str, context: ssl.SSLContext) -> bool:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    finally:
        connection.close()


def start(directory: Path) -> tuple[KubeCluster, list[subprocess.Popen]]:
    started = time.monotonic()
    make_certificates(directory)
    processes: list[subprocess.Popen] = []
    logs = {name: directory / f"{name}.log" for name in ("etcd", "kube-apiserver", "kube-controller-manager")}

    def launch(name: str, args: list[str]) -> subprocess.Popen:
        with open(logs[name], "w") as log:
            process = subprocess.Popen([require_tool(name), *args], stdout=log, stderr=subprocess.STDOUT,
                                       cwd=directory, start_new_session=True)
        processes.append(process)
        return process

    try:
        etcd_client, etcd_peer = free_port(), free_port()
        etcd = launch("etcd", [
            "--name=test", f"--data-dir={directory / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=test=http://127.0.0.1:{etcd_peer}",
            # A throwaway store: durability costs seconds per test session on a busy disk.
            "--unsafe-no-fsync", "--log-level=warn",
        ])

        def etcd_healthy() -> bool:
            connection = http.client.HTTPConnection("127.0.0.1", etcd_client, timeout=5)
            try:
                connection.request("GET", "/health")
                response = connection.getresponse()
                return response.status == 200 and json.loads(response.read()).get("health") == "true"
            finally:
                connection.close()

        wait_for("etcd", etcd_healthy, READY_TIMEOUT, logs["etcd"], etcd)

        port = free_port()
        url = f"https://127.0.0.1:{port}"
        apiserver = launch("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            # The "kubernetes" Service's endpoints would be the loopback address, which Endpoints reject.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={directory / 'apiserver.crt'}", f"--tls-private-key-file={directory / 'apiserver.key'}",
            f"--client-ca-file={directory / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={directory / 'sa.pub'}",
            f"--service-account-signing-key-file={directory / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--authorization-mode=Node,RBAC",
            # The default plugins are on; PodSecurity is among them at this release, named so that a
            # release that dropped it from the defaults still runs it.
            "--enable-admission-plugins=PodSecurity",
            # As clusters that run host-access agents do (kubeadm sets it): privileged containers are
            # PodSecurity's decision, per namespace.
            "--allow-privileged=true",
            "--profiling=false",
        ])
        admin_context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        admin_context.load_cert_chain(str(directory / "admin.crt"), str(directory / "admin.key"))
        wait_for("kube-apiserver", lambda: https_ok(port, "/readyz", admin_context), READY_TIMEOUT,
                 logs["kube-apiserver"], apiserver)

        kubeconfig = write_kubeconfig(directory, url)
        manager_port = free_port()
        manager = launch("kube-controller-manager", [
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={manager_port}",
            f"--cert-dir={directory / 'controller-manager'}",
            "--leader-elect=false",
            f"--root-ca-file={directory / 'ca.crt'}",
            f"--service-account-private-key-file={directory / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            # Nodes the tests create have no kubelet behind them: the lifecycle controller would
            # taint them unreachable and evict their pods mid-test.
            "--controllers=*,-node-lifecycle-controller",
            "--profiling=false",
        ])
        manager_context = ssl.create_default_context()
        manager_context.check_hostname = False
        manager_context.verify_mode = ssl.CERT_NONE  # its self-signed serving certificate; /healthz only
        wait_for("kube-controller-manager", lambda: https_ok(manager_port, "/healthz", manager_context),
                 READY_TIMEOUT, logs["kube-controller-manager"], manager)
    except BaseException:
        stop(processes)
        raise
    cluster = KubeCluster(url=url, host="127.0.0.1", port=port, directory=directory,
                          ca_file=directory / "ca.crt", client_cert=directory / "admin.crt",
                          client_key=directory / "admin.key", logs=logs,
                          start_seconds=time.monotonic() - started)
    return cluster, processes


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):  # the controller manager first, etcd last
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@pytest.fixture(scope="session")
def kube_cluster():
    with tempfile.TemporaryDirectory(prefix="fm-kube-") as directory:
        cluster, processes = start(Path(directory))
        try:
            yield cluster
        finally:
            stop(processes)
