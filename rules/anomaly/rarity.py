"""How unusual a value is against the last values of the same feature, with no assumption about
their distribution: heavy tails, many zeros and skew are all fine, since only ranks are used.

A value is placed against the window's median and an upper and lower quantile (the "band"). Its
deviation is how far beyond the band it lies, in units of the band's half-width on that side: 0
inside the band, 1 as far beyond the band as the band is from the median. This is a robust,
one-sided z-score (Elastic ML and seasonal ESD use the same idea: median and spread, not mean and
standard deviation, so a burst does not widen its own baseline).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque


class Window:
    """The last ``size`` values of a feature, kept sorted for O(log n) rank queries."""

    __slots__ = ("size", "order", "sorted")

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: deque[float] = deque()
        self.sorted: list[float] = []

    def __len__(self) -> int:
        return len(self.sorted)

    def add(self, value: float) -> None:
        self.order.append(value)
        insort(self.sorted, value)
        if len(self.order) > self.size:
            old = self.order.popleft()
            del self.sorted[bisect_left(self.sorted, old)]

    def band(self, quantile: float) -> tuple[float, float, float]:
        """(lower quantile, median, upper quantile) of the window; the window must not be empty."""
        s = self.sorted
        top = len(s) - 1
        return s[int((1.0 - quantile) * top)], s[top // 2], s[int(quantile * top + 0.5)]


def deviation(value: float, lower: float, median: float, upper: float, floor: float) -> tuple[float, float]:
    """(up, down): how far ``value`` lies above ``upper`` / below ``lower``, in units of the
    band's half-width on that side (at least ``floor``, so a flat band does not divide by zero)."""
    if value > upper:
        return (value - upper) / max(upper - median, floor), 0.0
    if value < lower:
        return 0.0, (lower - value) / max(median - lower, floor)
    return 0.0, 0.0
