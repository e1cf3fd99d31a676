"""Following log files: discovery by glob, identity that survives rotation, complete lines only.

Identity. A file's content is known by the fingerprint of its first line (up to 1 KiB, stable
once that line is complete) and the device and inode where it was first seen, plus a generation
that grows when that inode is truncated. A rename keeps it. A new file whose first line matches a
known file's is a *copy* of it (copytruncate, or ``cp``) only when its content is the known
file's content (compared over their common first 64 KiB) or the known file's content is gone
(truncated, deleted): then it adopts the original's identity and resumes where the original was
acknowledged, so nothing is shipped twice. Two unrelated files that merely start with the same
line keep identities of their own.

Rotation. Open files are held by descriptor: a renamed file is read to its end, then let go once
it has been idle for ``close_renamed_after_s``. A file that shrinks (copytruncate) starts over at
offset 0 under its new fingerprint.

Lines. Only complete lines leave this module; a last line without a newline waits for the rest,
or is flushed after ``partial_flush_s`` of silence. A line longer than ``max_line_bytes`` is not
buffered whole: its first bytes are kept as an excerpt and the rest skipped to the next newline.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog

from pipeline.checkpoint import CheckpointStore, FilePosition, Identity

log = structlog.get_logger(__name__)

FINGERPRINT_BYTES = 1024
COPY_COMPARE_BYTES = 64 * 1024
READ_CHUNK = 256 * 1024
EXCERPT_BYTES = 32 * 1024
DEFAULT_EXCLUDE = ("*.gz", "*.bz2", "*.xz", "*.zst", "*.zip")


def _through_link(pattern: str, path: str) -> bool:
    """True when ``path`` leads out of the input's folder (the pattern's part without wildcards)
    through a symbolic link: the file itself, or a folder a wildcard matched, links elsewhere. A
    link that stays inside the folder (``current.log -> access.log.3``) is fine."""
    fixed = pattern
    while glob.has_magic(fixed):
        fixed = os.path.dirname(fixed)
    if fixed == pattern:
        fixed = os.path.dirname(pattern)
    base = os.path.realpath(fixed or ".")
    return not os.path.realpath(path).startswith(base.rstrip(os.sep) + os.sep)


def fingerprint(head: bytes) -> str | None:
    """Fingerprint of a file from its first bytes; None while its first line is incomplete."""
    newline = head.find(b"\n", 0, FINGERPRINT_BYTES)
    if newline >= 0:
        data = head[: newline + 1]
    elif len(head) >= FINGERPRINT_BYTES:
        data = head[:FINGERPRINT_BYTES]
    else:
        return None
    return hashlib.sha256(data).hexdigest()[:32]


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


@dataclass(frozen=True)
class InputSpec:
    index: int
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    start_at: str = "beginning"
    follow_symlinks: bool = False


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

    def head(self) -> bytes:
        return os.pread(self.fd, FINGERPRINT_BYTES, 0)

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


class Tailer:
    """Finds files by glob and reads their new complete lines; knows nothing of formats.

    ``store`` holds the acknowledged positions; the tailer reads it to choose identities and
    starting offsets, and never writes it (the shipper does, after acknowledgement).
    """

    def __init__(self, specs: list[InputSpec], store: CheckpointStore, *, max_line_bytes: int = 1024 * 1024,
                 partial_flush_s: float | None = 5.0, close_renamed_after_s: float = 5.0) -> None:
        self.specs = specs
        self.store = store
        self.max_line_bytes = max_line_bytes
        self.partial_flush_s = partial_flush_s
        self.close_renamed_after_s = close_renamed_after_s
        self.files: dict[tuple[int, int], TrackedFile] = {}
        # Contents identified in this run, even if since truncated and not yet acknowledged:
        # a copytruncate copy of one of them must still be recognised.
        self._seen: dict[str, FilePosition] = {}
        self._first_scan = True
        self._links_seen: set[str] = set()
        self.on_start_offset = None  # callback(source, offset) for start_at=end decisions

    # -- discovery -----------------------------------------------------------------------------

    def set_specs(self, specs: list[InputSpec]) -> None:
        self.specs = specs

    def scan(self) -> None:
        """Match globs, open new files, notice renames, truncations and deletions."""
        seen: set[tuple[int, int]] = set()
        for spec in self.specs:
            for path in self._expand(spec):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                seen.add(key)
                tracked = self.files.get(key)
                if tracked is None:
                    self._open(spec, path, key)
                else:
                    tracked.path = path
                    tracked.spec = spec
                    tracked.detached_since = None
        now = time.monotonic()
        for key, tracked in list(self.files.items()):
            if key not in seen and tracked.detached_since is None:
                tracked.detached_since = now  # renamed out of every glob, or deleted
            self._check_replaced(tracked)
        self._first_scan = False

    def _expand(self, spec: InputSpec) -> list[str]:
        paths: list[str] = []
        for pattern in spec.paths:
            for path in sorted(glob.glob(pattern)):
                name = os.path.basename(path)
                if any(fnmatch.fnmatch(name, ex) for ex in spec.exclude):
                    continue
                if not spec.follow_symlinks and _through_link(pattern, path):
                    if path not in self._links_seen:
                        self._links_seen.add(path)
                        log.warning("symlink_skipped", path=path, target=os.path.realpath(path),
                                    hint="set follow_symlinks: true on the input to read it")
                    continue
                if os.path.isfile(path):
                    paths.append(path)
        return paths

    def _open(self, spec: InputSpec, path: str, key: tuple[int, int]) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.warning("open_failed", path=path, error=str(exc))
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != key:  # replaced between stat and open: next scan
            os.close(fd)
            return
        tracked = TrackedFile(spec=spec, path=path, fd=fd, device=key[0], inode=key[1],
                              start_at_end=self._first_scan and spec.start_at == "end")
        self.files[key] = tracked
        log.info("file_opened", path=path, device=key[0], inode=key[1])

    def _check_replaced(self, tracked: TrackedFile) -> None:
        """Truncation: the size fell below our position (reads would only see the end of file).

        Content rewritten past our position is caught by ``read``, which checks the head's
        fingerprint after every chunk.
        """
        try:
            size = tracked.size()
        except OSError:
            return
        if size < tracked.position:
            log.info("file_truncated", path=tracked.path, size=size, position=tracked.position)
            tracked.restart()

    # -- reading -------------------------------------------------------------------------------

    def _identify(self, tracked: TrackedFile) -> bool:
        """Give the file its identity and starting offset, once its first line is complete."""
        if tracked.identity is not None:
            return True
        fp = fingerprint(tracked.head())
        if fp is None:
            return False
        size = tracked.size()
        resolved = self._resolve(tracked, fp, size)
        if resolved is None:
            return False  # may be a copy still being made: decide on a later pass
        identity, start, sent = resolved
        tracked.fingerprint = fp
        tracked.identity = identity
        tracked.verify_below = sent
        self._seen.setdefault(identity.key, FilePosition(identity, 0, tracked.path, time.time()))
        if len(self._seen) > 4096:
            self._seen.pop(next(iter(self._seen)))
        if start is None and tracked.start_at_end:
            start = self._last_line_end(tracked, size)
            if self.on_start_offset is not None:
                self.on_start_offset(tracked.source, start)
        start = start or 0
        tracked.position = tracked.line_start = start
        log.info("file_identified", path=tracked.path, identity=identity.key, start=start, verify_below=sent)
        return True

    def _resolve(self, tracked: TrackedFile, fp: str, size: int) -> tuple[Identity, int | None, int] | None:
        """(identity, acknowledged offset to resume at or None for content never shipped, the
        offset below which lines may have been sent already).

        None when the file cannot be told apart yet from a copy being made of another file.
        """
        known = self._positions_with(fp)
        own = [p for p in known if (p.identity.device, p.identity.inode) == (tracked.device, tracked.inode)
               and p.identity.generation >= tracked.min_generation]
        if own:
            latest = max(own, key=lambda p: p.identity.generation)
            if latest.offset <= size:
                return latest.identity, latest.offset, latest.sent
            # Shorter than what was acknowledged: truncated while we were away.
            log.warning("content_replaced_while_stopped", path=tracked.path, offset=latest.offset, size=size)
            return Identity(fp, tracked.device, tracked.inode, latest.identity.generation + 1), None, 0
        for position in known:
            if (position.identity.device, position.identity.inode) == (tracked.device, tracked.inode):
                continue  # an older generation of this very inode
            verdict = self._is_copy_of(tracked, position)
            if verdict is None:
                return None
            if verdict:
                if size < position.offset:
                    return None  # a copy still being written: resume once it holds what was shipped
                log.info("file_is_a_copy", path=tracked.path, original=position.path, identity=position.identity.key)
                return position.identity, position.offset, position.sent
        return Identity(fp, tracked.device, tracked.inode, tracked.min_generation), None, 0

    def _positions_with(self, fp: str) -> list[FilePosition]:
        """Known contents with this fingerprint: acknowledged ones and ones being read now."""
        positions = {p.identity.key: p for p in self.store.with_fingerprint(fp)}
        for key, seen in self._seen.items():
            if seen.identity.fingerprint == fp and key not in positions:
                positions[key] = seen
        return list(positions.values())

    def _is_copy_of(self, tracked: TrackedFile, position: FilePosition) -> bool | None:
        """Is this new file the content that ``position`` describes (a copy), or another file?

        None: not decidable yet. The new file is, so far, a short prefix of an original that is
        still intact: a copy in progress, or a file that will diverge. Waiting loses nothing: all
        it holds so far is the original's content.
        """
        identity = position.identity
        original = self.files.get((identity.device, identity.inode))
        if original is not None:
            return self._compare_with_original(tracked.fd, original.fd, identity)
        # The original is not open: look where it was last seen.
        try:
            fd = os.open(position.path, os.O_RDONLY)
        except OSError:
            return True  # its content is gone: the copy is all that remains of it
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (identity.device, identity.inode):
                return True  # the original was rotated away or deleted
            return self._compare_with_original(tracked.fd, fd, identity)
        finally:
            os.close(fd)

    def _compare_with_original(self, new_fd: int, original_fd: int, identity: Identity) -> bool | None:
        def intact() -> bool:
            return fingerprint(os.pread(original_fd, FINGERPRINT_BYTES, 0)) == identity.fingerprint

        if not intact():
            return True  # the original was truncated: its old content lives on in the copy
        verdict = self._compare(new_fd, original_fd)
        if verdict is False and not intact():
            return True  # truncated while we compared
        return verdict

    @staticmethod
    def _compare(new_fd: int, original_fd: int) -> bool | None:
        new_size, original_size = os.fstat(new_fd).st_size, os.fstat(original_fd).st_size
        common = min(new_size, original_size, COPY_COMPARE_BYTES)
        if os.pread(new_fd, common, 0) != os.pread(original_fd, common, 0):
            return False  # diverges: another file that starts with the same line
        if common >= COPY_COMPARE_BYTES or new_size > original_size:
            return True
        return None

    @staticmethod
    def _last_line_end(tracked: TrackedFile, size: int) -> int:
        window = min(size, 64 * 1024)
        tail = os.pread(tracked.fd, window, size - window)
        newline = tail.rfind(b"\n")
        return size - window + newline + 1 if newline >= 0 else 0

    def read(self, tracked: TrackedFile, budget: int = 4 * READ_CHUNK, flush: bool = False) -> list[Line]:
        """New complete lines of one file, reading at most ``budget`` bytes."""
        if not self._identify(tracked):
            return []
        lines: list[Line] = []
        source = tracked.source
        read_total = 0
        while read_total < budget:
            chunk = os.pread(tracked.fd, READ_CHUNK, tracked.position)
            if not chunk:
                break
            if fingerprint(tracked.head()) != tracked.fingerprint:
                # Truncated and rewritten under us (copytruncate): this chunk may be new content
                # read at an old offset. Drop it; the new content is read from its start.
                log.info("file_content_replaced", path=tracked.path, position=tracked.position)
                tracked.restart()
                return lines
            read_total += len(chunk)
            tracked.last_growth = time.monotonic()
            self._split(tracked, source, chunk, lines)
        if tracked.pending or tracked.discarding:
            idle = time.monotonic() - tracked.last_growth
            if flush or (self.partial_flush_s is not None and idle >= self.partial_flush_s and read_total == 0):
                self._flush_pending(tracked, source, lines)
        return lines

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

    def poll(self, flush: bool = False) -> Iterator[list[Line]]:
        """Lines of every file, file by file, in bounded slices; lets go of rotated-away files."""
        for key, tracked in list(self.files.items()):
            while True:
                try:
                    lines = self.read(tracked, flush=flush)
                except OSError as exc:
                    log.warning("read_failed", path=tracked.path, error=str(exc))
                    break
                if lines:
                    yield lines
                if not lines or tracked.position >= tracked.size():
                    break
            self._maybe_close(key, tracked)

    def _maybe_close(self, key: tuple[int, int], tracked: TrackedFile) -> None:
        if tracked.detached_since is None:
            return
        idle = time.monotonic() - max(tracked.detached_since, tracked.last_growth)
        try:
            at_end = tracked.position >= tracked.size()
        except OSError:
            at_end = True
        if at_end and idle >= self.close_renamed_after_s:
            os.close(tracked.fd)
            del self.files[key]
            log.info("file_closed", path=tracked.path, reason="rotated or deleted, read to its end")

    def behind(self) -> dict[str, int]:
        """Bytes not yet read, per path."""
        out: dict[str, int] = {}
        for tracked in self.files.values():
            try:
                out[tracked.path] = max(0, tracked.size() - tracked.position)
            except OSError:
                continue
        return out

    def close(self) -> None:
        for tracked in self.files.values():
            try:
                os.close(tracked.fd)
            except OSError:
                pass
        self.files.clear()
