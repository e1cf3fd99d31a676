"""Durable read positions, saved atomically and only for acknowledged lines.

Files are keyed by their content fingerprint (see :mod:`pipeline.files`), not by path or inode: a
renamed file keeps its key, and a copy made by copytruncate is recognised as the same content.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class FilePosition:
    offset: int  # bytes of this file whose lines Elasticsearch has acknowledged
    path: str
    device: int
    inode: int
    updated: float


class CheckpointStore:
    """Positions by fingerprint; ``save`` writes a temp file, fsyncs, renames, fsyncs the folder."""

    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._positions: dict[str, FilePosition] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"checkpoint file {self.path} is unreadable: {exc}") from exc
        for fingerprint, entry in raw.get("files", {}).items():
            self._positions[fingerprint] = FilePosition(**entry)

    def get(self, fingerprint: str) -> FilePosition | None:
        with self._lock:
            return self._positions.get(fingerprint)

    def all(self) -> dict[str, FilePosition]:
        with self._lock:
            return dict(self._positions)

    def advance(self, fingerprint: str, offset: int, path: str, device: int, inode: int) -> None:
        """Record that every line of the file before ``offset`` is acknowledged."""
        with self._lock:
            current = self._positions.get(fingerprint)
            if current is not None and current.offset >= offset:
                return
            self._positions[fingerprint] = FilePosition(offset, path, device, inode, time.time())
            self._dirty = True

    def forget_older_than(self, seconds: float) -> None:
        cutoff = time.time() - seconds
        with self._lock:
            for key in [k for k, p in self._positions.items() if p.updated < cutoff]:
                del self._positions[key]
                self._dirty = True

    def save(self, force: bool = False) -> bool:
        with self._lock:
            if not self._dirty and not force:
                return False
            payload = {"version": self.VERSION,
                       "files": {k: asdict(p) for k, p in self._positions.items()}}
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".checkpoints-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle, indent=1, sort_keys=True)
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
