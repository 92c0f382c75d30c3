"""A change of one input rolls exactly the workloads the design says, on a real control plane.

The design (README, "Config changes without restarts where it matters"): Prometheus and
Alertmanager reload their config and rules through a config-reloader sidecar, Grafana re-reads its
dashboards, Alertmanager reads its credential files at every notification; every other ConfigMap
or Secret a pod reads at start has a checksum annotation in the pod template, so a change of its
content rolls the pods, and a Job that reads changed content runs anew under a new name.

prod is live on the API server of tests/kube_cluster.py, its controller manager running. The
program is run again with exactly one more input changed (a setting, a secret setting, or a data
file the program reads), and the new render is deployed as `pulumi up` does it: what differs from
the previous render is server-side applied, what is no longer rendered is deleted. Then the
controllers' answer is read back: the ReplicaSet each Deployment runs, the revision of each
StatefulSet and DaemonSet, the Job of each run-once service. Two expectations are held against it:
the one derived from the rendered objects (which ConfigMaps and Secrets changed, and which pods
read them only at start, as tests/test_pod_inputs.py finds them from the pod templates), and the
one each change below states in the design's words.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from components import data
from components.platform.kubernetes import CHECKSUM_PREFIX
from tests.kube_cluster import (MANAGER, KubeCluster, apply_order, controlled_by, key, kube_cluster,  # noqa: F401
                                kube_prod, list_items, object_path)
from tests.test_pod_inputs import STARTS_EVERY_RUN, start_only_inputs, template_of
from tests.test_stack import SENTINELS
from tools import offline

ROLLOUT_TIMEOUT = 60  # seconds the controllers may take to act on one deploy
ROLLED_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
INPUT_KINDS = ("ConfigMap", "Secret")


def _longer_for(text: str) -> str:
    """The first alert's `for:` one minute longer (a threshold tuned after an incident)."""
    changed = re.sub(r"(\n\s+for: )(\d+)m\n", lambda m: f"{m[1]}{int(m[2]) + 1}m\n", text, count=1)
    assert changed != text, "no `for: <n>m` to change"
    return changed


def _retitled(text: str) -> str:
    dashboard = json.loads(text)
    dashboard["title"] += " (revised)"
    return json.dumps(dashboard, indent=2) + "\n"


@dataclass(frozen=True)
class Change:
    name: str
    rolls: frozenset[str]  # the workloads the design rolls: "Kind/name" (a Job: its service's name)
    reloads: frozenset[str]  # ConfigMaps and Secrets that change while nothing rolls: "Kind/name"
    settings: dict = field(default_factory=dict)  # stack settings, merged into Pulumi.prod.yaml's
    secrets: dict = field(default_factory=dict)  # secret settings given a new value
    files: tuple = ()  # (directory attribute of components.data, file name, edit of its text)


# Applied one after another, each on top of the ones before: one input more per deploy.
CHANGES = (
    Change("alert rule file", frozenset(), frozenset({"ConfigMap/prometheus-rules"}),
           files=(("RULES_DIR", "application.yaml", _longer_for),)),
    Change("dashboard file", frozenset(), frozenset({"ConfigMap/grafana-dashboards-overview"}),
           files=(("DASHBOARDS_DIR", "overview.json", _retitled),)),
    Change("alertmanager route", frozenset(), frozenset({"ConfigMap/alertmanager-config"}),
           settings={"alerting": {"critical": {"repeatInterval": "2h"}}}),
    Change("alertmanager receiver secret", frozenset(), frozenset({"Secret/alertmanager-credentials"}),
           secrets={"alertmanagerWebhookUrl": SENTINELS["alertmanagerWebhookUrl"]}),
    # prometheus.yml reloads; Grafana reads its datasources (which carry the interval) at start.
    Change("scrape interval", frozenset({"StatefulSet/grafana"}), frozenset({"ConfigMap/prometheus-config"}),
           settings={"prometheus": {"scrapeInterval": "15s"}}),
    Change("tail sampling threshold", frozenset({"Deployment/otel-gateway"}), frozenset(),
           settings={"tracing": {"sampling": {"slowTraceThreshold": "3s"}}}),
    Change("exporter connection secret", frozenset({"Deployment/postgres-exporter"}), frozenset(),
           secrets={"postgresDsn": SENTINELS["postgresDsn"]}),
    Change("log retention", frozenset({"Job/logging-bootstrap"}), frozenset(),
           settings={"logging": {"retentionDays": 14}}),
    # Not a file: the pod template itself changes, and the DaemonSet's Pods roll.
    Change("filebeat memory", frozenset({"DaemonSet/filebeat"}), frozenset(),
           settings={"logging": {"filebeat": {"resources": {"limits": {"memory": "512Mi"}}}}}),
)


