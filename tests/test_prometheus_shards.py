"""Scrape sharding (prometheus.shards): settings, the rendered objects, and the real Prometheus'
relabelling deciding which shard scrapes which target.

The split itself is checked with the pinned Prometheus: one process runs every job of each of
prod's three shard configs and of prod's unsharded config side by side (names prefixed), pod
discovery pointed at the loopback stand-in of the Kubernetes API of tests/test_pod_discovery.py
(the stack's own rendered pod templates, one pod per StatefulSet replica and one per DaemonSet per
node, and a fleet of annotated application pods), node and EndpointSlice discovery replaced by
static targets carrying the meta labels those would give. Its target list then says, per job,
which shard keeps which target; each shard's relabelling is what it would run in the cluster.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections import defaultdict

import pytest
import yaml

from components.configs.prometheus import FLEET_JOBS, SHARD_LABEL
from components.settings.models import MAX_SHARDS
from tests import discovery_run
from tests.conftest import require_tool
from tests.test_pod_discovery import KubernetesStandIn, WAIT, app_pod
from tests.test_pod_inputs import template_of, workloads
from tests.test_settings import fail_with
from tools import offline

SHARDS = 3
NODES = 40  # per-node jobs: enough nodes that every shard gets some (each misses all with (2/3)^40)
APPS = 90
SERVICES = 40


@pytest.fixture(scope="module")
def single():
    return offline.run("prod")


@pytest.fixture(scope="module")
def sharded():
    return offline.run("prod", {"prometheus": {"shards": SHARDS}})


def prometheus_yml(result, shard: int) -> dict:
    name = "prometheus-config" if shard == 0 else f"prometheus-shard-{shard}-config"
    return yaml.safe_load(result.one("ConfigMap", name)["data"]["prometheus.yml"])


# -- settings

def test_more_than_one_shard_needs_thanos():
    message = fail_with({"prometheus": {"shards": 2}, "thanos": {"enabled": False}}, stack="prod")
    assert "prometheus.shards = 2 needs thanos.enabled = true" in message


def test_a_docker_host_has_one_shard():
    message = fail_with({"prometheus": {"shards": 2}}, stack="dev")
    assert "prometheus.shards = 2 is not valid on platform docker: expected 1" in message


def test_the_shard_count_is_bounded():
    message = fail_with({"prometheus": {"shards": MAX_SHARDS + 1}}, stack="prod")
    assert f"prometheus.shards = {MAX_SHARDS + 1} is not valid: expected a whole number from 1 to {MAX_SHARDS}" in message


def test_the_report_is_refused_beside_shards():
    message = fail_with({"prometheus": {"shards": 2}, "report": {"enabled": True, "image": "r/report:1"}},
                        stack="prod")
    assert "report.enabled = true is not valid with prometheus.shards = 2" in message


# -- the rendered objects

def test_one_shard_renders_what_the_stack_rendered_before(single):
    explicit = offline.run("prod", {"prometheus": {"shards": 1}})

    def objects(result) -> list[str]:
        return sorted(json.dumps(o, sort_keys=True) for o in result.kubernetes_objects())

    assert objects(explicit) == objects(single)
    config = prometheus_yml(single, 0)
    assert SHARD_LABEL not in config["global"]["external_labels"]
    assert not any(r.get("action") == "hashmod" for j in config["scrape_configs"] for r in j["relabel_configs"])
    assert not single.find("StatefulSet", "thanos-rule")


def test_each_shard_is_an_ha_pair_of_its_own(sharded, single):
    before = single.one("StatefulSet", "prometheus")
    names = ["prometheus"] + [f"prometheus-shard-{i}" for i in range(1, SHARDS)]
    selectors = []
    for i, name in enumerate(names):
        statefulset = sharded.one("StatefulSet", name)
        assert statefulset["spec"]["replicas"] == before["spec"]["replicas"] == 2
        selector = statefulset["spec"]["selector"]["matchLabels"]
        selectors.append(tuple(sorted(selector.items())))
        # Every shard is "prometheus" to the flows and jobs that name it.
        assert selector["app.kubernetes.io/name"] == "prometheus"
        assert sharded.one("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == selector
        assert sharded.one("NetworkPolicy", name)["spec"]["podSelector"]["matchLabels"] == selector
        pod = statefulset["spec"]["template"]["spec"]
        assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0][
            "podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
        assert [c["name"] for c in pod["containers"]] == [c["name"] for c in before["spec"]["template"]["spec"]["containers"]]
        config = prometheus_yml(sharded, i)
        assert config["global"]["external_labels"][SHARD_LABEL] == str(i)
        # The rules run in Thanos Ruler: no shard loads one.
        assert config["rule_files"] == []
        assert not sharded.find("ConfigMap", f"{name}-rules")
    assert len(set(selectors)) == SHARDS
    # Shard 0 is the Prometheus it was: same object names, same policy but for the Ruler.
    assert sharded.one("NetworkPolicy", "prometheus")["spec"]["egress"] == \
        single.one("NetworkPolicy", "prometheus")["spec"]["egress"]


def query_args(result, name: str = "thanos-query") -> list[str]:
    return result.one("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("query", ["thanos-query", "thanos-query-rule"])
def test_thanos_query_dials_every_shard_and_the_ruler(sharded, query):
    """Grafana's Query and the Rulers' each: every shard's pair, the store gateway and the Rulers
    (the rules read recorded series through theirs)."""
    endpoints = yaml.safe_load(sharded.one("ConfigMap", f"{query}-endpoints")["data"]["endpoints.yaml"])
    addresses = {e["address"] for e in endpoints["endpoints"]}
    for i in range(SHARDS):
        name = "prometheus" if i == 0 else f"prometheus-shard-{i}"
        for replica in (0, 1):
            assert f"{name}-{replica}.{name}-headless.monitoring.svc:10901" in addresses
    assert {f"thanos-rule-{r}.thanos-rule-headless.monitoring.svc:10901" for r in (0, 1)} <= addresses
    assert "thanos-store.monitoring.svc:10901" in addresses
    args = query_args(sharded, query)
    assert {"--query.replica-label=replica", f"--query.replica-label={SHARD_LABEL}"} <= set(args)


def store_timeout(args: list[str]) -> tuple[str, float]:
    from components.settings.types import duration_seconds
    [flag] = [a for a in args if a.startswith("--store.response-timeout")]
    return flag, duration_seconds(flag.split("=", 1)[1])


def test_the_rulers_query_is_grafanas_but_for_the_store_timeout(sharded, single):
    """The store timeout the rules need is the Rulers' Query's only. Grafana's Query, sharded or
    not, waits longer for a store slow between frames, but gives up a silent store before Grafana
    gives up the panel: a hung store holds no panel's query in Query for --query.timeout."""
    from components.configs.grafana import DATA_PROXY_TIMEOUT_SECONDS
    grafanas, rulers = query_args(sharded), query_args(sharded, "thanos-query-rule")
    grafana_flag, grafana_silence = store_timeout(grafanas)
    rule_flag, rule_silence = store_timeout(rulers)
    assert rule_silence < grafana_silence <= DATA_PROXY_TIMEOUT_SECONDS - 10, (rule_silence, grafana_silence)
    assert [a for a in rulers if a != rule_flag] == [a for a in grafanas if a != grafana_flag]
    ini = sharded.one("ConfigMap", "grafana-config")["data"]["grafana.ini"]
    assert f"[dataproxy]\ntimeout = {DATA_PROXY_TIMEOUT_SECONDS}\n" in ini, ini
    assert sharded.one("ConfigMap", "thanos-query-rule-endpoints")["data"] == \
        sharded.one("ConfigMap", "thanos-query-endpoints")["data"]
    assert query_args(single) == [a for a in grafanas if a != f"--query.replica-label={SHARD_LABEL}"]
    assert not single.find("Deployment", "thanos-query-rule")
    assert sharded.one("PodDisruptionBudget", "thanos-query-rule")


