"""The detector: one value in per bucket, one :class:`Reading` out, in constant time.

Per bucket it computes four features and scores each against its own recent past
(:mod:`rules.anomaly.rarity`):

* the **level**: the value minus what is typical for this time of day or week when the series
  repeats (:mod:`rules.anomaly.periodicity`; typical = the median of the same bucket in the last
  ``seasons`` periods), else the value itself: spikes, dips, level shifts, drifts out of the range
  ever seen, a nightly job that did not run (a dip where the rhythm expects a jump);
* the **run**: the mean level of the last ``run`` buckets, so that a moderate deviation that lasts
  counts as much as a sharp one (Elastic ML's multi-bucket impact);
* the **shift**: the run minus the mean of the ``trend`` buckets before it: a step or a slope
  that stays inside the usual range (a temperature drifting down to its lowest ever, slowly);
* the **activity**: the mean absolute change of the last ``run`` buckets; its low side catches a
  metric that goes flat (a stuck exporter, a dead job: one value for ``still`` buckets).

The deviation ``z`` is the largest of the features' deviations allowed by ``direction``. A new
episode starts only when ``z`` exceeds what was already seen recently (``peak``, decaying by half
every ``memory`` buckets): a level shift pages once, at its onset, and the baseline then adapts to
the new level instead of paging every bucket. It must also exceed ``long_share`` of the long-run
peak (halving every ``long_memory`` buckets): a series that bursts every few days (heavy-tailed
request counts, a bimodal utilisation) has shown what its ordinary bursts look like, and only a
burst well beyond those pages, while a quiet series still pages on its first moderate one
(HTM's anomaly likelihood judges raw scores against the series' own score history likewise).
The onset also counts for less the more often its **context** was seen before: the classes of
the level's deviation over the last ``context`` buckets (0 under ``gate_floor``, then one class
per doubling, signed, at most ``levels``), counted in a table; an onset whose context was seen
``familiar`` times counts half. A burst of a shape the series keeps showing (Twitter's bursts, a
registry's batch client at random hours) stops paging, a shape never seen still pages: the known
context of NAB's contextOSE, kept as a gate on the onset, not as the score. On NAB it lowered the
false alerts from 179 to 143 for the same 89 windows hit.
An onset that sets no **record** counts ``ordinary`` of itself: a record is a level or shift
beyond every one its window holds (``window`` buckets, two weeks at 5 minutes), or a metric
that stopped dead. A burst no higher than one the series already showed in the last two weeks
is less news than a new high, as contextOSE's contexts start anew when a value leaves the
range seen; a record pages at the usual score, a burst inside the range only when it is far
beyond the band. On NAB: swept 65.1 / 58.1 / 70.4 to 67.3 / 60.0 / 71.6; the registry-shaped
bursts paged after their first week 16 to 10 of 63 (the level alone: 6, but a level shift at
night, inside the day's band, then pages no more).
An onset must also beat the last one (halving every ``rearm`` buckets, half a day at 5
minutes), or it counts 0: a burst that comes back a few hours after one that paged, or rises in
steps, is the same story told again (HTM's and contextOSE's scores likewise stay low for the
rest of an event once it was flagged). On NAB: swept 67.3 / 60.0 / 71.6 to 67.8 / 61.0 / 71.9.
A metric **climbing** to new highs step by step (a leak, a runaway client, a drift into
failure) shows each step small beside its band once the baseline has adapted to the last one:
a value beyond every one the history holds (its maximum, or its minimum, over ``history``
buckets) that comes more than ``run`` and at most ``escalation`` buckets after the last such
value scores at least ``climbing`` (30: shown as unusual, under the rule's 40, so it does not
page again by itself). On NAB: swept 67.8 / 61.0 / 71.9 to 71.5 / 63.9 / 75.8, alerted unchanged.
So does the first new extreme after ``settled`` buckets (two weeks) without one: a metric that
leaves the range it held for two weeks (swept 71.5 / 63.9 / 75.8 to 72.2 / 64.6 / 76.6).
While an episode lasts the score follows ``z``; it
ends when the score falls under ``recovery``.

The score is ``100 * z / (z + 1)``: 50 is a value as far beyond the band as the band is wide,
40 (the default threshold) two thirds as far.
For the first ``learning`` buckets the reading says learning and the score is 0: no page before
the detector has seen enough to tell the usual from the unusual; the peaks follow ``z`` during
those buckets too, so the first stray value of plain noise after them is not news (Gaussian
noise paged a day in; NAB swept 72.2 / 64.6 / 76.6 to 72.5 / 65.0 / 76.8). A lone record (the
run still inside its band) must also beat ``record_share`` of the highest ``z`` of the records
before it (halving every ``history``, four weeks: noise sets a record every few thousand buckets
once its window is full, and a peak halving every two weeks had nearly halved by the next):
plain noise sets a new maximum every few thousand buckets, each about as far beyond its band as
the last, and paged on them (Gaussian noise around 50, 3.7 standard deviations at bucket 3571;
4.4 under at 5978 with seed 4); a record well beyond the last ones still pages, and so does one
whose run left its band too (a step, a leak). NAB swept 72.5 / 65.0 / 76.8 to 72.6 / 65.2 / 76.8,
alerted 56.6 / 53.9 / 59.0 to 56.7 / 54.0 / 59.1; registry bursts paged 10 to 9 of 63.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from rules.anomaly import periodicity
from rules.anomaly.rarity import Window, deviation

Direction = Literal["up", "down", "both"]


@dataclass(frozen=True)
class Params:
    """The detector's settings; the defaults are the ones benchmarked on NAB (bench/anomaly_bench.py)."""

    step: float = 300.0  # seconds per bucket (finds the day and the week in buckets)
    learning: int = 288  # buckets of cold start: no score before
    window: int = 4000  # buckets each feature's baseline holds
    quantile: float = 0.995  # the band: this quantile and its complement
    scale: float = 0.9  # the unit of a deviation beyond the band: this quantile's distance to the median
    run: int = 6  # buckets of the run and activity features
    trend: int = 36  # buckets of the baseline the shift feature compares the run with
    slack: int = 2  # buckets either side of the same time yesterday / last week that count as the same time
    stuck: float = 2.0  # the deviation of a metric that stopped moving where it always moved
    hysteresis: float = 0.2  # a period found is lost only under min_correlation less this
    seasons: int = 3  # periods whose same bucket make the typical value
    memory: int = 288  # buckets for a past peak to halve (a day at 5 minutes)
    long_memory: int = 4032  # buckets for the long-run peak to halve (two weeks at 5 minutes)
    long_share: float = 0.5  # a new episode must also exceed this share of the long-run peak
    threshold: float = 40.0  # a score at or above this starts an episode (the rule's bound)
    recovery: float = 25.0  # an episode ends under this score
    direction: Direction = "both"
    min_correlation: float = 0.5  # periodicity: autocorrelation at the period
    recheck: int = 288  # buckets between periodicity checks
    history: int = 4 * 2016  # buckets kept for the periodicity and the typical value
    spread: float = 1.0  # a band's half-width is at least this many standard deviations of its window
    minimum: float = 0.0  # ... and at least this (a count rule: 1, one event is never far)
    still: int = 12  # buckets of one unchanged value before a metric that always moved counts as stopped
    cap: float = 4.0  # the largest deviation (score 80): one absurd value does not blind the memory
    context: int = 3  # buckets whose deviation classes make an onset's context (0: no context gate)
    levels: int = 8  # deviation classes per side: from ``gate_floor``, each twice the one before
    gate_floor: float = 0.5  # the smallest deviation of a class (under it: class 0, no excursion)
    familiar: int = 5  # an onset whose context was seen this many times before counts half
    ordinary: float = 0.4  # an onset that sets no record (level, shift) in ``window`` counts this much (1: no gate)
    rearm: int = 144  # buckets for the last onset to halve: an onset no higher counts 0 (0: no such gate)
    escalation: int = 144  # a new extreme of the history within this many buckets of the last one (0: off) ...
    settled: int = 4032  # ... or the first after this many buckets without one (0: off) ...
    climbing: float = 30.0  # ... scores at least this: a metric climbing to new highs step by step
    record_share: float = 0.6  # a lone record must also beat this share of the records' peak (0: off)


