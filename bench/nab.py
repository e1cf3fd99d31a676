"""A scorer for the Numenta Anomaly Benchmark (NAB v1.1), written from its description.

    python bench/nab.py --nab ../shared/datasets/nab

reproduces the published scores of the detectors whose per-point results ship in
``results/<detector>.tar.gz`` and prints one line per detector (non-zero exit if any is off by 0.1
or more). ``bench/anomaly_bench.py`` imports it to score our detector.

The rules (Lavin and Ahmad 2015; NAB's sweeper):

* each file's first 15 % (at most 750 points) is probation: nothing there is scored;
* a detection is a point whose score is at or above the threshold;
* inside a labelled window only the best (the earliest) detection counts, weighted by a scaled
  sigmoid of its position, ``2 / (1 + e^(5 x)) - 1`` with x = -1 at the left edge and 0 past the
  right one, divided by its value at the left edge so that the earliest detection is worth the
  profile's true-positive weight; a window with no detection costs the false-negative weight;
* every detection outside a window costs the false-positive weight times the same sigmoid of its
  distance past the previous window's right edge (in window widths; -1 before any window), so a
  late detection just after a window costs almost nothing and a far one the full weight;
* per profile, one threshold for the whole corpus: the one that maximises the corpus's total;
* normalised: 100 x (total - null) / (perfect - null), where null is the detector that never
  detects (every window missed) and perfect earns the true-positive weight for every window.

One known difference: for numenta's low-FP profile the published run kept threshold 0.5752 (total
30.43, 63.12) where the exhaustive sweep finds 0.5431 (30.65, 63.21); at 0.5752 we reproduce its
total to the last digit. Every other published figure is reproduced to 0.01.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PROBATION = 0.15
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PUBLISHED = ("windowedGaussian", "numenta", "contextOSE")
TOLERANCE = 0.1


def scaled_sigmoid(position: float) -> float:
    """NAB's weight of a point at ``position`` (-1: a window's left edge, 0: past its right edge,
    positive: that many window widths after it)."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


@dataclass(frozen=True)
class Weights:
    tp: float
    fp: float
    fn: float


@dataclass
class Series:
    """One corpus file: its timestamps, values and labelled windows (as point indexes)."""

    name: str
    timestamps: list[datetime]
    values: list[float]
    windows: list[tuple[int, int]]


