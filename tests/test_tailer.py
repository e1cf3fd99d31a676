"""The tailer on real files, without Elasticsearch: rotation, identity, truncation, lines.

Each test follows files as the shipper does (scan, poll) and acknowledges what it read into a
real checkpoint store, then looks at the lines handed on and the file events reported.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.checkpoint import CheckpointStore
from pipeline.fileevents import FileEvent, FileEventKind
from pipeline.identity import fingerprint
from pipeline.scanner import InputSpec
from pipeline.tailer import Tailer

K = FileEventKind


class Follow:
    """A tailer over ``pattern`` whose lines are acknowledged as soon as they are read."""

    def __init__(self, tmp_path: Path, pattern: str, **options) -> None:
        self.store = CheckpointStore(tmp_path / "checkpoints.json")
        self.events: list[FileEvent] = []
        self.options = options
        self.pattern = pattern
        self.tailer = self._tailer()

    def _tailer(self) -> Tailer:
        return Tailer([InputSpec(index=0, paths=(self.pattern,), start_at=self.options.pop("start_at", "beginning"))],
                      self.store, close_renamed_after_s=0.0, on_event=self.events.append, **self.options)

    def lines(self, flush: bool = False) -> list[bytes]:
        self.tailer.scan()
        out = []
        for batch in self.tailer.poll(flush=flush):
            for line in batch:
                out.append(line.raw)
                self.store.advance(line.source.identity, line.end, line.source.path)
        return out

    def restart(self) -> None:
        """The shipper stopped and started again: a new tailer on the saved checkpoint."""
        self.store.save()
        self.tailer.close()
        self.store = CheckpointStore(self.store.path)
        self.tailer = self._tailer()

    def kinds(self) -> list[FileEventKind]:
        return [e.kind for e in self.events if e.kind is not K.APPENDED]


def write(path: Path, text: str, mode: str = "a") -> None:
    with open(path, mode) as handle:
        handle.write(text)


def test_rename_rotation_reads_the_old_file_to_its_end_and_the_new_one_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "a1\na2\n")
    follow = Follow(tmp_path, str(tmp_path / "access.log*"))
    assert follow.lines() == [b"a1\n", b"a2\n"]
    write(log, "a3\n")
    log.rename(tmp_path / "access.log.1")  # logrotate's default: rename, then a new file
    write(log, "b1\n")
    write(tmp_path / "access.log.1", "a4\n")  # the writer still had the old file open
    assert sorted(follow.lines()) == [b"a3\n", b"a4\n", b"b1\n"]
    assert K.RENAMED in follow.kinds()
    follow.restart()
    assert follow.lines() == []  # nothing read twice after a restart


def test_copytruncate_ships_each_line_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "x1\nx2\n")
    follow = Follow(tmp_path, str(tmp_path / "access.log*"))
    assert follow.lines() == [b"x1\n", b"x2\n"]
    write(log, "x3\n")
    (tmp_path / "access.log.1").write_bytes(log.read_bytes())  # copy ...
    os.truncate(log, 0)  # ... then truncate
    write(log, "y1\n")
    assert sorted(follow.lines()) == [b"x3\n", b"y1\n"]  # x1, x2 not again; x3 once (from the copy)
    assert K.TRUNCATED in follow.kinds() or K.REPLACED in follow.kinds()


def test_a_copy_adopts_the_identity_of_its_original(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "c1\nc2\n")
    follow = Follow(tmp_path, str(tmp_path / "*.log*"))
    follow.lines()
    original = next(iter(follow.tailer.files.values())).identity
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())
    log.unlink()
    assert follow.lines() == []
    copied = [e for e in follow.events if e.kind is K.COPIED]
    assert copied and copied[0].detail["identity"] == original.key


def test_two_files_starting_with_the_same_line_keep_their_own_identities(tmp_path: Path) -> None:
    write(tmp_path / "a.log", "# header\nfrom a\n")
    follow = Follow(tmp_path, str(tmp_path / "*.log"))
    assert follow.lines() == [b"# header\n", b"from a\n"]
    write(tmp_path / "b.log", "# header\nfrom b, a different file\n" + "b" * 70_000 + "\n")
    assert follow.lines()[:2] == [b"# header\n", b"from b, a different file\n"]
    identities = {t.identity.key for t in follow.tailer.files.values()}
    assert len(identities) == 2


def test_truncation_in_place_starts_a_new_generation(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    write(log, "old1\nold2\nold3\n")
    follow = Follow(tmp_path, str(log))
    follow.lines()
    first = next(iter(follow.tailer.files.values())).identity
    write(log, "new1\n", mode="w")  # truncated and rewritten, shorter than what was read
    assert follow.lines() == [b"new1\n"]
    second = next(iter(follow.tailer.files.values())).identity
    assert (second.device, second.inode) == (first.device, first.inode)
    assert second.key != first.key
    assert K.TRUNCATED in follow.kinds()


def test_truncated_while_stopped_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    write(log, "one\ntwo\nthree\n")
    follow = Follow(tmp_path, str(log))
    follow.lines()
    follow.restart()
    write(log, "one\n", mode="w")  # same first line, shorter than the checkpoint
    assert follow.lines() == [b"one\n"]


def test_partial_lines_wait_for_their_newline_or_the_flush(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    write(log, "whole\nhal")
    follow = Follow(tmp_path, str(log), partial_flush_s=None)
    assert follow.lines() == [b"whole\n"]
    write(log, "f\n")
    assert follow.lines() == [b"half\n"]
    write(log, "tail without newline")
    assert follow.lines() == []
    assert follow.lines(flush=True) == [b"tail without newline"]


def test_an_over_long_line_is_an_excerpt_and_the_next_line_is_whole(tmp_path: Path) -> None:
    log = tmp_path / "l.log"
    write(log, "short\n" + "L" * 100_000 + "\nafter\n")
    follow = Follow(tmp_path, str(log), max_line_bytes=1000)
    follow.tailer.scan()
    lines = [line for batch in follow.tailer.poll() for line in batch]
    assert [len(line.raw) for line in lines] == [6, 32 * 1024, 6]
    assert lines[1].too_long == 100_001 and lines[2].raw == b"after\n"


def test_start_at_end_skips_what_was_there_and_remembers_the_choice(tmp_path: Path) -> None:
    log = tmp_path / "e.log"
    write(log, "before\n")
    chosen = []
    follow = Follow(tmp_path, str(log), start_at="end", on_start_offset=lambda source, offset: chosen.append(offset))
    assert follow.lines() == []
    write(log, "after\n")
    assert follow.lines() == [b"after\n"] and chosen == [7]


def test_the_fingerprint_waits_for_a_complete_first_line() -> None:
    assert fingerprint(b"no newline yet") is None
    assert fingerprint(b"line\nmore") == fingerprint(b"line\nother")
    assert fingerprint(b"x" * 2000) is not None  # a first line longer than 1 KiB: its first KiB


# -- opening what was checked ------------------------------------------------------------------------

def _swap_after_check(tailer, swap) -> None:
    """Run ``swap`` between the scanner's check and the tailer's open: the race a writer of the
    log folder can win."""
    expand = tailer.scanner.expand

    def expand_then_swap(spec):
        found = expand(spec)
        swap()
        return found

    tailer.scanner.expand = expand_then_swap


def _in_thread(call, timeout: float = 10.0):
    import threading

    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(value=call()), daemon=True)
    thread.start()
    thread.join(timeout)
    return thread.is_alive(), out.get("value")


def test_a_fifo_swapped_in_after_the_check_blocks_nothing_and_the_other_files_are_read(tmp_path: Path) -> None:
    import structlog

    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", "a1\na2\n")
    write(logs / "b.log", "b1\n")
    fifo = logs / "b.log"
    follow = Follow(tmp_path, str(logs / "*.log"))

    def to_fifo() -> None:
        fifo.unlink()
        os.mkfifo(fifo)

    _swap_after_check(follow.tailer, to_fifo)
    try:
        with structlog.testing.capture_logs() as logged:
            stuck, lines = _in_thread(follow.lines)
            assert not stuck, "the shipper blocked opening a FIFO"
            assert lines == [b"a1\n", b"a2\n"]
            follow.tailer.scanner.expand = type(follow.tailer.scanner).expand.__get__(follow.tailer.scanner)
            os.mkfifo(logs / "c.log")  # a FIFO there from the start: never offered, never opened
            write(logs / "a.log", "a3\n")
            stuck, lines = _in_thread(follow.lines)
            assert not stuck and lines == [b"a3\n"]
        assert sum(follow.tailer.refused.values()) == 1
        refusals = [e for e in logged if e["event"] == "file_refused"]
        assert refusals == [{"event": "file_refused", "log_level": "warning", "path": str(fifo),
                             "reason": "not a regular file"}]
        assert {str(logs / "a.log")} == {t.path for t in follow.tailer.files.values()}
    finally:
        for name in ("b.log", "c.log"):  # an old tailer stuck in open() is released by a writer
            try:
                os.close(os.open(logs / name, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        follow.tailer.close()


def test_a_link_swapped_in_after_the_check_is_not_followed(tmp_path: Path) -> None:
    logs, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    logs.mkdir()
    elsewhere.mkdir()
    write(elsewhere / "shadow", "root:secret\n")
    write(logs / "access.log", "line\n")
    follow = Follow(tmp_path, str(logs / "*.log"))

    def to_link() -> None:
        (logs / "access.log").unlink()
        (logs / "access.log").symlink_to(elsewhere / "shadow")

    _swap_after_check(follow.tailer, to_link)
    stuck, lines = _in_thread(follow.lines)
    assert not stuck and lines == []
    assert follow.tailer.files == {} and dict(follow.tailer.refused) == {"a link where a file was checked": 1}
    follow.tailer.close()


def test_a_folder_swapped_for_a_link_after_the_check_is_not_read(tmp_path: Path) -> None:
    logs, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    (logs / "app").mkdir(parents=True)
    elsewhere.mkdir()
    write(elsewhere / "access.log", "root:secret\n")
    write(logs / "app" / "access.log", "line\n")
    follow = Follow(tmp_path, str(logs / "*" / "access.log"))

    def folder_to_link() -> None:
        (logs / "app").rename(logs / "app.old")
        (logs / "app").symlink_to(elsewhere)

    _swap_after_check(follow.tailer, folder_to_link)
    stuck, lines = _in_thread(follow.lines)
    assert not stuck and b"root:secret\n" not in lines and lines == []
    assert sum(follow.tailer.refused.values()) == 1
    follow.tailer.close()


def test_with_follow_symlinks_the_checked_target_is_read_not_a_link_retargeted_after(tmp_path: Path) -> None:
    logs, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    logs.mkdir()
    elsewhere.mkdir()
    write(elsewhere / "checked.log", "checked\n")
    write(elsewhere / "other", "root:secret\n")
    (logs / "current.log").symlink_to(elsewhere / "checked.log")
    store = CheckpointStore(tmp_path / "cp.json")
    tailer = Tailer([InputSpec(index=0, paths=(str(logs / "*.log"),), follow_symlinks=True)], store)

    def retarget() -> None:
        (logs / "current.log").unlink()
        (logs / "current.log").symlink_to(elsewhere / "other")

    _swap_after_check(tailer, retarget)
    tailer.scan()
    lines = [line.raw for batch in tailer.poll() for line in batch]
    assert lines == [b"checked\n"]
    tailer.close()


def test_refused_files_reach_the_shippers_metrics_once_per_refusal() -> None:
    """The tailer's running totals become ``regwatch_files_refused_total{reason}``, each refusal
    counted once however often the totals are read."""
    from collections import Counter

    from prometheus_client import generate_latest

    from pipeline.metrics import ShipperMetrics

    metrics = ShipperMetrics()
    totals: Counter[str] = Counter({"not a regular file": 1})
    metrics.count_refused(totals)
    metrics.count_refused(totals)
    totals["outside the folder"] += 2
    totals["not a regular file"] += 1
    metrics.count_refused(totals)
    exposition = generate_latest(metrics.registry).decode()
    rows = sorted(line for line in exposition.splitlines() if line.startswith("regwatch_files_refused_total"))
    assert rows == ['regwatch_files_refused_total{reason="not a regular file"} 2.0',
                    'regwatch_files_refused_total{reason="outside the folder"} 2.0']
