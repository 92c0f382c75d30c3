"""python -m demo --component api|worker [--listen-address :8000] [--rps 5]

Traces go to OTEL_EXPORTER_OTLP_ENDPOINT (gRPC, e.g. http://jaeger:4317) when it is set; logs to
standard output, one JSON object per line. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from demo.app import PORTS, Workload


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--component", choices=sorted(PORTS), required=True)
    parser.add_argument("--listen-address", default=None,
                        help="host:port of /metrics and /health (default :8000 for the API, :9808 for the worker)")
    parser.add_argument("--rps", type=float, default=5.0, help="API requests per second the traffic makes")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    host, port = "0.0.0.0", PORTS[args.component]
    if args.listen_address:
        host, _, port_text = args.listen_address.rpartition(":")
        host, port = host or "0.0.0.0", int(port_text)
    workload = Workload(args.component, host=host, port=port, rps=args.rps, seed=args.seed,
                        otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None)
    signal.signal(signal.SIGTERM, lambda *_: workload._stop.set())
    signal.signal(signal.SIGINT, lambda *_: workload._stop.set())
    workload.start()
    workload.wait()
    workload.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
