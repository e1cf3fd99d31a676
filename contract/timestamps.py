"""The one shape of every timestamp a document carries: ISO 8601 in UTC, milliseconds, ``Z``.

Formats parse their own timestamps (``parsers/timestamps.py``); whatever writes a document (the
shipper, the probe, the rule runner) writes its times through here, so every room agrees on them.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(moment: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix: the one shape every document carries."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01 at +01:00 is before the year 1 in UTC
        raise ValueError("date out of range") from None
    # The year zero-padded by hand: strftime's %Y gives "999" for the year 999 on glibc, which no
    # date parser (nor Elasticsearch) takes as ISO 8601.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z")


def iso_from_epoch(epoch: float, millis: bool = True) -> str:
    """Seconds since the epoch as UTC ISO 8601: ``2026-11-24T23:55:28.000Z`` (``...28Z`` without millis)."""
    text = to_iso(datetime.fromtimestamp(epoch, tz=UTC))
    return text if millis else text[:-5] + "Z"


def now_iso() -> str:
    """Now, as every document's timestamps are written."""
    return to_iso(datetime.now(UTC))
