"""Durable read positions, saved atomically and only for acknowledged lines.

A position belongs to a file *identity* (see :mod:`pipeline.identity`): the fingerprint of the
file's first line plus the device and inode where that content was first seen, and a generation
that grows when the same inode is truncated. A renamed file keeps its identity; a copytruncate
copy adopts its original's.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.identity import FINGERPRINT_BYTES, Identity, fingerprint


@dataclass
class FilePosition:
    identity: Identity
    offset: int  # bytes of this content whose lines Elasticsearch has acknowledged
    path: str  # where it was last read
    updated: float
    # Lines below this may have been sent (saved before a bulk goes out, reserved ahead): after a
    # crash, the lines between ``offset`` and ``sent`` may already be indexed, perhaps in a backing
    # index that has rolled over since, where ``op_type: create`` cannot see them.
    sent: int = 0


class CheckpointError(ValueError):
    """The checkpoint file is unreadable, of another version, or held by another shipper."""


class CheckpointStore:
    """Positions by identity; ``save`` writes a temp file, fsyncs, renames, fsyncs the folder."""

    VERSION = 2

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._positions: dict[str, FilePosition] = {}
        self._dirty = False
        self._lock_fd: int | None = None  # held while a shipper runs on this checkpoint
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint file {self.path} is unreadable: {exc}") from None
        if not isinstance(raw, dict) or raw.get("version") != self.VERSION:
            version = raw.get("version") if isinstance(raw, dict) else None
            raise CheckpointError(f"checkpoint file {self.path} has version {version}, expected {self.VERSION}")
        try:
            for entry in raw.get("files", []):
                identity = Identity(**entry["identity"])
                self._positions[identity.key] = FilePosition(identity, int(entry["offset"]), str(entry["path"]),
                                                             float(entry["updated"]),
                                                             max(int(entry.get("sent", 0)), int(entry["offset"])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint file {self.path} is corrupt: {type(exc).__name__}: {exc} "
                                  "(move it away to start over: lines would then be read again)") from None

    def lock(self) -> None:
        """Hold ``<file>.lock`` while shipping, as Filebeat locks its data path: a second shipper on
        the same checkpoint would read, index and checkpoint the same files beside this one."""
        if self._lock_fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointError(f"checkpoint file {self.path} is in use by another shipper (pid {holder}); "
                                  "give each shipper its own checkpoint_file") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        fd = self._lock_fd
        if fd is not None:
            self._lock_fd = None
            os.close(fd)  # releases the flock

    def with_fingerprint(self, fingerprint: str) -> list[FilePosition]:
        with self._lock:
            return [p for p in self._positions.values() if p.identity.fingerprint == fingerprint]

    def all(self) -> list[FilePosition]:
        with self._lock:
            return list(self._positions.values())

    def advance(self, identity: Identity, offset: int, path: str) -> None:
        """Record that every line of this content before ``offset`` is acknowledged."""
        with self._lock:
            current = self._positions.get(identity.key)
            if current is not None and current.offset >= offset:
                if current.path != path:
                    current.path = path
                    self._dirty = True
                return
            sent = max(offset, current.sent) if current is not None else offset
            self._positions[identity.key] = FilePosition(identity, offset, path, time.time(), sent)
            self._dirty = True

    def reserve(self, identity: Identity, end: int, path: str, ahead: int) -> bool:
        """Before lines up to ``end`` are sent: make sure the saved ``sent`` mark covers them.

        The mark is moved ``ahead`` bytes further than needed, so that it is saved (with an
        fsync) once per ``ahead`` bytes shipped rather than before every bulk request. True when
        it moved: the caller saves before sending.
        """
        with self._lock:
            current = self._positions.get(identity.key)
            if current is not None and current.sent >= end:
                return False
            if current is None:
                self._positions[identity.key] = FilePosition(identity, 0, path, time.time(), end + ahead)
            else:
                current.sent = end + ahead
            self._dirty = True
            return True

    def save(self, force: bool = False) -> bool:
        with self._lock:
            if not self._dirty and not force:
                return False
            payload = {"version": self.VERSION,
                       "files": [asdict(p) for p in sorted(self._positions.values(), key=lambda p: p.path)]}
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".checkpoints-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True


@dataclass(frozen=True)
class Lag:
    """How far a known file is behind: ``size`` is None when the path holds other content now."""

    path: str
    offset: int
    size: int | None

    @property
    def behind(self) -> int | None:
        return None if self.size is None else max(0, self.size - self.offset)


def lag(store: CheckpointStore) -> list[Lag]:
    """Every position in the store against the file now at its path (the same content or not)."""
    rows = []
    for position in sorted(store.all(), key=lambda p: p.path):
        size = None
        try:
            with open(position.path, "rb") as handle:
                st = os.fstat(handle.fileno())
                same_file = (st.st_dev, st.st_ino) == (position.identity.device, position.identity.inode)
                if same_file and fingerprint(handle.read(FINGERPRINT_BYTES)) == position.identity.fingerprint:
                    size = st.st_size
        except OSError:
            pass
        rows.append(Lag(position.path, position.offset, size))
    return rows
