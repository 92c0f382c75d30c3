"""The flows a rendered Kubernetes stack needs, read from what it generates, and the verdict of a
real NetworkPolicy analyzer (cyclonus) on them.

Needed flows come from the generated objects, never from a list kept here:

- every scrape target of prometheus.yml: each pod-discovered job is run through Prometheus' own
  Kubernetes discovery and relabelling (``promtool check service-discovery``) against a loopback
  API server that serves the rendered pods, so a job keeps exactly the (pod, port) Prometheus
  would scrape in the cluster, sidecars included; static targets and the blackbox probes' exporter
  address resolve through the rendered Services;
- every in-cluster address in a workload's arguments, environment and mounted ConfigMaps (Grafana's
  datasource URLs, Filebeat's Logstash, Logstash's, Kibana's, Jaeger's and the exporters'
  Elasticsearch, the gateway's collectors, the bootstrap Job's targets, Alertmanager's DingTalk
  relay), resolved through the Service it names to the pods and container port behind it; the
  flags that announce a program's own URL (``--web.external-url``) are not connections;
- Alertmanager's ``--cluster.peer`` flags (gossip: TCP and UDP), Elasticsearch's seed hosts
  (transport), each Ingress backend (from the ingress controller's namespace), the gateway's OTLP
  ports (from the application's namespace);
- flows to outside the stack's namespaces: Alertmanager's receivers (alertmanager.yml URLs and
  credential files, the SMTP smarthost), the blackbox probe targets (prometheus.yml), the DingTalk
  relay's robot URLs, the database exporters' connection strings, a Secret file holding one http(s)
  URL (the report's webhook).

The analyzer answers each flow twice: once against the policies' ingress rules only (is the flow
let in at its destination?) and once against their egress rules only (is it let out at its
source?); a flow is allowed when both say yes, as in a cluster.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import parse_qs, urlparse

import yaml

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
NODE_NAME = "node-a"
NODE_IP = "127.0.9.1"  # hostNetwork pods answer at their node's address (127.0.9.x: one per node)
APP_NAMESPACE = "football-prediction"  # where the instrumented application runs (OTLP clients)
SCHEME_PORTS = {"http": 80, "https": 443, "smtp": 25}
CLUSTER_HOST = re.compile(r"(?<![\w.-])((?:[a-z0-9-]+\.)?[a-z0-9-]+\.[a-z0-9-]+\.svc(?:\.cluster\.local)?)(?::(\d+))?")
# Arguments that name an address for links, not a peer the program connects to: Prometheus' own
# URL, and the Thanos Query UI the Ruler's alerts link to (cmd/thanos/rule.go: the alerts'
# GeneratorURL and the rules UI, never dialled).
ANNOUNCING_FLAGS = ("--web.external-url=", "--alert.query-url=")


@dataclass(frozen=True)
class Pod:
    workload: str  # kind/name
    name: str
    namespace: str
    labels: tuple  # sorted (key, value) pairs
    ip: str
    host_network: bool
    ports: tuple  # (name, number, protocol) of every container port
    template: dict = field(compare=False, hash=False, repr=False)

    @property
    def app(self) -> str:
        return dict(self.labels).get("app.kubernetes.io/name", self.name)


@dataclass(frozen=True)
class Peer:
    """One end of a flow: a rendered pod, or something outside the stack's namespaces."""

    pod: Optional[Pod] = None
    namespace: Optional[str] = None  # a pod of another namespace (labels unknown)
    ip: str = "127.0.200.1"  # an address outside the cluster (receivers, probes, the API server)

    def label(self) -> str:
        if self.pod:
            return f"{self.pod.namespace}/{self.pod.app}"
        return f"ns {self.namespace}" if self.namespace else f"outside ({self.ip})"


@dataclass(frozen=True)
class Flow:
    source: Peer
    destination: Peer
    port: int
    protocol: str = "TCP"
    why: str = ""

    @property
    def key(self) -> tuple:
        return (self.source.label(), self.destination.label(), self.port, self.protocol)

    def describe(self) -> str:
        return f"{self.source.label()} -> {self.destination.label()}:{self.port}/{self.protocol} ({self.why})"