def test_the_ruler_evaluates_what_prometheus_did(sharded, single):
    assert sharded.one("ConfigMap", "thanos-rule-rules")["data"] == single.one("ConfigMap", "prometheus-rules")["data"]
    rule = sharded.one("StatefulSet", "thanos-rule")
    [container] = [c for c in rule["spec"]["template"]["spec"]["containers"] if c["name"] == "thanos-rule"]
    args = container["args"]
    alertmanagers = single.one("StatefulSet", "alertmanager")["spec"]["replicas"]
    assert sum(a.startswith("--alertmanagers.url=") for a in args) == alertmanagers
    assert "--alert.label-drop=replica" in args
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    rule_file = next(a.split("=", 1)[1] for a in args if a.startswith("--rule-file="))
    assert rule_file.rsplit("/", 1)[0] in mounts


def test_a_store_that_hangs_holds_no_rule_group_beyond_half_its_alerts_validity(sharded, single):
    """Thanos Query gives up a store that sends nothing for --store.response-timeout, and the Ruler
    a Query that does not answer for longer than that: with every query of any rendered group
    hung, one evaluation of it still ends within half the validity of the alerts it sends
    (4 x the larger of its interval and the Ruler's --resend-delay); tests/test_thanos_rule_e2e.py
    holds both with the real programs."""
    from components.settings.types import duration_seconds
    query = query_args(sharded, "thanos-query-rule")
    [silence] = [duration_seconds(a.split("=", 1)[1]) for a in query if a.startswith("--store.response-timeout=")]
    rule = sharded.one("StatefulSet", "thanos-rule")
    [container] = [c for c in rule["spec"]["template"]["spec"]["containers"] if c["name"] == "thanos-rule"]
    flags = dict(a.split("=", 1) for a in container["args"] if a.startswith("--") and "=" in a)
    resend = duration_seconds(flags["--resend-delay"])
    groups = [g for text in sharded.one("ConfigMap", "thanos-rule-rules")["data"].values()
              for g in yaml.safe_load(text)["groups"]]
    for group in groups:
        validity = 4 * max(duration_seconds(group.get("interval", flags["--eval-interval"])), resend)
        assert len(group["rules"]) * silence <= validity / 2, (group["name"], len(group["rules"]), silence)
    assert silence >= 1
    # The Ruler's own deadline, for a Query that does not answer, lets Query's answer come first.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    path = flags["--query.config-file"]
    assert path.rsplit("/", 1)[0] in mounts and "--query" not in flags
    [entry] = yaml.safe_load(sharded.one("ConfigMap", "thanos-rule-query")["data"][path.rsplit("/", 1)[1]])
    assert entry["static_configs"] == ["thanos-query-rule.monitoring.svc:10902"] and entry["scheme"] == "http"
    transport = entry["http_config"]["transport_config"]
    assert set(transport) == {"dialer_timeout", "response_header_timeout"}
    assert transport["response_header_timeout"] / 1e9 > silence and transport["dialer_timeout"] > 0
    # Grafana's Query has its own, longer one, sharded or not.
    from components.metrics.thanos import GRAFANA_STORE_SILENCE_SECONDS
    for result in (sharded, single):
        assert store_timeout(query_args(result))[1] == GRAFANA_STORE_SILENCE_SECONDS > silence


