"""Lines per second on one core, from raw line to ES-ready document, for every format.

    python bench/parsers_bench.py [--lines N]

The corpus is the real MLflow samples (tests/samples) repeated, with timestamps advancing one
second every 50 lines (a busy registry), so the timestamp cache sees realistic reuse. It prints
one line per format: lines/s for parse to dict, for parse plus JSON encoding (bulk body), and for
the ``regwatch parse`` command itself (a subprocess writing to /dev/null, its start-up time, measured
on an empty file, taken off) with its ratio to the encoded figure (target: 0.8 or more).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from parsers import LineParser, ParseContext

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"
START = datetime(2026, 11, 24, 23, 55, 28, tzinfo=UTC)


def _clf(i: int) -> bytes:
    return (START + timedelta(seconds=i // 50)).strftime("%d/%b/%Y:%H:%M:%S +0000").encode()


def _iso(i: int) -> bytes:
    return (START + timedelta(seconds=i // 50)).strftime("%Y-%m-%dT%H:%M:%S+00:00").encode()


def corpus(fmt: str, n: int) -> list[bytes]:
    if fmt in ("nginx", "gunicorn"):
        name = "nginx_access.log" if fmt == "nginx" else "gunicorn_access.log"
        base = (SAMPLES / "mlflow-nginx" / name).read_bytes().splitlines()
        out = []
        for i in range(n):
            line = base[i % len(base)]
            a, b = line.index(b"[") + 1, line.index(b"]")
            out.append(line[:a] + _clf(i) + line[b:])
        return out
    if fmt == "nginx-json":
        sample = SAMPLES / "mlflow-nginx-json" / "nginx_access.json"
        base = [json.loads(line) for line in sample.read_text().splitlines()]
        out = []
        for i in range(n):
            record = dict(base[i % len(base)])
            record["time_iso8601"] = _iso(i).decode()
            out.append(json.dumps(record).encode())
        return out
    if fmt == "uvicorn":
        base = (SAMPLES / "mlflow-nginx" / "nginx_access.log").read_text().splitlines()
        out = []
        for i in range(n):
            line = base[i % len(base)]
            request = line.split('"')[1]
            status = line.split('"')[2].split()[0]
            stamp = (START + timedelta(seconds=i // 50)).strftime("%Y-%m-%d %H:%M:%S,000")
            out.append(f'{stamp} INFO uvicorn.access: 127.0.0.1:5{i % 9999} - "{request}" {status} OK'.encode())
        return out
    files = {"audit": "canonical.jsonl", "databricks-audit": "databricks.jsonl", "cloudtrail": "cloudtrail.jsonl"}
    base = (SAMPLES / "audit" / files[fmt]).read_bytes().splitlines()
    return [base[i % len(base)] for i in range(n)]


def measure(fmt: str, lines: list[bytes], encode: bool) -> float:
    parser = LineParser(ParseContext(format=fmt))
    dumps = orjson.dumps
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        if encode:
            for line in lines:
                dumps(parser.parse(line))
        else:
            for line in lines:
                parser.parse(line)
        best = max(best, len(lines) / (time.perf_counter() - started))
    return best


def measure_command(fmt: str, lines: list[bytes]) -> float:
    """Lines/s of ``regwatch parse`` on a file of these lines, start-up excluded (best of two)."""
    command = [sys.executable, "-m", "regwatch.cli", "parse", "-f", fmt]
    with tempfile.TemporaryDirectory() as folder:
        full, empty = Path(folder) / "full.log", Path(folder) / "empty.log"
        full.write_bytes(b"".join(line + b"\n" for line in lines))
        empty.write_bytes(b"")

        def run(path: Path) -> float:
            started = time.perf_counter()
            subprocess.run([*command, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                           cwd=ROOT)
            return time.perf_counter() - started

        startup = min(run(empty) for _ in range(3))
        return len(lines) / max(1e-9, min(run(full) for _ in range(2)) - startup)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--lines", type=int, default=200_000)
    options = args.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print(f"{'format':<18}{'lines/s (dict)':>16}{'lines/s (+orjson)':>19}{'regwatch parse':>16}{'ratio':>7}"
          f"   lines={options.lines}")
    for fmt in ("nginx", "gunicorn", "uvicorn", "nginx-json", "audit", "databricks-audit", "cloudtrail"):
        lines = corpus(fmt, options.lines)
        parsed = measure(fmt, lines, encode=False)
        encoded = measure(fmt, lines, encode=True)
        command = measure_command(fmt, lines)
        print(f"{fmt:<18}{parsed:>16,.0f}{encoded:>19,.0f}{command:>16,.0f}{command / encoded:>7.2f}")


if __name__ == "__main__":
    main()