class Cluster:
    """The rendered pods, Services and namespaces of one stack, with a loopback address per pod."""

    def __init__(self, objects: list[dict]):
        self.objects = objects
        self.namespaces = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Namespace"}
        self.services = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                         for o in objects if o["kind"] == "Service"}
        self.config = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
                       for o in objects if o["kind"] in ("ConfigMap", "Secret")}
        self.pods: list[Pod] = []
        for obj in (o for o in objects if o["kind"] in WORKLOAD_KINDS):
            template = obj["spec"]["template"] if obj["kind"] != "CronJob" else \
                obj["spec"]["jobTemplate"]["spec"]["template"]
            spec = template["spec"]
            host_network = bool(spec.get("hostNetwork"))
            ports = tuple((p.get("name", ""), p["containerPort"], p.get("protocol", "TCP"))
                          for c in spec["containers"] for p in c.get("ports", []))
            # Two replicas where there are several: replicas reach each other over the pod network.
            replicas = 2 if obj["spec"].get("replicas", 1) > 1 or obj["kind"] == "DaemonSet" else 1
            for r in range(replicas):
                i = len(self.pods)
                self.pods.append(Pod(f"{obj['kind']}/{obj['metadata']['name']}", f"{obj['metadata']['name']}-{r}",
                                     obj["metadata"]["namespace"], tuple(sorted(template["metadata"]["labels"].items())),
                                     f"127.0.9.{1 + r}" if host_network else f"127.0.{1 + i // 250}.{1 + i % 250}",
                                     host_network, ports, template))

    def namespace_labels(self, name: str) -> dict:
        ns = self.namespaces.get(name)
        labels = dict(ns["metadata"].get("labels", {})) if ns else {}
        labels["kubernetes.io/metadata.name"] = name  # set by the API server on every namespace
        return labels

    def pod_by_ip(self, ip: str) -> list[Pod]:
        return [p for p in self.pods if p.ip == ip]

    def selected(self, namespace: str, selector: dict) -> list[Pod]:
        return [p for p in self.pods if p.namespace == namespace
                and all(dict(p.labels).get(k) == v for k, v in selector.items())]

    def resolve(self, host: str, port: Optional[int], namespace: Optional[str] = None) -> list[tuple[Pod, int, str]]:
        """(pod, container port, protocol) behind a cluster DNS name and Service port; [] when the
        name is not one of the rendered Services. A pod of ``namespace`` also reaches a Service by
        its short name (``svc``, ``svc.namespace``): its resolver's search path is
        ``<namespace>.svc.cluster.local svc.cluster.local cluster.local``."""
        parts = host.split(".")
        if "svc" not in parts:
            if namespace is None or len(parts) > 2:
                return []
            searched = [f"{host}.{namespace}.svc"] + ([f"{host}.svc"] if len(parts) == 2 else [])
            return next((found for name in searched if (found := self.resolve(name, port))), [])
        head = parts[:parts.index("svc")]
        pod_name = None
        if len(head) == 3:
            pod_name, service, namespace = head
        elif len(head) == 2:
            service, namespace = head
        else:
            return []
        svc = self.services.get((namespace, service))
        if svc is None:
            return []
        found = []
        for sp in svc["spec"]["ports"]:
            if port is not None and sp["port"] != port:
                continue
            for pod in self.selected(namespace, svc["spec"]["selector"]):
                if pod_name and pod_name.rsplit("-", 1)[0] != pod.name.rsplit("-", 1)[0]:
                    continue  # a StatefulSet pod's own name: any rendered replica stands for it
                target = sp.get("targetPort", sp["port"])
                for name, number, protocol in pod.ports:
                    if (name == target or number == target) and protocol == sp.get("protocol", "TCP"):
                        found.append((pod, number, protocol))
        return found

    def mounted_text(self, pod: Pod) -> list[str]:
        """The plain text a pod reads: arguments, commands, environment values, mounted ConfigMaps and
        the Secrets it mounts or reads variables from (their values are the render's placeholders)."""
        spec = pod.template["spec"]
        texts = []
        for container in spec["containers"] + spec.get("initContainers", []):
            texts += [a for a in container.get("args", []) + container.get("command", [])
                      if not a.startswith(ANNOUNCING_FLAGS)]
            for env in container.get("env", []):
                if "value" in env:
                    texts.append(env["value"])
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = self.config.get(("Secret", pod.namespace, ref["name"]), {})
                    texts.append(str(secret.get("stringData", {}).get(ref["key"], "")))
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                cm = self.config.get(("ConfigMap", pod.namespace, volume["configMap"]["name"]), {})
                texts += [str(v) for v in cm.get("data", {}).values()]
            if "secret" in volume:
                secret = self.config.get(("Secret", pod.namespace, volume["secret"]["secretName"]), {})
                texts += [str(v) for v in secret.get("stringData", {}).values()]
        return texts


