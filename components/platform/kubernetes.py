"""Kubernetes realisation of ``ServiceSpec``: the hardened defaults live here.

Every container gets an exact image, requests and limits, startup/liveness/
readiness probes, a fixed non-root uid, a read-only root filesystem, no
capabilities, no privilege escalation and the RuntimeDefault seccomp profile.
Pods get no API credentials unless the service declares the access it needs.
The exceptions are the ``HOST_ACCESS`` entries of ``components.platform.workload``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.settings import IngressSettings, Resources
from components.platform.workload import (ANYWHERE, HOST_ACCESS, INGRESS, OTHER_NAMESPACES, PART_OF, RELOADER_PORT,
                                          CommandCheck, DeployedService, Flow, ServiceSpec)

DNS_EGRESS = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
}
RELOADER_RESOURCES = Resources.of(cpu_request="5m", memory_request="16Mi", memory_limit="64Mi")
JOB_TTL_SECONDS = 7 * 86400  # finished run-once Jobs stay a week for their logs, then go


# Pod template annotations "checksum.football-monitoring/<object>": one per ConfigMap or Secret the
# pods read only at start, so that a change of its content rolls them.
CHECKSUM_PREFIX = "checksum.football-monitoring"
_ANNOTATION_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def content_checksum(files: dict) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def secret_checksum(key: str, data: Mapping[str, str]) -> str:
    """HMAC-SHA256 of a Secret's data under the stack's own checksum key: it changes with the
    content and, unlike a plain hash of a short password, cannot be tested against guesses by
    anyone who may read pod specs but not Secrets."""
    return hmac.new(key.encode(), json.dumps(dict(data), sort_keys=True).encode(), hashlib.sha256).hexdigest()


def checksum_annotation(object_name: str) -> str:
    if not _ANNOTATION_NAME.fullmatch(object_name):
        raise ValueError(f"{object_name!r} cannot name a checksum annotation (at most 63 characters)")
    return f"{CHECKSUM_PREFIX}/{object_name}"


def _file_object_suffix(file_name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", file_name.rsplit(".", 1)[0].lower()).strip("-")


class KubernetesPlatform:
    """Places services into the stack's namespace of one cluster, and those that need host access
    (``HOST_ACCESS``) into a namespace of their own, so that the stack's namespace can enforce the
    PodSecurity "restricted" level and only the other is privileged."""

    kind = "kubernetes"

    def __init__(self, *, namespace: str, environment: str, provider: k8s.Provider,
                 storage_class: Optional[str], protect_data: bool, reloader_image: str,
                 ingress: Optional[IngressSettings] = None, priority_class: Optional[str] = None,
                 waiting_priority_class: Optional[str] = None,
                 ingress_namespace: str = "ingress-nginx", checksum_key: Optional[pulumi.Output] = None,
                 node_namespace: Optional[str] = None):
        self.namespace = namespace
        self.node_namespace = node_namespace or namespace
        # Keys the checksums of Secret content (secret_checksum); generated once per stack.
        self.checksum_key = checksum_key
        # Content of every Secret this platform made, by name: a service that mounts one of them
        # by name (ExternalSecret) rolls when it changes, like the service that owns it.
        self._secret_data: dict[str, dict] = {}
        # Network policies wait for finish(): a flow may name a service deployed later, whose
        # namespace is known only then.
        self._policies: list = []
        self._namespace_of_app: dict[str, str] = {}
        self.ingress = ingress
        self.priority_class = priority_class
        self.waiting_priority_class = waiting_priority_class or priority_class
        self.ingress_namespace = ingress_namespace
        self.environment = environment
        self.provider = provider
        self.storage_class = storage_class
        self.protect_data = protect_data
        self.reloader_image = reloader_image

    def host_of(self, name: str) -> str:
        return f"{name}.{self._namespace_of_app.get(name, self.namespace)}.svc"

    def namespace_of(self, spec: ServiceSpec) -> str:
        return self.node_namespace if spec.host_access else self.namespace

    def every_replica_host(self, name: str) -> str:
        return f"{name}-headless.{self.namespace}.svc"  # the headless Service lists unready pods too

    def replica_hosts(self, name: str, replicas: int) -> list[str]:
        # StatefulSet pods behind the headless Service have stable DNS names.
        return [f"{name}-{i}.{name}-headless.{self.namespace}.svc" for i in range(replicas)]

    def pods_host(self, name: str) -> str:
        # A headless Service's name resolves to the addresses of its ready pods (publishNotReadyAddresses
        # false for the headless_ports one), so clients that balance over the pods see each one.
        return f"{name}-headless.{self._namespace_of_app.get(name, self.namespace)}.svc"

    # -- labels -----------------------------------------------------------------
    def instance_label(self, name: str) -> str:
        """The app.kubernetes.io/instance of a service's pods: one per service, also where several
        services share an app.kubernetes.io/name (ServiceSpec.app)."""
        return f"{name}-{self.environment}"

    def selector(self, spec: ServiceSpec) -> dict:
        return {"app.kubernetes.io/name": spec.app_name, "app.kubernetes.io/instance": self.instance_label(spec.name)}

    def labels(self, spec: ServiceSpec) -> dict:
        return {
            **self.selector(spec),
            "app.kubernetes.io/component": spec.component,
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": "pulumi",
            "app.kubernetes.io/version": spec.version[:63],
        }

    def meta(self, name: str, spec: Optional[ServiceSpec] = None, namespaced: bool = True, **extra) -> dict:
        meta = {"name": name, "labels": self.labels(spec) if spec else {"app.kubernetes.io/part-of": PART_OF}}
        if namespaced:
            meta["namespace"] = self.namespace_of(spec) if spec else self.namespace
        meta.update(extra)
        return meta

    def opts(self, parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **kwargs)

    def stateful_opts(self, parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
        # PVCs from volumeClaimTemplates are not Pulumi resources; the retention
        # policy on the StatefulSet keeps them, protection keeps the StatefulSet.
        return self.opts(parent, protect=self.protect_data, retain_on_delete=self.protect_data, **kwargs)

    # -- the service --------------------------------------------------------------
    def deploy(self, spec: ServiceSpec, parent: pulumi.Resource) -> DeployedService:
        self._namespace_of_app[spec.name] = self._namespace_of_app[spec.app_name] = self.namespace_of(spec)
        volumes, mounts, annotations = self._config_volumes(spec, parent)
        sidecar_mounts = {}
        for sidecar in spec.sidecars:
            more_volumes, sidecar_mounts[sidecar.name], more_annotations = self._config_volumes(
                spec, parent, sidecar.config, f"{spec.name}-{sidecar.name}", f"config-{sidecar.name}")
            volumes += more_volumes
            annotations.update(more_annotations)
            if sidecar.data_path:
                if not spec.data:
                    raise ValueError(f"{spec.name}: sidecar {sidecar.name} mounts a data volume the service does not have")
                sidecar_mounts[sidecar.name].append({"name": "data", "mountPath": sidecar.data_path})
        if spec.data:
            mounts.append({"name": "data", "mountPath": spec.data.mount_path})
        for i, path in enumerate(spec.scratch_paths):
            volumes.append({"name": f"scratch-{i}", "emptyDir": {"sizeLimit": "256Mi"}})
            mounts.append({"name": f"scratch-{i}", "mountPath": path})
        for i, shared in enumerate(spec.shared_volumes):
            volumes.append({"name": f"shared-{i}", "persistentVolumeClaim": {"claimName": shared.claim_name}})
            mounts.append({"name": f"shared-{i}", "mountPath": shared.mount_path})
        annotations.update(spec.pod_annotations)
        secret_env = self._secret_env(spec, parent, annotations)
        for i, external in enumerate(spec.external_secrets):
            volumes.append({"name": f"external-{i}", "secret": {"secretName": external.secret_name, "defaultMode": 0o440}})
            mounts.append({"name": f"external-{i}", "mountPath": external.mount_path, "readOnly": True})
            if external.secret_name in self._secret_data:
                annotations[checksum_annotation(external.secret_name)] = \
                    self._secret_checksum(self._secret_data[external.secret_name])

        pod_spec: dict = {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": spec.run_as_user,
                "runAsGroup": spec.run_as_user,
                "fsGroup": spec.run_as_user,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [self._main_container(spec, mounts, secret_env)],
            "volumes": volumes,
            "terminationGracePeriodSeconds": 60 if spec.data else 30,
        }
        if spec.sysctls:
            pod_spec["securityContext"]["sysctls"] = [{"name": k, "value": v} for k, v in spec.sysctls.items()]
        if spec.reloader:
            pod_spec["containers"].append(self._reloader_container(spec))
        if spec.init:
            pod_spec["initContainers"] = [self._init_container(spec, step, mounts, secret_env) for step in spec.init]
        pod_spec["containers"] += [self._sidecar_container(sidecar, sidecar_mounts[sidecar.name])
                                   for sidecar in spec.sidecars]

        pod_spec["serviceAccountName"] = self._service_account(spec, parent)
        pod_spec["automountServiceAccountToken"] = bool(spec.api_access)

        if spec.host_access:
            self._apply_host_access(spec, pod_spec)
        if spec.every_node:
            # Node-level exporters must run on tainted nodes too, or those nodes go unwatched.
            pod_spec["tolerations"] = [{"operator": "Exists"}]
        elif spec.replicas > 1:
            # Replicas on one node (or in one zone) fail together; spread them, but never
            # leave a replica unscheduled because the cluster is small.
            pod_spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {"matchLabels": self.selector(spec)}},
            }]}}
            pod_spec["topologySpreadConstraints"] = [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": self.selector(spec)},
            }]
        if self.priority_class:
            waits = not spec.preempts or spec.run_once or spec.schedule
            pod_spec["priorityClassName"] = self.waiting_priority_class if waits else self.priority_class

        template = {"metadata": {"labels": self.labels(spec), "annotations": annotations}, "spec": pod_spec}
        if spec.run_once:
            pod_spec["restartPolicy"] = "OnFailure"
            workload = self._job(spec, template, parent)
            self._policies.append((spec, parent))
            return DeployedService(spec, self.host_of(spec.name), [], workload, self.namespace_of(spec))
        workload = self._workload(spec, template, parent)
        self._services(spec, parent)
        self._policies.append((spec, parent))
        if spec.replicas > 1 and not spec.every_node:
            # Voluntary disruptions (node drains, upgrades) take one replica at a time.
            k8s.policy.v1.PodDisruptionBudget(spec.name, metadata=self.meta(spec.name, spec), spec={
                "maxUnavailable": 1, "selector": {"matchLabels": self.selector(spec)},
            }, opts=self.opts(parent))
        return DeployedService(spec, self.host_of(spec.name),
                               self.replica_hosts(spec.name, spec.replicas) if spec.data else [], workload,
                               self.namespace_of(spec),
                               pods_host=self.pods_host(spec.name) if spec.data or spec.headless_ports else None)

    def finish(self) -> None:
        """The network policies of every deployed service, now that each one's namespace is known."""
        for spec, parent in self._policies:
            self._network_policy(spec, parent)
        self._policies = []

    def _secret_checksum(self, data: Mapping) -> pulumi.Output:
        if self.checksum_key is None:
            raise ValueError("the platform has no checksum key for Secret content")
        content = pulumi.Output.all(**{k: pulumi.Output.from_input(v) for k, v in data.items()})
        # Derived from secrets, so secret itself: state and previews show only that it changed.
        return pulumi.Output.secret(pulumi.Output.all(self.checksum_key, content).apply(
            lambda key_content: secret_checksum(key_content[0], key_content[1])))

    def _secret_env(self, spec: ServiceSpec, parent: pulumi.Resource, annotations: dict) -> list:
        if not spec.secret_env:
            return []
        object_name = f"{spec.name}-env"
        keys = {name: name.lower().replace("_", "-") for name in spec.secret_env}
        data = {keys[n]: v for n, v in spec.secret_env.items()}
        k8s.core.v1.Secret(object_name, metadata=self.meta(object_name, spec), type="Opaque",
                           string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
                           opts=self.opts(parent))
        self._secret_data[object_name] = data
        # The environment is read when the container starts: a changed value must roll the pods.
        annotations[checksum_annotation(object_name)] = self._secret_checksum(data)
        return [{"name": n, "valueFrom": {"secretKeyRef": {"name": object_name, "key": keys[n]}}} for n in spec.secret_env]

    def _main_container(self, spec: ServiceSpec, mounts: list, secret_env: list) -> dict:
        container = {
            "name": spec.app_name,  # the same in every shard of one application (kubectl logs -c prometheus)
            "image": spec.image,
            "imagePullPolicy": "IfNotPresent",
            "args": list(spec.args),
            **({"command": list(spec.command)} if spec.command else {}),
            "ports": [{"name": p.name, "containerPort": p.port, "protocol": p.protocol}
                      for p in list(spec.ports) + list(spec.cluster_peers)],
            "resources": spec.resources.to_kubernetes(),
            "securityContext": _container_security(),
            "volumeMounts": mounts,
        }
        env = [{"name": k, "value": v} for k, v in spec.env.items()]
        env += [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": path}}} for k, path in spec.env_from_pod.items()]
        env += secret_env
        if env:
            container["env"] = env
        if spec.liveness:
            container["startupProbe"] = _http_probe(spec.liveness, period=10, failures=60)
            container["livenessProbe"] = _http_probe(spec.liveness, period=15, failures=4)
        if spec.readiness:
            container["readinessProbe"] = _http_probe(spec.readiness, period=10, failures=3)
        return container

    def _init_container(self, spec: ServiceSpec, step, mounts: list, secret_env: list) -> dict:
        """A step before the service starts: same mounts and environment, same hardening."""
        container = {
            "name": step.name,
            "image": step.image or spec.image,
            "imagePullPolicy": "IfNotPresent",
            "command": list(step.command),
            "resources": spec.resources.to_kubernetes(),
            "securityContext": _container_security(),
            "volumeMounts": [dict(m) for m in mounts],
        }
        env = [{"name": k, "value": v} for k, v in spec.env.items()]
        env += [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": path}}} for k, path in spec.env_from_pod.items()]
        env += secret_env
        if env:
            container["env"] = env
        return container

    def _sidecar_container(self, sidecar, mounts: list) -> dict:
        security = _container_security()
        security["runAsUser"] = sidecar.run_as_user
        container = {
            "name": sidecar.name,
            "image": sidecar.image,
            "imagePullPolicy": "IfNotPresent",
            "args": list(sidecar.args),
            "ports": [{"name": p.name, "containerPort": p.port, "protocol": p.protocol}
                      for p in (sidecar.port, *sidecar.more_ports)],
            "resources": sidecar.resources.to_kubernetes(),
            "securityContext": security,
            # A sidecar's health page asks the service it watches (the exporters' do): as liveness it
            # would restart a healthy sidecar whenever the service is slow to start or down. Alive
            # means listening; the page decides readiness only.
            "livenessProbe": {"tcpSocket": {"port": sidecar.port.name}, "periodSeconds": 30,
                              "timeoutSeconds": 5, "failureThreshold": 3},
            "readinessProbe": _http_probe(sidecar.health, period=30, failures=3),
        }
        if sidecar.env:
            container["env"] = [{"name": k, "value": v} for k, v in sidecar.env.items()]
        if mounts:
            container["volumeMounts"] = mounts
        return container

    def _reloader_container(self, spec: ServiceSpec) -> dict:
        # Secret files marked reload are read by the program each time it uses them; the reloader
        # only asks it to reload its configuration, so it watches (and mounts) none of them.
        watched = [c for c in spec.config if c.reload and not c.secret]
        return {
            "name": "config-reloader",
            "image": self.reloader_image,
            "imagePullPolicy": "IfNotPresent",
            "args": [f"--listen-address=:{RELOADER_PORT}", f"--reload-url={spec.reloader.reload_url}"]
            + [f"--watched-dir={c.mount_path}" for c in watched],
            "ports": [{"name": "reloader-web", "containerPort": RELOADER_PORT, "protocol": "TCP"}],
            # The reloader derives a StatefulSet ordinal from POD_NAME and complains without it.
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "resources": RELOADER_RESOURCES.to_kubernetes(),
            "securityContext": _container_security(),
            "volumeMounts": [{"name": f"config-{c.name}", "mountPath": c.mount_path, "readOnly": True} for c in watched],
            "livenessProbe": {"tcpSocket": {"port": "reloader-web"}, "periodSeconds": 30, "failureThreshold": 3},
            "readinessProbe": {"tcpSocket": {"port": "reloader-web"}, "periodSeconds": 30},
        }

    def _config_volumes(self, spec: ServiceSpec, parent: pulumi.Resource, configs=None,
                        object_prefix: Optional[str] = None, volume_prefix: str = "config"):
        """Volumes and mounts of the config files (the service's, or ``configs`` of one of its
        sidecars), and a checksum annotation for each object the service reads only at start (not
        ``reload``): a change of its content rolls the pods."""
        volumes, mounts, annotations = [], [], {}
        for cfg in spec.config if configs is None else configs:
            object_name = f"{object_prefix or spec.name}-{cfg.name}"
            if cfg.secret:
                k8s.core.v1.Secret(
                    object_name, metadata=self.meta(object_name, spec), type="Opaque",
                    string_data={k: pulumi.Output.secret(v) for k, v in cfg.files.items()},
                    opts=self.opts(parent))
                self._secret_data[object_name] = dict(cfg.files)
                volumes.append({"name": f"{volume_prefix}-{cfg.name}", "secret": {"secretName": object_name, "defaultMode": 0o440}})
                if not cfg.reload:
                    annotations[checksum_annotation(object_name)] = self._secret_checksum(cfg.files)
            else:
                parts = ({f"{object_name}-{_file_object_suffix(f)}": {f: text} for f, text in cfg.files.items()}
                         if cfg.object_per_file else {object_name: dict(cfg.files)})
                for part, data in parts.items():
                    k8s.core.v1.ConfigMap(part, metadata=self.meta(part, spec), data=data, opts=self.opts(parent))
                    if not cfg.reload:
                        annotations[checksum_annotation(part)] = content_checksum(data)
                if cfg.object_per_file:
                    # One directory from many ConfigMaps; the kubelet updates it like a configMap volume.
                    volumes.append({"name": f"{volume_prefix}-{cfg.name}", "projected": {
                        "sources": [{"configMap": {"name": part}} for part in parts], "defaultMode": 0o444}})
                else:
                    volumes.append({"name": f"{volume_prefix}-{cfg.name}", "configMap": {"name": object_name, "defaultMode": 0o444}})
            mounts.append({"name": f"{volume_prefix}-{cfg.name}", "mountPath": cfg.mount_path, "readOnly": True})
        return volumes, mounts, annotations

    def _service_account(self, spec: ServiceSpec, parent: pulumi.Resource) -> str:
        k8s.core.v1.ServiceAccount(spec.name, metadata=self.meta(spec.name, spec),
                                   automount_service_account_token=bool(spec.api_access), opts=self.opts(parent))
        if spec.api_access:
            cluster_name = f"{self.namespace}-{spec.name}"
            rules = []
            for rule in spec.api_access:
                if rule.non_resource_urls:
                    rules.append({"nonResourceURLs": list(rule.non_resource_urls), "verbs": list(rule.verbs)})
                else:
                    rules.append({"apiGroups": list(rule.api_groups), "resources": list(rule.resources),
                                  "verbs": list(rule.verbs)})
            k8s.rbac.v1.ClusterRole(cluster_name, metadata=self.meta(cluster_name, spec, namespaced=False),
                                    rules=rules, opts=self.opts(parent))
            k8s.rbac.v1.ClusterRoleBinding(
                cluster_name, metadata=self.meta(cluster_name, spec, namespaced=False),
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
                subjects=[{"kind": "ServiceAccount", "name": spec.name, "namespace": self.namespace_of(spec)}],
                opts=self.opts(parent))
        return spec.name

    def _apply_host_access(self, spec: ServiceSpec, pod_spec: dict) -> None:
        access = HOST_ACCESS[spec.host_access]
        pod_spec["hostNetwork"] = access.host_network
        pod_spec["hostPID"] = access.host_pid
        if access.run_as_root:
            # Still no capabilities, no escalation, read-only root filesystem (see HOST_ACCESS).
            pod_spec["securityContext"].update({"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0})
            pod_spec["securityContext"].pop("fsGroup", None)
            pod_spec["securityContext"].pop("fsGroupChangePolicy", None)
            for c in pod_spec["containers"][:1]:
                c["securityContext"]["runAsNonRoot"] = False
        if access.host_network:
            pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
        container = pod_spec["containers"][0]
        for i, (host_path, mount_path) in enumerate(access.host_paths.items()):
            pod_spec["volumes"].append({"name": f"host-{i}", "hostPath": {"path": host_path}})
            mount = {"name": f"host-{i}", "mountPath": mount_path, "readOnly": True}
            if host_path == "/":
                mount["mountPropagation"] = "HostToContainer"
            container["volumeMounts"].append(mount)
        for i, (host_path, mount_path) in enumerate(access.writable_host_paths.items()):
            pod_spec["volumes"].append({"name": f"host-rw-{i}", "hostPath": {"path": host_path,
                                                                               "type": "DirectoryOrCreate"}})
            container["volumeMounts"].append({"name": f"host-rw-{i}", "mountPath": mount_path})

    def _workload(self, spec: ServiceSpec, template: dict, parent: pulumi.Resource) -> pulumi.CustomResource:
        selector = {"matchLabels": self.selector(spec)}
        metadata = self.meta(spec.name, spec)
        if spec.schedule:
            # A job runs to completion: restarted on failure, never two at once, a short history.
            job_template = {**template, "spec": {**template["spec"], "restartPolicy": "OnFailure"}}
            if spec.data:
                # Runs come and go; what they write stays on a claim of its own, protected like the stack's data.
                claim_name = f"{spec.name}-data"
                claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.data.size}}}
                if self.storage_class:
                    claim["storageClassName"] = self.storage_class
                k8s.core.v1.PersistentVolumeClaim(claim_name, metadata=self.meta(claim_name, spec), spec=claim,
                                                  opts=self.stateful_opts(parent))
                job_template["spec"]["volumes"] = list(job_template["spec"]["volumes"]) + [
                    {"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]
            return k8s.batch.v1.CronJob(spec.name, metadata=metadata, spec={
                "schedule": spec.schedule,
                # Schedules are UTC (settings reference, the Docker host's loop, Jaeger's daily indices);
                # unset, the controller-manager reads them in its own local zone.
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"metadata": {"labels": self.labels(spec)},
                                "spec": {"backoffLimit": 3, "activeDeadlineSeconds": 3600, "template": job_template}},
            }, opts=self.opts(parent))
        if spec.every_node:
            return k8s.apps.v1.DaemonSet(spec.name, metadata=metadata, spec={
                "selector": selector, "template": template,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "20%"}},
                "revisionHistoryLimit": 5,
            }, opts=self.opts(parent))
        if spec.data:
            claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.data.size}}}
            if self.storage_class:
                claim["storageClassName"] = self.storage_class
            return k8s.apps.v1.StatefulSet(spec.name, metadata=metadata, spec={
                "replicas": spec.replicas,
                "serviceName": f"{spec.name}-headless",
                "podManagementPolicy": "Parallel",
                "selector": selector,
                "template": template,
                "updateStrategy": {"type": "RollingUpdate"},
                "revisionHistoryLimit": 5,
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {
                    **self.selector(spec), "app.kubernetes.io/part-of": PART_OF}}, "spec": claim}],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            }, opts=self.stateful_opts(parent))
        return k8s.apps.v1.Deployment(spec.name, metadata=metadata, spec={
            "replicas": spec.replicas, "selector": selector, "template": template, "revisionHistoryLimit": 5,
        }, opts=self.opts(parent))

    def _job(self, spec: ServiceSpec, template: dict, parent: pulumi.Resource) -> pulumi.CustomResource:
        """A run-once service: a Job whose name carries the hash of what it applies, so changed
        content runs a new Job (the old one is deleted) and unchanged content runs nothing."""
        plain = {c.name: dict(c.files) for c in spec.config if not c.secret}
        digest = content_checksum({"config": plain, "args": list(spec.args), "env": dict(spec.env),
                                   "image": spec.image, "annotations": dict(spec.pod_annotations)})[:10]
        name = f"{spec.name}-{digest}"
        return k8s.batch.v1.Job(name, metadata=self.meta(name, spec), spec={
            "backoffLimit": 6,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
            "template": template,
        # pulumi up waits for the Job to complete: a failed run fails the deploy. Its first run also
        # waits for the services it configures, hence the longer timeout.
        }, opts=self.opts(parent, delete_before_replace=True,
                          custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m")))

    def _services(self, spec: ServiceSpec, parent: pulumi.Resource) -> None:
        if spec.every_node:
            return  # scraped per pod through discovery; a Service would only hide which node answered
        if spec.schedule:
            return  # a job serves nothing
        ports = [{"name": p.name, "port": p.port, "targetPort": p.name, "protocol": p.protocol} for p in spec.ports]
        service_spec = {"selector": self.selector(spec), "ports": ports, "type": "ClusterIP"}
        if spec.session_affinity:
            service_spec["sessionAffinity"] = "ClientIP"
        k8s.core.v1.Service(spec.name, metadata=self.meta(spec.name, spec), spec=service_spec, opts=self.opts(parent))
        unknown = set(spec.headless_ports) - {p.name for p in spec.ports}
        if unknown:
            raise ValueError(f"{spec.name}: headless_ports {sorted(unknown)} are not ports of the service")
        if spec.headless_ports and not spec.data:
            # Only the ports clients reach pod by pod: a name without a port means these.
            headless = f"{spec.name}-headless"
            k8s.core.v1.Service(headless, metadata=self.meta(headless, spec), spec={
                "clusterIP": "None",
                "selector": self.selector(spec),
                "ports": [p for p in ports if p["name"] in spec.headless_ports],
                # Ready pods only: a client that routes to an unready one loses what it sends.
                "publishNotReadyAddresses": False,
            }, opts=self.opts(parent))
        if spec.data:
            # A StatefulSet's headless Service also serves headless_ports (it publishes every port).
            # Its sidecars' too: a replica's own name reaches them as well (Thanos Query dials
            # each Prometheus pod's sidecar by it).
            sidecar_ports = [p for sidecar in spec.sidecars for p in (sidecar.port, *sidecar.more_ports)]
            peer_ports = [{"name": p.name, "port": p.port, "targetPort": p.name, "protocol": p.protocol}
                          for p in list(spec.ports) + list(spec.cluster_peers) + sidecar_ports]
            headless = f"{spec.name}-headless"
            k8s.core.v1.Service(headless, metadata=self.meta(headless, spec), spec={
                "clusterIP": "None",
                "selector": self.selector(spec),
                "ports": peer_ports,
                # Peers must find each other before they are ready, or a cluster never forms.
                "publishNotReadyAddresses": bool(spec.cluster_peers),
            }, opts=self.opts(parent))

    # -- isolation ------------------------------------------------------------------
    def _peer(self, peer: str, own_namespace: str) -> list:
        if peer == ANYWHERE:
            return []  # no "from"/"to": every address
        if peer == INGRESS:
            return [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.ingress_namespace}}}]
        if peer == OTHER_NAMESPACES:
            return [{"namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": sorted({self.namespace, self.node_namespace})}]}}]
        selector = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": peer, "app.kubernetes.io/part-of": PART_OF}}}
        if peer not in self._namespace_of_app:
            raise ValueError(f"a network flow names {peer!r}, which is not a service of this stack")
        peer_namespace = self._namespace_of_app[peer]
        if peer_namespace != own_namespace:
            # A bare podSelector means the policy's own namespace.
            selector["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": peer_namespace}}
        return [selector]

    def _rule(self, flow: Flow, peers_key: str, own_namespace: str) -> dict:
        """One NetworkPolicy rule for ``flow``; ``peers_key`` is "from" (ingress) or "to" (egress)."""
        rule: dict = {}
        peers = self._peer(flow.peer, own_namespace)
        if peers:
            rule[peers_key] = peers
        if isinstance(flow.ports, pulumi.Output):
            rule["ports"] = flow.ports.apply(lambda pairs: [{"port": port, "protocol": protocol}
                                                            for port, protocol in pairs])
        elif flow.ports:
            rule["ports"] = [{"port": port, "protocol": protocol} for port, protocol in flow.ports]
        return rule

    def _network_policy(self, spec: ServiceSpec, parent: pulumi.Resource) -> None:
        access = HOST_ACCESS.get(spec.host_access) if spec.host_access else None
        if access and access.host_network:
            return  # policies do not apply to pods in the host's network namespace
        own = self.namespace_of(spec)
        ingress = []
        for flow in spec.allow_in:
            if flow.peer == INGRESS and not (self.ingress and self.ingress.hosts.get(spec.name)):
                continue  # not exposed: no door for the ingress controller
            ingress.append(self._rule(flow, "from", own))
        if spec.reloader:
            # Without this door the reloader's metrics are never scraped and its target is down.
            ingress += [self._rule(Flow(peer, [(RELOADER_PORT, "TCP")]), "from", own)
                        for peer in spec.reloader.scraped_by]
        egress = [DNS_EGRESS] + [self._rule(flow, "to", own) for flow in spec.allow_out]
        name = spec.name
        policy = {"podSelector": {"matchLabels": self.selector(spec)}, "policyTypes": ["Ingress", "Egress"]}
        # policyTypes alone denies a direction; an empty rule list is dropped by the API server, so
        # server-side apply would own a field that never exists and write the object on every apply.
        policy.update({direction: rules for direction, rules in (("ingress", ingress), ("egress", egress)) if rules})
        k8s.networking.v1.NetworkPolicy(f"{name}-network", metadata=self.meta(name, spec), spec=policy,
                                        opts=self.opts(parent))

    # -- exposure -------------------------------------------------------------------
    def public_url(self, name: str, scheme: str = "https") -> Optional[str]:
        return self.ingress.url(name) if self.ingress else None  # ingresses serve TLS

    def expose(self, deployed: DeployedService, port_name: str, parent: pulumi.Resource) -> None:
        """An Ingress for a UI whose host is set in the ingress settings."""
        ingress = self.ingress
        host = ingress.hosts.get(deployed.name) if ingress else None
        if not host:
            return
        annotations = {}
        if ingress.cluster_issuer:
            annotations["cert-manager.io/cluster-issuer"] = ingress.cluster_issuer
        if deployed.name != "grafana" and ingress.auth_url:
            # Grafana has its own login; the others only pass an authenticating proxy.
            annotations["nginx.ingress.kubernetes.io/auth-url"] = ingress.auth_url
            if ingress.auth_signin:
                annotations["nginx.ingress.kubernetes.io/auth-signin"] = ingress.auth_signin
        spec: dict = {"rules": [{"host": host, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": deployed.name, "port": {"name": port_name}}},
        }]}}]}
        if ingress.class_name:
            spec["ingressClassName"] = ingress.class_name
        if ingress.tls_secret_name:
            spec["tls"] = [{"hosts": [host], "secretName": tls_secret(ingress, deployed.name)}]
        k8s.networking.v1.Ingress(deployed.name, metadata=self.meta(deployed.name, deployed.spec, annotations=annotations),
                                  spec=spec, opts=self.opts(parent))


