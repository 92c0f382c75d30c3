"""Every command line the stack generates for a program the tests build is accepted by that program.

The other tests check the generated config files with the programs' check modes (promtool,
amtool, otelcol/jaeger validate); a flag the pinned release does not know, a flag's value it
rejects, or a config path that does not match the mounts only shows when the program itself is
started with the container's arguments. Here each one is, on loopback only, from prod on
Kubernetes and dev on Kubernetes and on Docker, all with tracing on (tests/command_lines.py says
what is changed to run it on this machine, and why). Containers whose program is not built are
listed in command_lines.NOT_COVERED with the reason, and a test keeps every container of every
stack either started or listed.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import subprocess

import pytest

from components.settings.images import DEFAULT_IMAGES
from tests import command_lines as cl
from tests.conftest import BUILT_TOOLS, require_tool, run_on_kubernetes
from tests.test_tool_versions import expectations, tag
from tests.test_tracing import tracing_values
from tools import offline

# prod-sharded: prod with two scrape shards (prometheus.shards) and the query frontend, the parts of
# Thanos prod leaves off; its Prometheus shards, Query and Ruler differ from prod's, and what is the
# same starts once.
STACKS = ("prod", "dev-kubernetes", "dev-docker", "prod-sharded")
# What prod runs of the built programs (tracing on): a stack that stops running one of them
# should say so here, not drop out of this check unnoticed.
PROD_PROGRAMS = {"prometheus", "alertmanager", "prometheus-config-reloader", "node_exporter", "kube-state-metrics",
                 "blackbox_exporter", "postgres_exporter", "redis_exporter", "elasticsearch_exporter", "jaeger",
                 "otelcol", "es-index-cleaner", "thanos"}
# Built tools that check configs and run in no container.
CHECK_ONLY_TOOLS = {"promtool", "amtool", "pint", "sloth", "cyclonus", "pod-security-check",
                    # The Kubernetes control plane the admission test runs: the cluster's, not ours.
                    "etcd", "kube-apiserver", "kube-controller-manager",
                    "kube-apiserver-previous", "kube-controller-manager-previous",
                    # The CLI that deploys the stack: it reads the project and stack files.
                    "pulumi"}


@pytest.fixture(scope="module")
def results() -> dict[str, offline.RunResult]:
    return {
        "prod": offline.run("prod", {"tracing": tracing_values("prod")}),
        "dev-kubernetes": run_on_kubernetes("dev", {"tracing": tracing_values("dev")}),
        "dev-docker": offline.run("dev", {"tracing": tracing_values("dev")}),
        "prod-sharded": offline.run("prod", {"tracing": tracing_values("prod"), "prometheus": {"shards": 2},
                                             "thanos": {"queryFrontend": True}}),
    }


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    directory = tmp_path_factory.mktemp("command-line-credentials")
    credentials = cl.Credentials.create(directory, require_tool("openssl"))
    elasticsearch, kubernetes = cl.elasticsearch_stand_in(credentials), cl.kubernetes_stand_in()
    bucket = cl.BucketStandIn()
    try:
        yield cl.Environment(credentials, elasticsearch, kubernetes, bucket)
    finally:
        elasticsearch.close()
        kubernetes.close()
        bucket.close()


class Runner:
    """Runs pods once each: the same generated inputs on two stacks (node-exporter's) start once."""

    def __init__(self, environment: cl.Environment, root):
        self.environment, self.root = environment, root
        self.done: dict[str, list[cl.Outcome]] = {}
        self.numbers = itertools.count()
        self.logs = root / "logs"
        self.logs.mkdir()

    def run(self, pods: list[cl.Pod]) -> tuple[list[cl.Outcome], list[str]]:
        """(outcomes, problems of pods that could not even be prepared)."""
        broken, todo = [], {}
        for pod in pods:
            key = pod.fingerprint()
            if key in self.done or key in todo:
                continue
            try:
                todo[key] = cl.prepare(pod, self.root / f"pod-{next(self.numbers)}", self.environment)
            except (LookupError, ValueError) as exc:
                broken.append(f"{pod.where}: {exc}")
        for batch in cl.batches(todo.values()):
            for outcome in cl.run_together(batch, require_tool, self.logs):
                key = next(k for k, prepared in todo.items() if any(outcome.started is s for s in prepared))
                self.done.setdefault(key, []).append(outcome)
        return [o for pod in pods for o in self.done.get(pod.fingerprint(), [])], broken


@pytest.fixture(scope="module")
def runner(environment, tmp_path_factory) -> Runner:
    return Runner(environment, tmp_path_factory.mktemp("command-lines"))


def containers_declared(result) -> list[str]:
    """Every container of a run, counted independently of command_lines' reading of it."""
    if result.containers():
        return [f"docker container {c.name}" for c in result.containers()]
    found = []
    for obj in result.kubernetes_objects():
        spec = obj.get("spec") or {}
        template = (spec.get("jobTemplate", {}).get("spec", {}).get("template") if obj["kind"] == "CronJob"
                    else spec.get("template"))
        if obj["kind"] == "Pod" or (isinstance(template, dict) and "containers" in template.get("spec", {})):
            assert obj["kind"] in cl.WORKLOADS, f"{obj['kind']}/{obj['metadata']['name']} runs containers " \
                                                "this check does not read"
            for section in ("initContainers", "containers"):
                found += [f"{obj['kind']}/{obj['metadata']['name']} {section[:-1]} {c['name']}"
                          for c in template["spec"].get(section, [])]
    return found


# ---------------------------------------------------------------- what is started, what is not

def test_every_image_is_built_or_listed_as_not_covered():
    assert set(cl.BUILT) | set(cl.NOT_COVERED) == set(DEFAULT_IMAGES)
    assert not set(cl.BUILT) & set(cl.NOT_COVERED)
    assert set(cl.BUILT.values()) == BUILT_TOOLS - CHECK_ONLY_TOOLS
    # The tool built for an image is the one tests/test_tool_versions.py checks at that image's tag.
    for key, tool in cl.BUILT.items():
        assert expectations()[tool][1] == tag(key), (key, tool)


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_is_started_or_listed_as_not_covered(results, stack):
    result = results[stack]
    pods, skipped = cl.pods(result, stack)
    started = [c for pod in pods for c in pod.containers]
    declared = containers_declared(result)
    assert len(started) + len(skipped) == len(declared), declared
    assert {c.where.removeprefix(f"{stack} ") for c in started + skipped} == set(declared)
    for c in skipped:
        assert cl.NOT_COVERED[cl.image_key(c.image)], c.where
    if stack == "prod":
        assert {c.tool for c in started} == PROD_PROGRAMS


@pytest.mark.parametrize("stack", STACKS)
def test_every_probe_of_a_program_not_started_here_is_a_path_it_serves(results, stack):
    """The probes of the programs this check cannot start (their HTTP probes are requested from the
    started ones, in the test below) are held against SERVED_PATHS, the upstream source of each."""
    _, skipped = cl.pods(results[stack], stack)
    problems = [f"{c.where}: {p.kind} GET {p.path} is not among the paths {cl.image_key(c.image)} serves "
                f"({sorted(cl.SERVED_PATHS.get(cl.image_key(c.image), {}))})"
                for c in skipped for p in c.probes
                if p.path not in cl.SERVED_PATHS.get(cl.image_key(c.image), {})]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("stack", STACKS)
def test_no_liveness_probe_asks_another_process(results, stack):
    pods, skipped = cl.pods(results[stack], stack)
    containers = skipped + [c for pod in pods for c in pod.containers]
    problems = [f"{c.where}: {p.kind} GET {p.path}: {cl.ASKS_ANOTHER_PROCESS[(cl.image_key(c.image), p.path)]}"
                for c in containers for p in c.probes
                if p.kind == "livenessProbe" and (cl.image_key(c.image), p.path) in cl.ASKS_ANOTHER_PROCESS]
    assert not problems, "\n".join(problems)
    # The check reads the probes that matter: the dependent page is still the readiness of a container.
    assert stack == "dev-docker" or any(
        p.kind == "readinessProbe" and (cl.image_key(c.image), p.path) in cl.ASKS_ANOTHER_PROCESS
        for c in containers for p in c.probes), "no container probes a page that asks another process"


def test_every_served_path_listed_is_one_a_probe_uses(results):
    used = {(cl.image_key(c.image), p.path) for stack in STACKS for c in cl.pods(results[stack], stack)[1]
            for p in c.probes}
    listed = {(key, path) for key, paths in cl.SERVED_PATHS.items() for path in paths}
    assert listed == used
    assert set(cl.SERVED_PATHS) <= set(cl.NOT_COVERED)


# ---------------------------------------------------------------- the command lines

@pytest.mark.parametrize("stack", STACKS)
def test_every_generated_command_line_is_accepted(results, runner, stack):
    pods, skipped = cl.pods(results[stack], stack)
    outcomes, broken = runner.run(pods)
    problems = broken + [o.describe() for o in outcomes if not o.passed]
    assert not problems, "\n\n".join(problems)
    assert len(outcomes) == sum(len(pod.containers) for pod in pods)


def duration_edges() -> dict:
    """Every duration setting at its longest, written in the largest unit its type takes (a y where it
    takes one): the forms the loader accepts must be the forms the programs parse."""
    from components.settings.models import StackConfig, keys_of
    from components.settings.types import DurationRange

    overrides: dict = {}
    for key, field in keys_of(StackConfig):
        edge = next((m for m in field.metadata if isinstance(m, DurationRange)), None)
        if edge is None:
            continue
        units = [("y", 365 * 86400)] * edge.years + [("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
        unit, size = next((u, size) for u, size in units if edge.maximum % size == 0)
        *sections, name = key.split(".")
        place = overrides
        for section in sections:
            place = place.setdefault(section, {})
        place[name] = f"{int(edge.maximum // size)}{unit}"
    return overrides


def test_every_duration_setting_at_its_longest_is_accepted_by_the_programs(runner):
    edges = duration_edges()
    assert len(edges["thanos"]) >= 3 and "y" in edges["prometheus"]["retention"]
    result = offline.run("prod", {**edges, "tracing": offline.deep_merge(tracing_values("prod"), edges["tracing"])})
    pods, _ = cl.pods(result, "prod")
    # The runner starts only what differs from the programs it already ran (prod's, in this module).
    outcomes, broken = runner.run(pods)
    problems = broken + [o.describe() for o in outcomes if not o.passed]
    assert not problems, "\n\n".join(problems)


# ---------------------------------------------------------------- the check can fail

def one_container(results, stack: str, tool: str) -> cl.Pod:
    pods, _ = cl.pods(results[stack], stack)
    pod = next(p for p in pods if [c.tool for c in p.containers] == [tool])
    return copy.deepcopy(pod)


def run_one(runner: Runner, pod: cl.Pod) -> cl.Outcome:
    outcomes, broken = runner.run([pod])
    assert not broken, broken
    assert len(outcomes) == 1
    return outcomes[0]


@pytest.mark.parametrize("tool, message", [
    ("blackbox_exporter", "unknown long flag '--no-such-flag'"),  # kingpin
    ("otelcol", "unknown flag: --no-such-flag"),  # cobra
    ("kube-state-metrics", "unknown flag: --no-such-flag"),  # cobra with pflag
])
def test_an_unknown_flag_fails_the_check(results, runner, tool, message):
    pod = one_container(results, "prod", tool)
    pod.containers[0].args.append("--no-such-flag")
    outcome = run_one(runner, pod)
    assert not outcome.passed
    assert "command line rejected" in outcome.problem and message in outcome.problem, outcome.describe()


def test_a_config_the_program_rejects_fails_the_check(results, runner):
    pod = one_container(results, "prod", "blackbox_exporter")
    container = pod.containers[0]
    volume = container.mounts["/etc/blackbox"]
    container.mounts["/etc/blackbox"] = dataclasses.replace(volume, files={"blackbox.yml": "modules: {http_2xx: {prober: http, no_such_field: 1}}\n"})
    outcome = run_one(runner, pod)
    assert not outcome.passed and "config rejected" in outcome.problem, outcome.describe()


def test_a_probe_path_the_program_does_not_serve_fails_the_check(results, runner):
    pod = one_container(results, "prod", "jaeger")
    container = pod.containers[0]
    container.probes = [dataclasses.replace(p, path="/health") for p in container.probes]
    outcome = run_one(runner, pod)
    assert not outcome.passed and "a probe's path is not served" in outcome.problem, outcome.describe()
    assert "GET :13133/health: 404" in outcome.problem, outcome.describe()
    container.probes = [dataclasses.replace(p, port=1) for p in container.probes]
    outcome = run_one(runner, pod)
    assert not outcome.passed and "listens on no port 1" in outcome.problem, outcome.describe()


def test_a_one_shot_program_passes_only_on_its_expected_failure(results, runner):
    """The index cleaner can only fail here (no Elasticsearch): dialling the closed loopback port is
    the failure that shows its arguments were accepted; any other exit fails the check."""
    cleaner = one_container(results, "prod", "es-index-cleaner")
    container = cleaner.containers[0]
    container.args = [container.args[0], container.args[1], "--es.username=fm-jaeger"]
    assert run_one(runner, cleaner).passed
    container.args = [container.args[0]]  # the Elasticsearch URL missing: an argument error
    outcome = run_one(runner, cleaner)
    assert not outcome.passed and "wrong number of arguments" in outcome.problem, outcome.describe()


def test_an_address_this_check_cannot_keep_on_loopback_is_refused(results, environment, tmp_path):
    pod = one_container(results, "prod", "blackbox_exporter")
    pod.containers[0].args.append("--some.url=http://collector.example.org:4317,http://other.example.org:4317")
    with pytest.raises(ValueError, match="collector.example.org"):
        cl.prepare(pod, tmp_path, environment)


# ---------------------------------------------------------------- the rewriting itself

def test_rewriting_changes_addresses_and_mounted_paths_only(environment, tmp_path):
    pod = cl.Pod("test", "svc-0", "127.0.0.9", [cl.Container(
        where="test", name="svc", image="", tool="prometheus", command=None, args=[], env={},
        mounts={"/etc/svc": cl.Volume(), "/tmp": cl.Volume()})])
    rewriter = cl.Rewriter(pod, tmp_path, environment)
    assert rewriter.address("09:00", listening=False) is None  # Alertmanager's time intervals
    assert rewriter.address("30d", listening=False) is None
    assert rewriter.address(":9090", listening=False) == rewriter.address("0.0.0.0:9090", listening=True)
    assert rewriter.address("127.0.0.1:9090/-/reload", listening=False) is None
    assert rewriter.address("http://127.0.0.1:9090/-/reload", listening=False) == \
        f"http://127.0.0.1:{rewriter.ports[9090]}/-/reload"
    assert rewriter.address("postgresql://u:p@db.invalid:5432/x?sslmode=disable", listening=False) == \
        f"postgresql://u:p@127.0.0.1:{rewriter.closed}/x?sslmode=disable"
    assert rewriter.address("https://elasticsearch.monitoring.svc:9200", listening=False) == \
        f"https://{environment.elasticsearch.address}"
    pattern = rewriter.path_pattern(pod.containers[0])
    assert rewriter.paths("--config=/etc/svc/a.yml", pattern) == f"--config={tmp_path}/etc/svc/a.yml"
    assert rewriter.paths("dir: /tmpfs/x /tmp", pattern) == f"dir: /tmpfs/x {tmp_path}/tmp"
    assert rewriter.paths("http://host/tmp/x", pattern) == "http://host/tmp/x"


# ---------------------------------------------------------------- deprecated flags

def help_text(tool: str) -> str:
    proc = subprocess.run([require_tool(tool), "--help"], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def deprecated_flags(help_output: str) -> set[str]:
    """Flags the program's own --help marks deprecated (kingpin's "[DEPRECATED]", cobra/pflag's
    "Deprecated:" notes and "(deprecated)")."""
    found, current = set(), None
    for line in help_output.splitlines():
        match = re.match(r"\s+(?:-\w, )?(--[\w.-]+)", line)
        if match:
            current = match.group(1)
        if current and re.search(r"\[DEPRECATED\]|\bDeprecated\b|\(deprecated\)", line, re.I):
            found.add(current)
    return found


def generated_flags(pods: list[cl.Pod]) -> dict[str, set[str]]:
    flags: dict[str, set[str]] = {}
    for pod in pods:
        for c in pod.containers:
            if c.tool and c.tool not in cl.OWN_ENTRYPOINTS:
                flags.setdefault(c.tool, set()).update(
                    a.split("=", 1)[0] for a in (c.command or [])[1:] + c.args if a.startswith("--"))
    return flags


def test_no_generated_flag_is_deprecated_by_its_program(results):
    used: dict[str, set[str]] = {}
    for label, result in results.items():
        for tool, flags in generated_flags(cl.pods(result, label)[0]).items():
            used.setdefault(tool, set()).update(flags)
    found = {tool: sorted(flags & deprecated_flags(help_text(tool))) for tool, flags in used.items()}
    assert not {t: f for t, f in found.items() if f}, f"deprecated flags in generated command lines: {found}"


def test_the_deprecation_check_reads_the_programs_help():
    # Prometheus 3.16 deprecates the retention flags in favour of prometheus.yml's storage section.
    assert {"--storage.tsdb.retention.time", "--storage.tsdb.retention.size"} <= deprecated_flags(
        help_text("prometheus"))