def merged(base: dict, more: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in more.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


class Inputs:
    """The inputs of one render: settings, secret settings, and copies of the data directories
    with the files edited so far (the repository's own files stay as they are)."""

    def __init__(self, scratch: Path):
        self.scratch, self.settings, self.secrets = scratch, {}, {}
        self.directories: dict[str, Path] = {}

    def add(self, change: Change) -> None:
        self.settings = merged(self.settings, change.settings)
        self.secrets.update(change.secrets)
        for attribute, name, edit in change.files:
            if attribute not in self.directories:
                copy_dir = self.scratch / attribute
                shutil.copytree(getattr(data, attribute), copy_dir)
                self.directories[attribute] = copy_dir
            path = self.directories[attribute] / name
            path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")

    def render(self) -> list[dict]:
        config, secret_keys = offline.stack_config("prod", self.settings)
        for name, value in self.secrets.items():
            config[f"football-monitoring:{name}"] = value
        with pytest.MonkeyPatch.context() as patch:
            for attribute, directory in self.directories.items():
                patch.setattr(data, attribute, directory)
            return offline.run("prod", config=config, secret_keys=secret_keys).kubernetes_objects()


def workload_id(obj: dict) -> str:
    """A Job's name carries a digest of its content: its service's name identifies it."""
    name = obj["metadata"]["labels"]["app.kubernetes.io/name"] if obj["kind"] == "Job" else obj["metadata"]["name"]
    return f"{obj['kind']}/{name}"


def rolled_workloads(objects: list[dict]) -> dict[str, dict]:
    return {workload_id(o): o for o in objects if o["kind"] in ROLLED_KINDS}


def content(obj: dict) -> dict:
    return {part: obj.get(part) for part in ("data", "stringData", "binaryData")}


def without_checksums(template: dict) -> dict:
    template = copy.deepcopy(template)
    annotations = template["metadata"].get("annotations") or {}
    template["metadata"]["annotations"] = {k: v for k, v in annotations.items() if not k.startswith(CHECKSUM_PREFIX)}
    return template


def referenced(obj: dict) -> set[str]:
    """Keys of every ConfigMap and Secret the workload's pods reference, however they read it."""
    pod = template_of(obj)["spec"]
    namespace = obj["metadata"]["namespace"]
    found = set()
    for volume in pod.get("volumes", []):
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        for source in sources:
            if "configMap" in source:
                found.add(f"ConfigMap/{namespace}/{source['configMap']['name']}")
            if "secret" in source:
                found.add(f"Secret/{namespace}/{source['secret'].get('secretName') or source['secret'].get('name')}")
    for container in pod["containers"] + pod.get("initContainers", []):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            for field_name, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if field_name in ref:
                    found.add(f"{kind}/{namespace}/{ref[field_name]['name']}")
        for env_from in container.get("envFrom", []):
            for field_name, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if field_name in env_from:
                    found.add(f"{kind}/{namespace}/{env_from[field_name]['name']}")
    return found


@dataclass
class Expectation:
    rolls: set[str]
    reloaded: set[str]  # keys of the changed inputs that pods read, none of them only at start
    unread: set[str]  # keys of the changed inputs that no pod reads

    @property
    def reloads(self) -> set[str]:
        return {f"{k.split('/')[0]}/{k.split('/')[2]}" for k in self.reloaded}


def expected(before: list[dict], after: list[dict]) -> Expectation:
    """From the two renders alone: a workload rolls when an object it reads only at start changed,
    or its pod template changed in anything but the checksums (its image, arguments, resources).
    A CronJob's pods start anew for every run: they read the new content without a rollout."""
    old = {key(o): o for o in before if o["kind"] in INPUT_KINDS}
    new = {key(o): o for o in after if o["kind"] in INPUT_KINDS}
    changed = {k for k in old.keys() | new.keys() if k not in old or k not in new or content(old[k]) != content(new[k])}
    later = rolled_workloads(after)
    rolls, read_at_start, read = set(), set(), set()
    every_workload = {workload_id(o): o for o in before if o["kind"] in ROLLED_KINDS or o["kind"] in STARTS_EVERY_RUN}
    for wid, obj in every_workload.items():
        namespace = obj["metadata"]["namespace"]
        reads = {f"{i.kind}/{namespace}/{i.name}" for i in start_only_inputs(obj)}
        read_at_start |= reads
        read |= referenced(obj)
        if obj["kind"] in STARTS_EVERY_RUN:
            continue
        own = wid not in later or without_checksums(template_of(obj)) != without_checksums(template_of(later[wid]))
        if reads & changed or own:
            rolls.add(wid)
    return Expectation(rolls, (changed & read) - read_at_start, changed - read)


def settled(live: dict) -> bool:
    """The controller has acted on the current spec (it writes observedGeneration after it made the
    ReplicaSet or ControllerRevision of the spec's template)."""
    status = live.get("status") or {}
    return status.get("observedGeneration", 0) >= live["metadata"]["generation"]


def same_template(replica_set: dict, template: dict) -> bool:
    """A ReplicaSet's template is its Deployment's plus the pod-template-hash label."""
    theirs = copy.deepcopy(replica_set["spec"]["template"])
    theirs["metadata"].get("labels", {}).pop("pod-template-hash", None)
    return theirs == template


def revisions(cluster: KubeCluster, objects: list[dict]) -> dict[str, str]:
    """Workload -> what it runs now, once every controller has acted on the current spec (bounded
    wait): a Deployment's ReplicaSet of the current template, a StatefulSet's update revision, a
    DaemonSet's newest ControllerRevision, the uid of a run-once service's Job."""
    workloads = rolled_workloads(objects)
    namespaces = sorted({o["metadata"]["namespace"] for o in workloads.values()})
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    while True:
        replica_sets = [rs for ns in namespaces for rs in list_items(cluster, "apps/v1", "ReplicaSet", ns)]
        histories = [r for ns in namespaces for r in list_items(cluster, "apps/v1", "ControllerRevision", ns)]
        found, waiting = {}, []
        for wid, obj in workloads.items():
            live = cluster.get(object_path(obj))
            uid = {live["metadata"]["uid"]}
            if obj["kind"] == "Job":
                found[wid] = live["metadata"]["uid"]
                continue
            if not settled(live):
                waiting.append(wid)
                continue
            if obj["kind"] == "Deployment":
                current = [rs["metadata"]["name"] for rs in replica_sets
                           if controlled_by(rs, uid) and same_template(rs, live["spec"]["template"])]
            elif obj["kind"] == "StatefulSet":
                current = [live["status"]["updateRevision"]] if live["status"].get("updateRevision") else []
            else:
                owned = sorted((r for r in histories if controlled_by(r, uid)), key=lambda r: r["revision"])
                current = [owned[-1]["metadata"]["name"]] if owned else []
            if len(current) == 1:
                found[wid] = current[0]
            else:
                waiting.append(wid)
        if not waiting:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"the controllers did not act on the deploy within {ROLLOUT_TIMEOUT} s: {sorted(waiting)}\n"
                        + cluster.log_tail("kube-controller-manager"))
        time.sleep(0.3)