def tls_secret(ingress, ui: str) -> str:
    """The TLS Secret of one UI's Ingress.

    cert-manager's ingress-shim makes one Certificate per TLS Secret, named after the Secret and
    controlled by the Ingress that asked first; for any other Ingress naming the same Secret it
    refuses to update "non-owned" Certificates (pkg/controller/certificate-shim/sync.go,
    buildCertificates), so that host is never added and is served the first host's certificate.
    With an issuer every Ingress therefore gets its own Secret; without one, the Secret is the
    operator's (e.g. a wildcard certificate) and is shared as named."""
    if ingress.cluster_issuer:
        return f"{ingress.tls_secret_name}-{ui}"
    return ingress.tls_secret_name


def _container_security() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _http_probe(check, *, period: int, failures: int) -> dict:
    if isinstance(check, CommandCheck):
        return {"exec": {"command": list(check.command)}, "periodSeconds": period,
                "timeoutSeconds": 10, "failureThreshold": failures}
    return {"httpGet": {"path": check.path, "port": check.port}, "periodSeconds": period,
            "timeoutSeconds": 5, "failureThreshold": failures}


# Pods are refused by the policy of the oldest Kubernetes release the stack supports (README), not
# by the cluster's latest: an upgrade that tightens "restricted" shows as warnings and audit entries
# (those judge by the latest policy) before it can refuse the pods of a rollout.
POD_SECURITY_ENFORCE_VERSION = "v1.36"


