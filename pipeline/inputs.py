"""An input, and its lines as the items the shipper queues: parsed, stamped, encoded.

Each line becomes one document (the input's parser, or a dead-letter for a line too long or a
document that cannot be encoded), stamped with its file and offset and the id that makes a
replay idempotent. The hot loop of the shipper: what every line of a file shares is built once
per file (:class:`FileStamp`), not once per line. An input whose parser offers its documents in
encoded parts (``ShipInput.encode``: nginx and gunicorn lines of the usual shape) ships them
without a dict: its parts, with the shipper's fields (``event.ingested``, ``log``, ``agent``, the
bulk action line) spliced in as fragments encoded once per call or per file. py-spy (``regwatch
ship --once``, 200k bench lines) had parsing into a dict at a third of the shipper's CPU and its
encoding (``sink.item_of``) at a tenth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
import structlog
from prometheus_client import Counter

from contract.timestamps import now_iso
from pipeline.docid import id_prefix
from pipeline.reader import FileSource, Line
from pipeline.scanner import InputSpec, path_text
from pipeline.sink import DeadLetterFn, Item, Stream, call_of, item_of, stream_of

log = structlog.get_logger(__name__)

ParseFn = Callable[[bytes], dict[str, Any]]
# What the shipper needs to file and count a document it did not build as a dict: data_stream.type,
# .dataset and .namespace, modelregistry.model.name, .failure, .synthetic, .format.
DocumentMeta = tuple[str, str, str, "str | None", "str | None", bool, str]
# A line's document in encoded parts, from its text and the members to end its ``event`` object
# with (``event.ingested``): its parts (the first one left empty for the bulk action line; the
# document without its closing brace), its DocumentMeta, whether it has event.duration. None (or an
# exception) for a line the input's ``parse`` is to make the document of. (parsers.encoded_access)
EncodeFn = Callable[[str, bytes], "tuple[list[bytes], DocumentMeta, bool] | None"]
# Names what a retrieval retrieved (pipeline.attribution), in place; never waits
EnrichFn = Callable[[dict[str, Any]], None]
RETRIEVALS = "modelregistry.retrieval"
# Told, once per run of lines of one file, how many of them were requests without a response time.
NoDurationFn = Callable[["ShipInput", str, int], None]
AGENT_TYPE = "regwatch"
# What a line's replacement dead-letter (a document Elasticsearch refused) keeps of the document
WHERE_FIELDS = ("log", "agent")


@cache
def agent_fields(host: str, agent_id: str | None = None) -> dict[str, str]:
    """ECS ``agent.*``: the shipper that read a line (Filebeat writes its own the same way: type,
    version, id, name). One shared object per shipper, not one per line. The id is the shipper's
    (its host name unless one is configured); the name is the host's."""
    try:
        ours = version("regwatch")
    except PackageNotFoundError:
        ours = "unknown"
    return {"type": AGENT_TYPE, "version": ours, "id": agent_id or host, "name": host}

# What to change when an access log records no response time: the shipper knows no format names,
# so the advice names the log's own setting and the page that gives the recommended one.
NO_DURATION_FIX = ("log the request time: nginx 'log_format regwatch' with rt=$request_time "
                   "(README, docs/shipping.md), or $request_time in an nginx-json log_format")


@dataclass
class ShipInput:
    """One configured input: where to read, and the parser (from the parsers room) to use."""

    spec: InputSpec
    parse: ParseFn
    dead_letter: DeadLetterFn
    name: str = ""
    # The documents of the usual lines written from encoded parts, without their dicts (#31): the
    # same bytes as ``parse``'s document stamped and encoded (tests/test_shipped_parts.py).
    encode: EncodeFn | None = None


@dataclass(slots=True)
class FileStamp:
    """What every document of one file shares, built once per file rather than once per line."""

    source: FileSource
    shipped: ShipInput
    file: dict[str, str]  # log.file
    id_prefix: str
    legacy_prefix: str  # the same file's prefix before the host was part of the id
    log_head: bytes  # ',"log":{"file":{...},"offset":' of an encoded document; its offset follows


def lacks_duration(doc: dict[str, Any]) -> bool:
    """An HTTP request as an access log records it (a method and a status), without ``event.duration``.

    Decided from the document, not the format: an audit record has no request method and never
    a response time, a dead-letter is no event; an access line without one leaves every latency
    panel and ``registry-slow-p95`` empty.
    """
    event = doc["event"]
    if "duration" in event or event.get("kind") != "event":
        return False
    http = doc.get("http")
    return (http is not None and "method" in http.get("request", ())
            and "status_code" in http.get("response", ()))


@dataclass
class MissingDuration:
    """Counts access lines without a response time per input and warns once per input.

    One warning, not one per line: a log format without timing is a setting to change, not an
    incident; the counter (``regwatch_events_without_duration_total{input}``) says how much.
    """

    counter: Counter
    warned: set[str] = field(default_factory=set)

    def __call__(self, shipped: ShipInput, path: str, count: int) -> None:
        self.counter.labels(shipped.name).inc(count)
        if shipped.name not in self.warned:
            self.warned.add(shipped.name)
            log.warning("access_lines_without_duration", input=shipped.name, path=path,
                        paths=list(shipped.spec.paths), fix=NO_DURATION_FIX)


