"""Benchmark of the trace pipeline as prod generates it, on this machine (figures in docs/tracing.md).

Starts what tests/trace_stack.py starts (two gateway replicas with the routing tier and tail
sampling, Jaeger collector and query, the remote-storage stand-in for Elasticsearch) and measures:

- throughput: the fake application's instances (tests/trace_app.py, 8 of them, both protocols)
  send error traces (every one is kept, so every span crosses the whole pipeline) as fast as the
  Python SDK makes them; the rate is the storage writes counted by the store (the
  ``otelcol_exporter_sent_spans_total`` of its storage exporter), the best over 5-second windows,
  and the average from the first to the last stored span;
- the gateways' peak memory (VmHWM of each process, after the throughput run);
- delay from a span's end to the moment Jaeger's query API serves its trace (p50, p99), over
  probe traces sent at a low rate on an idle pipeline: the tail sampler's decision wait (10 s)
  and the batch timeouts dominate it.

Not a test: no figure is asserted. Run: ``python -m scripts.trace_benchmark [--seconds 30]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import trace_stack  # noqa: E402
from tests.trace_app import FakeFootballPrediction  # noqa: E402

STORED = "otelcol_exporter_sent_spans_total"
PROBE_SERVICE = "football-prediction-api"


def stored_spans(stack: trace_stack.ProdTraces) -> float:
    return trace_stack.metric_sum(stack.storage.metrics(), STORED)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError("VmHWM")


def throughput(stack, app, seconds: float) -> dict:
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            samples.append((time.monotonic(), stored_spans(stack)))
            time.sleep(0.5)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = stored_spans(stack)
    sent, n, began = 0, 0, time.monotonic()
    while time.monotonic() - began < seconds:
        base = time.time_ns()
        for _ in range(200):
            app.request(n, "error", base)
            n += 1
        sent += 200 * 3
    send_seconds = time.monotonic() - began
    app.flush(120_000)
    deadline = time.monotonic() + 120
    while stored_spans(stack) - start < sent and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    stop.set()
    watcher.join()
    moving = [(t, v - start) for t, v in samples]
    first = next(t for t, v in moving if v > 0)
    last = next(t for t, v in moving if v >= moving[-1][1])
    best = 0.0
    for i, (t, v) in enumerate(moving):
        later = [(t2, v2) for t2, v2 in moving[i:] if t2 - t >= 5]
        if later:
            best = max(best, (later[0][1] - v) / (later[0][0] - t))
    return {"spans sent": sent, "send seconds": round(send_seconds, 1), "sent per second": round(sent / send_seconds),
            "spans stored": int(moving[-1][1]), "stored per second (average)": round(moving[-1][1] / max(last - first, 1e-9)),
            "stored per second (best 5 s)": round(best)}


def delays(stack, app, probes: int, per_second: float) -> dict:
    since = int(time.time() * 1e6) - 60_000_000
    ended: dict[str, float] = {}
    for n in range(probes):
        now = time.time_ns()
        sent = app.request(900_000 + n, "error", now - 200 * 1_000_000)
        # The root, the trace's last span to end, ends 200 ms after the start (trace_app's timings): now.
        ended[sent.trace_id] = now / 1e9
        time.sleep(1 / per_second)
    app.flush()
    seen: dict[str, float] = {}
    deadline = time.time() + 120
    while len(seen) < len(ended) and time.time() < deadline:
        found = trace_stack.traces_of(stack.query_url(), PROBE_SERVICE, since)
        now = time.time()
        for trace_id, spans in found.items():
            if trace_id in ended and trace_id not in seen and len(spans) == 3:
                seen[trace_id] = now
        time.sleep(0.2)
    waits = sorted(seen[t] - ended[t] for t in seen)
    return {"probes": probes, "served": len(waits), "p50 seconds": round(statistics.median(waits), 2),
            "p99 seconds": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 2),
            "max seconds": round(waits[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="how long the application sends at full speed")
    parser.add_argument("--probes", type=int, default=200, help="traces timed from span end to query")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        stack = trace_stack.ProdTraces(Path(work)).start()
        app = FakeFootballPrediction(stack.gateway_endpoints())
        try:
            print("end-to-end delay on an idle pipeline:", delays(stack, app, args.probes, per_second=10), flush=True)
            print("throughput:", throughput(stack, app, args.seconds), flush=True)
            print("gateway peak memory (VmHWM, MiB):",
                  [round(peak_rss_mib(g.proc.pid)) for g in stack.gateways], flush=True)
        finally:
            app.shutdown()
            stack.stop()


if __name__ == "__main__":
    main()
