"""End-to-end test of the alerting pipeline with the real Prometheus tools on loopback."""
