"""Whether a series repeats every day or every week, found from the series itself.

Candidate periods are a day and a week, in points at the series' step. A candidate is kept when
the series correlates with itself shifted by the period (autocorrelation) at or above
``min_correlation`` over the last few periods; a week is preferred when it correlates clearly
better than a day (weekends differ from weekdays). Elastic ML tests candidate seasonal components
the same way: is the variance explained by the repeat significant?
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DAY = 86_400.0
WEEK = 7 * DAY


def candidates(step: float) -> list[int]:
    """The day and the week in points of ``step`` seconds (those of at least 4 points)."""
    out = []
    for period in (DAY, WEEK):
        points = round(period / step)
        if points >= 4 and abs(points * step - period) < step:
            out.append(points)
    return out


def autocorrelation(values: Sequence[float], lag: int) -> float:
    """Pearson correlation of ``values`` with itself ``lag`` points later (0 if undefined)."""
    n = len(values) - lag
    if n < 2:
        return 0.0
    a = values[:n]
    b = values[lag:]
    ma = math.fsum(a) / n
    mb = math.fsum(b) / n
    sab = saa = sbb = 0.0
    for x, y in zip(a, b, strict=True):
        dx = x - ma
        dy = y - mb
        sab += dx * dy
        saa += dx * dx
        sbb += dy * dy
    if saa <= 0.0 or sbb <= 0.0:
        return 0.0
    return sab / math.sqrt(saa * sbb)


def holds(values: Sequence[float], period: int, min_correlation: float) -> bool:
    """Whether ``values`` still repeat every ``period`` points (over their last four periods)."""
    tail = values[-min(len(values), 4 * period):]
    return autocorrelation(tail, period) >= min_correlation


def detect(values: Sequence[float], step: float, min_correlation: float, min_periods: int) -> int:
    """The period (in points) ``values`` repeats with, 0 for none. ``values`` are the most recent
    points, oldest first; a candidate needs ``min_periods`` whole periods of them."""
    best, best_corr = 0, min_correlation
    for period in candidates(step):
        if len(values) < min_periods * period:
            continue
        tail = values[-min(len(values), (min_periods + 1) * period):]
        corr = autocorrelation(tail, period)
        if corr >= best_corr + (0.1 if best else 0.0):
            best, best_corr = period, corr
    return best
