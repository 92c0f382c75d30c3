"""How long one stack's Pulumi program takes to run (mock engine, no cluster).

    .venv/bin/python scripts/benchmark_program.py [--runs 5] [stack ...]

Prints the first run (imports included) and the median and worst of the
following runs per stack. The figure to keep under 5 s is the first run of a
fresh process, which is what `pulumi preview` pays.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stacks", nargs="*", default=["dev", "prod"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    from tools import offline  # imports pulumi and pulumi_kubernetes
    import_seconds = time.perf_counter() - start
    print(f"imports: {import_seconds:.2f} s")
    for stack in args.stacks:
        timings = []
        for _ in range(args.runs):
            t = time.perf_counter()
            result = offline.run(stack)
            timings.append(time.perf_counter() - t)
        print(f"{stack}: {len(result.resources)} resources; first run {timings[0]:.2f} s "
              f"(+{import_seconds:.2f} s imports), median {statistics.median(timings[1:] or timings):.2f} s, "
              f"worst {max(timings):.2f} s over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