def deploy(cluster: KubeCluster, before: list[dict], after: list[dict]) -> list[str]:
    """What `pulumi up` does with the new render: objects that differ are applied, objects gone are
    deleted (their dependents with them). The keys of what was written."""
    old, new = {key(o): o for o in before}, {key(o): o for o in after}
    written = []
    for obj in sorted((o for k, o in new.items() if old.get(k) != o), key=apply_order):
        cluster.apply(obj, MANAGER)
        written.append(key(obj))
    for k, obj in old.items():
        if k not in new:
            cluster.request("DELETE", object_path(obj) + "?propagationPolicy=Background", expect=(200, 202, 404))
            written.append(key(obj))
    return written


@dataclass
class Outcome:
    change: Change
    expectation: Expectation
    rolled: set[str]
    written: list[str]
    warnings: list[str]
    live_inputs: dict[str, bool]  # changed input -> the API server now holds its new content
    seconds: float


def live_content(cluster: KubeCluster, obj: dict) -> dict:
    live = cluster.get(object_path(obj))
    if obj["kind"] == "Secret":  # the API server keeps stringData as base64 data
        return {k: base64.b64decode(v).decode() for k, v in (live.get("data") or {}).items()}
    return live.get("data") or {}


def rendered_content(obj: dict) -> dict:
    if obj["kind"] == "Secret":
        return obj.get("stringData") or obj.get("data") or {}
    return obj.get("data") or {}


