"""A streaming anomaly detector for operations series (request counts, rates, ratios, latencies):
it learns the series' daily and weekly rhythm by itself, scores each new value 0-100 by how rare
its deviation is, and says "learning" while it has not seen enough to judge.

- :mod:`rules.anomaly.rarity`: how rare a value is against a sliding window of its own past;
- :mod:`rules.anomaly.periodicity`: whether the series repeats daily or weekly;
- :mod:`rules.anomaly.detector`: the detector itself, one value in, one :class:`Reading` out.
"""

from rules.anomaly.detector import Detector, Params, Reading

__all__ = ["Detector", "Params", "Reading"]
