"""Where a NAB score is won and lost, file by file (``anomaly_bench.py --per-file``).

A corpus score says how far a detector is from a goal; it does not say where. This splits the raw
total of one profile at one threshold into each file's share, with the same rules as bench/nab.py
(the earliest detection in a window earns the sigmoid reward, a missed window costs the
false-negative weight, a detection outside every window costs the false-positive weight times its
sigmoid), so the shares add up to the corpus total, and it says so (``check``).

A file's ``points`` is its share in the corpus's normalised units: 100 x (file total + its missed
cost if it had detected nothing) / (perfect - null). The points of all files add up to the corpus's
normalised score, so a file's gap to another detector is directly the score it costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import nab


@dataclass(frozen=True)
class FileScore:
    """One file's share of a corpus total at one threshold."""

    name: str
    windows: int  # windows with at least one scorable point
    hit: int  # of those, windows with a detection
    fps: int  # detections outside every window (probation left out)
    fp_cost: float  # their cost, raw (negative)
    raw: float  # the file's raw total: rewards + missed costs + false-positive costs
    points: float  # its share of the normalised score
    fp_at: tuple[int, ...]  # the indexes of the false-positive detections


def per_file(corpus: list[nab.Series], scores: list[list[float]], weights: nab.Weights,
             threshold: float) -> list[FileScore]:
    """Each file's share of the corpus total of ``scores`` at ``threshold`` (detections: scores at
    or above it), in corpus order."""
    total_windows = sum(len(s.windows) for s in corpus)
    scorable = 0
    shares: list[tuple[str, int, int, int, float, float, tuple[int, ...]]] = []
    for series, file_scores in zip(corpus, scores, strict=True):
        window, weight = nab.points(series)
        best_in: dict[int, float] = {}
        fp_cost = 0.0
        fp_at: list[int] = []
        seen = {w for w in window if w >= 0}
        for i, (s, w, v) in enumerate(zip(file_scores, window, weight, strict=True)):
            if w == -2 or s < threshold:
                continue
            if w == -1:
                fp_cost += v * weights.fp
                fp_at.append(i)
            else:
                best_in[w] = max(best_in.get(w, -1e9), v * weights.tp)
        raw = sum(best_in.values()) - weights.fn * (len(seen) - len(best_in)) + fp_cost
        scorable += len(seen)
        shares.append((series.name, len(seen), len(best_in), len(fp_at), fp_cost, raw, tuple(fp_at)))
    null = -weights.fn * scorable
    span = weights.tp * total_windows - null
    return [FileScore(name, windows, hit, fps, cost, raw, 100.0 * (raw + weights.fn * windows) / span, at)
            for name, windows, hit, fps, cost, raw, at in shares]


def check(files: list[FileScore], corpus_score: float) -> None:
    """The files' points add up to the corpus's normalised score (else the split is wrong)."""
    total = sum(f.points for f in files)
    if abs(total - corpus_score) > 0.01:
        raise AssertionError(f"per-file points add up to {total:.3f}, the corpus scores {corpus_score:.3f}")


def table(title: str, ours: list[FileScore], theirs: list[FileScore], other: str) -> list[str]:
    """One line per file, ours beside ``other``'s, the files where we lose most first."""
    lines = [title,
             f"{'file':58} {'win':>3} {'hit':>3} {'fp':>4} {'fp cost':>8} {'points':>7} | "
             f"{'hit':>3} {'fp':>4} {'fp cost':>8} {'points':>7} | {'gap':>6}",
             f"{'':58} {'':>3} {'(ours)':>26} | {'(' + other + ')':>25} |"]
    pairs = sorted(zip(ours, theirs, strict=True), key=lambda pair: pair[0].points - pair[1].points)
    for a, b in pairs:
        lines.append(f"{a.name:58} {a.windows:3d} {a.hit:3d} {a.fps:4d} {a.fp_cost:8.2f} {a.points:7.2f} | "
                     f"{b.hit:3d} {b.fps:4d} {b.fp_cost:8.2f} {b.points:7.2f} | {a.points - b.points:6.2f}")
    lines.append(f"{'total':58} {sum(a.windows for a in ours):3d} {sum(a.hit for a in ours):3d} "
                 f"{sum(a.fps for a in ours):4d} {sum(a.fp_cost for a in ours):8.2f} "
                 f"{sum(a.points for a in ours):7.2f} | {sum(b.hit for b in theirs):3d} "
                 f"{sum(b.fps for b in theirs):4d} {sum(b.fp_cost for b in theirs):8.2f} "
                 f"{sum(b.points for b in theirs):7.2f} | "
                 f"{sum(a.points for a in ours) - sum(b.points for b in theirs):6.2f}")
    return lines


def where(series: nab.Series, at: int) -> str:
    """Where index ``at`` lies relative to the file's windows: after which one and how far."""
    before = [w for w in series.windows if w[1] < at]
    if not before:
        return "before any window"
    left, right = before[-1]
    return f"{(at - right) / (right - left + 1):.1f} widths after window {len(before) - 1}"