# --------------------------------------------------------------------------- what the stack needs

def _external_port(url_or_hostport: str) -> Optional[int]:
    if "://" in url_or_hostport:
        parsed = urlparse(url_or_hostport)
        return parsed.port or SCHEME_PORTS.get(parsed.scheme)
    match = re.fullmatch(r"\[?[^\]\s]+\]?:(\d+)", url_or_hostport)
    return int(match.group(1)) if match else None


def _namespace_of(host: str) -> Optional[str]:
    parts = host.split(".")
    return parts[parts.index("svc") - 1] if "svc" in parts and parts.index("svc") >= 2 else None


def _outside(host: str) -> Peer:
    """A host outside the stack: a pod of another namespace when the name is one, else an address."""
    parts = host.split(".")
    if "svc" in parts and len(parts[:parts.index("svc")]) >= 2:
        return Peer(namespace=parts[parts.index("svc") - 1])
    return Peer(ip="127.0.200.1")


def address_flows(cluster: Cluster) -> list[Flow]:
    """Each in-cluster address a workload's arguments, environment or mounted files name."""
    flows = []
    for pod in cluster.pods:
        for text in cluster.mounted_text(pod):
            if "scrape_configs:" in text:
                continue  # prometheus.yml: scrape_flows reads it (its probe targets are the exporter's)
            for match in CLUSTER_HOST.finditer(text):
                host, port = match.group(1), match.group(2)
                scheme = re.search(r"(\w+)://$", text[max(0, match.start() - 12):match.start()])
                number = int(port) if port else (SCHEME_PORTS.get(scheme.group(1)) if scheme else None)
                if number is None and "seed_hosts" in text:
                    number = 9300  # Elasticsearch's transport port, the default of a seed host without one
                targets = cluster.resolve(host, number)
                for dest, container_port, protocol in targets:
                    flows.append(Flow(Peer(pod), Peer(dest), container_port, protocol, f"{host}:{number}"))
                if not targets and number is not None and _namespace_of(host) not in cluster.namespaces:
                    flows.append(Flow(Peer(pod), _outside(host), number, "TCP", f"{host}:{number}"))
    return flows


def peer_flows(cluster: Cluster) -> list[Flow]:
    """Alertmanager gossip: every --cluster.peer, on TCP and UDP."""
    flows = []
    for pod in cluster.pods:
        for container in pod.template["spec"]["containers"]:
            for arg in container.get("args", []):
                if arg.startswith("--cluster.peer="):
                    host, port = arg.split("=", 1)[1].rsplit(":", 1)
                    for dest, number, _ in cluster.resolve(host, None):
                        if number == int(port):
                            flows += [Flow(Peer(pod), Peer(dest), number, proto, arg) for proto in ("TCP", "UDP")]
    return flows


def ingress_flows(cluster: Cluster, controller_namespace: str) -> list[Flow]:
    flows = []
    for ing in (o for o in cluster.objects if o["kind"] == "Ingress"):
        namespace = ing["metadata"]["namespace"]
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = cluster.services[(namespace, backend["name"])]
                port = next(p for p in svc["spec"]["ports"]
                            if p.get("name") == backend["port"].get("name") or p["port"] == backend["port"].get("number"))
                for dest, number, protocol in cluster.resolve(f"{backend['name']}.{namespace}.svc", port["port"]):
                    flows.append(Flow(Peer(namespace=controller_namespace), Peer(dest), number, protocol,
                                      f"Ingress {ing['metadata']['name']}"))
    return flows


