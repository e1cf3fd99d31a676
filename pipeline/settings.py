"""The shipper's settings: the part of the one configuration model that the pipeline reads.

``regwatch.config.Config`` extends :class:`ShipSettings`, so the keys a user writes
(``batch.max_docs``, ``queue_max_events``, ...) are the very fields the shipper reads: no copy.
"""

from __future__ import annotations

from pydantic import Field

from parsers.validation import StrictModel


class BatchSettings(StrictModel):
    max_docs: int = Field(2000, ge=1)
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_wait_s: float = Field(0.5, gt=0)


class ShipSettings(StrictModel):
    batch: BatchSettings = Field(default_factory=BatchSettings)
    queue_max_events: int = Field(10_000, ge=1)
    max_line_bytes: int = Field(1024 * 1024, ge=256)
    partial_line_flush_s: float = Field(5.0, gt=0)
    poll_interval_s: float = Field(1.0, gt=0)
    close_renamed_after_s: float = Field(5.0, ge=0)  # a rotated-away file read to its end is let go after
    checkpoint_every_s: float = Field(1.0, gt=0)
    stop_grace_s: float = Field(5.0, gt=0)  # SIGTERM: how long queued lines may take to be delivered