def one_deploy(cluster: KubeCluster, change: Change, before: list[dict], after: list[dict]) -> Outcome:
    started = time.monotonic()
    previous = revisions(cluster, before)
    warnings_before = len(cluster.warnings)
    written = deploy(cluster, before, after)
    now = revisions(cluster, after)
    rolled = {w for w in previous.keys() | now.keys() if previous.get(w) != now.get(w)}
    expectation = expected(before, after)
    rendered = {key(o): o for o in after if o["kind"] in INPUT_KINDS}
    live_inputs = {f"{o['kind']}/{o['metadata']['name']}": live_content(cluster, o) == rendered_content(o)
                   for o in (rendered[k] for k in expectation.reloaded)}
    return Outcome(change, expectation, rolled, written, cluster.warnings[warnings_before:], live_inputs,
                   time.monotonic() - started)


@pytest.fixture(scope="module")
def outcomes(kube_cluster, kube_prod, tmp_path_factory) -> dict[str, Outcome]:
    cluster = kube_cluster
    inputs = Inputs(tmp_path_factory.mktemp("rollout-inputs"))
    results: dict[str, Outcome] = {}
    live = attempted = kube_prod
    try:
        for change in CHANGES:
            inputs.add(change)
            attempted = inputs.render()
            results[change.name] = one_deploy(cluster, change, live, attempted)
            live = attempted
    finally:
        # prod as rendered again, for the tests that read it live after this module (from what the
        # last deploy meant to write: it may have stopped halfway).
        deploy(cluster, attempted, kube_prod)
        revisions(cluster, kube_prod)
    return results


@pytest.mark.parametrize("change", [c.name for c in CHANGES])
def test_the_design_says_what_the_render_does(outcomes, change):
    """The expectation derived from the two renders is the design's, stated with each change."""
    outcome = outcomes[change]
    assert outcome.expectation.rolls == outcome.change.rolls
    assert outcome.expectation.reloads == outcome.change.reloads
    assert outcome.expectation.unread == set()


@pytest.mark.parametrize("change", [c.name for c in CHANGES])
def test_exactly_the_expected_workloads_roll(outcomes, change):
    outcome = outcomes[change]
    assert outcome.written, "the change wrote nothing: it was no change"
    assert outcome.warnings == []
    assert outcome.rolled == outcome.expectation.rolls, (
        f"rolled {sorted(outcome.rolled)}, expected {sorted(outcome.expectation.rolls)}; "
        f"written: {outcome.written}")


@pytest.mark.parametrize("change", [c.name for c in CHANGES if c.reloads])
def test_reloaded_content_reaches_the_api_server(outcomes, change):
    """What the running program reads again is updated in place, under the same name."""
    outcome = outcomes[change]
    assert outcome.live_inputs == dict.fromkeys(outcome.change.reloads, True)


def test_every_kind_of_outcome_is_covered():
    """Reload only, roll only, and both at once; each rolling kind rolls in one change at least."""
    assert any(c.reloads and not c.rolls for c in CHANGES)
    assert any(c.rolls and not c.reloads for c in CHANGES)
    assert any(c.rolls and c.reloads for c in CHANGES)
    assert {r.split("/")[0] for c in CHANGES for r in c.rolls} == set(ROLLED_KINDS)
    assert {r.split("/")[0] for c in CHANGES for r in c.reloads} == set(INPUT_KINDS)
