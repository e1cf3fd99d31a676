"""How unusual a value is against the last values of the same feature, with no assumption about
their distribution: heavy tails, many zeros and skew are all fine, since only ranks are used.

A value is placed against the window's median and an upper and lower quantile (the "band"). Its
deviation is how far beyond the band it lies, in units of the band's half-width on that side: 0
inside the band, 1 as far beyond the band as the band is from the median. This is a robust,
one-sided z-score (Elastic ML and seasonal ESD use the same idea: median and spread, not mean and
standard deviation, so a burst does not widen its own baseline).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque


class Window:
    """The last ``size`` values of a feature, kept sorted for O(log n) rank queries."""

    __slots__ = ("size", "order", "sorted", "total", "squares")

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: deque[float] = deque()
        self.sorted: list[float] = []
        self.total = 0.0
        self.squares = 0.0

    def __len__(self) -> int:
        return len(self.sorted)

    def add(self, value: float) -> None:
        self.order.append(value)
        insort(self.sorted, value)
        self.total += value
        self.squares += value * value
        if len(self.order) > self.size:
            old = self.order.popleft()
            del self.sorted[bisect_left(self.sorted, old)]
            self.total -= old
            self.squares -= old * old

    def spread(self) -> float:
        """The window's standard deviation: the floor of a band's half-width where most values
        are equal (a sparse count, a flat metric), so that one odd value is not infinitely far."""
        n = len(self.sorted)
        mean = self.total / n
        return math.sqrt(max(self.squares / n - mean * mean, 0.0))

    def band(self, quantile: float, scale: float) -> tuple[float, float, float, float, float]:
        """(lower edge, lower scale, median, upper scale, upper edge): the ``quantile`` and
        ``scale`` quantiles on each side of the median. The window must not be empty."""
        s = self.sorted
        top = len(s) - 1
        return (s[int((1.0 - quantile) * top)], s[int((1.0 - scale) * top)], s[top // 2],
                s[int(scale * top + 0.5)], s[int(quantile * top + 0.5)])


def deviation(value: float, band: tuple[float, float, float, float, float], floor: float) -> tuple[float, float]:
    """(up, down): how far ``value`` lies above the band's upper edge / below its lower one, in
    units of the spread on that side (scale quantile to median, at least ``floor``, so a flat
    band does not divide by zero)."""
    lower, low, median, high, upper = band
    if value > upper:
        return (value - upper) / max(high - median, floor), 0.0
    if value < lower:
        return 0.0, (lower - value) / max(median - low, floor)
    return 0.0, 0.0
