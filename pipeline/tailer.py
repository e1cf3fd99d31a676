"""The tailer: follows an input's files through rotation and hands on their complete lines.

It puts the concepts of Filebeat's filestream together: the scanner finds paths
(:mod:`pipeline.scanner`), the identifier says which content a file holds (:mod:`pipeline.identifier`,
its identity :mod:`pipeline.identity`), the reader cuts it into lines (:mod:`pipeline.reader`); each change
it sees is a :class:`~pipeline.fileevents.FileEvent`. It knows nothing of formats.

Rotation. Open files are held by descriptor: a renamed file is read to its end, then let go once
it has been idle for ``close_renamed_after_s``. A file that shrinks (copytruncate) starts over at
offset 0 under its new fingerprint; a copy of a known file takes over its identity and offset.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator

import structlog

from pipeline.checkpoint import CheckpointStore
from pipeline.fileevents import FileEvent, FileEventHandler, FileEventKind, log_event
from pipeline.identifier import Identifier
from pipeline.identity import fingerprint, head_of
from pipeline.reader import READ_CHUNK, FileSource, Line, LineReader, TrackedFile
from pipeline.scanner import Candidate, InputSpec, Scanner, path_text, within

log = structlog.get_logger(__name__)

StartOffsetFn = Callable[[FileSource, int], None]
Kind = FileEventKind
# Open what the scanner checked, as it is: never through a link, never waiting (a FIFO with no
# writer would block the open for ever), never becoming a controlling terminal.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Tailer:
    """Finds files by glob and reads their new complete lines.

    ``store`` holds the acknowledged positions; the tailer reads it to choose identities and
    starting offsets, and never writes it (the shipper does, after acknowledgement), except
    through ``on_start_offset``: a file first seen with ``start_at: end`` starts at its end, a
    choice the caller records at once (a restart would otherwise choose a new end).

    A file is opened as the scanner checked it (:class:`~pipeline.scanner.Candidate`): its
    resolved path, without following a link, without blocking; and read only when the opened
    descriptor is a regular file with the checked device and inode (and, links not followed,
    still inside the input's folder). Anything else (a FIFO, a device, a link or another file
    swapped in after the check) is refused: logged once per path and reason, counted in
    ``refused`` (reason -> count), and never blocks or stops the others.
    """

    def __init__(self, specs: list[InputSpec], store: CheckpointStore, *, max_line_bytes: int = 1024 * 1024,
                 partial_flush_s: float | None = 5.0, close_renamed_after_s: float = 5.0,
                 on_start_offset: StartOffsetFn | None = None, on_event: FileEventHandler = log_event) -> None:
        self.specs = specs
        self.store = store
        self.close_renamed_after_s = close_renamed_after_s
        self.files: dict[tuple[int, int], TrackedFile] = {}
        self.scanner = Scanner()
        self.identifier = Identifier(store, self._open_fd)
        self.reader = LineReader(max_line_bytes, partial_flush_s)
        self._on_start_offset = on_start_offset
        self._on_event = on_event
        self._first_scan = True
        self.refused: Counter[str] = Counter()
        self._refusals_logged: set[tuple[str, str]] = set()

    def set_specs(self, specs: list[InputSpec]) -> None:
        self.specs = specs

    def _event(self, kind: FileEventKind, path: str, **detail: object) -> None:
        self._on_event(FileEvent(kind, path, detail))

    def _open_fd(self, device: int, inode: int) -> int | None:
        tracked = self.files.get((device, inode))
        return tracked.fd if tracked is not None else None

    # -- discovery -----------------------------------------------------------------------------

    def scan(self) -> None:
        """Match globs, open new files, notice renames, truncations and deletions."""
        seen: set[tuple[int, int]] = set()
        for spec in self.specs:
            for candidate in self.scanner.expand(spec):
                path, key = candidate.path, candidate.key
                seen.add(key)
                tracked = self.files.get(key)
                if tracked is None:
                    self._open(spec, candidate)
                    continue
                if tracked.path != path and not _is_file(tracked.path, key):
                    self._event(Kind.RENAMED, path, previous=tracked.path)  # else: one file, two paths
                    tracked.path = path
                tracked.spec = spec
                tracked.detached_since = None
        now = time.monotonic()
        for key, tracked in list(self.files.items()):
            if key not in seen and tracked.detached_since is None:
                tracked.detached_since = now  # renamed out of every glob, or deleted
                self._event(Kind.REMOVED, tracked.path)
            self._check_truncated(tracked)
        self._first_scan = False

    def _open(self, spec: InputSpec, candidate: Candidate) -> None:
        path, key = candidate.path, candidate.key
        try:
            fd = os.open(candidate.real, OPEN_FLAGS)
        except OSError as exc:
            # ELOOP: a link swapped in after the check; else unreadable (permissions, gone, ...).
            self._refuse(path, "a link where a file was checked" if exc.errno == errno.ELOOP else "open failed",
                         str(exc))
            return
        reason = _not_as_checked(fd, candidate)
        if reason is not None:
            os.close(fd)
            self._refuse(path, reason)
            return
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        self.files[key] = TrackedFile(spec=spec, path=path, fd=fd, device=key[0], inode=key[1],
                                      start_at_end=self._first_scan and spec.start_at == "end")
        self._event(Kind.CREATED, path, device=key[0], inode=key[1])

    def _refuse(self, path: str, reason: str, error: str | None = None) -> None:
        self.refused[reason] += 1
        if (path, reason) not in self._refusals_logged:
            self._refusals_logged.add((path, reason))
            log.warning("file_refused", path=path_text(path), reason=reason,
                        **({"error": path_text(error)} if error else {}))

    def _check_truncated(self, tracked: TrackedFile) -> None:
        """Truncation: the size fell below our position (reads would only see the end of file).

        Content rewritten past our position is caught by the reader, which checks the head's
        fingerprint after every chunk.
        """
        try:
            size = tracked.size()
        except OSError:
            return
        if size < tracked.position:
            self._event(Kind.TRUNCATED, tracked.path, size=size, position=tracked.position)
            tracked.restart()

    # -- identity ------------------------------------------------------------------------------

    def _identify(self, tracked: TrackedFile) -> bool:
        """Give the file its identity and starting offset, once its first line is complete."""
        if tracked.identity is not None:
            return True
        fp = fingerprint(head_of(tracked.fd))
        if fp is None:
            return False
        size = tracked.size()
        resolved = self.identifier.resolve(tracked.fd, tracked.path, tracked.device, tracked.inode, fp, size,
                                           tracked.min_generation)
        if resolved is None:
            return False  # may be a copy still being made: decide on a later pass
        if resolved.copy_of is not None:
            self._event(Kind.COPIED, tracked.path, original=resolved.copy_of, identity=resolved.identity.key)
        tracked.fingerprint = fp
        tracked.identity = resolved.identity
        tracked.verify_below = resolved.sent
        self.identifier.remember(resolved.identity, tracked.path)
        start = resolved.start
        if start is None and tracked.start_at_end:
            start = _last_line_end(tracked, size)
            if self._on_start_offset is not None:
                self._on_start_offset(tracked.source, start)
        start = start or 0
        tracked.position = tracked.line_start = start
        self._event(Kind.IDENTIFIED, tracked.path, identity=resolved.identity.key, start=start,
                    verify_below=resolved.sent)
        return True

    # -- reading -------------------------------------------------------------------------------

    def read(self, tracked: TrackedFile, budget: int = 4 * READ_CHUNK, flush: bool = False) -> list[Line]:
        """New complete lines of one file, reading at most ``budget`` bytes."""
        if not self._identify(tracked):
            return []
        position = tracked.position
        lines, intact = self.reader.read(tracked, budget, flush)
        if not intact:
            self._event(Kind.REPLACED, tracked.path, position=position)
        elif lines:
            self._event(Kind.APPENDED, tracked.path, lines=len(lines), bytes=tracked.position - position)
        return lines

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
            self._event(Kind.CLOSED, tracked.path, reason="rotated or deleted, read to its end")

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


def _not_as_checked(fd: int, candidate: Candidate) -> str | None:
    """Why the opened descriptor is not the file the scanner checked; None when it is."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if (st.st_dev, st.st_ino) != candidate.key:
        return "replaced after it was checked"
    if candidate.inside is not None:
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: the device and inode check above stands alone
            return None
        if not within(candidate.inside, opened):
            return "outside the input's folder"
    return None


def _is_file(path: str, key: tuple[int, int]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == key


def _last_line_end(tracked: TrackedFile, size: int) -> int:
    window = min(size, 64 * 1024)
    tail = os.pread(tracked.fd, window, size - window)
    newline = tail.rfind(b"\n")
    return size - window + newline + 1 if newline >= 0 else 0
