"""RBAC proven with our own ServiceAccounts' tokens, against the real API server holding prod.

What Prometheus needs is read off the generated prometheus.yml: each kubernetes_sd_config's role
(and the resources Prometheus's discovery lists and watches for that role, discovery/kubernetes/
kubernetes.go at the pinned v3.16.0), in its namespaces or cluster-wide, plus what the jobs that
send the ServiceAccount token to their targets ask of the authorizer: the API server's metrics path
(a non-resource URL) and the kubelet's (nodes/metrics, pkg/kubelet/server/auth.go). What
kube-state-metrics needs is list/watch of each resource in its --resources argument, cluster-wide.

Two kinds of question are put to the server, each with the ServiceAccount's token (TokenRequest),
so authentication is real too:
- SelfSubjectAccessReview for each needed (verb, resource, namespace), and for Secrets, which no
  ServiceAccount of the stack may read, in every namespace of the stack and cluster-wide;
- SelfSubjectRulesReview in every namespace of the stack and `default`: the complete set of rules
  the RBAC authorizer grants, wildcards included, which is the sweep. Minus what every
  authenticated identity has (a ServiceAccount of a namespace of its own, bound to nothing), it must
  be exactly the need (Prometheus: plus `get` on what it lists, which reveals nothing a list does
  not), and empty for every ServiceAccount of the stack that talks to no API.
"""

from __future__ import annotations

import pytest
import yaml

from tests.kube_cluster import kube_cluster, kube_prod  # noqa: F401

# Prometheus v3.16.0 discovery/kubernetes/kubernetes.go: the informers each role starts.
SD_ROLE_RESOURCES = {
    "pod": [("", "pods")],
    "node": [("", "nodes")],
    "service": [("", "services")],
    "endpoints": [("", "endpoints"), ("", "services"), ("", "pods")],
    "endpointslice": [("discovery.k8s.io", "endpointslices"), ("", "services"), ("", "pods")],
    "ingress": [("networking.k8s.io", "ingresses")],
}
SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# Filebeat's add_kubernetes_metadata (components/logging/filebeat.py) watches pods, and the nodes
# and namespaces their metadata comes from.
FILEBEAT_NEEDS = {(group, resource, verb) for group, resource in (("", "pods"), ("", "namespaces"), ("", "nodes"))
                  for verb in ("get", "list", "watch")}
BASELINE_NAMESPACE, BASELINE_ACCOUNT = "rbac-baseline", "nobody"
SECRET_VERBS = ("get", "list", "watch")


def prometheus_needs(prometheus_yml: str) -> tuple[set, set, set]:
    """(group, resource, namespace or "") to list and watch; (group, resource/subresource) to get
    on a Node; non-resource paths to get."""
    listed, node_gets, paths = set(), set(), set()
    for job in yaml.safe_load(prometheus_yml)["scrape_configs"]:
        for sd in job.get("kubernetes_sd_configs") or []:
            namespaces = (sd.get("namespaces") or {}).get("names") or [""]
            for group, resource in SD_ROLE_RESOURCES[sd["role"]]:
                listed |= {(group, resource, ns) for ns in namespaces}
            attach = sd.get("attach_metadata") or {}
            if attach.get("node"):
                listed.add(("", "nodes", ""))
            if attach.get("namespace"):
                listed.add(("", "namespaces", ""))
        if (job.get("authorization") or {}).get("credentials_file") != SA_TOKEN:
            continue
        roles = {sd["role"] for sd in job["kubernetes_sd_configs"]}
        path = job.get("metrics_path", "/metrics")
        if roles == {"node"}:
            node_gets.add(("", "nodes/metrics"))  # the kubelet authorizes every /metrics/* path so
        else:
            paths.add(path)  # the API server's own
    return listed, node_gets, paths


def container_args(objects: list[dict], workload: str, container: str) -> list[str]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet") and obj["metadata"]["name"] == workload:
            for c in obj["spec"]["template"]["spec"]["containers"]:
                if c["name"] == container:
                    return [*c.get("command", []), *c.get("args", [])]
    raise AssertionError(f"no container {container} in {workload}")


def served_resources(cluster) -> dict[str, list[str]]:
    """Plural (subresources too) -> the API groups that serve it, from discovery."""
    served: dict[str, list[str]] = {}
    groups = [("", "/api/v1")] + [(g["name"], f"/apis/{g['preferredVersion']['groupVersion']}")
                                  for g in cluster.get("/apis")["groups"]]
    for group, path in groups:
        for resource in cluster.get(path)["resources"]:
            served.setdefault(resource["name"], []).append(group)
    return served