def test_a_group_too_large_for_the_store_timeout_is_refused():
    """0 s would switch Query's store timeout off: a group whose rules leave less than a second each
    is refused, naming it; a longer interval gives each rule more."""
    from types import SimpleNamespace
    from components.metrics import thanos_rule
    settings = SimpleNamespace(prometheus=SimpleNamespace(evaluation_interval="30s"))
    group = {"name": "big", "rules": [{"record": f"r{n}", "expr": "vector(1)"} for n in range(121)]}
    with pytest.raises(ValueError, match="'big' has too many rules"):
        thanos_rule.store_silence_seconds(settings, {"big.yaml": yaml.safe_dump({"groups": [group]})})
    slower = yaml.safe_dump({"groups": [{**group, "interval": "2m"}]})
    assert thanos_rule.store_silence_seconds(settings, {"big.yaml": slower}) == 1  # 4 x 2m / 2 / 121 s


# -- the split, by the real Prometheus

def plain_http_without_discovery(job: dict) -> dict:
    """A copy of a generated job without its Kubernetes discovery and credentials, scraping plain
    HTTP: its relabelling, what is under test, stays as rendered."""
    job = copy.deepcopy(job)
    job.pop("kubernetes_sd_configs")
    for key in ("authorization", "tls_config"):
        job.pop(key, None)
    job["scheme"] = "http"
    return job


