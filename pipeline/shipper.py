"""The shipper: files -> parse -> bounded queue -> bulk -> checkpoint.

Two threads. The reader scans globs (on watchdog events, or every poll interval as a fallback),
reads complete lines, parses them with the input's parser and puts one item per line on a
queue bounded in bytes (``queue_max_bytes``) and events: when Elasticsearch is slow or down the
queue fills and reading pauses, so memory is set by the configuration, not by the backlog. The
writer takes batches off the queue, delivers each completely (retrying as long as it takes) and
only then advances the checkpoint of the lines in it: batches are delivered in order, so a
file's checkpoint never passes a line that is not acknowledged.

A batch leaves when it is full (``batch.max_docs``, ``max_bytes``), when its first line has
waited ``batch.max_wait_s``, or as soon as the reader has read everything there is (it says so
with a marker on the queue): a trickle of lines is sent at once rather than after a wait, and a
backlog still goes in full batches, because the reader is never done with it between two.

What a line becomes is ``pipeline.inputs``'s to say; what travels the queue, ``pipeline.chunks``'s.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from pipeline.checkpoint import CheckpointStore, lag
from pipeline.chunks import QUEUE_CHUNK, Chunk, ChunkQueue, expected, furthest_ends
from pipeline.heartbeat import Heartbeat
from pipeline.inputs import EnrichFn, MissingDuration, ShipInput, agent_fields, line_items
from pipeline.interpreter import tune_interpreter
from pipeline.metrics import ShipperMetrics
from pipeline.reader import FileSource, Line
from pipeline.scanner import path_text
from pipeline.settings import ShipSettings
from pipeline.sink import BulkSink, Item
from pipeline.tailer import Tailer

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

log = structlog.get_logger(__name__)

_END = object()  # the reader is done (--once, stopping, failed)
_CAUGHT_UP = object()  # the reader has read all there is for now: a partial batch may leave
REPORTED_FILES = 200  # per heartbeat document: a glob over thousands of files reports the total only
# The "sent" mark is saved (two fsyncs, while the node waits for the next request) once per this
# many bytes shipped. After a crash, lines below it are looked for before they are sent again,
# but only those up to the highest offset the node holds: a mark far ahead costs no searches.
# At 4 MiB (py-spy, ship --once) a save preceded every other 2,000-line request.
SENT_AHEAD_BYTES = 64 * 1024 * 1024


@dataclass
class Summary:
    lines_read: int = 0
    indexed: Counter[str] = field(default_factory=Counter)
    deadletters: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    rejected: int = 0

    @property
    def events(self) -> int:
        # dict.copy is one C call: atomic against the writer thread updating the counts (the
        # heartbeat reads them from its own thread).
        return sum(v for k, v in dict.copy(self.indexed).items() if k != "deadletter")

    def line(self) -> str:
        kinds = " ".join(f"{k}={v}" for k, v in sorted(self.indexed.items()) if k != "deadletter")
        return (f"lines_read={self.lines_read} events={self.events} deadletters={sum(self.deadletters.values())} "
                f"duplicates_skipped={self.duplicates} {kinds}").strip()


class ShipperFailed(RuntimeError):
    """The reader or the writer met something it cannot go on from; the daemon exits non-zero.

    What was acknowledged before is checkpointed; nothing after it is, so a restart resumes there.
    """


class Shipper:
    def __init__(self, sink: BulkSink, inputs: list[ShipInput], store: CheckpointStore,
                 options: ShipSettings | None = None, metrics: ShipperMetrics | None = None,
                 reload: Callable[[], list[ShipInput] | None] | None = None,
                 config_changed: Callable[[], bool] | None = None,
                 heartbeat: Callable[[Shipper], Heartbeat] | None = None,
                 progress: Callable[[int], None] | None = None, enrich: EnrichFn | None = None,
                 agent_id: str | None = None) -> None:
        """``progress`` is told the bytes of every line read (a progress bar's advance); ``enrich``
        names what each retrieval retrieved (pipeline.attribution), never waiting; ``agent_id`` is
        this shipper's ``agent.id`` on every document (its heartbeat's id; default: the host)."""
        self.agent_id = agent_id
        self.sink = sink
        self.inputs = inputs
        self.store = store
        self.options = options or ShipSettings()
        self.host = self.options.host()
        self.metrics = metrics or sink.metrics
        self._reload_fn = reload
        self._config_changed = config_changed
        self._reload_requested = threading.Event()
        self.tailer = Tailer([i.spec for i in inputs], store, max_line_bytes=self.options.max_line_bytes,
                             partial_flush_s=self.options.partial_line_flush_s,
                             close_renamed_after_s=self.options.close_renamed_after_s,
                             on_start_offset=self._start_offset_chosen)
        self.queue = ChunkQueue(self.options.queue_max_bytes, self.options.queue_max_events)
        self.summary = Summary()
        self._stopping = threading.Event()  # stop reading, drain what is queued
        self._give_up = threading.Event()  # stop retrying: exit without acknowledging the rest
        self._wake = threading.Event()
        self._observer: BaseObserver | None = None
        self._last_save = 0.0
        self._failure: str | None = None
        self.progress = progress
        self.enrich = enrich
        self.missing_duration = MissingDuration(self.metrics.without_duration)
        self.heartbeat = heartbeat(self) if heartbeat is not None else None

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM: stop reading, deliver what is queued within the grace period, checkpoint."""
        if not self._stopping.is_set():
            log.info("stopping")
            self._stopping.set()
            self._wake.set()
            timer = threading.Timer(self.options.stop_grace_s, self._give_up.set)
            timer.daemon = True
            timer.start()

    def request_reload(self) -> None:
        """SIGHUP or a changed config file: re-read the inputs."""
        self._reload_requested.set()
        self._wake.set()

    def run(self, once: bool = False, watch: bool = True) -> Summary:
        """Ship until stopped (daemon), or until every input is read to its end (``once``)."""
        self.store.lock()
        tune_interpreter()
        if watch and not once:
            self._start_watching()
        if self.heartbeat is not None:
            self.heartbeat.start()
        reader = threading.Thread(target=self._read_loop, args=(once,), name="regwatch-reader", daemon=True)
        reader.start()
        try:
            self._write_loop()
        except Exception as exc:  # becomes the daemon's non-zero exit, logged once
            log.exception("writer_failed")
            self._failure = self._failure or f"writer failed: {type(exc).__name__}: {exc}"
        finally:
            self._stopping.set()
            self._wake.set()
            reader.join(timeout=self.options.stop_grace_s + 5)
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=5)
            self.store.save()
            self.store.unlock()
            self.tailer.close()
            if self.heartbeat is not None:
                self.heartbeat.stop()
        log.info("shipper_done", summary=self.summary.line())
        if self._failure is not None:
            raise ShipperFailed(self._failure)
        return self.summary

    def report(self) -> dict[str, Any]:
        """What the heartbeat tells: each current file's acknowledged offset and lag, and totals."""
        current = [row for row in lag(self.store) if row.size is not None]
        return {
            "files": [{"path": path_text(row.path), "offset": row.offset, "size": row.size, "behind": row.behind}
                      for row in current[:REPORTED_FILES]],
            "files_count": len(current),
            "behind_bytes": sum(row.behind or 0 for row in current),
            "events": self.summary.events,
            "dead_letters": sum(dict.copy(self.summary.deadletters).values()),
            "duplicates_skipped": self.summary.duplicates,
            "queued_events": self.queue.events,
        }

    # -- reading -------------------------------------------------------------------------------

    def _start_offset_chosen(self, source: FileSource, offset: int) -> None:
        # start_at: end for a file seen for the first time: remember the choice at once, or a
        # restart would choose a new end and skip what was written in between.
        self.store.advance(source.identity, offset, source.path)
        self.store.save()

    def _read_loop(self, once: bool) -> None:
        try:
            while not self._stopping.is_set():
                if self._config_changed is not None and self._config_changed():
                    self._reload_requested.set()
                if self._reload_requested.is_set():
                    self._reload()
                self.tailer.scan()
                read = False
                for lines in self.tailer.poll():
                    for start in range(0, len(lines), QUEUE_CHUNK):
                        chunk = Chunk.of(self._items(lines[start:start + QUEUE_CHUNK]))
                        if not self._put(chunk):
                            return
                        read = True
                        self.summary.lines_read += len(chunk.items)
                        self.metrics.lines_read.labels(self._input_name(chunk.items[0])).inc(len(chunk.items))
                self._update_behind()
                if once:
                    return
                if read:
                    self.queue.put(_CAUGHT_UP)
                self._wake.wait(self.options.poll_interval_s)
                self._wake.clear()
        except Exception as exc:  # the writer drains what was read; then a non-zero exit
            log.exception("reader_failed")
            self._failure = f"reader failed: {type(exc).__name__}: {exc}"
        finally:
            self._put_end()

    def _put(self, chunk: Chunk) -> bool:
        while not self._stopping.is_set():
            if self.queue.put(chunk, timeout=0.2):
                return True
        return False

    def _input_name(self, item: Item) -> str:
        index = item.ack[0].input_index
        return self.inputs[index].name if index < len(self.inputs) else str(index)

    def _put_end(self) -> None:
        self.queue.put(_END)  # a marker never waits for room

    def _items(self, lines: list[Line]) -> list[Item]:
        """One encoded item per line (:func:`line_items`, with this shipper's inputs and host)."""
        return line_items(lines, self.inputs, self.host, self.options.max_line_bytes, self.progress,
                          self.missing_duration, self.enrich, agent_fields(self.host, self.agent_id))

    def _update_behind(self) -> None:
        for path, behind in self.tailer.behind().items():
            self.metrics.bytes_behind.labels(path).set(behind)
        self.metrics.count_refused(self.tailer.refused)

    def _reload(self) -> None:
        self._reload_requested.clear()
        if self._reload_fn is None:
            return
        try:
            inputs = self._reload_fn()
        except Exception as exc:  # a bad config keeps the old inputs running
            log.error("reload_failed", error=str(exc))
            return
        if inputs is None:
            return
        self.inputs = inputs
        self.tailer.set_specs([i.spec for i in inputs])
        log.info("inputs_reloaded", inputs=len(inputs))

    def _start_watching(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return
        wake = self._wake

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                wake.set()

        observer = Observer()
        folders = {str(Path(p).parent) for i in self.inputs for p in i.spec.paths}
        for folder in folders:
            if Path(folder).is_dir():
                observer.schedule(Wake(), folder, recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    # -- writing -------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        batch: list[Chunk] = []
        docs = size = 0
        first_at = 0.0
        limits = self.options.batch
        while True:
            timeout = max(0.01, limits.max_wait_s - (time.monotonic() - first_at)) if batch else 0.5
            chunk = self.queue.get(timeout=timeout)
            if chunk is _END:
                if batch:
                    self._deliver(batch)
                return
            if chunk is _CAUGHT_UP:
                # Nothing more to wait for: send what there is now. A marker with lines queued
                # behind it is stale (they came while a request was out): they join this batch,
                # and the marker after them sends it.
                if batch and self.queue.empty():
                    if not self._deliver(batch):
                        return
                    batch, docs, size = [], 0, 0
            elif chunk is not None:
                if batch and (docs + len(chunk.items) > limits.max_docs or size + chunk.nbytes > limits.max_bytes):
                    if not self._deliver(batch):
                        return
                    batch, docs, size = [], 0, 0
                if not batch:
                    first_at = time.monotonic()
                batch.append(chunk)
                docs += len(chunk.items)
                size += chunk.nbytes
            if batch and (docs >= limits.max_docs or time.monotonic() - first_at >= limits.max_wait_s):
                if not self._deliver(batch):
                    return
                batch, docs, size = [], 0, 0
            self.metrics.queue_depth.set(self.queue.events)
            if self._give_up.is_set():
                return

    def _deliver(self, batch: list[Chunk]) -> bool:
        items: list[Item] = []
        for chunk in batch:
            items.extend(chunk.items)
        ends = furthest_ends(batch)
        reserved = [self.store.reserve(source.identity, end, source.path, SENT_AHEAD_BYTES)
                    for source, end in ends.values()]
        if any(reserved):  # on disk before the request leaves: a crash after it knows what to verify
            self.store.save()
        report = self.sink.deliver(items, give_up=self._give_up, expected=expected(batch))
        summary = self.summary
        summary.indexed.update(report.indexed)
        summary.deadletters.update(report.deadletters)
        summary.duplicates += report.duplicates
        summary.rejected += report.rejected
        if not report.complete:
            log.warning("batch_abandoned", docs=len(items), reason="stopping while Elasticsearch is unavailable")
            return False
        for source, end in ends.values():
            self.store.advance(source.identity, end, source.path)
        now = time.monotonic()
        if now - self._last_save >= self.options.checkpoint_every_s or self._stopping.is_set():
            self.store.save()
            self._last_save = now
        return True
