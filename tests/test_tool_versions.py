"""Every tool the tests run is the program the stack deploys, at the version its image pins.

scripts/install-test-tools.sh builds each tool from its Go module at the version of the image tag
in DEFAULT_IMAGES. These tests ask every built binary for its version (its own --version output,
and the module version Go recorded in the binary), so a stale cache, a wrong symlink or a version
mapping that drifted from the tag fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components.settings.images import DEFAULT_IMAGES, NPM_TEST_TOOLS, TEST_TOOLS
from tests.conftest import BUILT_TOOLS, NPM_TOOLS, require_tool


def tag(key: str) -> str:
    return DEFAULT_IMAGES[key].rsplit(":", 1)[1].lstrip("v")


def prometheus_module_version(release: str) -> str:
    major, minor, patch = release.split(".")
    assert major == "3", release
    return f"v0.3{int(minor):02d}.{patch}"  # Prometheus tags its Go module v0.3XX.Y for v3.XX.Y


def jaeger_module_version(release: str) -> str:
    major, minor, patch = release.split(".")
    assert major == "2", release
    return f"v1.{int(minor) + 62}.{patch}"  # Jaeger v2 is module .../jaeger with v1.x tags (v1.76.0 = 2.14.0)


# tool -> (command after the binary, image key or None, Go module, module version), evaluated lazily
def expectations() -> dict[str, tuple[list[str] | None, str, str, str]]:
    pint = TEST_TOOLS["pint"].rsplit(":", 1)[1].lstrip("v")
    sloth = TEST_TOOLS["sloth"].rsplit(":", 1)[1].lstrip("v")
    cyclonus = TEST_TOOLS["cyclonus"].rsplit(":", 1)[1].lstrip("v")
    psa = TEST_TOOLS["podSecurityAdmission"].rsplit(":", 1)[1].lstrip("v")
    kube = TEST_TOOLS["kubernetes"].rsplit(":", 1)[1].lstrip("v")
    previous = TEST_TOOLS["kubernetesPrevious"].rsplit(":", 1)[1].lstrip("v")
    etcd = TEST_TOOLS["etcd"].rsplit(":", 1)[1].lstrip("v")
    pulumi = TEST_TOOLS["pulumi"].rsplit(":", 1)[1].lstrip("v")
    return {
        "prometheus": (["--version"], tag("prometheus"), "github.com/prometheus/prometheus",
                       prometheus_module_version(tag("prometheus"))),
        "promtool": (["--version"], tag("prometheus"), "github.com/prometheus/prometheus",
                     prometheus_module_version(tag("prometheus"))),
        "alertmanager": (["--version"], tag("alertmanager"), "github.com/prometheus/alertmanager",
                         "v" + tag("alertmanager")),
        "amtool": (["--version"], tag("alertmanager"), "github.com/prometheus/alertmanager", "v" + tag("alertmanager")),
        "node_exporter": (["--version"], tag("nodeExporter"), "github.com/prometheus/node_exporter",
                          "v" + tag("nodeExporter")),
        "blackbox_exporter": (["--version"], tag("blackboxExporter"), "github.com/prometheus/blackbox_exporter",
                              "v" + tag("blackboxExporter")),
        "postgres_exporter": (["--version"], tag("postgresExporter"),
                              "github.com/prometheus-community/postgres_exporter", "v" + tag("postgresExporter")),
        "redis_exporter": (["--version"], tag("redisExporter"), "github.com/oliver006/redis_exporter",
                           "v" + tag("redisExporter")),
        "elasticsearch_exporter": (["--version"], tag("elasticsearchExporter"),
                                   "github.com/prometheus-community/elasticsearch_exporter",
                                   "v" + tag("elasticsearchExporter")),
        "kube-state-metrics": (["version"], tag("kubeStateMetrics"), "k8s.io/kube-state-metrics/v2",
                               "v" + tag("kubeStateMetrics")),
        "prometheus-config-reloader": (["--version"], tag("configReloader"),
                                       "github.com/prometheus-operator/prometheus-operator",
                                       "v" + tag("configReloader")),
        "otelcol": (["--version"], tag("otelCollector"), "go.opentelemetry.io/collector/otelcol",
                    "v" + tag("otelCollector")),
        "jaeger": (["version"], tag("jaeger"), "github.com/jaegertracing/jaeger", jaeger_module_version(tag("jaeger"))),
        # The index cleaner has no version command: only the module version recorded in it is checked.
        # Its image carries the release's v1 number, which is the module version.
        "es-index-cleaner": (None, tag("jaegerIndexCleaner"), "github.com/jaegertracing/jaeger",
                             "v" + tag("jaegerIndexCleaner")),
        "pint": (["version"], pint, "github.com/cloudflare/pint", "v" + pint),
        "sloth": (["version"], sloth, "github.com/slok/sloth", "v" + sloth),
        "cyclonus": (["version"], cyclonus, "github.com/mattfenwick/cyclonus", "v" + cyclonus),
        "pod-security-check": (["--version"], psa, "k8s.io/pod-security-admission", "v" + psa),
        "kube-apiserver": (["--version"], "v" + kube, "k8s.io/kubernetes", "v" + kube),
        "kube-controller-manager": (["--version"], "v" + kube, "k8s.io/kubernetes", "v" + kube),
        "kube-apiserver-previous": (["--version"], "v" + previous, "k8s.io/kubernetes", "v" + previous),
        "kube-controller-manager-previous": (["--version"], "v" + previous, "k8s.io/kubernetes", "v" + previous),
        "etcd": (["--version"], etcd, "go.etcd.io/etcd/server/v3", "v" + etcd),
        "thanos": (["--version"], tag("thanos"), "github.com/thanos-io/thanos", "v" + tag("thanos")),
        "pulumi": (["version"], "v" + pulumi, "github.com/pulumi/pulumi/pkg/v3", "v" + pulumi),
    }


def version_problem(tool: str, output: str, want: str) -> str | None:
    """None when the output names exactly version `want` (not a longer one such as 3.16.01)."""
    if re.search(rf"(?<![\d.]){re.escape(want)}(?![\d])", output):
        return None
    return f"{tool} reports {output.strip()[:300]!r}, which does not contain the image's version {want}"


def module_versions(binary: str) -> dict[str, str]:
    """Module path -> version, as Go recorded them in the binary (`go version -m`)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        pytest.fail("Go is needed to read the module versions built into the tools (install it at /usr/local/go)",
                    pytrace=False)
    out = subprocess.run([go, "version", "-m", binary], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("mod", "dep"):
            found[parts[1]] = parts[2]
    return found


def test_every_built_tool_is_checked():
    assert set(expectations()) == BUILT_TOOLS


@pytest.mark.parametrize("tool", sorted(BUILT_TOOLS))
def test_tool_reports_its_image_version(tool):
    args, want, module, module_version = expectations()[tool]
    binary = require_tool(tool)
    if args is not None:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{tool} {' '.join(args)} failed: {proc.stdout}{proc.stderr}"
        problem = version_problem(tool, proc.stdout + "\n" + proc.stderr, want)
        assert problem is None, problem + " (rebuild: scripts/install-test-tools.sh)"
    recorded = module_versions(binary).get(module)
    assert recorded == module_version, (
        f"{tool} was built from {module}@{recorded}, the image pins {want} (module version {module_version})")


def test_version_check_can_fail():
    assert version_problem("prometheus", "prometheus, version 3.16.0 (branch: HEAD)", "3.16.0") is None
    assert version_problem("prometheus", "prometheus, version 3.16.0 (branch: HEAD)", "3.5.0") is not None
    assert version_problem("prometheus", "prometheus, version 3.16.01", "3.16.0") is not None
    assert version_problem("prometheus", "prometheus, version 13.16.0", "3.16.0") is not None


def test_the_previous_kubernetes_is_the_minor_before_the_pinned_one():
    pinned, previous = (TEST_TOOLS[k].rsplit(":v", 1)[1].split(".") for k in ("kubernetes", "kubernetesPrevious"))
    assert previous[0] == pinned[0] and int(previous[1]) == int(pinned[1]) - 1


@pytest.mark.parametrize("key", sorted(NPM_TEST_TOOLS))
def test_npm_tool_reports_its_pinned_version(key):
    package, version = NPM_TEST_TOOLS[key].rsplit("@", 1)
    assert package in NPM_TOOLS
    binary = require_tool(package)
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == version, (
        f"{package} --version says {proc.stdout.strip()!r}{proc.stderr[-300:]}, the pin is {version} "
        "(rebuild: scripts/install-test-tools.sh)")
    installed = Path(os.path.realpath(binary)).parent.parent / "npm" / "node_modules" / package / "package.json"
    assert json.loads(installed.read_text())["version"] == version