def otlp_flows(cluster: Cluster) -> list[Flow]:
    """The application sends spans to the OTLP ports of the gateway (or of Jaeger without one)."""
    flows = []
    for pod in cluster.pods:
        if pod.app in ("otel-gateway",) or (pod.app == "jaeger" and not any(p.app == "otel-gateway" for p in cluster.pods)):
            for name, number, protocol in pod.ports:
                if name.startswith("otlp"):
                    flows.append(Flow(Peer(namespace=APP_NAMESPACE), Peer(pod), number, protocol, f"OTLP {name}"))
    return flows


def alertmanager_receiver_flows(cluster: Cluster) -> list[Flow]:
    """Receivers outside the stack, from alertmanager.yml and the credential files it names."""
    flows = []
    for pod in (p for p in cluster.pods if p.app == "alertmanager"):
        files = {}
        for volume in pod.template["spec"]["volumes"]:
            source = volume.get("configMap", {}).get("name") or volume.get("secret", {}).get("secretName")
            obj = cluster.config.get(("ConfigMap" if "configMap" in volume else "Secret", pod.namespace, source), {})
            mount = next((m["mountPath"] for c in pod.template["spec"]["containers"] for m in c["volumeMounts"]
                          if m["name"] == volume["name"]), None)
            for key, value in (obj.get("data") or obj.get("stringData") or {}).items():
                files[f"{mount}/{key}"] = str(value)
        config = yaml.safe_load(next(v for k, v in files.items() if k.endswith("/alertmanager.yml")))
        addresses = []

        def walk(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in ("url", "api_url", "smarthost", "smtp_smarthost", "slack_api_url") and isinstance(value, str):
                        addresses.append(value)
                    elif key in ("url_file", "api_url_file") and value in files:
                        addresses.append(files[value].strip())
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(config)
        for address in addresses:
            host = urlparse(address).hostname if "://" in address else address.rsplit(":", 1)[0]
            if cluster.resolve(host, None, pod.namespace):
                continue  # in-cluster (the DingTalk relay): found with the other addresses
            port = _external_port(address)
            if port:
                flows.append(Flow(Peer(pod), _outside(host), port, "TCP", f"receiver {host}:{port}"))
    return flows


def relay_flows(cluster: Cluster) -> list[Flow]:
    """The DingTalk relay posts to the robot URLs of its config."""
    flows = []
    for pod in (p for p in cluster.pods if p.app == "dingtalk-relay"):
        for text in cluster.mounted_text(pod):
            for url in re.findall(r"https?://[^\s\"']+", text):
                host = urlparse(url).hostname
                if not cluster.resolve(host, None, pod.namespace) and host not in ("localhost", "127.0.0.1"):
                    flows.append(Flow(Peer(pod), _outside(host), _external_port(url), "TCP", f"robot {host}"))
    return flows


def url_file_flows(cluster: Cluster) -> list[Flow]:
    """A mounted Secret file that holds one http(s) URL outside the cluster (the report's webhook, as
    Alertmanager's url_file receivers hold theirs): the workload posts to it."""
    flows = []
    for pod in cluster.pods:
        for volume in pod.template["spec"].get("volumes", []):
            secret = cluster.config.get(("Secret", pod.namespace, volume.get("secret", {}).get("secretName")), {})
            for key, value in (secret.get("stringData") or {}).items():
                value = str(value)
                if not re.fullmatch(r"https?://\S+", value.strip()):
                    continue
                host = urlparse(value.strip()).hostname
                loopback = host in ("localhost", "::1") or (host or "").startswith("127.")  # the pod itself
                if host and not loopback and not cluster.resolve(host, None, pod.namespace) \
                        and not CLUSTER_HOST.search(host):
                    flows.append(Flow(Peer(pod), _outside(host), _external_port(value.strip()), "TCP",
                                      f"URL file {key} {host}"))
    return flows


def exporter_connection_flows(cluster: Cluster) -> list[Flow]:
    """The database exporters reach the server of their connection string."""
    flows = []
    for pod in cluster.pods:
        for text in cluster.mounted_text(pod):
            match = re.fullmatch(r"(postgres(?:ql)?|redis)://[^@/]*@?([^:/?]+):(\d+).*", text.strip())
            if match:
                flows.append(Flow(Peer(pod), _outside(match.group(2)), int(match.group(3)), "TCP",
                                  f"{match.group(1)} server"))
    return flows


class FakeApiServer:
    """A loopback Kubernetes API that lists and watches the rendered pods (and empty lists of
    everything else), enough for Prometheus' Kubernetes discovery: a list, or a watch that sends
    the initial events and the bookmark that ends them."""

    def __init__(self, pods: list[dict]):
        self.pods = pods
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                query = parse_qs(url.query)
                outer.requests.append(self.path)
                parts = url.path.strip("/").split("/")
                namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
                resource = parts[-1]
                items = [p for p in outer.pods if resource == "pods" and namespace in (None, p["metadata"]["namespace"])]
                if query.get("watch") in (["true"], ["1"]):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        if query.get("sendInitialEvents") == ["true"]:
                            for item in items:
                                self._chunk({"type": "ADDED", "object": item})
                            self._chunk({"type": "BOOKMARK", "object": {
                                "kind": "Pod", "apiVersion": "v1", "metadata": {
                                    "resourceVersion": "1", "annotations": {"k8s.io/initial-events-end": "true"}}}})
                        time.sleep(min(float(query.get("timeoutSeconds", ["5"])[0]), 5))
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass
                    return
                body = json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                   "items": items}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, obj):
                data = (json.dumps(obj) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def api_pods(cluster: Cluster) -> list[dict]:
    pods = []
    for i, pod in enumerate(cluster.pods):
        spec = copy.deepcopy(pod.template["spec"])
        spec["nodeName"] = NODE_NAME
        pods.append({"kind": "Pod", "apiVersion": "v1",
                     "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": f"uid-{i}",
                                  "resourceVersion": "1", "labels": dict(pod.labels),
                                  "annotations": pod.template["metadata"].get("annotations", {})},
                     "spec": spec,
                     "status": {"phase": "Running", "podIP": pod.ip, "hostIP": NODE_IP,
                                "conditions": [{"type": "Ready", "status": "True"}]}})
    return pods


