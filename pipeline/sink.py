"""Bulk indexing into data streams, exactly once, for as long as it takes.

Every document is created (``op_type: create``) with a deterministic ``_id``, so a replay is a
409, counted as already indexed. 429, 5xx and connection errors are retried with exponential
backoff and jitter without limit; a document Elasticsearch will never take (a mapping error) is
turned into a dead-letter carrying its raw line and Elasticsearch's reason.

Documents arrive already encoded (one NDJSON action and source each, made by the reader thread):
the bulk body is their concatenation, sent with the client's ``bulk`` API. The bulk helpers
serialize each action and walk each result in Python while Elasticsearch waits: measured in this
place, ``streaming_bulk`` and ``parallel_bulk`` reached 0.64-0.70 of the node's ceiling, this
0.82-0.90 (docs/shipping.md).
"""

from __future__ import annotations

import gc
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

from pipeline.interpreter import import_client_lean

import_client_lean()  # before the client's first import: none of its unused extras

import orjson  # noqa: E402
import structlog  # noqa: E402
from elastic_transport import TransportError  # noqa: E402
from elasticsearch import ApiError, Elasticsearch  # noqa: E402

from contract import streams  # noqa: E402
from contract.traffic import AUDIT_TRAIL_FORMAT  # noqa: E402
from pipeline.metrics import ShipperMetrics  # noqa: E402

log = structlog.get_logger(__name__)
# The kinds of registry calls (registrations, retrievals, version changes, failed calls)
CALL_KINDS = frozenset({"registration", "retrieval", "version", "error"})

# The bulk response without what we never read (_shards, _version, _seq_no, _id...).
_BULK_FILTER = "errors,items.*.status,items.*.error"
_IDS_PER_SEARCH = 1000

DeadLetterFn = Callable[[bytes, str, str], dict[str, Any]]
_BODY = attrgetter("body")
# The bulk APIs' body types (plain and compatibility mode): a body the shipper encoded already.
NDJSON_TYPES = ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson")


class Expected(NamedTuple):
    """What a batch holds, counted by the reader thread as it queued it (``pipeline.chunks``):
    when Elasticsearch takes the whole batch, these are the counts, and the writer walks no item.
    ``verify``: whether any item was read again after a restart (None: not known, look)."""

    kinds: Counter[str]
    reasons: Counter[str]
    models: Counter[tuple[str, str]] | None = None
    calls: Counter[tuple[str, str, str]] | None = None
    verify: bool | None = None


class _EncodedNdjson:
    """The client's NDJSON serializer, except that a body already encoded (bytes, one newline at
    its end: the sink's) is sent as it is. The client's own copies it twice (into a bytearray,
    then into bytes): py-spy and cProfile put that at a sixth of the writer thread's CPU."""

    def __init__(self, serializer: Any) -> None:
        self.serializer = serializer
        self.mimetype = serializer.mimetype

    def dumps(self, data: Any) -> bytes:
        if type(data) is bytes and data.endswith(b"\n"):
            return data
        return self.serializer.dumps(data)

    def loads(self, data: bytes) -> Any:
        return self.serializer.loads(data)


def send_encoded_bodies(client: Elasticsearch) -> None:
    """Let ``client`` send encoded bulk bodies without copying them (the transport it shares with
    its ``options()`` copies: the heartbeat's, the attribution's, which send no NDJSON)."""
    serializers = getattr(getattr(client, "transport", None), "serializers", None)
    table = getattr(serializers, "serializers", None)
    if not isinstance(table, dict):
        return
    for mimetype in NDJSON_TYPES:
        current = table.get(mimetype)
        if current is not None and not isinstance(current, _EncodedNdjson):
            table[mimetype] = _EncodedNdjson(current)


