"""File identity: which content a file holds, so rotation never re-reads nor skips a line.

A file's content is known by the fingerprint of its first line (up to 1 KiB, stable once that
line is complete) and the device and inode where that content was first seen, plus a generation
that grows when that inode is truncated. A rename keeps it.

This module knows a file and nothing of where positions are kept (Filebeat's split): choosing
the identity of a newly seen file against the checkpoint is :mod:`pipeline.identifier`'s work.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property

FINGERPRINT_BYTES = 1024


@dataclass(frozen=True)
class Identity:
    fingerprint: str
    device: int
    inode: int
    generation: int = 0

    @cached_property
    def key(self) -> str:  # cached: asked for every line shipped
        return f"{self.fingerprint}:{self.device}:{self.inode}:{self.generation}"


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


def head_of(fd: int) -> bytes:
    return os.pread(fd, FINGERPRINT_BYTES, 0)
