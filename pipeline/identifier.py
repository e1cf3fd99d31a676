"""The identity of a newly seen file, chosen against the checkpoint and what this run has read.

A new file whose first line matches a known file's is a *copy* of it (copytruncate, or ``cp``)
only when its content is the known file's content (compared over their common first 64 KiB) or
the known file's content is gone (truncated, deleted): then it adopts the original's identity and
resumes where the original was acknowledged, so nothing is shipped twice. Two unrelated files that
merely start with the same line keep identities of their own. (What an identity is:
:mod:`pipeline.identity`.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pipeline.checkpoint import CheckpointStore, FilePosition
from pipeline.identity import Identity, fingerprint, head_of

log = structlog.get_logger(__name__)

COPY_COMPARE_BYTES = 64 * 1024
SEEN_LIMIT = 4096


@dataclass(frozen=True)
class Resolved:
    identity: Identity
    start: int | None  # the acknowledged offset to resume at; None for content never shipped
    sent: int  # lines below this offset may have been sent already (verify before indexing)
    copy_of: str | None = None  # the path of the original when this file is a copy of it


# (device, inode) -> the descriptor of that file if the tailer holds it open
OpenFiles = Callable[[int, int], int | None]


class Identifier:
    """Chooses the identity of a newly seen file's content from the checkpoint and this run."""

    def __init__(self, store: CheckpointStore, open_fd: OpenFiles) -> None:
        self.store = store
        self._open_fd = open_fd
        # Contents identified in this run, even if since truncated and not yet acknowledged:
        # a copytruncate copy of one of them must still be recognised.
        self._seen: dict[str, FilePosition] = {}

    def remember(self, identity: Identity, path: str) -> None:
        self._seen.setdefault(identity.key, FilePosition(identity, 0, path, time.time()))
        if len(self._seen) > SEEN_LIMIT:
            self._seen.pop(next(iter(self._seen)))

    def resolve(self, fd: int, path: str, device: int, inode: int, fp: str, size: int,
                min_generation: int) -> Resolved | None:
        """The identity of the content behind ``fd``. None when it cannot be told apart yet from a
        copy being made of another file (decide on a later pass: waiting loses nothing)."""
        known = self._positions_with(fp)
        own = [p for p in known if (p.identity.device, p.identity.inode) == (device, inode)
               and p.identity.generation >= min_generation]
        if own:
            latest = max(own, key=lambda p: p.identity.generation)
            if latest.offset <= size:
                return Resolved(latest.identity, latest.offset, latest.sent)
            # Shorter than what was acknowledged: truncated while we were away.
            log.warning("content_replaced_while_stopped", path=path, offset=latest.offset, size=size)
            return Resolved(Identity(fp, device, inode, latest.identity.generation + 1), None, 0)
        for position in known:
            if (position.identity.device, position.identity.inode) == (device, inode):
                continue  # an older generation of this very inode
            verdict = self._is_copy_of(fd, position)
            if verdict is None:
                return None
            if verdict:
                if size < position.offset:
                    return None  # a copy still being written: resume once it holds what was shipped
                return Resolved(position.identity, position.offset, position.sent, copy_of=position.path)
        return Resolved(Identity(fp, device, inode, min_generation), None, 0)

    def _positions_with(self, fp: str) -> list[FilePosition]:
        """Known contents with this fingerprint: acknowledged ones and ones being read now."""
        positions = {p.identity.key: p for p in self.store.with_fingerprint(fp)}
        for key, seen in self._seen.items():
            if seen.identity.fingerprint == fp and key not in positions:
                positions[key] = seen
        return list(positions.values())

    def _is_copy_of(self, fd: int, position: FilePosition) -> bool | None:
        """Is this new file the content that ``position`` describes (a copy), or another file?

        None: not decidable yet. The new file is, so far, a short prefix of an original that is
        still intact: a copy in progress, or a file that will diverge.
        """
        identity = position.identity
        original = self._open_fd(identity.device, identity.inode)
        if original is not None:
            return _compare_with_original(fd, original, identity)
        # The original is not open: look where it was last seen.
        try:
            other = os.open(position.path, os.O_RDONLY)
        except OSError:
            return True  # its content is gone: the copy is all that remains of it
        try:
            st = os.fstat(other)
            if (st.st_dev, st.st_ino) != (identity.device, identity.inode):
                return True  # the original was rotated away or deleted
            return _compare_with_original(fd, other, identity)
        finally:
            os.close(other)


def _compare_with_original(new_fd: int, original_fd: int, identity: Identity) -> bool | None:
    def intact() -> bool:
        return fingerprint(head_of(original_fd)) == identity.fingerprint

    if not intact():
        return True  # the original was truncated: its old content lives on in the copy
    verdict = _same_content(new_fd, original_fd)
    if verdict is False and not intact():
        return True  # truncated while we compared
    return verdict


def _same_content(new_fd: int, original_fd: int) -> bool | None:
    new_size, original_size = os.fstat(new_fd).st_size, os.fstat(original_fd).st_size
    common = min(new_size, original_size, COPY_COMPARE_BYTES)
    if os.pread(new_fd, common, 0) != os.pread(original_fd, common, 0):
        return False  # diverges: another file that starts with the same line
    if common >= COPY_COMPARE_BYTES or new_size > original_size:
        return True
    return None