def access(cluster, token: str, namespace: str, verb: str, group: str, resource: str, name: str = "") -> bool:
    resource, _, subresource = resource.partition("/")
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {
        "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": resource,
                               "subresource": subresource, "name": name}}}
    return cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review,
                           token=token)[1]["status"]["allowed"]


def path_access(cluster, token: str, path: str) -> bool:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"nonResourceAttributes": {"path": path, "verb": "get"}}}
    return cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review,
                           token=token)[1]["status"]["allowed"]


def granted(cluster, token: str, namespace: str, served: dict[str, list[str]]) -> tuple[set, set, bool]:
    """(group, resource, verb) triples and (path, verb) pairs the rules review grants in a namespace,
    wildcards expanded over what discovery serves, and whether the review says it is incomplete."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
              "spec": {"namespace": namespace}}
    status = cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", review,
                             token=token)[1]["status"]
    all_verbs = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
    triples = set()
    for rule in status.get("resourceRules", []):
        for resource in (served if "*" in rule["resources"] else rule["resources"]):
            groups = served.get(resource, []) if "*" in rule.get("apiGroups", []) else rule.get("apiGroups", [])
            for group in groups:
                for verb in (all_verbs if "*" in rule["verbs"] else rule["verbs"]):
                    names = tuple(sorted(rule.get("resourceNames") or ()))
                    triples.add((group, resource, verb) + ((names,) if names else ()))
    paths = {(p, v) for rule in status.get("nonResourceRules", []) for p in rule["nonResourceURLs"]
             for v in rule["verbs"]}
    return triples, paths, status.get("incomplete", False)


@pytest.fixture(scope="module")
def rbac(kube_cluster, kube_prod, prod):
    cluster = kube_cluster
    accounts = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in kube_prod if o["kind"] == "ServiceAccount"]
    namespaces = [o["metadata"]["name"] for o in kube_prod if o["kind"] == "Namespace"]
    # The namespaces' own default ServiceAccounts: a Pod that names none runs as these.
    accounts += [(ns, "default") for ns in namespaces]
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BASELINE_NAMESPACE}}, "rbac-test")
    cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": BASELINE_ACCOUNT, "namespace": BASELINE_NAMESPACE}}, "rbac-test")
    tokens = {account: cluster.service_account_token(*account)
              for account in accounts + [(BASELINE_NAMESPACE, BASELINE_ACCOUNT)]}
    served = served_resources(cluster)
    probe_namespaces = namespaces + ["default"]
    rules = {account: {ns: granted(cluster, token, ns, served) for ns in probe_namespaces}
             for account, token in tokens.items()}
    return {"tokens": tokens, "served": served, "rules": rules, "accounts": accounts,
            "namespaces": namespaces, "probe_namespaces": probe_namespaces,
            "prometheus_yml": prod.one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]}


def beyond_baseline(rbac, account) -> dict[str, tuple[set, set]]:
    base = rbac["rules"][(BASELINE_NAMESPACE, BASELINE_ACCOUNT)]
    return {ns: (triples - base[ns][0], paths - base[ns][1])
            for ns, (triples, paths, _) in rbac["rules"][account].items()}


def account_of(rbac, name: str) -> tuple[str, str]:
    [account] = [a for a in rbac["accounts"] if a[1] == name]
    return account


def test_the_rules_reviews_are_complete(rbac):
    """An incomplete review (an authorizer that cannot list its rules) would make the sweep vacuous."""
    assert {(a, ns) for a, by_ns in rbac["rules"].items() for ns, (_, _, incomplete) in by_ns.items()
            if incomplete} == set()
    base = rbac["rules"][(BASELINE_NAMESPACE, BASELINE_ACCOUNT)]["default"]
    # What every authenticated identity may do is small and known: asking about itself, discovery,
    # and reading the public CA bundles (ClusterTrustBundles, public by design).
    assert {r for g, r, *_ in base[0]} <= {"selfsubjectaccessreviews", "selfsubjectrulesreviews",
                                           "selfsubjectreviews", "clustertrustbundles"}
    assert ("/api", "get") in base[1]


def test_prometheus_can_list_and_watch_what_its_discovery_asks_for(kube_cluster, rbac):
    cluster = kube_cluster
    token = rbac["tokens"][account_of(rbac, "prometheus")]
    listed, node_gets, paths = prometheus_needs(rbac["prometheus_yml"])
    assert {r for _, r, _ in listed} >= {"pods", "nodes", "endpointslices", "services"}
    denied = [(verb, g, r, ns) for g, r, ns in sorted(listed) for verb in ("list", "watch")
              if not access(cluster, token, ns, verb, g, r)]
    denied += [("get", g, r, "test-node") for g, r in sorted(node_gets)
               if not access(cluster, token, "", "get", g, r, "test-node")]
    denied += [("get", p) for p in sorted(paths) if not path_access(cluster, token, p)]
    assert denied == []


def test_prometheus_is_granted_exactly_its_need(rbac):
    listed, node_gets, paths = prometheus_needs(rbac["prometheus_yml"])
    need = {(g, r, v) for g, r, _ in listed for v in ("get", "list", "watch")}
    need |= {(g, r, "get") for g, r in node_gets}
    for ns, (triples, extra_paths) in beyond_baseline(rbac, account_of(rbac, "prometheus")).items():
        assert triples == need, ns
        assert extra_paths == {(p, "get") for p in paths}, ns


def kube_state_metrics_needs(rbac, objects) -> set:
    args = container_args(objects, "kube-state-metrics", "kube-state-metrics")
    [resources] = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--resources=")]
    need = set()
    for resource in resources:
        groups = rbac["served"].get(resource)
        assert groups, f"--resources names {resource!r}, which this API server does not serve"
        # kube-state-metrics reads one group per resource; more than one would need its source here.
        assert len(groups) == 1, (resource, groups)
        need |= {(groups[0], resource, verb) for verb in ("list", "watch")}
    return need


def test_kube_state_metrics_can_list_and_watch_every_resource_it_exports(kube_cluster, rbac, kube_prod):
    token = rbac["tokens"][account_of(rbac, "kube-state-metrics")]
    need = kube_state_metrics_needs(rbac, kube_prod)
    assert len(need) >= 2 * 5
    assert [t for t in sorted(need) if not access(kube_cluster, token, "", t[2], t[0], t[1])] == []


def test_kube_state_metrics_is_granted_exactly_its_need(rbac, kube_prod):
    need = kube_state_metrics_needs(rbac, kube_prod)
    for ns, (triples, paths) in beyond_baseline(rbac, account_of(rbac, "kube-state-metrics")).items():
        assert (triples, paths) == (need, set()), ns


def test_filebeat_is_granted_exactly_the_metadata_it_reads(rbac):
    for ns, (triples, paths) in beyond_baseline(rbac, account_of(rbac, "filebeat")).items():
        assert (triples, paths) == (FILEBEAT_NEEDS, set()), ns


def test_every_other_service_account_can_do_nothing(rbac):
    talkers = {account_of(rbac, name) for name in ("prometheus", "kube-state-metrics", "filebeat")}
    others = [a for a in rbac["accounts"] if a not in talkers]
    assert len(others) >= 10
    granted_beyond = {f"{ns}/{name}": {probe_ns: rules for probe_ns, rules in beyond_baseline(rbac, (ns, name)).items()
                                       if rules != (set(), set())}
                      for ns, name in others}
    assert {k: v for k, v in granted_beyond.items() if v} == {}


def test_no_service_account_can_read_secrets(kube_cluster, rbac):
    readable = [(f"{ns}/{name}", where or "*", verb) for (ns, name), token in rbac["tokens"].items()
                for where in rbac["probe_namespaces"] + [""] for verb in SECRET_VERBS
                if access(kube_cluster, token, where, verb, "", "secrets")]
    assert readable == []


def test_the_reviews_can_say_yes(kube_cluster, rbac):
    """The same questions, asked by an identity allowed everything (the admin certificate), are
    allowed: the denials above are the ServiceAccounts', not the question's."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"namespace": rbac["namespaces"][0], "verb": "get", "resource": "secrets"}}}
    assert kube_cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)[1][
        "status"]["allowed"]
    # A ServiceAccount bound to a role that grants Secrets shows up in the sweep and the probe.
    ns = BASELINE_NAMESPACE
    kube_cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                        "metadata": {"name": "secret-reader", "namespace": ns},
                        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}, "rbac-test")
    kube_cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": {"name": "secret-reader", "namespace": ns},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
                        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]}, "rbac-test")
    kube_cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": ns}},
                       "rbac-test")
    token = kube_cluster.service_account_token(ns, "reader")
    assert access(kube_cluster, token, ns, "get", "", "secrets")
    triples, _, _ = granted(kube_cluster, token, ns, rbac["served"])
    assert ("", "secrets", "get") in triples - rbac["rules"][(BASELINE_NAMESPACE, BASELINE_ACCOUNT)]["default"][0]
    # Authentication is real: a token the server did not issue is refused.
    assert kube_cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review,
                                token="not-a-token", expect=(401,))[0] == 401

