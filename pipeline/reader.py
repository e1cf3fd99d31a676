"""The reader: one open file, its bytes cut into complete lines.

Only complete lines leave it; a last line without a newline waits for the rest, or is flushed
after ``partial_flush_s`` of silence. A line longer than ``max_line_bytes`` is not buffered whole:
its first bytes are kept as an excerpt and the rest skipped to the next newline. It knows the
file by descriptor (a renamed file is read on to its end) and notices content rewritten under it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from pipeline.identity import Identity, fingerprint, head_of
from pipeline.scanner import InputSpec

READ_CHUNK = 256 * 1024
EXCERPT_BYTES = 32 * 1024


@dataclass(frozen=True)
class FileSource:
    """Where a line was read: enough to name it in a document and to checkpoint it."""

    input_index: int
    path: str
    device: int
    inode: int
    identity: Identity
    verify_below: int = 0  # lines starting below this offset may be indexed already (a resumed read)

    @property
    def fingerprint(self) -> str:
        return self.identity.fingerprint


@dataclass(slots=True)  # one per line read: slots, not frozen (a frozen init costs 4x)
class Line:
    source: FileSource
    offset: int  # byte offset of the line's first byte
    end: int  # byte offset just past its newline
    raw: bytes  # the line (an excerpt when too_long)
    too_long: int = 0  # the full length of an over-long line, else 0


@dataclass
class TrackedFile:
    spec: InputSpec
    path: str
    fd: int
    device: int
    inode: int
    fingerprint: str | None = None
    identity: Identity | None = None
    min_generation: int = 0  # raised on truncation: the new content is a new generation
    position: int = 0  # next byte to read
    line_start: int = 0  # offset of the first byte of the pending (incomplete) line
    pending: bytearray = field(default_factory=bytearray)
    discarding: int = 0  # >0: skipping an over-long line; bytes seen of it so far
    excerpt: bytes = b""
    last_growth: float = field(default_factory=time.monotonic)
    detached_since: float | None = None  # when its path stopped pointing to it (rotation)
    start_at_end: bool = False  # found on the first scan of an input that starts at the end
    verify_below: int = 0  # resumed content: lines below this may have been sent before

    @property
    def source(self) -> FileSource:
        assert self.identity is not None
        return FileSource(self.spec.index, self.path, self.device, self.inode, self.identity, self.verify_below)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def restart(self) -> None:
        """The content was replaced (truncated): read it again from its first byte."""
        if self.identity is not None:
            self.min_generation = self.identity.generation + 1
        self.fingerprint = None
        self.identity = None
        self.verify_below = 0
        self.position = self.line_start = 0
        self.pending.clear()
        self.discarding = 0
        self.excerpt = b""


class LineReader:
    """Cuts what a file holds past its position into :class:`Line` objects."""

    def __init__(self, max_line_bytes: int = 1024 * 1024, partial_flush_s: float | None = 5.0) -> None:
        self.max_line_bytes = max_line_bytes
        self.partial_flush_s = partial_flush_s

    def read(self, tracked: TrackedFile, budget: int = 4 * READ_CHUNK, flush: bool = False) -> tuple[list[Line], bool]:
        """New complete lines, reading at most ``budget`` bytes; and False when the content was
        found replaced under us (then the file starts over: ``tracked.restart()`` was called)."""
        lines: list[Line] = []
        source = tracked.source
        read_total = 0
        while read_total < budget:
            chunk = os.pread(tracked.fd, READ_CHUNK, tracked.position)
            if not chunk:
                break
            if fingerprint(head_of(tracked.fd)) != tracked.fingerprint:
                # Truncated and rewritten under us (copytruncate): this chunk may be new content
                # read at an old offset. Drop it; the new content is read from its start.
                tracked.restart()
                return lines, False
            read_total += len(chunk)
            tracked.last_growth = time.monotonic()
            self._split(tracked, source, chunk, lines)
        if tracked.pending or tracked.discarding:
            idle = time.monotonic() - tracked.last_growth
            if flush or (self.partial_flush_s is not None and idle >= self.partial_flush_s and read_total == 0):
                self._flush_pending(tracked, source, lines)
        return lines, True

    def _split(self, tracked: TrackedFile, source: FileSource, chunk: bytes, out: list[Line]) -> None:
        base = tracked.position
        tracked.position += len(chunk)
        start = 0
        if tracked.discarding:
            newline = chunk.find(b"\n")
            if newline < 0:
                tracked.discarding += len(chunk)
                return
            total = tracked.discarding + newline + 1
            out.append(Line(source, tracked.line_start, base + newline + 1, tracked.excerpt, total))
            tracked.discarding = 0
            tracked.excerpt = b""
            start = newline + 1
            tracked.line_start = base + start
        if tracked.pending:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                tracked.pending += chunk[start:]
                self._maybe_discard(tracked)
                return
            raw = bytes(tracked.pending) + chunk[start:newline + 1]
            tracked.pending.clear()
            self._emit(tracked, source, raw, base + newline + 1, out)
            start = newline + 1
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                break
            self._emit(tracked, source, chunk[start:newline + 1], base + newline + 1, out)
            start = newline + 1
        if start < len(chunk):
            tracked.pending += chunk[start:]
            self._maybe_discard(tracked)

    def _emit(self, tracked: TrackedFile, source: FileSource, raw: bytes, end: int, out: list[Line]) -> None:
        if len(raw) > self.max_line_bytes:
            out.append(Line(source, tracked.line_start, end, raw[:EXCERPT_BYTES], len(raw)))
        else:
            out.append(Line(source, tracked.line_start, end, raw))
        tracked.line_start = end

    def _maybe_discard(self, tracked: TrackedFile) -> None:
        if len(tracked.pending) > self.max_line_bytes:
            tracked.excerpt = bytes(tracked.pending[:EXCERPT_BYTES])
            tracked.discarding = len(tracked.pending)
            tracked.pending.clear()

    def _flush_pending(self, tracked: TrackedFile, source: FileSource, out: list[Line]) -> None:
        end = tracked.position
        if tracked.discarding:
            out.append(Line(source, tracked.line_start, end, tracked.excerpt, tracked.discarding))
            tracked.discarding = 0
            tracked.excerpt = b""
        else:
            out.append(Line(source, tracked.line_start, end, bytes(tracked.pending)))
            tracked.pending.clear()
        tracked.line_start = end