@dataclass(slots=True)
class Item:
    index: str
    id: str
    body: bytes  # the action line and the source line, NDJSON
    kind: str
    raw: bytes
    dead_letter: DeadLetterFn | None = None
    # Fields a replacement dead-letter keeps (log.*): the fields themselves, or the names of the
    # top-level fields to take from the encoded document (a shipped line's: no dict per line).
    extra: dict[str, Any] | tuple[str, ...] | None = None
    reason: str | None = None  # error.type of a dead-letter
    ack: Any = None  # opaque to the sink: what to checkpoint once acknowledged
    # Read again after a restart (or adopted by a copy): (file identity, the offset below which
    # its lines may have been sent, this line's offset). It may be indexed already, in any
    # backing index of its stream.
    # A line read again after a restart: (file identity, sent mark, offset, its id as shipped
    # before host names were part of ids): look for it before indexing.
    verify: tuple[str, int, int, str] | None = None
    model: str | None = None  # modelregistry.model.name, for the per-model counters
    # (failure kind or "", source) of a user's registry call, for the per-kind counters (None:
    # not one: the probe's, a dead-letter, an alert); source "audit_trail" or "others" (contract.traffic)
    call: tuple[str, str] | None = None
    family: str = ""  # every stream a line of its namespace can land in (its kind, or the dead-letters)


def encode(index: str, doc_id: str, doc: dict[str, Any]) -> bytes:
    # Index names and ids are made of characters JSON needs no escape for (data stream names,
    # base64url and hex digits): the action line is formatted, not serialized.
    return _action(index) + b'%s"}}\n%s' % (doc_id.encode(), orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE))


@dataclass(frozen=True, slots=True)
class Stream:
    """What every document of one data stream shares, worked out once per stream, not per line."""

    index: str
    kind: str
    family: str
    action: bytes  # the bulk action line up to the document's id


_streams: dict[tuple[str, str, str], Stream] = {}
_actions: dict[str, bytes] = {}


def _action(index: str) -> bytes:
    action = _actions.get(index)
    if action is None:
        if len(_actions) > 1024:
            _actions.clear()
        action = _actions[index] = f'{{"create":{{"_index":"{index}","_id":"'.encode()
    return action


def _stream(kind_type: str, dataset: str, namespace: str) -> Stream:
    key = (kind_type, dataset, namespace)
    stream = _streams.get(key)
    if stream is None:
        if len(_streams) > 1024:  # a handful in practice: kinds times namespaces
            _streams.clear()
        index = f"{kind_type}-{dataset}-{namespace}"
        stream = _streams[key] = Stream(index, streams.kind_of_dataset(dataset),
                                         streams.pattern(namespace, kind_type=kind_type), _action(index))
    return stream


def stream_of(kind_type: str, dataset: str, namespace: str) -> Stream:
    """What every document of the data stream ``{kind_type}-{dataset}-{namespace}`` shares (kept)."""
    return _streams.get((kind_type, dataset, namespace)) or _stream(kind_type, dataset, namespace)


def call_of(kind: str, failure: str | None, synthetic: bool, fmt: str | None) -> tuple[str, str] | None:
    """(failure kind or "", source) of a user's registry call, for the per-kind counters; None for
    a document that is not one (another kind, or the probe's request)."""
    if kind in CALL_KINDS and not synthetic:
        return failure or "", "audit_trail" if fmt == AUDIT_TRAIL_FORMAT else "others"
    return None


def make_item(doc: dict[str, Any], doc_id: str, raw: bytes, *, dead_letter: DeadLetterFn | None = None,
              extra: dict[str, Any] | tuple[str, ...] | None = None, ack: Any = None) -> Item:
    """The item of a document, addressed to the data stream the document names (its
    ``data_stream`` fields, as the event contract has them)."""
    return item_of(doc, doc_id, raw, dead_letter, extra, ack)


