"""The outbox: notifications queued on their alert documents, delivered at least once and as
seldom twice as can be.

A runner claims an alert document (a lease of ``lease_s``, with optimistic concurrency) before
it sends anything, and records each target's outcome right after that target answered (at the
latest at the start of the next cycle), before the lease ends. A runner that dies while it holds
the claim leaves it to expire; the next runner re-sends only what has no recorded outcome: the
send in flight at the crash. Targets that batch (digests, a rule's ``aggregation``) get one
message for the entries of a cycle.

A claim is held until every send made for it answered (or timed out), which may be cycles
later; then what failed backs off (a bounded, jittered exponential back-off), what a target
refused for good is dropped for that target, recorded and counted, and the claim is released.
How each target fared is kept in its ``notifier:<name>`` document.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, cast

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError

from rules.alerting import CLAIM_KEYS
from rules.cycle import Cycle, CycleReport, Known
from rules.metrics import RunnerMetrics
from rules.notification import Claim, Job, OutboxEntry, Outcome
from rules.notify import Target
from rules.silences import Silences
from rules.state import StateStore, StateWriteError, Versioned

log = structlog.get_logger(__name__)

RETRY_BASE_S = 2.0  # the first retry of a failed delivery; then 4, 8, 16 s... up to retry_max_s
RETRY_MAX_S = 600.0


class Outbox:
    def __init__(self, store: StateStore, known: Known, silences: Silences, targets: dict[str, Target],
                 metrics: RunnerMetrics, runner_id: str, lease_s: float, retry_max_s: float = RETRY_MAX_S,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.known = known
        self.silences = silences
        self.targets = targets
        self.metrics = metrics
        self.runner_id = runner_id
        self.lease_s = lease_s
        self.retry_max_s = retry_max_s
        self.rng = rng or random.Random()
        self.due = 0.0  # when an entry is due next, as last seen: a wake-up before it sends nothing
        self._held: dict[str, Claim] = {}  # alert document id -> its claim, held across cycles
        self._fares: dict[str, list[Outcome]] = {}  # target -> outcomes taken, not yet in its state

    def collect(self, cycle: Cycle) -> list[Job]:
        """Claim the alert documents with entries due, and the sends to make of them: one per
        entry and target, one per batch for targets that batch. A silenced entry is sent nowhere."""
        self.due = math.inf
        now = cycle.now
        work: list[Claim] = []
        wanted: list[Versioned] = []
        for item in self.known.with_outbox():
            queued = item.doc["outbox"]
            if item.id in self._held:  # ours, a send for it still running: recorded when it answers
                continue
            if item.doc.get("outbox_claimed_until", 0) > now:
                self.due = min(self.due, item.doc["outbox_claimed_until"])
                continue
            if all(e["due"] > now for e in queued):
                self.due = min(self.due, *(e["due"] for e in queued))
                continue
            wanted.append(item)
        # One bulk claims them all. The lease runs from the claim, not from the cycle's start:
        # the sends begin now.
        until = now + (time.monotonic() - cycle.started) + self.lease_s
        lease = {"outbox_claimed_until": until, "outbox_claimed_by": self.runner_id}
        outcomes = self.store.write_each([(item, item.doc | lease) for item in wanted])
        for item, claimed in zip(wanted, outcomes, strict=True):
            if isinstance(claimed, StateWriteError):  # not claimed: tried again shortly
                log.warning("outbox_claim_failed", alert=item.id, error=str(claimed)[:300])
                self.due = min(self.due, now + RETRY_BASE_S)
                continue
            if claimed is not None:  # else another runner is delivering it
                self.known.put(claimed)
                claim = Claim(claimed, [cast(OutboxEntry, dict(e)) for e in claimed.doc["outbox"]])
                self._held[claimed.id] = claim
                work.append(claim)
        jobs: list[Job] = []
        batches: dict[tuple[str, str], list[tuple[Claim | None, OutboxEntry]]] = {}
        for claim in work:
            for entry in claim.entries:
                if entry["due"] > now:
                    continue
                claim.tried.add(entry["key"])
                if self.silences.mutes(entry, now):
                    cycle.report.silenced.append(entry["key"])
                    claim.quiet.add(entry["key"])
                    entry["targets"] = []
                    self._record(claim, now)
                    continue
                for name in list(entry["targets"]):
                    target = self.targets.get(name)
                    if target is not None and (target.digest or entry.get("batch")):
                        batches.setdefault((name, entry.get("batch", "")), []).append((claim, entry))
                        continue
                    jobs.append(Job(name, [(claim, entry)]))
        jobs += [Job(name, members, batch=True) for (name, _batch), members in batches.items()]
        for job in jobs:
            for claim in job.claims():
                claim.jobs.add(id(job))
        return jobs

    def land(self, outcome: Outcome, cycle: Cycle) -> None:
        """Take one target's outcome for the entries it was sent: off the entries when it took
        them (recorded now), or the error kept; an error not worth retrying drops the entry for
        that target, recorded and counted."""
        job, error, now, report = outcome.job, outcome.error, cycle.now, cycle.report
        claims = job.claims()
        for claim in claims:
            claim.jobs.discard(id(job))
        name = job.target
        if outcome.counted:
            self._fares.setdefault(name, []).append(outcome)
        if error is None:
            for _claim, entry in job.members:
                entry["targets"] = [n for n in entry["targets"] if n != name]
            for claim in claims:
                self._record(claim, now)
            # From the target's answer to the outcome written: the only moment a crash duplicates.
            self.metrics.exposure.observe(outcome.seconds + time.perf_counter() - outcome.answered)
            return
        if outcome.counted:
            self.metrics.notifier_failures.labels(name, "true" if error.retryable else "false").inc()
        for owner, entry in job.members:
            entry["last_error"] = f"{name}: {error}"[:300]
            entry["errors"] = entry.get("errors", {}) | {name: str(error)[:300]}  # each target's latest
            if not error.retryable:
                entry["targets"] = [n for n in entry["targets"] if n != name]
                entry["dropped"] = sorted({*entry.get("dropped", []), name})
                if owner is not None:
                    owner.quiet.add(entry["key"])
                if entry["key"] not in report.dropped:
                    report.dropped.append(entry["key"])
                log.warning("notification_dropped", key=entry["key"], target=name, error=str(error)[:300],
                            why="the target refused it and would refuse it again")
        if not error.retryable:
            for claim in claims:
                self._record(claim, now)

    def settle(self, cycle: Cycle) -> None:
        """Write how the targets fared, and finish each held claim whose sends all answered."""
        self._fared(cycle.now)
        now = cycle.now
        finished: list[tuple[str, Claim, list[OutboxEntry], tuple[Versioned, dict[str, Any]]]] = []
        for doc_id, claim in list(self._held.items()):
            if claim.jobs:
                continue
            remaining = self._finish(claim, now, cycle.report)
            planned = self._planned(claim, now, release=True, entries=remaining)
            if planned is None:  # the claim was lost: nothing of ours to write
                del self._held[doc_id]
                continue
            finished.append((doc_id, claim, remaining, planned))
        # The releases in one bulk; a claim whose release failed stays held, released next time.
        outcomes = self.store.write_each([planned for *_, planned in finished])
        for (doc_id, claim, remaining, _planned), written in zip(finished, outcomes, strict=True):
            if isinstance(written, StateWriteError):
                log.warning("outbox_not_released", alert=doc_id, error=str(written)[:300])
                continue
            self._written(claim, remaining, written)
            del self._held[doc_id]

    def _finish(self, claim: Claim, now: float, report: CycleReport) -> list[OutboxEntry]:
        """End a claim whose sends all answered: the entries tried and still owed to a target back
        off, the others are sent (or silenced, or dropped). Returns the outbox to leave on the
        document when the claim is released."""
        remaining: list[OutboxEntry] = []
        for entry in claim.entries:
            if entry["key"] not in claim.tried:  # not due when claimed: left as it was
                remaining.append(entry)
            elif entry["targets"]:  # tried and failed for some target: back off
                attempts = entry["attempts"] + 1
                entry = entry | {"attempts": attempts, "due": now + self.backoff(attempts)}
                report.failed.append(entry["key"])
                log.warning("notification_failed", key=entry["key"], error=entry.get("last_error"),
                            attempts=attempts, retry_in=round(entry["due"] - now, 1))
                remaining.append(entry)
            elif entry["key"] not in claim.quiet:
                report.sent.append(entry["key"])
        self.due = min([self.due] + [e["due"] for e in remaining])
        return remaining

    def backoff(self, attempts: int) -> float:
        """Seconds to the next try after ``attempts`` failed ones: doubling from
        :data:`RETRY_BASE_S`, within ±20 % (runners and alerts do not retry in step), at most
        ``retry_max_s``."""
        delay = RETRY_BASE_S * 2.0 ** min(attempts - 1, 40)
        return min(self.retry_max_s, delay * self.rng.uniform(0.8, 1.2))

    def _fared(self, now: float) -> None:
        """Keep how each target fared (the outcomes taken since the last call) in its
        ``notifier:<name>`` document: written when it fails, and when it succeeds after failing
        (not on every success)."""
        fared = dict(self._fares)
        self._fares.clear()
        for name, outcomes in fared.items():
            doc_id = f"notifier:{name}"
            item = self.known.get(doc_id)
            old = item.doc if item is not None else {}
            if any(o.error is None for o in outcomes):
                if old.get("failing_since") is None:
                    continue
                doc = old | {"failing_since": None, "last_success": now, "failures": 0, "updated": now,
                             "runner": self.runner_id}
            else:
                errors = [o.error for o in outcomes if o.error is not None]
                doc = {"type": "notifier", "target": name, "failing_since": old.get("failing_since") or now,
                       "last_error": str(errors[-1])[:300], "retryable": errors[-1].retryable,
                       "last_failure": now, "last_success": old.get("last_success"),
                       "failures": old.get("failures", 0) + len(errors),
                       "dropped": old.get("dropped", 0) + sum(1 for e in errors if not e.retryable),
                       "updated": now, "runner": self.runner_id}
            try:
                self.store.beat(doc_id, doc, refresh=True)  # rare (a failure, a recovery); `rules status` reads it
            except (ApiError, TransportError) as exc:  # the next failure writes it again
                log.warning("notifier_state_not_written", target=name, error=type(exc).__name__)
                continue
            self.known.put(Versioned(doc_id, doc))

    def _record(self, claim: Claim, now: float) -> None:
        """Write a claimed document's outbox as it stands now (a target that took an entry is
        off it), the claim held."""
        planned = self._planned(claim, now)
        if planned is not None:
            self._written(claim, claim.entries, self.store.write(*planned))

    def _planned(self, claim: Claim, now: float, release: bool = False,
                 entries: list[OutboxEntry] | None = None) -> tuple[Versioned, dict[str, Any]] | None:
        """The write that records a claimed document's outbox as it stands now: a target that
        took an entry is off it. With ``release`` the claim ends too (``entries``: the outbox to
        leave). Entries queued on the document since the claim (a later cycle's transition) are
        kept. None when the claim is no longer ours."""
        base = self._claimed(claim)
        if base is None:
            log.warning("outbox_claim_lost", alert=claim.item.id, why="the lease ran out and another runner took it")
            return None
        entries = claim.entries if entries is None else entries
        doc: dict[str, Any] = {k: v for k, v in base.doc.items() if k != "outbox"}
        if release:
            for key in CLAIM_KEYS:
                doc.pop(key, None)
        kept = [e for e in entries if e["targets"] or e["due"] > now] if not release else list(entries)
        mine = {e["key"] for e in claim.entries}
        newer = [e for e in base.doc.get("outbox", []) if e["key"] not in mine]
        kept += newer
        if release and newer:  # queued while the claim was held: due as they say, not at the next rule
            self.due = min([self.due] + [e["due"] for e in newer])
        if kept:
            doc["outbox"] = kept
        return base, doc

    def _written(self, claim: Claim, entries: list[OutboxEntry], written: Versioned | None) -> None:
        if written is None:
            log.warning("outbox_write_conflict", alert=claim.item.id)
            return
        claim.item = written
        claim.entries = entries
        self.known.put(written)

    def _claimed(self, claim: Claim) -> Versioned | None:
        """The newest version of a claimed document this runner knows (a later cycle may have
        written its state since the claim), or None if the claim is no longer this one."""
        latest = self.known.get(claim.item.id) or claim.item
        if (latest.primary_term or 0, latest.seq_no or -1) < (claim.item.primary_term or 0, claim.item.seq_no or -1):
            latest = claim.item
        if any(latest.doc.get(k) != claim.item.doc.get(k) for k in CLAIM_KEYS):
            return None
        return latest