def node_targets(job: dict, prefix: str) -> dict:
    """A node-discovered job with NODES static nodes (the kubelet's port on a loopback address each)."""
    job = plain_http_without_discovery(job)
    job["static_configs"] = [{"targets": [f"127.2.0.{n + 1}:10250"],
                              "labels": {"__meta_kubernetes_node_name": f"node-{n}"}} for n in range(NODES)]
    return {**job, "job_name": f"{prefix}--{job['job_name']}"}


def endpointslice_targets(job: dict, prefix: str) -> dict:
    """An EndpointSlice-discovered job: the API server's endpoints and SERVICES annotated services."""
    job = plain_http_without_discovery(job)
    statics = [{"targets": [f"127.3.0.{n + 1}:6443"],
                "labels": {"__meta_kubernetes_namespace": "default", "__meta_kubernetes_service_name": "kubernetes",
                           "__meta_kubernetes_endpointslice_port_name": "https"}} for n in range(3)]
    statics += [{"targets": [f"127.4.0.{n + 1}:8080"],
                 "labels": {"__meta_kubernetes_namespace": "apps", "__meta_kubernetes_service_name": f"svc-{n}",
                            "__meta_kubernetes_service_annotation_prometheus_io_scrape": "true",
                            "__meta_kubernetes_service_label_app_kubernetes_io_name": f"svc-{n}",
                            "__meta_kubernetes_endpointslice_port_name": "http"}} for n in range(SERVICES)]
    job["static_configs"] = statics
    return {**job, "job_name": f"{prefix}--{job['job_name']}"}


def pod_job(job: dict, prefix: str, api_url: str) -> dict:
    job = copy.deepcopy(job)
    configs = []
    for c in job["kubernetes_sd_configs"]:
        c = {**c, "api_server": api_url}
        if "namespaces" in c:
            c["namespaces"] = {"names": ["monitoring"]}  # every stack pod stands in this one namespace
        configs.append(c)
    job["kubernetes_sd_configs"] = configs
    for key in ("authorization", "tls_config"):
        job.pop(key, None)
    return {**job, "job_name": f"{prefix}--{job['job_name']}"}


def fleet_pods(result) -> list[dict]:
    """Pods of the stack's own workloads (one per StatefulSet or Deployment replica, one per
    DaemonSet per node) and APPS annotated application pods."""
    pods = []
    for obj in workloads(result):
        if obj["kind"] in ("CronJob", "Job"):
            continue
        template = template_of(obj)
        name = obj["metadata"]["name"]
        if obj["kind"] == "DaemonSet":
            names = [(f"{name}-{n}", f"node-{n}") for n in range(NODES)]
        else:
            names = [(f"{name}-{r}", "node-0") for r in range(obj["spec"].get("replicas", 1))]
        for pod_name, node in names:
            pods.append({"metadata": {"name": pod_name, "namespace": "monitoring", "uid": f"uid-{pod_name}",
                                      "labels": template["metadata"]["labels"], "annotations": {}},
                         "spec": {**template["spec"], "nodeName": node}})
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}
    api = {"name": "api", "image": "api:1", "ports": [{"name": "http", "containerPort": 8000}]}
    pods += [app_pod(f"football-prediction-api-{n}", "apps", [api], scrape) for n in range(APPS)]
    return pods


def jobs_of(config: dict, prefix: str, api_url: str) -> list[dict]:
    jobs = []
    for job in config["scrape_configs"]:
        roles = {c["role"] for c in job.get("kubernetes_sd_configs", [])}
        if roles == {"pod"}:
            jobs.append(pod_job(job, prefix, api_url))
        elif roles == {"node"}:
            jobs.append(node_targets(job, prefix))
        elif roles == {"endpointslice"}:
            jobs.append(endpointslice_targets(job, prefix))
        else:
            assert not roles, job
            jobs.append({**job, "job_name": f"{prefix}--{job['job_name']}"})
    return jobs


