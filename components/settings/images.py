"""The image every service runs, pinned by tag: one place for the version of each program.

The test tools are built from the same versions (scripts/install-test-tools.sh reads these tags),
and the update manager's rules (renovate.json) match this file: keep one `"name": "image:tag",`
per line.
"""

DEFAULT_IMAGES = {
    "prometheus": "quay.io/prometheus/prometheus:v3.16.0",
    # The global view and long-term storage over the Prometheus pair (sidecar, query, store gateway,
    # compactor, query frontend: one binary). Its build needs Go 1.26.10+ (see install-test-tools.sh).
    "thanos": "quay.io/thanos/thanos:v0.42.5",
    "alertmanager": "quay.io/prometheus/alertmanager:v0.35.0",
    # The supported 12.4 line (security fixes until May 2027): Grafana 13 saves dashboards in its v2
    # format; moving to it is its own change. Not built for the tests: Grafana is AGPL.
    "grafana": "docker.io/grafana/grafana:12.4.11",
    "nodeExporter": "quay.io/prometheus/node-exporter:v1.12.1",
    "kubeStateMetrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.18.0",
    "blackboxExporter": "quay.io/prometheus/blackbox-exporter:v0.28.0",
    # v0.19.1: the newest release the Go module proxy serves whole here (v0.20.x cannot be fetched).
    "postgresExporter": "quay.io/prometheuscommunity/postgres-exporter:v0.19.1",
    # The newest release the Go module proxy serves here (v1.90/v1.91 exist upstream but cannot be built).
    "redisExporter": "docker.io/oliver006/redis_exporter:v1.88.0",
    # The newest prometheus-operator release whose modules the Go module proxy serves whole here
    # (v0.94.x lacks its pkg/client module, v0.95.x is not served).
    "configReloader": "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1",
    # The last release: the project is no longer maintained (no newer tag exists).
    "dingtalkRelay": "docker.io/timonwong/prometheus-webhook-dingtalk:v2.1.0",
    "cadvisor": "gcr.io/cadvisor/cadvisor:v0.60.3",
    # The logging stack: one Elastic release for all four (they must match), the last 8.x minor.
    "elasticsearch": "docker.elastic.co/elasticsearch/elasticsearch:8.19.21",
    "kibana": "docker.elastic.co/kibana/kibana:8.19.21",
    "logstash": "docker.elastic.co/logstash/logstash:8.19.21",
    "filebeat": "docker.elastic.co/beats/filebeat:8.19.21",
    "elasticsearchExporter": "quay.io/prometheuscommunity/elasticsearch-exporter:v1.11.0",
    # The maintained v1 line (v2 is a beta).
    "logstashExporter": "docker.io/kuskoman/logstash-exporter:v1.9.1",
    # The last release: the project is archived.
    "beatExporter": "docker.io/trustpilot/beat-exporter:0.4.0",
    "curl": "docker.io/curlimages/curl:8.21.0",
    # Jaeger 2.14.0 is the newest release with a Go module version (v1.76.0) the proxy serves here:
    # the tests build exactly what runs. Jaeger and its index cleaner are one release, but the
    # project publishes the cleaner's image under the release's v1 number (2.14.0 = 1.76.0).
    "jaeger": "docker.io/jaegertracing/jaeger:2.14.0",
    "jaegerIndexCleaner": "docker.io/jaegertracing/jaeger-es-index-cleaner:1.76.0",
    # 0.161.0: the newest release at which every contrib component the gateway uses (tail sampling)
    # can be built here; the tests build the collector at this release from exactly those components.
    "otelCollector": "docker.io/otel/opentelemetry-collector-contrib:0.161.0",
}

# Programs the tests build that no container runs, pinned the same way ("name": "module:version").
TEST_TOOLS = {
    # Prometheus rule linter; the newest release the Go module proxy serves here.
    "pint": "github.com/cloudflare/pint:v0.87.0",
    # SLO generator whose prometheus/v1 spec slos/*.yaml follow: `sloth validate` checks every file, and
    # `sloth generate` is the reference the generated SLO rules are compared with.
    "sloth": "github.com/slok/sloth:v0.16.0",
    # NetworkPolicy analyzer (the engine that became SIG Network's policy-assistant): answers whether
    # the rendered policies allow a given flow; the newest release the Go module proxy serves here.
    "cyclonus": "github.com/mattfenwick/cyclonus:v0.5.6",
    # The PodSecurity admission controller's own policy code, run over the rendered pods by
    # scripts/pod-security-check; a current release (keep all k8s.io modules of it at one release).
    "podSecurityAdmission": "k8s.io/pod-security-admission:v0.37.2",
    # The API server and controller manager the admission tests apply every rendered object to: the
    # current stable release, whose staging modules (v0.<minor>.<patch>) podSecurityAdmission matches.
    "kubernetes": "k8s.io/kubernetes:v1.37.2",
    # The previous minor release, which the admission tests run too (the oldest release the stack
    # supports): its newest patch the Go module proxy serves here (v1.36.5).
    "kubernetesPrevious": "k8s.io/kubernetes:v1.36.5",
    # The API server's storage: the newest patch of the etcd minor that Kubernetes release builds with.
    "etcd": "go.etcd.io/etcd/server/v3:v3.7.3",
    # The Pulumi CLI, which reads Pulumi.yaml and the stack files as `pulumi config` and `pulumi up` do: the
    # newest release the Go module proxy serves here. The SDK in requirements.txt is 3.272.0, whose CLI
    # module is not served; a CLI newer than the SDK is the supported pairing.
    "pulumi": "github.com/pulumi/pulumi/pkg/v3:v3.276.0",
}

# Programs the tests install from npm that no container runs ("name": "package@version").
NPM_TEST_TOOLS = {
    # The schema engine of YAML editors (VS Code's YAML extension and the editors speaking its language
    # server): the stack files' schema comment and the schema are checked through it. 1.25.0: the newest
    # release that runs on Node 20 (2.x needs Node 22).
    "yamlLanguageServer": "yaml-language-server@1.25.0",
}