def namespace(name: str, provider: k8s.Provider, parent: pulumi.Resource,
              host_access: bool = False) -> k8s.core.v1.Namespace:
    """The stack's namespace enforces PodSecurity "restricted" (warnings and audit too); the
    namespace of the host-access workloads (HOST_ACCESS: node-exporter, Filebeat) is privileged
    and holds nothing else."""
    level = "privileged" if host_access else "restricted"
    return k8s.core.v1.Namespace(name, metadata={
        "name": name,
        "labels": {
            "app.kubernetes.io/part-of": PART_OF,
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/enforce-version": POD_SECURITY_ENFORCE_VERSION,
            "pod-security.kubernetes.io/warn": level,
            "pod-security.kubernetes.io/audit": level,
        },
    }, opts=pulumi.ResourceOptions(parent=parent, provider=provider))


def provider(name: str, context: Optional[str], parent: Optional[pulumi.Resource] = None) -> k8s.Provider:
    # Mutable ConfigMaps: a config change updates the ConfigMap in place, so
    # reloading services pick it up without a restart; services that need one
    # roll through their checksum annotation instead.
    return k8s.Provider(name, context=context, enable_config_map_mutable=True,
                        opts=pulumi.ResourceOptions(parent=parent) if parent else None)


def default_deny(namespace: k8s.core.v1.Namespace, name: str, provider: k8s.Provider,
                 parent: pulumi.Resource, resource_name: Optional[str] = None) -> k8s.networking.v1.NetworkPolicy:
    """Nothing in the namespace talks or is talked to unless a service's own policy allows it."""
    return k8s.networking.v1.NetworkPolicy("default-deny" if resource_name is None else resource_name, metadata={
        "name": "default-deny", "namespace": name, "labels": {"app.kubernetes.io/part-of": PART_OF},
    }, spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=[namespace]))


def priority_class(name: str, provider: k8s.Provider, parent: pulumi.Resource,
                   preempts: bool = True) -> k8s.scheduling.v1.PriorityClass:
    # Above ordinary workloads so monitoring survives the resource pressure it must report,
    # far below system-cluster-critical (2000000000). The class of work that can wait is as high
    # (nothing of lower priority evicts it) but never evicts others to be scheduled.
    return k8s.scheduling.v1.PriorityClass(name, metadata={"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
                                           value=1000000, global_default=False,
                                           preemption_policy="PreemptLowerPriority" if preempts else "Never",
                                           description="The football-monitoring stack" + ("" if preempts else
                                                       ": work that waits for room (UIs, jobs)"),
                                           opts=pulumi.ResourceOptions(parent=parent, provider=provider))
