"""Every Jaeger process of the stack in its container's memory and Go environment, with the pinned Jaeger.

Jaeger 2.14 (github.com/jaegertracing/jaeger v1.76.0) sets no Go memory limit of its own: neither
its cmd/jaeger nor the collector core it embeds (go.opentelemetry.io/collector v0.140.0) calls
runtime/debug.SetMemoryLimit or carries automemlimit, and its image sets no GOMEMLIMIT
(cmd/jaeger/Dockerfile: only JAEGER_LISTEN_HOST). The limit is the container's GOMEMLIMIT
(components/configs/jaeger.py:go_memory_limit), which the render test in tests/test_tracing.py
holds for every Jaeger workload on both platforms. Here each of prod's collector and query and
dev's all-in-one runs, as tests/trace_stack.py starts them, in a memory cgroup of its own limited
to the rendered container's memory (tests/test_gateway_memory_limit.py: MemoryCgroup, and how the
limiter reads a v1 cgroup; collector v0.140.0 internal/memorylimiter/iruntime reads it the same
way), with the container's Go runtime variables and no others. Asserted:

- the Go runtime took the value: the process serves, and a malformed GOMEMLIMIT is fatal before
  main (Go's runtime/mgcpacer.go readGOMEMLIMIT throws "malformed GOMEMLIMIT"), which the control
  shows with the same program;
- where there is a memory limiter, it read the container's limit (``total_memory_mib``) and its
  hard limit (``limit_mib``, above which it forces a collection) is GOMEMLIMIT to the MiB: Go's
  collector works to stay under the same figure the limiter defends, instead of letting the heap
  double past it between two of the limiter's checks.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

from components.settings.types import quantity_bytes
from tests.test_gateway_memory_limit import GO_RUNTIME, MIB, MemoryCgroup, memory_cgroup_of, process_environment
from tests.trace_stack import DevJaeger, ProdTraces, Proc, wait_for
from tools import offline


def go_environment(names_values: dict[str, str]) -> dict[str, str]:
    """Our environment without the Go runtime's variables, plus those the container sets."""
    env = {k: v for k, v in os.environ.items() if k not in GO_RUNTIME}
    env.update({k: v for k, v in names_values.items() if k in GO_RUNTIME})
    return env


def kubernetes_container(result, name: str) -> tuple[int, dict[str, str]]:
    [container] = result.one("Deployment", name)["spec"]["template"]["spec"]["containers"]
    for entry in container.get("env", []):
        assert entry["name"] not in GO_RUNTIME or "value" in entry, f"only literal values are mirrored: {entry}"
    return (int(quantity_bytes(container["resources"]["limits"]["memory"])),
            {e["name"]: e["value"] for e in container.get("env", []) if e["name"] in GO_RUNTIME})


def docker_container(result, name: str) -> tuple[int, dict[str, str]]:
    inputs = result.container(name).inputs
    envs = dict(e.split("=", 1) for e in inputs.get("envs") or [])
    return inputs["memory"] * MIB, {k: v for k, v in envs.items() if k in GO_RUNTIME}


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    """Prod's collector and query (with the store they share here) in their containers' cgroups."""
    stack = ProdTraces(tmp_path_factory.mktemp("jaeger-memory-prod"))
    cgroups = []
    try:
        for name, proc in stack.jaeger.items():
            limit, go = kubernetes_container(stack.rendered, name)
            cgroups.append(MemoryCgroup(f"fm-{name}-{os.getpid()}", limit))
            proc.cgroup_procs, proc.env, proc.go = cgroups[-1].procs, go_environment(go), go
            proc.memory_cgroup, proc.generated = cgroups[-1], stack.generated[name]
        for proc in (stack.storage, stack.collector, stack.query):
            proc.start()
        for proc in (stack.storage, stack.collector, stack.query):
            proc.wait_serving()
        yield stack
    finally:
        for proc in (stack.query, stack.collector, stack.storage):
            proc.stop()
        for cgroup in cgroups:
            cgroup.remove()


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    jaeger = DevJaeger(tmp_path_factory.mktemp("jaeger-memory-dev"))
    limit, go = docker_container(offline.run("dev"), "jaeger")
    cgroup = MemoryCgroup(f"fm-jaeger-dev-{os.getpid()}", limit)
    proc = jaeger.proc
    proc.cgroup_procs, proc.env, proc.go, proc.memory_cgroup, proc.generated = (
        cgroup.procs, go_environment(go), go, cgroup, jaeger.generated)
    try:
        jaeger.start()
        yield jaeger
    finally:
        jaeger.stop()
        cgroup.remove()


def check(proc: Proc) -> dict:
    """What the process took from its container; asserts the findings of the module's docstring."""
    assert proc.alive(), proc.tail()
    cgroup = proc.memory_cgroup
    assert memory_cgroup_of(proc.proc.pid) == cgroup.path
    go = {k: v for k, v in process_environment(proc.proc.pid).items() if k in GO_RUNTIME}
    assert go == proc.go and set(go) == {"GOMEMLIMIT"}, (go, proc.go)
    gomemlimit_mib = int(re.fullmatch(r"(\d+)MiB", go["GOMEMLIMIT"]).group(1))
    assert gomemlimit_mib * MIB < cgroup.limit
    config = yaml.safe_load(proc.generated)
    limiters = [p for p in config["service"]["pipelines"]["traces"].get("processors", [])
                if p.split("/")[0] == "memory_limiter"]
    found = {"name": proc.directory.name, "limit_mib": cgroup.limit // MIB, "GOMEMLIMIT": go["GOMEMLIMIT"]}
    if limiters:
        def logged():
            text = proc.log.read_text(errors="replace")
            return text if '"spike_limit_mib"' in text else None
        log = wait_for(f"{proc.directory.name}'s memory limiter to log its limits", logged)
        # The limiter's two lines (collector v0.140.0 internal/memorylimiter: getMemUsageChecker, NewMemoryLimiter).
        totals = set(re.findall(r'"total_memory_mib":(\d+)', log))
        hard = {int(h) for h in re.findall(r'"limit_mib":(\d+),"spike_limit_mib":\d+', log)}
        assert totals == {str(cgroup.limit // MIB)}, proc.tail()
        assert hard == {gomemlimit_mib}, (hard, go, proc.tail())
        found["limiter hard limit MiB"] = sorted(hard)
    return found


def test_prod_collector_and_query_run_with_their_containers_go_memory_limit(prod):
    found = [check(proc) for proc in (prod.collector, prod.query)]
    assert [("limiter hard limit MiB" in f) for f in found] == [True, False], found
    print(f"\n{found}")


def test_dev_all_in_one_runs_with_its_containers_go_memory_limit(dev):
    found = check(dev.proc)
    assert "limiter hard limit MiB" in found, found
    print(f"\n{found}")


def test_a_malformed_go_memory_limit_stops_the_program(tmp_path):
    """The control: a value Go does not parse ("819M", no unit it knows) is fatal before main, so a
    Jaeger that serves with the rendered value has had it accepted."""
    jaeger = DevJaeger(tmp_path)
    jaeger.proc.env = go_environment({"GOMEMLIMIT": "819M"})
    jaeger.proc.start()
    try:
        jaeger.proc.proc.wait(timeout=30)
    finally:
        jaeger.proc.stop()
    assert jaeger.proc.proc.returncode != 0
    assert "malformed GOMEMLIMIT" in jaeger.proc.tail()