def scrape_flows(cluster: Cluster, prometheus_yml: str, promtool: str, timeout: str = "1s") -> list[Flow]:
    """Every target Prometheus keeps, from its own discovery and relabelling (see the module doc)."""
    doc = yaml.safe_load(prometheus_yml)
    prometheus = [p for p in cluster.pods if p.app == "prometheus"]
    flows = []
    with FakeApiServer(api_pods(cluster)) as api, tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for job in doc["scrape_configs"]:
            sd = job.get("kubernetes_sd_configs", [])
            if not sd or any(c["role"] != "pod" for c in sd):
                continue  # nodes, the API server and endpoints are outside the namespace: Prometheus' egress
            one = copy.deepcopy(job)
            for c in one["kubernetes_sd_configs"]:
                c["api_server"] = api.url
            one.pop("authorization", None)
            one.pop("tls_config", None)
            path = Path(tmp) / f"{job['job_name']}.yml"
            path.write_text(yaml.safe_dump({"scrape_configs": [one]}))
            jobs.append((job["job_name"], path))

        def discover(item):
            name, path = item
            # promtool reports what discovery found within its timeout: a busy machine gets a second,
            # longer chance before a job counts as finding no pod at all.
            for wait in (timeout, "10s"):
                proc = subprocess.run([promtool, "check", "service-discovery", f"--timeout={wait}", str(path), name],
                                      capture_output=True, text=True, timeout=60)
                if proc.returncode != 0:
                    raise AssertionError(f"promtool check service-discovery {name}: {proc.stderr[-2000:]}")
                found = json.loads(proc.stdout or "[]")
                if found:
                    break
            return name, found

        with ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
            results = list(pool.map(discover, jobs))
        for name, targets in results:
            job = next(j for j in doc["scrape_configs"] if j["job_name"] == name)
            confined = all(c.get("namespaces") for c in job["kubernetes_sd_configs"])
            # A scrape shard's share of a hashed job (prometheus.shards) may be none of the rendered pods.
            hashed = any(r.get("action") == "hashmod" for r in job["relabel_configs"])
            if confined and not hashed and not any(t["labels"].get("__address__") for t in targets):
                # A job of the stack's own pods that keeps none: wrong namespaces, labels or port names.
                raise AssertionError(f"scrape job {name} keeps no target among the rendered pods")
            for target in targets:
                address = target["labels"].get("__address__")
                if not address:
                    continue  # dropped by relabelling
                ip, port = address.rsplit(":", 1)
                for dest in cluster.pod_by_ip(ip):
                    for source in prometheus:
                        flows.append(Flow(Peer(source), Peer(dest), int(port), "TCP", f"scrape job {name}"))
        for job in doc["scrape_configs"]:
            for group in job.get("static_configs", []):
                for target in group["targets"]:
                    flows += _static_scrape(cluster, prometheus, job, target)
        for am in doc.get("alerting", {}).get("alertmanagers", []):
            for group in am.get("static_configs", []):
                for target in group["targets"]:
                    host, port = target.rsplit(":", 1)
                    for dest, number, protocol in cluster.resolve(host, int(port)):
                        flows += [Flow(Peer(s), Peer(dest), number, protocol, "alerting") for s in prometheus]
        flows += [Flow(Peer(s), Peer(ip=NODE_IP), 10250, "TCP", "kubelet and cAdvisor") for s in prometheus]
        assert api.requests, "Prometheus' discovery never asked the API server"
    return flows