@dataclass(frozen=True)
class Reading:
    """What the detector makes of one bucket."""

    observed: float
    expected: float
    lower: float  # the band: values in it are usual
    upper: float
    score: float  # 0 to 100: what the rule compares with its threshold and recovery bound
    learning: bool
    period: int  # buckets per period found (0: none)
    onset: float = 0.0  # 0 to 100: how much more unusual than anything in recent memory


def _median(values: list[float]) -> float:
    values.sort()
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2.0


def _beyond(window: Window, value: float, up: bool, down: bool) -> bool:
    """Whether ``value`` lies beyond every value of ``window`` on a side watched (an empty
    window: yes)."""
    ordered = window.sorted
    return not ordered or (up and value > ordered[-1]) or (down and value < ordered[0])


class Detector:
    """Streaming: :meth:`update` with each bucket's value, oldest first."""

    def __init__(self, params: Params | None = None) -> None:
        p = params or Params()
        self.p = p
        self.count = 0
        self.values: deque[float] = deque(maxlen=p.history)
        self.period = 0
        self.level = Window(p.window)
        self.run = Window(p.window)
        self.activity = Window(p.window)
        self.recent: deque[float] = deque(maxlen=p.run)  # the last residuals
        self.changes: deque[float] = deque(maxlen=p.run)  # the last absolute changes
        self.run_sum = 0.0
        self.change_sum = 0.0
        self.older: deque[float] = deque(maxlen=p.trend)  # the residuals before the run
        self.older_sum = 0.0
        self.shift = Window(p.window)
        self.highs: deque[tuple[int, float]] = deque()  # the history's maximum and its rivals
        self.lows: deque[tuple[int, float]] = deque()
        self.last_extreme = -1  # the bucket of the last new extreme of the history (-1: none)
        self.peak = 0.0
        self.last_onset = 0.0  # the highest recent onset, halving every ``rearm`` buckets
        self.rearm = 0.5 ** (1.0 / p.rearm) if p.rearm else 0.0
        self.long_peak = 0.0
        self.record_peak = 0.0  # the highest z of a recent record, halving every ``history`` buckets
        self.record_decay = 0.5 ** (1.0 / p.history)
        self.long_decay = 0.5 ** (1.0 / p.long_memory)
        self.decay = 0.5 ** (1.0 / p.memory)
        self.episode = False
        self.still = 0
        self.candidates = periodicity.candidates(p.step)
        self.contexts: dict[tuple[int, ...], int] = {}
        self.quantized: deque[int] = deque([0] * max(p.context, 1), maxlen=max(p.context, 1))
        self.up = p.direction in ("up", "both")
        self.down = p.direction in ("down", "both")

    def _typical(self, end: int | None = None) -> float | None:
        """The typical value of the bucket after ``values[:end]`` (default: the next one)."""
        period, values = self.period, self.values
        n = len(values) if end is None else end
        same = [values[n - k * period] for k in range(1, self.p.seasons + 1) if k * period <= n]
        return _median(same) if same else None

    def _rebase(self) -> None:
        """The level and run baselines again, as residuals from the period just found: a period
        found (or lost) changes what a residual is, and the old ones would make the next values
        look unusual."""
        p = self.p
        self.level = Window(p.window)
        self.run = Window(p.window)
        recent: deque[float] = deque(maxlen=p.run)
        values = self.values
        for i in range(max(len(values) - p.window - p.run, 0), len(values)):
            typical = self._typical(i) if self.period else None
            residual = values[i] - typical if typical is not None else values[i]
            recent.append(residual)
            self.level.add(residual)
            self.run.add(sum(recent) / len(recent))
        self.recent = deque(recent, maxlen=p.run)
        self.run_sum = sum(recent)

    def _repeat(self, value: float) -> float:
        """How far ``value`` is from the nearest value at the same time of the previous day or
        week (give or take ``slack`` buckets): what happened then is no anomaly now, even before
        the period is found (the nightly job's second night, Monday's second morning)."""
        values = self.values
        now = len(values) - 1
        nearest = math.inf
        for period in self.candidates:
            for k in range(now - period - self.p.slack, now - period + self.p.slack + 1):
                if 0 <= k < now:
                    nearest = min(nearest, abs(value - values[k]))
        return nearest

    def _extreme(self, value: float) -> bool:
        """Whether ``value`` is a new extreme of the history (above its maximum or under its
        minimum, on a side ``direction`` watches) that comes more than ``run`` and at most
        ``escalation`` buckets after the last one, or more than ``settled`` after it: a metric
        that keeps setting new highs, a step at a time, is escalating (a leak, a runaway client,
        a drift into failure) even while each step is small beside its own band, and one that
        leaves the range it held for two weeks is news even inside its band. Constant time: the
        history's maximum and minimum are kept in monotonic queues."""
        p, now = self.p, self.count
        highs, lows = self.highs, self.lows
        for queue in (highs, lows):
            while queue and queue[0][0] < now - p.history:
                queue.popleft()
        new = bool(highs) and ((self.up and value > highs[0][1]) or (self.down and value < lows[0][1]))
        while highs and highs[-1][1] <= value:
            highs.pop()
        highs.append((now, value))
        while lows and lows[-1][1] >= value:
            lows.pop()
        lows.append((now, value))
        if not new:
            return False
        since = now - self.last_extreme
        climbing = self.last_extreme >= 0 and (p.run < since <= p.escalation or 0 < p.settled < since)
        self.last_extreme = now
        return climbing

    def _floor(self, window: Window) -> float:
        return max(self.p.spread * window.spread(), self.p.minimum, 1e-9)

    def update(self, value: float) -> Reading:
        p = self.p
        if self.count % p.recheck == 0 and self.count >= 3 * p.recheck:
            values = list(self.values)
            period = periodicity.detect(values, p.step, p.min_correlation, 3)
            if not period and self.period and periodicity.holds(values, self.period, p.min_correlation - p.hysteresis):
                period = self.period  # a period found is kept while it roughly holds: no flapping
            if period != self.period:
                self.period = period
                self._rebase()
        typical = self._typical() if self.period else None
        residual = value - typical if typical is not None else value
        previous = self.values[-1] if self.values else value
        climbing = self._extreme(value)
        self.values.append(value)
        self.count += 1

        # the run (mean residual) and activity (mean absolute change) of the last buckets
        if len(self.recent) == p.run:
            leaving = self.recent[0]
            self.run_sum -= leaving
            self.change_sum -= self.changes[0]
            if len(self.older) == p.trend:
                self.older_sum -= self.older[0]
            self.older.append(leaving)
            self.older_sum += leaving
        self.recent.append(residual)
        change = abs(value - previous)
        self.still = self.still + 1 if change <= 1e-9 * abs(value) else 0
        self.changes.append(change)
        self.run_sum += residual
        self.change_sum += change
        run = self.run_sum / len(self.recent)
        activity = self.change_sum / len(self.changes)
        shift = run - self.older_sum / len(self.older) if self.older else 0.0

        z = 0.0
        signed = 0.0
        lower = upper = expected = value
        lone = True  # the run of the last buckets is inside its band: at most one stray value
        if len(self.level) >= min(p.learning, p.window) // 2:
            q, c = p.quantile, p.scale
            band = self.level.band(q, c)
            up, down = deviation(residual, band, self._floor(self.level))
            signed = up - down
            base = typical if typical is not None else 0.0
            expected, lower, upper = base + band[2], base + band[0], base + band[4]
            rup, rdown = deviation(run, self.run.band(q, c), self._floor(self.run))
            lone = rup == 0.0 and rdown == 0.0
            # A metric cannot move less than not at all: the low side of the activity is scored
            # as any other, and a metric that stopped dead where it always moved (a stuck exporter,
            # a dead job) scores ``stuck`` whatever its band, once it has held one value for
            # ``still`` buckets: half an hour of zeros in a count that is quiet at night is no
            # stopped metric (on NAB, 14 pages outside every window and 1 inside at 6 buckets).
            aband = self.activity.band(q, c)
            _aup, flat = deviation(activity, aband, self._floor(self.activity))
            if self.still >= p.still and aband[0] > 0.0:
                flat = max(flat, p.stuck)
            sup, sdown = deviation(shift, self.shift.band(q, c), self._floor(self.shift))
            if self.up:
                z = max(up, rup, sup)
            if self.down:
                z = max(z, down, rdown, sdown)
            if z > 0.0 and not self.period:
                unit = max(band[3] - band[2], band[2] - band[1], self._floor(self.level))
                z = min(z, self._repeat(value) / unit)
            if self.down:
                z = max(z, flat)
            z = min(z, p.cap)
        # a record: the level or the shift beyond every value its window holds (the highest or
        # lowest in ``window`` buckets) on a side ``direction`` watches, or a metric that stopped
        # dead. The run is left out: a burst of a few buckets tops the run's range as soon as it
        # is a little longer than the last one (registry bursts paged 6 to 11 of 63 with it).
        record = (self.still >= p.still or _beyond(self.level, residual, self.up, self.down)
                  or _beyond(self.shift, shift, self.up, self.down))
        self.level.add(residual)
        self.run.add(run)
        self.activity.add(activity)
        self.shift.add(shift)

        a = abs(signed)
        level = 0
        if a >= p.gate_floor:
            level = min(int(math.log2(a / p.gate_floor)) + 1, p.levels)
            if signed < 0:
                level = -level
        self.quantized.append(level)
        learning = self.count <= p.learning
        seen = 0
        if p.context and level:
            key = tuple(self.quantized)
            seen = self.contexts.get(key, 0)
            self.contexts[key] = seen + 1
        gate = max(self.peak, p.long_share * self.long_peak)
        self.record_peak *= self.record_decay
        if record and z > 0.0:
            # a lone record is judged against the records before it: plain noise sets one now
            # and then, each a little beyond the last (a new maximum of thousands of buckets of
            # noise is as far out as the last one was), so one no further out than
            # ``record_share`` of the last ones is the noise's own; one well beyond them is news,
            # and so is one whose run left its band too (a step, a leak)
            if lone:
                gate = max(gate, p.record_share * self.record_peak)
            self.record_peak = max(self.record_peak, z)
        self.long_peak = max(self.long_peak * self.long_decay, z)
        if learning:
            # the cold start learns how far the series' ordinary values stray as well as the
            # values themselves: the peaks follow z from the first deviation scored, so the first
            # stray value of plain noise after learning is not news (it paged a day in)
            self.peak = max(self.peak * self.decay, z)
            return Reading(value, expected, lower, upper, 0.0, True, self.period)
        novel = max(z - gate, 0.0)
        novel *= p.familiar / (p.familiar + seen)
        if not record:
            novel *= p.ordinary
        onset = 100.0 * novel / (novel + 1.0)
        if p.rearm:
            # an onset no higher than one of the last half day is the same story told again (a
            # burst that rises in steps, its echo a few hours later): it counts 0, a higher one counts
            recent = self.last_onset
            self.last_onset = max(recent * self.rearm, onset)
            if onset <= recent:
                onset = 0.0
        if climbing and p.escalation:
            onset = max(onset, p.climbing)
        if self.episode:
            score = 100.0 * z / (z + 1.0)
            if score < p.recovery:
                self.episode = False
        else:
            score = onset
            self.episode = score >= p.threshold
        self.peak = max(self.peak * self.decay, z)
        return Reading(value, expected, lower, upper, score, False, self.period, onset)