@pytest.fixture(scope="module")
def split(sharded, single, tmp_path_factory):
    """{config: {job: {scrape URL: target labels}}}, config "single" or "shard<i>"."""
    root = tmp_path_factory.mktemp("shards")
    api = KubernetesStandIn(fleet_pods(sharded))
    jobs = jobs_of(prometheus_yml(single, 0), "single", api.url)
    for shard in range(SHARDS):
        jobs += jobs_of(prometheus_yml(sharded, shard), f"shard{shard}", api.url)
    (root / "prometheus.yml").write_text(yaml.safe_dump(
        {"global": {"scrape_interval": "1h", "scrape_timeout": "10s"}, "scrape_configs": jobs}))
    try:
        # Every job finds targets: the fleet is large enough for each shard to get a share.
        data = discovery_run.discovered(root / "prometheus.yml", root, {j["job_name"] for j in jobs}, WAIT)
    finally:
        api.close()
    targets: dict = defaultdict(lambda: defaultdict(dict))
    for target in data["activeTargets"]:
        config, job = target["scrapePool"].split("--", 1)
        targets[config][job][target["scrapeUrl"]] = target["labels"]
    return targets


def shards_of(targets: dict, job: str) -> list[set]:
    return [set(targets[f"shard{i}"].get(job, {})) for i in range(SHARDS)]


PER_NODE = ("node-exporter", "filebeat")  # prod's per-node component jobs (ScrapeTarget.instance_from_node)


def test_every_fleet_target_is_scraped_by_exactly_one_shard(split):
    fleet = set(FLEET_JOBS) | set(PER_NODE)
    assert fleet <= set(split["single"]), set(split["single"])
    for job in fleet:
        parts = shards_of(split, job)
        everything = set(split["single"][job])
        assert len(everything) >= NODES, (job, len(everything))
        assert set().union(*parts) == everything, job
        assert sum(len(p) for p in parts) == len(everything), f"{job}: a target is kept by two shards"
        # The split is a split: every shard has a share.
        assert all(parts), (job, [len(p) for p in parts])


def test_single_targets_are_scraped_by_shard_zero_only(split):
    pinned = set(split["single"]) - set(FLEET_JOBS) - set(PER_NODE) - {"prometheus", "thanos-sidecar"}
    assert {"kube-state-metrics", "apiserver", "alertmanager", "thanos-query"} <= pinned
    # The Ruler is a job of the sharded stack only.
    assert set(split["shard0"]["thanos-rule"]) and "thanos-rule" not in split["single"]
    for job in pinned:
        parts = shards_of(split, job)
        assert not any(parts[1:]), job
        # What the unsharded stack scrapes, and the Ruler's pods (its config reloader's) besides,
        # and the Rulers' Query, one more Query to job thanos-query.
        extra = {split["shard0"][job][url]["pod"] for url in parts[0] - set(split["single"][job])}
        allowed = {"thanos-rule-0", "thanos-rule-1"}
        if job == "thanos-query":
            allowed = {"thanos-query-rule-0", "thanos-query-rule-1"}
            assert extra == allowed, extra
        assert parts[0] >= set(split["single"][job]) and extra <= allowed, (job, extra)


def test_each_shard_watches_the_next_shards_prometheus(split):
    for job in ("prometheus", "thanos-sidecar"):
        parts = shards_of(split, job)
        every = {labels["pod"] for labels in split["single"][job].values()}
        assert len(every) == 2 * SHARDS
        assert set().union(*parts) == set(split["single"][job])
        for shard in range(SHARDS):
            watched = (shard + 1) % SHARDS
            name = "prometheus" if watched == 0 else f"prometheus-shard-{watched}"
            pods = {labels["pod"] for labels in split[f"shard{shard}"][job].values()}
            assert pods == {f"{name}-0", f"{name}-1"}, (job, shard, pods)


def rules_check(directory) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("thanos"), "tools", "rules-check", f"--rules={directory}/*.yaml"],
                          capture_output=True, text=True, timeout=120)


def test_the_ruler_accepts_every_rule_file(sharded, tmp_path):
    """The pinned Thanos reads the rendered rule files as its Ruler does (cmd/thanos/tools.go rules-check);
    a Ruler whose rule files fail to load exits (cmd/thanos/rule.go, "initialize rules failed")."""
    files = sharded.one("ConfigMap", "thanos-rule-rules")["data"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    checked = rules_check(tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check can fail: a group Thanos reads differently from Prometheus (its partial response strategy).
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.yaml").write_text(yaml.safe_dump({"groups": [
        {"name": "x", "partial_response_strategy": "sometimes", "rules": [{"record": "x:y", "expr": "vector(1)"}]}]}))
    assert rules_check(broken).returncode != 0