def _static_scrape(cluster: Cluster, prometheus: list[Pod], job: dict, target: str) -> list[Flow]:
    """A static target, or a probe: the address a relabelling writes into __address__ is what is
    scraped, the original target is what the blackbox exporter then probes."""
    address = target
    for rule in job.get("relabel_configs", []):
        if rule.get("target_label") == "__address__" and "source_labels" not in rule:
            address = rule["replacement"]
    host, port = address.rsplit(":", 1)
    flows = [Flow(Peer(s), Peer(dest), number, protocol, f"job {job['job_name']}")
             for dest, number, protocol in cluster.resolve(host, int(port)) for s in prometheus]
    if address != target:
        module = job.get("params", {}).get("module", [""])[0]
        exporters = {p for p, _, _ in cluster.resolve(host, int(port))}
        probe_host = urlparse(target).hostname if "://" in target else target.rsplit(":", 1)[0]
        probe_port = _external_port(target)
        if probe_port and not module.startswith("icmp"):
            for exporter in exporters:
                in_cluster = cluster.resolve(probe_host, probe_port, exporter.namespace)
                if in_cluster:
                    flows += [Flow(Peer(exporter), Peer(dest), number, protocol, f"probe {target}")
                              for dest, number, protocol in in_cluster]
                else:
                    flows.append(Flow(Peer(exporter), _outside(probe_host), probe_port, "TCP", f"probe {target}"))
    return flows


def needed_flows(cluster: Cluster, prometheus_yml: str, promtool: str, controller_namespace: str) -> list[Flow]:
    flows = (scrape_flows(cluster, prometheus_yml, promtool) + address_flows(cluster) + peer_flows(cluster)
             + ingress_flows(cluster, controller_namespace) + otlp_flows(cluster)
             + alertmanager_receiver_flows(cluster) + relay_flows(cluster) + exporter_connection_flows(cluster)
             + url_file_flows(cluster))
    # A pod's own address is loopback to it: no policy stands between a process and itself.
    return [f for f in flows if not (f.source.pod and f.source.pod == f.destination.pod)]


