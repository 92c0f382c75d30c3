"""Helpers to check generated configs with the real Prometheus tools.

Debian's prometheus package (2.42) is built without Kubernetes service
discovery, so its promtool rejects ``kubernetes_sd_configs``. ``checkable``
therefore swaps each such block for an equivalent ``file_sd_configs`` block and
points credential files at stand-ins; everything else (globals, alerting,
relabelling regexes and actions, rule files, auth and TLS fields) reaches
promtool unchanged. The swapped blocks are checked by ``kubernetes_sd_problems``
against the documented schema and meta labels instead.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import yaml

from components.configs.prometheus import SA_DIR

# Documented meta labels per role (Prometheus kubernetes_sd_config); "*" ends a prefix.
_POD = ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_name", "__meta_kubernetes_pod_ip",
        "__meta_kubernetes_pod_label_*", "__meta_kubernetes_pod_labelpresent_*",
        "__meta_kubernetes_pod_annotation_*", "__meta_kubernetes_pod_annotationpresent_*",
        "__meta_kubernetes_pod_container_init", "__meta_kubernetes_pod_container_name",
        "__meta_kubernetes_pod_container_id", "__meta_kubernetes_pod_container_image",
        "__meta_kubernetes_pod_container_port_name", "__meta_kubernetes_pod_container_port_number",
        "__meta_kubernetes_pod_container_port_protocol", "__meta_kubernetes_pod_ready",
        "__meta_kubernetes_pod_phase", "__meta_kubernetes_pod_node_name", "__meta_kubernetes_pod_host_ip",
        "__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_controller_kind",
        "__meta_kubernetes_pod_controller_name"]
_SERVICE = ["__meta_kubernetes_namespace", "__meta_kubernetes_service_annotation_*",
            "__meta_kubernetes_service_annotationpresent_*", "__meta_kubernetes_service_cluster_ip",
            "__meta_kubernetes_service_external_name", "__meta_kubernetes_service_label_*",
            "__meta_kubernetes_service_labelpresent_*", "__meta_kubernetes_service_name",
            "__meta_kubernetes_service_port_name", "__meta_kubernetes_service_port_number",
            "__meta_kubernetes_service_port_protocol", "__meta_kubernetes_service_type"]
META_LABELS = {
    "node": ["__meta_kubernetes_node_name", "__meta_kubernetes_node_provider_id",
             "__meta_kubernetes_node_label_*", "__meta_kubernetes_node_labelpresent_*",
             "__meta_kubernetes_node_annotation_*", "__meta_kubernetes_node_annotationpresent_*",
             "__meta_kubernetes_node_address_*"],
    "pod": _POD,
    "service": _SERVICE,
    # endpointslice targets also carry the pod and service labels of what they point at
    "endpointslice": ["__meta_kubernetes_endpointslice_name", "__meta_kubernetes_endpointslice_label_*",
                      "__meta_kubernetes_endpointslice_labelpresent_*",
                      "__meta_kubernetes_endpointslice_annotation_*",
                      "__meta_kubernetes_endpointslice_address_target_kind",
                      "__meta_kubernetes_endpointslice_address_target_name",
                      "__meta_kubernetes_endpointslice_address_type",
                      "__meta_kubernetes_endpointslice_endpoint_conditions_ready",
                      "__meta_kubernetes_endpointslice_endpoint_conditions_serving",
                      "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                      "__meta_kubernetes_endpointslice_endpoint_hostname",
                      "__meta_kubernetes_endpointslice_endpoint_node_name",
                      "__meta_kubernetes_endpointslice_endpoint_zone",
                      "__meta_kubernetes_endpointslice_endpoint_topology_*",
                      "__meta_kubernetes_endpointslice_port", "__meta_kubernetes_endpointslice_port_name",
                      "__meta_kubernetes_endpointslice_port_protocol",
                      "__meta_kubernetes_endpointslice_port_app_protocol"] + _POD + _SERVICE,
}
SD_KEYS = {"role", "api_server", "namespaces", "selectors", "attach_metadata", "kubeconfig_file",
           "tls_config", "authorization", "follow_redirects"}
NAMESPACE_KEYS = {"own_namespace", "names"}


def _known_meta(role: str, label: str) -> bool:
    for pattern in META_LABELS[role]:
        if pattern.endswith("*") and label.startswith(pattern[:-1]) and len(label) > len(pattern) - 1:
            return True
        if label == pattern:
            return True
    return False


def kubernetes_sd_problems(config: dict) -> list[str]:
    problems = []
    for job in config["scrape_configs"]:
        blocks = job.get("kubernetes_sd_configs", [])
        for block in blocks:
            unknown = set(block) - SD_KEYS
            if unknown:
                problems.append(f"{job['job_name']}: unknown kubernetes_sd_configs keys {sorted(unknown)}")
            if block.get("role") not in META_LABELS:
                problems.append(f"{job['job_name']}: role {block.get('role')!r} is not one the stack knows")
                continue
            namespaces = block.get("namespaces", {})
            if set(namespaces) - NAMESPACE_KEYS or not all(isinstance(n, str) for n in namespaces.get("names", [])):
                problems.append(f"{job['job_name']}: bad namespaces block {namespaces}")
        roles = {block.get("role") for block in blocks}
        for rule in job.get("relabel_configs", []):
            for label in rule.get("source_labels", []):
                if label.startswith("__meta_kubernetes_") and not any(
                        r in META_LABELS and _known_meta(r, label) for r in roles):
                    problems.append(f"{job['job_name']}: {label} is not a meta label of role(s) {sorted(roles)}")
                if label.startswith("__meta_") and not label.startswith("__meta_kubernetes_"):
                    problems.append(f"{job['job_name']}: {label} cannot come from Kubernetes discovery")
    return problems


def checkable(config_text: str, workdir: Path, rule_files: dict[str, str]) -> Path:
    """Write a promtool-checkable copy of prometheus.yml (see module docstring) and its rules."""
    config = yaml.safe_load(config_text)
    check = copy.deepcopy(config)
    sa = workdir / "serviceaccount"
    sa.mkdir(parents=True, exist_ok=True)
    (sa / "token").write_text("stand-in-token\n")
    (sa / "ca.crt").write_text("")
    rules = workdir / "rules"
    rules.mkdir(exist_ok=True)
    for name, text in rule_files.items():
        (rules / name).write_text(text)
    (workdir / "sd.json").write_text("[]")
    for job in check["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            job.pop("kubernetes_sd_configs")
            job["file_sd_configs"] = [{"files": [str(workdir / "sd.json")]}]
    text = yaml.safe_dump(check, sort_keys=False).replace(SA_DIR, str(sa))
    text = re.sub(r"/etc/prometheus/rules/", str(rules) + "/", text)
    path = workdir / "prometheus.yml"
    path.write_text(text)
    return path


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)
