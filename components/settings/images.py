"""The image every service runs, pinned by tag: one place for the version of each program.

The test tools are built from the same versions (scripts/install-test-tools.sh reads these tags),
and the update manager's rules match this file.
"""

DEFAULT_IMAGES = {
    "prometheus": "quay.io/prometheus/prometheus:v3.5.0",
    "alertmanager": "quay.io/prometheus/alertmanager:v0.28.1",
    "grafana": "docker.io/grafana/grafana:12.1.1",
    "nodeExporter": "quay.io/prometheus/node-exporter:v1.9.1",
    "kubeStateMetrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.16.0",
    "blackboxExporter": "quay.io/prometheus/blackbox-exporter:v0.27.0",
    "postgresExporter": "quay.io/prometheuscommunity/postgres-exporter:v0.17.1",
    "redisExporter": "docker.io/oliver006/redis_exporter:v1.74.0",
    "configReloader": "quay.io/prometheus-operator/prometheus-config-reloader:v0.85.0",
    "dingtalkRelay": "docker.io/timonwong/prometheus-webhook-dingtalk:v2.1.0",
    "cadvisor": "gcr.io/cadvisor/cadvisor:v0.49.1",
    # The logging stack: one Elastic release for all four (they must match), the last 8.x minor.
    "elasticsearch": "docker.elastic.co/elasticsearch/elasticsearch:8.19.17",
    "kibana": "docker.elastic.co/kibana/kibana:8.19.17",
    "logstash": "docker.elastic.co/logstash/logstash:8.19.17",
    "filebeat": "docker.elastic.co/beats/filebeat:8.19.17",
    "elasticsearchExporter": "quay.io/prometheuscommunity/elasticsearch-exporter:v1.9.0",
    "logstashExporter": "docker.io/kuskoman/logstash-exporter:v1.9.1",
    "beatExporter": "docker.io/trustpilot/beat-exporter:0.4.0",
    "curl": "docker.io/curlimages/curl:8.15.0",
    "jaeger": "docker.io/jaegertracing/jaeger:2.15.0",
    "jaegerIndexCleaner": "docker.io/jaegertracing/jaeger-es-index-cleaner:2.15.0",
    "otelCollector": "docker.io/otel/opentelemetry-collector-contrib:0.139.0",
}