def unneeded_flows(cluster: Cluster, needed: Iterable[Flow], namespaces: Iterable[str]) -> list[Flow]:
    """Every pod pair of the stack's namespaces on every container port of the destination (both
    protocols), minus what is needed: all of it must be denied."""
    namespaces = set(namespaces)
    wanted = {f.key for f in needed}
    pods = [p for p in cluster.pods if p.namespace in namespaces and not p.host_network]
    # Replicas share labels, so one stands for all, except towards its own siblings.
    first = {}
    for p in pods:
        first.setdefault(p.workload, p)
    flows = []
    for source in pods:
        for dest in pods:
            if source == dest:
                continue
            if source.workload != dest.workload and (source is not first[source.workload]
                                                     or dest is not first[dest.workload]):
                continue
            for name, number, protocol in dest.ports:
                for proto in {protocol, "UDP" if protocol == "TCP" else "TCP"}:
                    flow = Flow(Peer(source), Peer(dest), number, proto, f"container port {name}")
                    if flow.key not in wanted:
                        flows.append(flow)
    return flows


# --------------------------------------------------------------------------- the analyzer

def _peer_json(cluster: Cluster, peer: Peer) -> dict:
    if peer.pod and not peer.pod.host_network:
        return {"Internal": {"PodLabels": dict(peer.pod.labels), "Namespace": peer.pod.namespace,
                             "NamespaceLabels": cluster.namespace_labels(peer.pod.namespace)}, "IP": peer.pod.ip}
    if peer.namespace:
        return {"Internal": {"PodLabels": {"app": "outside-the-stack"}, "Namespace": peer.namespace,
                             "NamespaceLabels": cluster.namespace_labels(peer.namespace)}, "IP": "127.0.201.1"}
    # hostNetwork pods and addresses outside the cluster: no pod selector reaches them.
    return {"Internal": None, "IP": peer.pod.ip if peer.pod else peer.ip}


def _port_name(flow: Flow) -> str:
    if flow.destination.pod:
        for name, number, protocol in flow.destination.pod.ports:
            if number == flow.port and protocol == flow.protocol:
                return name
    return ""


def one_direction(policies: list[dict], direction: str) -> list[dict]:
    """The policies' rules of one direction only; the other direction then allows everything, so
    the analyzer's verdict is that direction's."""
    kept = []
    for policy in policies:
        types = policy["spec"].get("policyTypes", ["Ingress"])
        if direction not in types:
            continue
        spec = {k: v for k, v in policy["spec"].items() if k not in ("ingress", "egress", "policyTypes")}
        spec["policyTypes"] = [direction]
        key = direction.lower()
        if key in policy["spec"]:
            spec[key] = policy["spec"][key]
        kept.append({**policy, "spec": spec})
    return kept


def analyze(cyclonus: str, cluster: Cluster, policies: list[dict], flows: list[Flow]) -> list[tuple[bool, bool]]:
    """(allowed in at the destination, allowed out at the source) for each flow, from cyclonus."""
    traffic = [{"Source": _peer_json(cluster, f.source), "Destination": _peer_json(cluster, f.destination),
                "Protocol": f.protocol, "ResolvedPort": f.port, "ResolvedPortName": _port_name(f)} for f in flows]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "traffic.json").write_text(json.dumps(traffic))

        def ask(direction: str) -> list[bool]:
            pdir = Path(tmp) / direction
            pdir.mkdir()
            for i, policy in enumerate(one_direction(policies, direction)):
                (pdir / f"{i:03d}.yaml").write_text(yaml.safe_dump(policy))
            if not any(pdir.iterdir()):
                return [True] * len(flows)  # no policy of this direction: nothing is isolated
            proc = subprocess.run([cyclonus, "analyze", "--mode", "query-traffic", "--traffic-path",
                                   str(Path(tmp) / "traffic.json"), "--policy-path", str(pdir)],
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, f"cyclonus failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            answers = re.findall(r"\|\s*IS ALLOWED\?\s*\|\s*(TRUE|FALSE)\s*\|", proc.stdout)
            assert len(answers) == len(flows), f"cyclonus answered {len(answers)} of {len(flows)} flows"
            return [a == "TRUE" for a in answers]

        with ThreadPoolExecutor(max_workers=2) as pool:
            inside, outside = pool.map(ask, ("Ingress", "Egress"))
    return list(zip(inside, outside))