@dataclass
class Points:
    """The scorable points of a corpus (probation left out), with what each would be worth as a
    detection: ``window`` is a corpus-wide window number (-1: outside every window) and ``weight``
    the unweighted sigmoid (a reward inside a window, a cost outside)."""

    window: list[int] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)
    windows: int = 0  # windows with at least one scorable point


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def load_corpus(root: Path) -> list[Series]:
    """Every data file of the corpus with its windows, in a stable (sorted) order."""
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    corpus = []
    for name in sorted(labels):
        with open(root / "data" / name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        timestamps = [_time(row["timestamp"]) for row in rows]
        index = {t: i for i, t in enumerate(timestamps)}
        windows = [(index[_time(a)], index[_time(b)]) for a, b in labels[name]]
        corpus.append(Series(name, timestamps, [float(row["value"]) for row in rows], windows))
    return corpus


def probation(length: int) -> int:
    """The points at the start of a file that are not scored."""
    return int(min(math.floor(PROBATION * length), PROBATION * 5000))


def points(series: Series) -> tuple[list[int], list[float]]:
    """Per point of ``series``: its window (-1 outside, -2 in probation) and its unweighted worth."""
    n = len(series.timestamps)
    window = [-1] * n
    weight = [-1.0] * n
    for number, (left, right) in enumerate(series.windows):
        width = right - left + 1
        for i in range(left, right + 1):
            window[i] = number
            weight[i] = scaled_sigmoid(-(right - i + 1) / width) / MAX_TP
        stop = series.windows[number + 1][0] if number + 1 < len(series.windows) else n
        for i in range(right + 1, stop):
            weight[i] = scaled_sigmoid(abs(right - i) / (width - 1))
    for i in range(probation(n)):
        window[i] = -2
    return window, weight


@dataclass
class Scored:
    """The corpus's points sorted by score, highest first, ready for a sweep."""

    scores: list[float]
    window: list[int]
    weight: list[float]
    windows: int


def prepare(corpus: list[Series], scores: list[list[float]]) -> Scored:
    rows: list[tuple[float, int, float]] = []
    offset = 0
    windows = set()
    for series, file_scores in zip(corpus, scores, strict=True):
        if len(file_scores) != len(series.timestamps):
            raise ValueError(f"{series.name}: {len(file_scores)} scores for {len(series.timestamps)} points")
        window, weight = points(series)
        for s, w, v in zip(file_scores, window, weight, strict=True):
            if w == -2:
                continue
            if w >= 0:
                windows.add(offset + w)
                rows.append((s, offset + w, v))
            else:
                rows.append((s, -1, v))
        offset += len(series.windows)
    rows.sort(key=lambda row: -row[0])
    return Scored([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], len(windows))


def _totals(scored: Scored, weights: Weights, threshold: float | None = None) -> Iterator[tuple[float, float]]:
    """(level, the corpus's raw total detecting at every score >= level), level by level from the
    highest score down (to ``threshold`` when given)."""
    best_in: dict[int, float] = {}
    missed = -weights.fn * scored.windows
    fp = 0.0
    tp = 0.0
    scores, window, weight = scored.scores, scored.window, scored.weight
    n = len(scores)
    i = 0
    while i < n:
        level = scores[i]
        if threshold is not None and level < threshold:
            break
        while i < n and scores[i] == level:
            w = window[i]
            if w < 0:
                fp += weight[i]
            else:
                value = weight[i] * weights.tp
                old = best_in.get(w)
                if old is None:
                    best_in[w] = value
                    tp += value + weights.fn
                elif value > old:
                    best_in[w] = value
                    tp += value - old
            i += 1
        yield level, missed + tp + fp * weights.fp


def best_threshold(scored: Scored, weights: Weights) -> tuple[float, float]:
    """(the threshold of the best total, that total): a threshold above every score (never
    detect) when nothing beats the null detector."""
    best, at = -weights.fn * scored.windows, float("inf")
    for level, total in _totals(scored, weights):
        if total > best:
            best, at = total, level
    return at, best


def sweep(scored: Scored, weights: Weights, threshold: float | None = None) -> float:
    """The corpus's raw total at the best threshold (``threshold`` None) or at ``threshold``."""
    if threshold is None:
        return best_threshold(scored, weights)[1]
    totals = [total for _, total in _totals(scored, weights, threshold)]
    return totals[-1] if totals else -weights.fn * scored.windows


def profiles(root: Path) -> dict[str, Weights]:
    raw = json.loads((root / "config" / "profiles.json").read_text())
    return {name: Weights(raw[name]["CostMatrix"]["tpWeight"], raw[name]["CostMatrix"]["fpWeight"],
                          raw[name]["CostMatrix"]["fnWeight"]) for name in PROFILES}


def normalised(raw: float, weights: Weights, windows: int, total_windows: int) -> float:
    null = -weights.fn * windows
    perfect = weights.tp * total_windows
    return 100.0 * (raw - null) / (perfect - null)


def score(root: Path, corpus: list[Series], scores: list[list[float]],
          threshold: float | None = None) -> dict[str, float]:
    """NAB's normalised score per profile of per-point ``scores`` (in [0, 1], one list per file of
    ``corpus``): swept for the best threshold, or at a fixed ``threshold`` (a detector that alerts:
    scores of 1 where an alert starts, 0 elsewhere, threshold 0.5)."""
    scored = prepare(corpus, scores)
    total_windows = sum(len(s.windows) for s in corpus)
    return {name: normalised(sweep(scored, weights, threshold), weights, scored.windows, total_windows)
            for name, weights in profiles(root).items()}


def published_scores(root: Path, detector: str, corpus: list[Series]) -> list[list[float]]:
    """The per-point anomaly scores of a published detector, read from its results archive."""
    found: dict[str, list[float]] = {}
    with tarfile.open(root / "results" / f"{detector}.tar.gz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.endswith(".csv"):
                continue
            parts = member.name.split("/")
            if len(parts) != 3:
                continue  # the archive's own summaries (<detector>_<profile>_scores.csv)
            name = f"{parts[-2]}/{parts[-1].removeprefix(detector + '_')}"
            handle = archive.extractfile(member)
            assert handle is not None
            rows = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8"))
            found[name] = [float(row["anomaly_score"]) for row in rows]
    return [found[series.name] for series in corpus]


def published(root: Path) -> dict[str, dict[str, float]]:
    data: dict[str, dict[str, float]] = json.loads((root / "results" / "final_results.json").read_text())
    return data


def reproduce(root: Path, corpus: list[Series]) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
    """Per published detector: (our scores, the published ones)."""
    expected = published(root)
    return {detector: (score(root, corpus, published_scores(root, detector, corpus)), expected[detector])
            for detector in PUBLISHED}


def reproduced(results: dict[str, tuple[dict[str, float], dict[str, float]]]) -> bool:
    return all(abs(ours[p] - theirs[p]) < TOLERANCE for ours, theirs in results.values() for p in PROFILES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nab", type=Path, required=True, help="the NAB corpus folder")
    args = parser.parse_args()
    corpus = load_corpus(args.nab)
    results = reproduce(args.nab, corpus)
    for detector, (ours, theirs) in results.items():
        print(f"nab-reproduce detector={detector} "
              + " ".join(f"{p}={ours[p]:.2f}/{theirs[p]:.2f}" for p in PROFILES))
    ok = reproduced(results)
    print("reproduced" if ok else "NOT reproduced: the scorer differs from NAB's")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
