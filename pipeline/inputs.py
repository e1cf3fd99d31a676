"""An input, and its lines as the items the shipper queues: parsed, stamped, encoded.

Each line becomes one document (the input's parser, or a dead-letter for a line too long or a
document that cannot be encoded), stamped with its file and offset and the id that makes a
replay idempotent. The hot loop of the shipper: what every line of a file shares is built once
per file (:class:`FileStamp`), not once per line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from contract.timestamps import now_iso
from pipeline.docid import id_prefix
from pipeline.reader import FileSource, Line
from pipeline.scanner import InputSpec, path_text
from pipeline.sink import DeadLetterFn, Item, make_item

log = structlog.get_logger(__name__)

ParseFn = Callable[[bytes], dict[str, Any]]


@dataclass
class ShipInput:
    """One configured input: where to read, and the parser (from the parsers room) to use."""

    spec: InputSpec
    parse: ParseFn
    dead_letter: DeadLetterFn
    name: str = ""


@dataclass(slots=True)
class FileStamp:
    """What every document of one file shares, built once per file rather than once per line."""

    source: FileSource
    shipped: ShipInput
    file: dict[str, str]  # log.file
    id_prefix: str
    legacy_prefix: str  # the same file's prefix before the host was part of the id


def file_stamp(source: FileSource, inputs: list[ShipInput], host: str) -> FileStamp:
    index = source.input_index
    shipped = inputs[index] if index < len(inputs) else inputs[0]
    file = {"path": path_text(source.path), "device_id": str(source.device), "inode": str(source.inode),
            "fingerprint": source.identity.key}
    return FileStamp(source, shipped, file, id_prefix(source.identity, host), id_prefix(source.identity))


def line_items(lines: list[Line], inputs: list[ShipInput], host: str, max_line_bytes: int,
               progress: Callable[[int], None] | None = None) -> list[Item]:
    """One encoded item per line; ``progress`` is told the bytes of each line."""
    # When the shipper handed the line over; the ingest pipeline, where the node has one,
    # overwrites it with the node's own clock. Rules window on it: late events count once.
    ingested = now_iso()
    stamp: FileStamp | None = None
    items: list[Item] = []
    for line in lines:
        if stamp is None or line.source is not stamp.source:
            stamp = file_stamp(line.source, inputs, host)
        if progress is not None:
            progress(line.end - line.offset)
        shipped = stamp.shipped
        if line.too_long:
            doc = shipped.dead_letter(
                line.raw, f"line too long: {line.too_long} bytes > {max_line_bytes}", "line_too_long")
        else:
            doc = shipped.parse(line.raw)
        doc["event"]["ingested"] = ingested
        where = {"log": {"file": stamp.file, "offset": line.offset}}
        doc.update(where)
        doc_id = stamp.id_prefix + format(line.offset, "x")  # document_id(), its hash made once per file
        try:
            item = make_item(doc, doc_id, line.raw,
                             dead_letter=shipped.dead_letter, extra=where, ack=(line.source, line.end))
        except (orjson.JSONEncodeError, TypeError, ValueError) as exc:
            # A value no parser should let through (parsers/values.py): the line still ships.
            log.error("unencodable_document", path=stamp.file["path"], offset=line.offset, error=str(exc))
            doc = shipped.dead_letter(line.raw, f"document not encodable: {exc}"[:500], "unencodable")
            doc["event"]["ingested"] = ingested
            doc.update(where)
            item = make_item(doc, doc_id, line.raw, extra=where, ack=(line.source, line.end))
        if line.offset < line.source.verify_below:
            item.verify = (stamp.file["fingerprint"], line.source.verify_below, line.offset,
                           stamp.legacy_prefix + format(line.offset, "x"))
        items.append(item)
    return items
