"""The demo workload: a FootballPrediction stand-in that fills every dashboard (demo.enabled).

It serves the whole metric contract of metrics/catalog.yaml with realistic traffic, writes the
service's structured JSON logs and sends OTLP traces; demo/Dockerfile makes its image. It is a
program of its own: it imports nothing of the stack (components/, tools/) nor of the tests.
"""
