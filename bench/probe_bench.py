"""CPU and wall time of one probe check (health + the MLflow transaction) against a local registry stub.

    python bench/probe_bench.py [--checks 300]

Prints the probe's own CPU per check (process CPU time / checks, the stub's share removed by
running it in a child process) and the wall time per step.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

from registry import serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=300)
    args = parser.parse_args()
    from pipeline.probe.runner import check_target, http_client
    from pipeline.probe.settings import TargetSettings

    queue: multiprocessing.Queue = multiprocessing.Queue()
    stub = multiprocessing.Process(target=serve, args=(queue,), daemon=True)
    stub.start()
    url = queue.get(timeout=30)
    try:
        for transaction in (None, {"model": "churn"}):
            target = TargetSettings.model_validate({"name": "bench", "url": f"{url}/health",
                                                    "transaction": transaction})
            with http_client(target) as client:
                check_target(client, target)  # warm: connection and imports
                cpu, wall = time.process_time(), time.perf_counter()
                steps = 0
                for _ in range(args.checks):
                    steps += len(check_target(client, target))
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            label = "health + transaction (4 steps)" if transaction else "health only (1 step)"
            print(f"{label:32} {args.checks} checks: CPU {cpu / args.checks * 1000:.2f} ms/check, "
                  f"wall {wall / steps * 1000:.2f} ms/step")
    finally:
        stub.terminate()


if __name__ == "__main__":
    main()