def item_of(doc: dict[str, Any], doc_id: str, raw: bytes, dead_letter: DeadLetterFn | None,
            extra: dict[str, Any] | tuple[str, ...] | None, ack: Any) -> Item:
    """:func:`make_item` with positional arguments, for the shipper's loop over lines (a call with
    keywords and the helpers it made cost a line more than its encoding)."""
    data_stream = doc["data_stream"]
    key = (data_stream["type"], data_stream["dataset"], data_stream["namespace"])
    stream = _streams.get(key) or _stream(*key)
    kind = stream.kind
    reason = doc.get("error", {}).get("type", "unknown") if kind == "deadletter" else None
    registry = doc.get("modelregistry") or {}
    model = registry.get("model") or {}
    call = call_of(kind, registry.get("failure"), bool(registry.get("synthetic")), registry.get("format"))
    body = b"".join((stream.action, doc_id.encode(), b'"}}\n', orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)))
    return Item(stream.index, doc_id, body, kind, raw, dead_letter, extra, reason, ack,
                None, model.get("name") if isinstance(model, dict) else None, call, stream.family)


@dataclass
class DeliveryReport:
    indexed: Counter[str] = field(default_factory=Counter)
    deadletters: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    rejected: int = 0
    complete: bool = True


def _error_text(result: dict[str, Any]) -> str:
    """``type: reason`` of one bulk item's error, as Elasticsearch gave it, without the request
    some reasons end with (``, request: [BulkShardRequest ... source[{the whole document}]]``):
    a log line names the problem, it does not copy the registry's traffic."""
    error = result.get("error") or {}
    if not isinstance(error, dict):
        return str(error)
    reason = str(error.get("reason", "")).split(", request: [", 1)[0]
    return f"{error.get('type', 'rejected')}: {reason}"


