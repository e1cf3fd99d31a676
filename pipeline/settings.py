"""The shipper's settings: the part of the one configuration model that the pipeline reads.

``regwatch.config.Config`` extends :class:`ShipSettings`, so the keys a user writes
(``batch.max_docs``, ``queue_max_events``, ``queue_max_bytes``, ...) are the very fields the shipper reads: no copy.
"""

from __future__ import annotations

import os
import socket

from pydantic import Field

from contract.validation import StrictModel


class BatchSettings(StrictModel):
    max_docs: int = Field(2000, ge=1)
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_wait_s: float = Field(0.5, gt=0)


class ShipSettings(StrictModel):
    batch: BatchSettings = Field(default_factory=BatchSettings)
    queue_max_events: int = Field(10_000, ge=1)
    # The queue between reading and indexing holds at most this many bytes of encoded documents
    # (and queue_max_events events): what a backlog or an outage costs in memory is set here, not
    # by the backlog's size or its lines' length. At least one chunk of lines is always let in.
    queue_max_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024)
    max_line_bytes: int = Field(1024 * 1024, ge=256)
    partial_line_flush_s: float = Field(5.0, gt=0)
    poll_interval_s: float = Field(1.0, gt=0)
    close_renamed_after_s: float = Field(5.0, ge=0)  # a rotated-away file read to its end is let go after
    checkpoint_every_s: float = Field(1.0, gt=0)
    stop_grace_s: float = Field(5.0, gt=0)  # SIGTERM: how long queued lines may take to be delivered
    # The host this shipper reads on: its documents' host.name, and part of every document's _id,
    # so two hosts whose files look alike (same first line, device and inode: containers built
    # from one image) can never write the same _id. It must stay the same across restarts: in
    # Kubernetes, the node's name (REGWATCH_HOST_NAME from spec.nodeName), not the pod's.
    host_name: str | None = Field(None, min_length=1, max_length=255)
    shipper_id: str | None = Field(None, min_length=1, max_length=512)  # default: host name and checkpoint file
    heartbeat_every_s: float | None = Field(10.0, gt=0)  # the heartbeat document (None: none)

    def host(self) -> str:
        """``host_name``, else ``REGWATCH_HOST_NAME`` from the environment, else the system's."""
        return self.host_name or os.environ.get("REGWATCH_HOST_NAME") or socket.gethostname()
