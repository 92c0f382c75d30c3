"""The metrics system: Prometheus, Alertmanager, Grafana, the exporters and the DingTalk relay."""
