"""A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager,
built by scripts/install-test-tools.sh at the release TEST_TOOLS pins (or at the previous minor
release, TEST_TOOLS["kubernetesPrevious"]), on loopback only.

No kubelet and no scheduler run: Pods the controllers create stay Pending, which is enough for
admission (PodSecurity judges a Pod when it is created). Every address is 127.0.0.1: the service
range is only numbers the API server hands out (no proxy routes them), and Nodes the tests create
carry loopback addresses.

The certificates and the service-account signing key are made with openssl for the session. The
tests talk to the API server as a client certificate in system:masters, over the standard library's
HTTPS (no client library is a dependency); every `Warning:` header the server sends is kept.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from components.settings.images import TEST_TOOLS
from tests.conftest import require_tool
from tests.ports import free_port

MANAGER = "football-monitoring"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
CONTROLLER_TIMEOUT = 60  # seconds the controllers may take to create the Pods of one stack
READY_TIMEOUT = 60  # seconds each component may take to report ready
SERVICE_RANGE = "10.0.0.0/16"  # the range upstream's own API server test fixture uses
# Kubernetes release -> (TEST_TOOLS key, suffix of its binaries' names in the tools directory). Both
# run on the same etcd (TEST_TOOLS["etcd"]).
RELEASES = {"pinned": ("kubernetes", ""), "previous": ("kubernetesPrevious", "-previous")}


def release_version(release: str) -> str:
    """The gitVersion the release's API server reports, e.g. v1.37.2."""
    return TEST_TOOLS[RELEASES[release][0]].rsplit(":", 1)[1]


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
    # Stack name -> its objects, for each stack live on the cluster (one applied stack serves many tests).
    applied: dict[str, list[dict]] = field(default_factory=dict)
    release: str = "pinned"  # a key of RELEASES
    version: str = ""  # the gitVersion the API server reports

    def _context(self, as_admin: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if as_admin:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def request(self, method: str, path: str, body: object = None, content_type: str = "application/json",
                expect: tuple[int, ...] = (200, 201), token: str | None = None) -> tuple[int, dict | None]:
        """(status, decoded body); a status outside `expect` raises ApiError. With a bearer token the
        request is that identity's alone (no client certificate is offered)."""
        connection = http.client.HTTPSConnection(self.host, self.port, context=self._context(token is None),
                                                 timeout=30)
        try:
            payload = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
            headers = {"Accept": "application/json"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
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

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A token of the ServiceAccount from the TokenRequest API, as the kubelet gets one for a Pod."""
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": seconds}}
        answer = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", request)[1]
        return answer["status"]["token"]

    def log_tail(self, name: str, lines: int = 40) -> str:
        text = self.logs[name].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# group/version -> kind -> (plural, namespaced), for the kinds the stacks render and those the
# tests read back; anything else fails loudly rather than guessing a plural.
RESOURCES = {
    "v1": {"Namespace": ("namespaces", False), "ConfigMap": ("configmaps", True), "Secret": ("secrets", True),
           "Service": ("services", True), "ServiceAccount": ("serviceaccounts", True), "Pod": ("pods", True),
           "Node": ("nodes", False), "PersistentVolumeClaim": ("persistentvolumeclaims", True),
           "Event": ("events", True), "PersistentVolume": ("persistentvolumes", False)},
    "apps/v1": {"Deployment": ("deployments", True), "StatefulSet": ("statefulsets", True),
                "DaemonSet": ("daemonsets", True), "ReplicaSet": ("replicasets", True),
                "ControllerRevision": ("controllerrevisions", True)},
    "batch/v1": {"Job": ("jobs", True), "CronJob": ("cronjobs", True)},
    "networking.k8s.io/v1": {"NetworkPolicy": ("networkpolicies", True), "Ingress": ("ingresses", True)},
    "discovery.k8s.io/v1": {"EndpointSlice": ("endpointslices", True)},
    "policy/v1": {"PodDisruptionBudget": ("poddisruptionbudgets", True)},
    "rbac.authorization.k8s.io/v1": {kind: (kind.lower() + "s", kind in ("Role", "RoleBinding"))
                                     for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")},
    "scheduling.k8s.io/v1": {"PriorityClass": ("priorityclasses", False)},
    "autoscaling/v2": {"HorizontalPodAutoscaler": ("horizontalpodautoscalers", True)},
    "storage.k8s.io/v1": {"StorageClass": ("storageclasses", False)},
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


def apply_order(obj: dict) -> tuple:
    """Namespaces first, then what Pods refer to (PriorityClass, ServiceAccounts, ConfigMaps, Secrets,
    RBAC), workloads last: admission of a Pod looks its ServiceAccount and PriorityClass up."""
    kind = obj["kind"]
    rank = 0 if kind == "Namespace" else 2 if kind in WORKLOAD_KINDS else 1
    return rank, kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def key(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '-')}/{meta['name']}"


def ensure_node(cluster: KubeCluster) -> None:
    """One schedulable Ready Node with a loopback address, so the DaemonSet controller has a node
    to create Pods for (no kubelet runs; nothing ever reaches the address)."""
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "test-node", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                                         "kubernetes.io/hostname": "test-node",
                                                         "topology.kubernetes.io/zone": "test-zone"}}}
    if not cluster.exists("/api/v1/nodes/test-node"):
        cluster.request("POST", "/api/v1/nodes", node)
    # Admission taints a new Node not-ready until a kubelet reports; this stands in for the kubelet.
    cluster.request("PATCH", "/api/v1/nodes/test-node", {"spec": {"taints": None}},
                    "application/merge-patch+json")
    status = {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "test-node"}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        # Where a kubelet says it listens; node discovery makes its targets of this port.
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}
    cluster.request("PATCH", "/api/v1/nodes/test-node/status", status, "application/merge-patch+json")


def list_items(cluster: KubeCluster, api_version: str, kind: str, namespace: str) -> list[dict]:
    return cluster.get(collection_path(api_version, kind, namespace))["items"]


def owned_pods(cluster: KubeCluster, namespaces: list[str]) -> dict[str, list[dict]]:
    """Pods by namespace."""
    return {ns: list_items(cluster, "v1", "Pod", ns) for ns in namespaces}


_CONTROLLED = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
               "Job": "batch/v1", "CronJob": "batch/v1"}


def failed_creates(cluster: KubeCluster, namespaces: list[str]) -> list[str]:
    """The controllers' failures to create Pods for the objects now in ``namespaces``. A controller
    still working through an object of a namespace deleted before (another stack's, with the same
    namespace name) records its failure in the namespace made again: that object's uid is not
    among the live ones, and its event is not this stack's."""
    found = []
    for ns in namespaces:
        live: dict[str, dict[str, str]] = {}
        for e in list_items(cluster, "v1", "Event", ns):
            if not (e.get("reason") in ("FailedCreate", "FailedCreatePodFailed") or "forbidden" in e.get("message", "")):
                continue
            involved = e["involvedObject"]
            if involved["kind"] in _CONTROLLED:
                if involved["kind"] not in live:
                    live[involved["kind"]] = {o["metadata"]["name"]: o["metadata"]["uid"] for o in
                                              list_items(cluster, _CONTROLLED[involved["kind"]], involved["kind"], ns)}
                if live[involved["kind"]].get(involved["name"]) != involved.get("uid"):
                    continue
            found.append(f"{involved['kind']}/{ns}/{involved['name']}: {e['message']}")
    return found


def expected_pods(cluster: KubeCluster, obj: dict) -> int:
    """How many Pods the controller makes of a workload here (no kubelet: nothing becomes ready)."""
    kind, spec = obj["kind"], obj["spec"]
    if kind == "DaemonSet":
        return 1  # the one Node
    if kind == "StatefulSet":
        # OrderedReady creates the next Pod only when the previous one is Ready: here, the first only.
        replicas = spec.get("replicas", 1)
        return replicas if spec.get("podManagementPolicy") == "Parallel" else min(replicas, 1)
    if kind == "Job":
        return min(spec.get("parallelism", 1), spec.get("completions") or spec.get("parallelism", 1))
    return spec.get("replicas", 1)  # Deployment


def controlled_by(pod: dict, uids: set[str]) -> bool:
    return any(ref.get("uid") in uids for ref in pod["metadata"].get("ownerReferences", []))


def wait_for_pods(cluster: KubeCluster, workloads: list[dict], namespaces: list[str]) -> dict[str, int]:
    """Workload key -> Pods created, once every workload has its expected count or FailedCreate
    events appear (or the bounded wait ends)."""
    deadline = time.monotonic() + CONTROLLER_TIMEOUT
    while True:
        pods = [p for ps in owned_pods(cluster, namespaces).values() for p in ps]
        replica_sets = [rs for ns in namespaces for rs in list_items(cluster, "apps/v1", "ReplicaSet", ns)]
        counts = {}
        for obj in workloads:
            live = cluster.get(object_path(obj))
            owners = {live["metadata"]["uid"]}
            owners |= {rs["metadata"]["uid"] for rs in replica_sets if controlled_by(rs, owners)}
            counts[key(obj)] = sum(controlled_by(p, owners) for p in pods)
        done = all(counts[key(o)] >= expected_pods(cluster, o) for o in workloads)
        if done or failed_creates(cluster, namespaces) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def remove(cluster: KubeCluster, objects: list[dict]) -> None:
    """Deletes a stack's namespaces (their contents with them) and cluster-scoped objects, and waits,
    bounded, until the namespaces are gone."""
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    for obj in objects:
        if "namespace" not in obj["metadata"]:
            cluster.request("DELETE", object_path(obj), expect=(200, 202, 404))
    deadline = time.monotonic() + 120
    while any(cluster.exists(object_path(ns)) for ns in namespaces):
        if time.monotonic() > deadline:
            pytest.fail("namespaces not deleted within 120 s: "
                        + ", ".join(n["metadata"]["name"] for n in namespaces if cluster.exists(object_path(n))))
        time.sleep(0.5)


def apply_stack(cluster: KubeCluster, stack: str, objects: list[dict]) -> None:
    """Applies a stack (removing first any live stack it shares an object with) and waits, bounded,
    for the controllers to create its Pods."""
    keys = {key(o) for o in objects}
    for other in [s for s, live in cluster.applied.items() if s != stack and keys & {key(o) for o in live}]:
        remove(cluster, cluster.applied.pop(other))
    ensure_node(cluster)
    objects = sorted(objects, key=apply_order)
    for obj in objects:
        cluster.apply(obj, MANAGER)
    cluster.applied[stack] = objects
    namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    wait_for_pods(cluster, [o for o in objects if o["kind"] in WORKLOAD_KINDS and o["kind"] != "CronJob"], namespaces)


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


def token_kubeconfig(cluster: KubeCluster, path: Path, token: str) -> Path:
    """A kubeconfig that reaches the cluster as a bearer token alone (a ServiceAccount's, as its Pod
    would have mounted) with the cluster's CA: what a program's in-cluster config amounts to here."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "token",
        "clusters": [{"name": "test",
                      "cluster": {"server": cluster.url, "certificate-authority": str(cluster.ca_file)}}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": "test", "user": "token"}}],
    }
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


def start(directory: Path, release: str = "pinned") -> tuple[KubeCluster, list[subprocess.Popen]]:
    started = time.monotonic()
    make_certificates(directory)
    processes: list[subprocess.Popen] = []
    logs = {name: directory / f"{name}.log" for name in ("etcd", "kube-apiserver", "kube-controller-manager")}
    suffix = RELEASES[release][1]

    def launch(name: str, args: list[str]) -> subprocess.Popen:
        binary = require_tool(name if name == "etcd" else name + suffix)
        with open(logs[name], "w") as log:
            process = subprocess.Popen([binary, *args], stdout=log, stderr=subprocess.STDOUT,
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
                          start_seconds=time.monotonic() - started, release=release)
    try:
        cluster.version = cluster.get("/version")["gitVersion"]
    except BaseException:
        stop(processes)
        raise
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


@contextlib.contextmanager
def running(release: str = "pinned"):
    """A control plane of the release, stopped (and its files removed) on leaving."""
    with tempfile.TemporaryDirectory(prefix=f"fm-kube-{release}-") as directory:
        cluster, processes = start(Path(directory), release)
        try:
            yield cluster
        finally:
            stop(processes)


@pytest.fixture(scope="session")
def kube_cluster():
    """The pinned release's control plane, shared by every module of the session."""
    with running("pinned") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kube_prod(kube_cluster, prod) -> list[dict]:
    """prod's objects, live on the cluster (the admission test leaves them so; otherwise applied here)."""
    if "prod" not in kube_cluster.applied:
        apply_stack(kube_cluster, "prod", prod.kubernetes_objects())
    return kube_cluster.applied["prod"]
