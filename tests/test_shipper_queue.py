"""The queue between the shipper's reader and writer is bounded in bytes, and a trickle of lines
leaves as soon as the reader has read all there is (issue #31: memory set by the configuration,
line written -> searchable within the node's refresh)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from pipeline.checkpoint import CheckpointStore
from pipeline.chunks import Chunk, ChunkQueue
from pipeline.identity import Identity
from pipeline.inputs import ShipInput
from pipeline.metrics import ShipperMetrics
from pipeline.reader import FileSource
from pipeline.scanner import InputSpec
from pipeline.settings import BatchSettings, ShipSettings
from pipeline.shipper import Shipper
from pipeline.sink import DeliveryReport, Item

SOURCE = FileSource(0, "/var/log/a.log", 1, 2, Identity("f" * 16, 1, 2))


def chunk(lines: int, body_bytes: int) -> Chunk:
    items = [Item("logs-x-default", f"id{i}", b"x" * body_bytes, "access", b"raw", ack=(SOURCE, i + 1))
             for i in range(lines)]
    return Chunk.of(items)


def test_a_full_queue_refuses_by_bytes_and_lets_one_in_when_a_chunk_leaves() -> None:
    queue = ChunkQueue(max_bytes=1000, max_events=1000)
    first, second, third = chunk(2, 300), chunk(2, 150), chunk(1, 200)  # 600, 300 and 200 bytes
    assert queue.put(first, timeout=0) and queue.put(second, timeout=0)
    assert (queue.bytes, queue.events) == (900, 4)
    assert not queue.put(third, timeout=0.05)  # 1,100 bytes would be over the bound
    assert queue.get(timeout=0) is first
    assert queue.put(third, timeout=0)
    assert (queue.bytes, queue.events) == (500, 3)


def test_a_full_queue_refuses_by_events() -> None:
    queue = ChunkQueue(max_bytes=10**9, max_events=3)
    assert queue.put(chunk(2, 1), timeout=0)
    assert not queue.put(chunk(2, 1), timeout=0)


def test_a_chunk_larger_than_the_bound_enters_an_empty_queue_and_markers_never_wait() -> None:
    queue = ChunkQueue(max_bytes=100, max_events=10)
    big = chunk(1, 5000)
    assert queue.put(big, timeout=0)
    marker = object()
    assert queue.put(marker, timeout=0)  # full, yet a marker goes in
    assert queue.get(timeout=0) is big and queue.get(timeout=0) is marker
    assert queue.get(timeout=0.01) is None
    assert (queue.bytes, queue.events) == (0, 0)


def test_a_put_waiting_for_room_goes_in_when_the_writer_takes_a_chunk() -> None:
    queue = ChunkQueue(max_bytes=100, max_events=10)
    queue.put(chunk(1, 100))
    waiting = chunk(1, 100)
    done = threading.Event()

    def put() -> None:
        queue.put(waiting)
        done.set()

    threading.Thread(target=put, daemon=True).start()
    assert not done.wait(0.1)
    queue.get()
    assert done.wait(5)
    assert queue.get(timeout=0) is waiting


class RecordingSink:
    """Delivers everything at once and records the size of each batch."""

    def __init__(self) -> None:
        self.metrics = ShipperMetrics()
        self.batches: list[int] = []
        self.delivered = threading.Event()

    def deliver(self, items: list[Item], give_up: threading.Event | None = None,
                expected: tuple[Counter[str], Counter[str]] | None = None) -> DeliveryReport:
        self.batches.append(len(items))
        self.delivered.set()
        return DeliveryReport(indexed=Counter(item.kind for item in items))


def test_a_trickle_leaves_once_the_reader_caught_up_not_after_the_batch_wait(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"line one\nline two\nline three\n")

    def parse(raw: bytes) -> dict:
        return {"@timestamp": "2026-11-25T10:00:00.000Z", "event": {"kind": "event"},
                "data_stream": {"type": "logs", "dataset": "modelregistry.access", "namespace": "default"}}

    shipped = ShipInput(InputSpec(index=0, paths=(str(log),)), parse, lambda raw, reason, kind: parse(raw), "0:x")
    # A batch may wait an hour to fill: only the reader's "caught up" can send these three lines.
    options = ShipSettings(batch=BatchSettings(max_docs=2000, max_wait_s=3600), poll_interval_s=0.05,
                           host_name="test-host", heartbeat_every_s=None)
    sink = RecordingSink()
    shipper = Shipper(sink, [shipped], CheckpointStore(str(tmp_path / "cp.json")), options)  # type: ignore[arg-type]
    runner = threading.Thread(target=shipper.run, kwargs={"watch": False}, daemon=True)
    runner.start()
    try:
        assert sink.delivered.wait(10), "three lines waited for a batch to fill"
        assert sink.batches == [3]
        assert shipper.summary.events == 3
    finally:
        shipper.stop()
        runner.join(timeout=10)
    assert not runner.is_alive()


def test_lines_queued_behind_a_caught_up_marker_join_the_batch(tmp_path: Path) -> None:
    """While a request is out, lines and markers pile up: the writer sends them as one batch,
    not one request per marker (which fell behind a 400 lines/s trickle)."""
    from pipeline.shipper import _CAUGHT_UP, _END

    sink = RecordingSink()
    shipper = Shipper(sink, [], CheckpointStore(str(tmp_path / "cp.json")),  # type: ignore[arg-type]
                      ShipSettings(batch=BatchSettings(max_docs=2000, max_wait_s=3600), host_name="h",
                                   heartbeat_every_s=None))
    for item in (chunk(3, 10), _CAUGHT_UP, chunk(2, 10), _CAUGHT_UP, chunk(4, 10), _CAUGHT_UP, chunk(1, 10), _END):
        shipper.queue.put(item)
    shipper._write_loop()
    assert sink.batches == [10]  # no marker found the queue empty: one request, not three
