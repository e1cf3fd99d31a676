"""Dispatching sends: a thread per target, a deadline per send, outcomes taken as they come.

A target that hangs costs its own sends their deadline, never another target, a rule or a cycle:
each target's sends of a cycle run in a thread of their own, ended by the target's ``timeout_s``
(within the outbox lease). A send outlives the cycle that started it: its outcome comes in on a
queue and is handed to ``land`` by whichever cycle looks next; one past its deadline (and a grace
for its thread) is landed as timed out, and a late answer is dropped. A target whose last send has
not ended gets no new one.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog

from rules.cycle import Cycle
from rules.notification import Job, Outcome
from rules.notify import DeliveryFailed, Notifier, Target
from rules.notify.base import max_timeout, send_deadline

log = structlog.get_logger(__name__)

CLAIM_S = 30.0  # how long a runner owns an outbox entry it is delivering
GRACE_S = 0.5  # past a target's deadline, for its thread to hand its outcome over

Land = Callable[[Outcome, Cycle], None]


@dataclass
class Flight:
    """A send started and not answered yet: its outcome is taken when it comes, by this cycle or
    a later one; past ``deadline`` (and a grace for its thread) it has timed out."""

    job: Job
    deadline: float  # time.monotonic()
    timeout: float  # the target's timeout_s, as it was applied
    due: float  # the deadline (and grace) on the cycles' clock: a cycle is due then to record it


def _work(target: Notifier, jobs: list[Job], payloads: list[list[dict[str, Any]]], deadline: float,
          results: queue.SimpleQueue[Outcome]) -> None:
    """A target's sends of one cycle, in its own thread, all ended by ``deadline``. Each outcome
    is handed over as it comes, to the dispatcher's queue: the cycle that sent it, or the next one,
    records it. One that comes after its deadline and grace is dropped (the send was recorded as
    timed out, and the notification is sent again: at least once)."""
    with send_deadline(deadline):
        for job, payload in zip(jobs, payloads, strict=True):
            started = time.perf_counter()
            error = None
            if time.monotonic() >= deadline:
                error = DeliveryFailed("timed out: no time left for this send")
            else:
                try:
                    if job.batch:
                        target.send_digest(payload)
                    else:
                        target.send(payload[0])
                except DeliveryFailed as exc:
                    error = exc
                except Exception as exc:
                    log.error("notifier_bug", target=job.target, error=type(exc).__name__)
                    error = DeliveryFailed(f"{type(exc).__name__} in the notifier")
                except BaseException as exc:
                    results.put(Outcome(job, None, fatal=exc))
                    return
            results.put(Outcome(job, error, time.perf_counter() - started))


class Dispatcher:
    def __init__(self, targets: dict[str, Target], lease_s: float, stop: threading.Event, land: Land) -> None:
        self.targets = targets
        self.lease_s = lease_s
        self.stop = stop  # set: sends in flight are given up
        self.land_outcome = land
        self._inflight: dict[str, threading.Thread] = {}  # target -> the thread of its last send
        self._results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._flights: dict[int, Flight] = {}  # id of the job -> a send not answered yet

    def moments(self) -> list[float]:
        """When a cycle is due for the sends in flight: now, if an answer came in; at a send's
        deadline, if none did."""
        moments = [flight.due for flight in self._flights.values()]
        if not self._results.empty():
            moments.append(0.0)
        return moments

    @property
    def last_deadline(self) -> float | None:
        return max((f.deadline for f in self._flights.values()), default=None)

    def timeout(self, name: str) -> float:
        """How long a send to a target may take: its ``timeout_s``, within the lease."""
        return min(getattr(self.targets[name], "timeout_s", CLAIM_S), max_timeout(self.lease_s))

    def start(self, jobs: list[Job], cycle: Cycle) -> set[int]:
        """Start ``jobs``, one thread per target; the ids of those started. A job for a target that
        is not configured, or whose last send still runs, lands at once as failed."""
        by_target: dict[str, list[Job]] = {}
        for job in jobs:
            by_target.setdefault(job.target, []).append(job)
        started: set[int] = set()
        for name, batch in by_target.items():
            target = self.targets.get(name)
            if target is None:
                for job in batch:
                    self._land(Outcome(job, DeliveryFailed(f"no notifier {name!r} is configured", retryable=False)),
                               cycle)
                continue
            busy = self._inflight.get(name)
            if busy is not None and busy.is_alive():
                for job in batch:
                    self._land(Outcome(job, DeliveryFailed("the previous send to this target has not ended yet"),
                                       counted=False), cycle)
                continue
            timeout = self.timeout(name)
            deadline = time.monotonic() + timeout
            due = cycle.now + (deadline + GRACE_S - cycle.started)  # on the cycle's clock
            payloads = [[cast(dict[str, Any], copy.deepcopy(entry["payload"])) for _claim, entry in job.members]
                        for job in batch]
            for job in batch:
                self._flights[id(job)] = Flight(job, deadline, timeout, due)
                started.add(id(job))
            thread = threading.Thread(target=_work, args=(target, batch, payloads, deadline, self._results),
                                      name=f"notify-{name}", daemon=True)
            self._inflight[name] = thread
            thread.start()
        return started

    def wait(self, until: float, cycle: Cycle, wanted: set[int] | None = None) -> None:
        """Take outcomes as they come (any send's) until ``until`` (``time.monotonic()``), until
        the ``wanted`` sends (None: all) answered, or until stop."""
        while not self.stop.is_set():
            pending = self._flights.keys() if wanted is None else wanted & self._flights.keys()
            left = until - time.monotonic()
            if not pending or left <= 0:
                return
            try:
                outcome = self._results.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            self._take(outcome, cycle)

    def drain(self, cycle: Cycle, final: bool = False) -> None:
        """Take the outcomes that came since the last look, and land a timeout for each send past
        its deadline (``final``: for each send left; on stop: a give-up, not counted)."""
        while True:
            try:
                outcome = self._results.get_nowait()
            except queue.Empty:
                break
            self._take(outcome, cycle)
        self.expire(cycle, final)

    def expire(self, cycle: Cycle, final: bool) -> None:
        stopping = self.stop.is_set()
        moment = time.monotonic()
        for flight in list(self._flights.values()):
            job = flight.job
            if stopping:
                self._land(Outcome(job, DeliveryFailed("the runner stopped before the target answered"),
                                   counted=False), cycle)
            elif final or moment >= flight.deadline + GRACE_S:
                error = DeliveryFailed(f"timed out: no answer within {flight.timeout:g} s")
                self._land(Outcome(job, error, moment - flight.deadline + flight.timeout), cycle)

    def _take(self, outcome: Outcome, cycle: Cycle) -> None:
        """An outcome off the queue: for its send if that is still in flight, else too late
        (the send was recorded as timed out or given up) and dropped."""
        flight = self._flights.get(id(outcome.job))
        if flight is not None and flight.job is outcome.job:
            self._land(outcome, cycle)
        elif outcome.fatal is not None:
            raise outcome.fatal

    def _land(self, outcome: Outcome, cycle: Cycle) -> None:
        """The send is no longer in flight; its outcome goes to whoever takes it."""
        self._flights.pop(id(outcome.job), None)
        if outcome.fatal is not None:
            raise outcome.fatal
        self.land_outcome(outcome, cycle)
