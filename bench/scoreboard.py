"""``make bench``: run every bench, print each figure beside its goal and the last recorded figure.

    python bench/scoreboard.py [--only shipper,parsers] [--record] [--args BENCH=ARGS ...]

What a figure is, where a bench prints it and its goal are data (``bench/figures.yaml``); the last
figure measured is data too (``bench/recorded.yaml``), rewritten by ``--record`` with the figures
of this run, the date and the command. A bench is run as a child process and its own output is
kept as it is (``figures.yaml`` reads figures out of it with a pattern each), so a bench stays a
program a person can run alone, and one whose figures are not described yet still runs and shows
its output. A figure that misses its goal is marked MISS; the run exits 1 if any did, or if a
bench failed, so the next slip is seen by whoever causes it.
"""

from __future__ import annotations

import argparse
import operator
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures.yaml"
RECORDED = HERE / "recorded.yaml"
COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Figure:
    """One measured number: the bench that prints it, the pattern that finds it, its goal."""

    name: str
    bench: str
    pattern: re.Pattern[str]
    unit: str
    goal: str | None  # ">= 0.95", "< 100"; None: recorded, no goal
    what: str

    def met(self, value: float) -> bool | None:
        if self.goal is None:
            return None
        op, bound = self.goal.split()
        return COMPARE[op](value, float(bound))


def load_figures(path: Path = FIGURES) -> tuple[dict[str, list[str]], list[Figure]]:
    """The benches in the order they run (name -> default arguments) and their figures."""
    data = yaml.safe_load(path.read_text())
    benches = {name: shlex.split(spec.get("args", "")) for name, spec in data["benches"].items()}
    figures = [Figure(name, spec["bench"], re.compile(spec["pattern"], re.M), spec.get("unit", ""),
                      spec.get("goal"), spec.get("what", name))
               for name, spec in data["figures"].items()]
    unknown = {f.bench for f in figures} - benches.keys()
    if unknown:
        raise SystemExit(f"{path}: figures of benches not listed under benches: {', '.join(sorted(unknown))}")
    return benches, figures


def read_figures(output: str, figures: list[Figure]) -> dict[str, float]:
    """Every figure a bench's output holds (thousands separators allowed)."""
    found: dict[str, float] = {}
    for figure in figures:
        match = figure.pattern.search(output)
        if match is not None:
            found[figure.name] = float(match.group(1).replace(",", ""))
    return found


def row(figure: Figure, value: float | None, recorded: dict[str, Any] | None) -> str:
    now = "-" if value is None else _number(value)
    last = "-" if not recorded else _number(recorded["value"])
    met = None if value is None else figure.met(value)
    mark = {True: "ok", False: "MISS", None: ""}[met]
    return f"  {figure.what:<58} {now:>12} {figure.unit:<10} goal {figure.goal or '-':<8} last {last:>12}  {mark}"


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def run_bench(name: str, args: list[str]) -> tuple[int, str, float]:
    """Run one bench from this folder; its output is shown as it comes and returned."""
    command = [sys.executable, str(HERE / name), *args]
    print(f"== {name} {shlex.join(args)}", flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent)
    lines = []
    assert child.stdout is not None
    for line in child.stdout:
        lines.append(line)
        print("   | " + line, end="", flush=True)
    return child.wait(), "".join(lines), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated benches (file names or their stems)")
    parser.add_argument("--record", action="store_true", help="write this run's figures to recorded.yaml")
    parser.add_argument("--args", action="append", default=[], metavar="BENCH=ARGS",
                        help="arguments for one bench instead of figures.yaml's, e.g. shipper_bench.py='--lines 1000'")
    options = parser.parse_args()
    benches, figures = load_figures()
    for override in options.args:
        bench, _, args = override.partition("=")
        bench = bench if bench.endswith(".py") else bench + ".py"
        benches[bench] = shlex.split(args)
    chosen = {b if b.endswith(".py") else b + ".py" for b in options.only.split(",") if b}
    if chosen - benches.keys():
        raise SystemExit(f"unknown bench: {', '.join(sorted(chosen - benches.keys()))}; one of {', '.join(benches)}")
    recorded: dict[str, Any] = (yaml.safe_load(RECORDED.read_text()) or {}) if RECORDED.exists() else {}
    measured: dict[str, float] = {}
    failed: list[str] = []
    commands: dict[str, str] = {}
    for bench, args in benches.items():
        if chosen and bench not in chosen:
            continue
        if not (HERE / bench).exists():
            print(f"== {bench}: not in bench/ yet, skipped", flush=True)
            failed.append(bench)
            continue
        code, output, took = run_bench(bench, args)
        commands[bench] = shlex.join(["python", f"bench/{bench}", *args])
        mine = [f for f in figures if f.bench == bench]
        found = read_figures(output, mine)
        measured.update(found)
        print(f"== {bench}: exit {code} in {took:.0f} s", flush=True)
        if code != 0 or len(found) < len(mine):
            failed.append(bench)
    print("\nfigure" + " " * 55 + "now" + " " * 28 + "last recorded")
    misses = 0
    for figure in figures:
        if chosen and figure.bench not in chosen:
            continue
        value = measured.get(figure.name)
        print(row(figure, value, recorded.get(figure.name)))
        misses += value is not None and figure.met(value) is False
    if options.record and measured:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
        for name, value in measured.items():
            bench = next(f.bench for f in figures if f.name == name)
            recorded[name] = {"value": round(value, 4), "at": stamp, "command": commands[bench]}
        RECORDED.write_text("# Written by `make bench RECORD=1` (bench/scoreboard.py --record): the last figure\n"
                            "# of each kind measured, when and how. Goals are in figures.yaml.\n"
                            + yaml.safe_dump(dict(sorted(recorded.items())), sort_keys=False, width=200))
        print(f"recorded {len(measured)} figures in {RECORDED.relative_to(HERE.parent)}")
    print(f"{misses} figure(s) missed their goal; benches failed or incomplete: {', '.join(failed) or 'none'}")
    return 1 if misses or failed else 0


if __name__ == "__main__":
    sys.exit(main())