class BulkSink:
    """Delivers items to Elasticsearch, each exactly once.

    ``shard_wait_s``: how long Elasticsearch may hold a bulk request waiting for a shard to
    become active or a mapping to be updated (the bulk API's ``timeout``; its own default is a
    minute). Kept below the client's request timeout, a shard with no active copy (its node lost
    while its replica was still copying) is answered per line with a 503 that names the shard,
    logged and retried, instead of every request timing out with nothing said about why.
    """

    def __init__(self, client: Elasticsearch, metrics: ShipperMetrics, *,
                 initial_backoff_s: float = 0.2, max_backoff_s: float = 5.0,
                 shard_wait_s: float | None = None) -> None:
        self.client = client
        send_encoded_bodies(client)
        self.metrics = metrics
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self._shard_wait = None if shard_wait_s is None else f"{int(shard_wait_s * 1000)}ms"
        # (file identity, its sent mark when resumed) -> the highest offset an earlier run indexed
        self._frontier: dict[tuple[str, int], int] = {}

    def deliver(self, items: list[Item], give_up: threading.Event | None = None,
                expected: Expected | None = None) -> DeliveryReport:
        """Index every item, retrying until each is created, a duplicate, or a dead-letter.

        Returns early (``complete=False``) only when ``give_up`` is set: then nothing of this
        batch may be checkpointed. ``expected``: the items' kinds and dead-letter reasons, counted
        by the caller (:class:`Expected`), used when the first attempt succeeds whole.
        """
        report = DeliveryReport()
        verify = expected.verify if expected is not None else None
        if verify or (verify is None and any(item.verify is not None for item in items)):
            kept = self._skip_indexed(items, report, give_up)
            if kept is None:
                report.complete = False
                return report
            if len(kept) != len(items):
                items, expected = kept, None
        pending = items
        attempt = 0
        while pending:
            retry, transient = self._attempt(pending, report, expected if attempt == 0 and pending is items else None)
            pending = retry
            if not pending:
                break
            if transient:
                attempt += 1
                self.metrics.bulk_retries.inc()
                if not self._back_off(attempt, give_up):
                    report.complete = False
                    return report
        return report

    def _back_off(self, attempt: int, give_up: threading.Event | None) -> bool:
        """Wait before retry ``attempt`` (exponential, with jitter); False if told to give up.

        A failed request leaves reference cycles behind (exception, traceback, the transport's
        frames) that hold its whole body. The shipper keeps the garbage collector's runs rare
        (``tune_interpreter``), so they are collected here, while there is time to wait anyway:
        otherwise every retry during an outage would keep another body alive.
        """
        gc.collect()
        delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
        if give_up is None:
            time.sleep(delay)
            return True
        return not give_up.wait(delay)

    def _skip_indexed(self, items: list[Item], report: DeliveryReport,
                      give_up: threading.Event | None) -> list[Item] | None:
        """Leave out lines read again after a restart that an earlier run indexed already.

        ``op_type: create`` answers 409 for an ``_id`` in the data stream's write index only; if
        the stream rolled over between the first run and the replay, the line would be indexed a
        second time. So, after a refresh (the earlier run's last writes become visible): once per
        resumed file, the highest offset indexed from it; then, for lines at or below it, their
        ids across every backing index. None when ``give_up`` was set while retrying.
        """
        suspects = [item for item in items if item.verify is not None]
        families = ",".join(sorted({item.family for item in suspects}))
        attempt = 0
        while True:
            try:
                found = self._indexed_ids(suspects, families)
                break
            except (ApiError, TransportError) as exc:
                attempt += 1
                log.warning("replay_check_failed", error=str(exc)[:200], docs=len(suspects))
                if not self._back_off(attempt, give_up):
                    return None
        if not found:
            return items
        report.duplicates += len(found)
        self.metrics.duplicates.inc(len(found))
        log.info("replay_skipped_indexed", docs=len(found), checked=len(suspects))
        return [item for item in items if not (item.verify is not None and item.id in found)]

    def _indexed_ids(self, suspects: list[Item], families: str) -> set[str]:
        frontier = self._frontier
        checks = [(item.id, item.verify) for item in suspects if item.verify is not None]  # every suspect
        unknown = {verify[:2] for _, verify in checks} - frontier.keys()
        if unknown:
            self._refresh(families)
            for key, sent in unknown:
                frontier[(key, sent)] = self._highest_offset(families, key)
        # Each suspect under its id and the id an older regwatch gave it (no host in it): a line
        # shipped by the older version just before the upgrade is found too.
        within = {alias: item_id for item_id, verify in checks if verify[2] <= frontier[verify[:2]]
                  for alias in (item_id, verify[3])}
        if not within:
            return set()
        if not unknown:  # refreshed above otherwise
            self._refresh(families)
        found: set[str] = set()
        aliases = list(within)
        for start in range(0, len(aliases), _IDS_PER_SEARCH):
            ids = aliases[start:start + _IDS_PER_SEARCH]
            response = self.client.search(
                index=families, query={"ids": {"values": ids}}, size=2 * len(ids), source=False,
                allow_no_indices=True, ignore_unavailable=True, filter_path="hits.hits._id")
            found.update(within[hit["_id"]] for hit in response.get("hits", {}).get("hits", []))
        return found

    def _refresh(self, families: str) -> None:
        """Make what an earlier run indexed visible to search."""
        self.client.indices.refresh(index=families, allow_no_indices=True, ignore_unavailable=True)

    def _highest_offset(self, families: str, fingerprint: str) -> int:
        """The highest ``log.offset`` indexed from one file identity; -1 if none."""
        response = self.client.search(
            index=families, size=0, query={"term": {"log.file.fingerprint": fingerprint}},
            aggregations={"highest": {"max": {"field": "log.offset"}}}, allow_no_indices=True,
            ignore_unavailable=True, filter_path="aggregations.highest.value")
        highest = response.get("aggregations", {}).get("highest", {}).get("value")
        return -1 if highest is None else int(highest)

    def _attempt(self, pending: list[Item], report: DeliveryReport,
                 expected: Expected | None = None) -> tuple[list[Item], bool]:
        body = b"".join(map(_BODY, pending))
        started = time.perf_counter()
        try:
            # the client sends bytes as they are; its annotation names only a sequence of mappings
            response = self.client.bulk(operations=body, filter_path=_BULK_FILTER,  # type: ignore[arg-type]
                                        timeout=self._shard_wait)
        except ApiError as exc:  # the whole request refused: 429, 5xx, 413...
            log.warning("bulk_refused", status=exc.meta.status, error=str(exc)[:200], docs=len(pending))
            return pending, True
        except TransportError as exc:  # connection refused, reset, timed out
            log.warning("bulk_failed", error=type(exc).__name__, detail=str(exc)[:200], docs=len(pending))
            return pending, True
        finally:
            self.metrics.bulk_latency.observe(time.perf_counter() - started)
        indexed: Counter[str] = Counter()
        deadletters: Counter[str] = Counter()
        duplicates = 0
        retry: list[Item] = []
        first_transient: dict[str, Any] | None = None  # the first line Elasticsearch asked to send again
        transients = 0
        acked: list[Item] | None = pending
        if not response.get("errors"):
            if expected is not None:
                indexed, deadletters = expected.kinds, expected.reasons
                if expected.models is not None and expected.calls is not None:
                    self.metrics.count_models(expected.models)
                    self.metrics.count_calls(expected.calls)
                    acked = None  # counted
            else:
                for item in pending:
                    indexed[item.kind] += 1
                    if item.reason is not None:
                        deadletters[item.reason] += 1
        else:
            acked = []
            for item, result in zip(pending, response["items"], strict=True):
                outcome = next(iter(result.values()))  # {"create": {...}} -> {...}
                status = outcome.get("status")
                if status is not None and 200 <= status < 300:
                    acked.append(item)
                    indexed[item.kind] += 1
                    if item.reason is not None:
                        deadletters[item.reason] += 1
                elif status == 409:
                    duplicates += 1
                elif status is None or status == 429 or status >= 500:
                    retry.append(item)
                    transients += 1
                    first_transient = first_transient or outcome
                else:
                    replacement = self._reject(item, outcome)
                    if replacement is not None:
                        retry.append(replacement)
                    else:
                        report.rejected += 1
        if first_transient is not None:
            log.warning("bulk_items_retried", docs=transients, status=first_transient.get("status"),
                        error=_error_text(first_transient)[:300])
        report.indexed.update(indexed)
        report.deadletters.update(deadletters)
        report.duplicates += duplicates
        for kind, count in indexed.items():
            self.metrics.events_indexed.labels(kind).inc(count)
        for reason, count in deadletters.items():
            self.metrics.deadletters.labels(reason).inc(count)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        if acked is not None:
            self.metrics.count_models(Counter((item.kind, item.model) for item in acked if item.model is not None))
            self.metrics.count_calls(Counter((item.kind, *item.call) for item in acked if item.call is not None))
        return retry, transients > 0

    def _reject(self, item: Item, result: dict[str, Any]) -> Item | None:
        reason = _error_text(result)
        if item.kind == "deadletter" or item.dead_letter is None:
            # Nothing further to fall back to: say so loudly, with the line.
            self.metrics.rejected.inc()
            log.error("deadletter_rejected", index=item.index, id=item.id, reason=reason[:500],
                      raw=item.raw[:2048].decode("utf-8", "backslashreplace"))
            return None
        doc = item.dead_letter(item.raw, f"rejected by Elasticsearch: {reason}"[:2000], "index_rejected")
        if isinstance(item.extra, tuple):  # names: taken from the document as it was sent
            sent = orjson.loads(item.body.partition(b"\n")[2])
            doc.update({name: sent[name] for name in item.extra if name in sent})
        elif item.extra:
            doc.update(item.extra)
        return make_item(doc, item.id, item.raw, ack=item.ack)
