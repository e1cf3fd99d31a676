"""What happens to a followed file, as a type rather than as log strings.

The tailer reports each change it sees as a :class:`FileEvent`; by default it is logged (one
structlog event named ``file_<kind>``), and tests or a caller may collect them instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class FileEventKind(StrEnum):
    CREATED = "created"  # found by a scan and opened
    IDENTIFIED = "identified"  # its first line is complete: identity and starting offset chosen
    APPENDED = "appended"  # new complete lines were read
    RENAMED = "renamed"  # the same file (device, inode) now under another path
    TRUNCATED = "truncated"  # shorter than what was read: read again from its start
    REPLACED = "replaced"  # rewritten under us (copytruncate): read again from its start
    COPIED = "copied"  # a new file is a copy of a known one: it takes over its identity and offset
    REMOVED = "removed"  # no longer under any glob (rotated away or deleted)
    CLOSED = "closed"  # a removed file read to its end and let go


@dataclass(frozen=True)
class FileEvent:
    kind: FileEventKind
    path: str
    detail: dict[str, Any] = field(default_factory=dict)


FileEventHandler = Callable[[FileEvent], None]

_QUIET = {FileEventKind.APPENDED}  # every read: debug level


def log_event(event: FileEvent) -> None:
    """The default handler: one structlog event per file event."""
    emit = log.debug if event.kind in _QUIET else log.info
    emit(f"file_{event.kind.value}", path=event.path, **event.detail)