def file_stamp(source: FileSource, inputs: list[ShipInput], host: str) -> FileStamp:
    index = source.input_index
    shipped = inputs[index] if index < len(inputs) else inputs[0]
    file = {"path": path_text(source.path), "device_id": str(source.device), "inode": str(source.inode),
            "fingerprint": source.identity.key}
    return FileStamp(source, shipped, file, id_prefix(source.identity, host), id_prefix(source.identity),
                     b',"log":{"file":' + orjson.dumps(file) + b',"offset":')


# Per DocumentMeta: its stream, model name and call (item_of's, worked out once, not per line)
_Filed = tuple[Stream, "str | None", "tuple[str, str] | None"]
_filed: dict[DocumentMeta, _Filed] = {}
FILED_LIMIT = 4096  # distinct (stream, model, failure, ...) kept: a model per line cannot grow it


def _file(meta: DocumentMeta) -> _Filed:
    kind_type, dataset, namespace, model, failure, synthetic, fmt = meta
    stream = stream_of(kind_type, dataset, namespace)
    filed = stream, model, call_of(stream.kind, failure, synthetic, fmt)
    if len(_filed) >= FILED_LIMIT:
        _filed.clear()
    _filed[meta] = filed
    return filed


def line_items(lines: list[Line], inputs: list[ShipInput], host: str, max_line_bytes: int,
               progress: Callable[[int], None] | None = None,
               no_duration: NoDurationFn | None = None, enrich: EnrichFn | None = None,
               agent: dict[str, str] | None = None) -> list[Item]:
    """One encoded item per line; ``progress`` is told the bytes of each line, ``no_duration`` the
    access lines of each file that carry no response time (:func:`lacks_duration`), ``enrich``
    each retrieval (a failure of it leaves the line as parsed: it still ships)."""
    # When the shipper handed the line over; the ingest pipeline, where the node has one,
    # overwrites it with the node's own clock. Rules window on it: late events count once.
    ingested = now_iso()
    agent = agent or agent_fields(host)
    event_tail = b',"ingested":' + orjson.dumps(ingested)
    agent_tail = b'},"agent":' + orjson.dumps(agent) + b"}\n"
    encode: EncodeFn | None = None
    filed = _filed
    stamp: FileStamp | None = None
    items: list[Item] = []
    missing = 0  # lines of the current file without a response time
    parse: ParseFn | None = None
    shipped: ShipInput | None = None
    for line in lines:
        source, offset, raw = line.source, line.offset, line.raw
        if stamp is None or source is not stamp.source:
            if missing and stamp is not None and no_duration is not None:
                no_duration(stamp.shipped, stamp.file["path"], missing)
            missing = 0
            stamp = file_stamp(source, inputs, host)
            shipped = stamp.shipped
            parse = shipped.parse
            encode = shipped.encode
        assert shipped is not None and parse is not None
        if progress is not None:
            progress(line.end - offset)
        if encode is not None and not line.too_long and len(raw) <= max_line_bytes:
            try:
                done = encode(raw.rstrip(b"\r\n").decode("utf-8"), event_tail)
            except Exception:  # a bad value: parse makes its dead-letter
                done = None
            if done is not None:
                parts, meta, timed = done
                stream, model, call = filed.get(meta) or _file(meta)
                if (enrich is None or meta[1] != RETRIEVALS) and stream.kind != "deadletter":
                    if not timed:
                        missing += 1
                    doc_id = f"{stamp.id_prefix}{offset:x}"
                    parts[0] = b'%s%s"}}\n' % (stream.action, doc_id.encode())
                    parts.append(b"%s%d%s" % (stamp.log_head, offset, agent_tail))
                    item = Item(stream.index, doc_id, b"".join(parts), stream.kind, raw, shipped.dead_letter,
                                WHERE_FIELDS, None, (source, line.end), None, model, call, stream.family)
                    if offset < source.verify_below:
                        item.verify = (stamp.file["fingerprint"], source.verify_below, offset,
                                       f"{stamp.legacy_prefix}{offset:x}")
                    items.append(item)
                    continue
        if line.too_long:
            doc = shipped.dead_letter(raw, f"line too long: {line.too_long} bytes > {max_line_bytes}", "line_too_long")
        else:
            doc = parse(raw)
            event = doc["event"]
            if "duration" not in event and lacks_duration(doc):  # the test without a call, most lines
                missing += 1
            if enrich is not None and event.get("dataset") == RETRIEVALS:
                try:
                    enrich(doc)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    log.warning("retrieval_not_attributed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        doc["event"]["ingested"] = ingested
        doc["log"] = {"file": stamp.file, "offset": offset}
        doc["agent"] = agent
        doc_id = f"{stamp.id_prefix}{offset:x}"  # document_id(), its hash made once per file
        try:
            item = item_of(doc, doc_id, raw, shipped.dead_letter, WHERE_FIELDS, (source, line.end))
        except (orjson.JSONEncodeError, TypeError, ValueError) as exc:
            # A value no parser should let through (parsers/values.py): the line still ships.
            log.error("unencodable_document", path=stamp.file["path"], offset=offset, error=str(exc))
            doc = shipped.dead_letter(raw, f"document not encodable: {exc}"[:500], "unencodable")
            doc["event"]["ingested"] = ingested
            doc["log"] = {"file": stamp.file, "offset": offset}
            doc["agent"] = agent
            item = item_of(doc, doc_id, raw, None, WHERE_FIELDS, (source, line.end))
        if offset < source.verify_below:
            item.verify = (stamp.file["fingerprint"], source.verify_below, offset, f"{stamp.legacy_prefix}{offset:x}")
        items.append(item)
    if missing and stamp is not None and no_duration is not None:
        no_duration(stamp.shipped, stamp.file["path"], missing)
    return items
