"""What travels the shipper's queue carries its own counts, and the bulk body leaves as it was
encoded (issue #31: the writer walks no item and copies no body when a batch is taken whole)."""

from __future__ import annotations

from collections import Counter

from elasticsearch import Elasticsearch

from contract.traffic import AUDIT_TRAIL_FORMAT
from pipeline.chunks import Chunk, expected
from pipeline.identity import Identity
from pipeline.metrics import ShipperMetrics
from pipeline.reader import FileSource
from pipeline.sink import BulkSink, Expected, Item, make_item

SOURCE = FileSource(0, "/var/log/a.log", 1, 2, Identity("f" * 16, 1, 2))


def doc(dataset: str, **registry: object) -> dict:
    return {"@timestamp": "2026-11-25T10:00:00.000Z", "event": {"kind": "event"},
            "data_stream": {"type": "logs", "dataset": dataset, "namespace": "default"},
            "modelregistry": registry}


def items() -> list[Item]:
    made = [
        make_item(doc("modelregistry.retrieval", model={"name": "churn"}, format="nginx"), "a", b"1", ack=(SOURCE, 1)),
        make_item(doc("modelregistry.retrieval", model={"name": "churn"}, format="nginx"), "b", b"2", ack=(SOURCE, 2)),
        make_item(doc("modelregistry.error", model={"name": "fraud"}, failure="server", format=AUDIT_TRAIL_FORMAT), "c",
                  b"3", ack=(SOURCE, 3)),
        make_item(doc("modelregistry.retrieval", synthetic=True, format="nginx"), "d", b"4", ack=(SOURCE, 4)),
        make_item({**doc("modelregistry.deadletter"), "error": {"type": "parse_error"}}, "e", b"5", ack=(SOURCE, 5)),
        make_item(doc("modelregistry.access"), "f", b"6", ack=(SOURCE, 6)),
    ]
    made[5].verify = ("f" * 16, 100, 6, "legacy-f")
    return made


def test_a_chunk_counts_what_the_sink_counts_item_by_item() -> None:
    listed = items()
    chunk = Chunk.of(listed)
    assert chunk.kinds == Counter({"retrieval": 3, "error": 1, "deadletter": 1, "access": 1})
    assert chunk.reasons == Counter({"parse_error": 1})
    # the sink's own count of an acknowledged batch, item by item
    assert chunk.models == Counter((i.kind, i.model) for i in listed if i.model is not None) \
        == Counter({("retrieval", "churn"): 2, ("error", "fraud"): 1})
    assert chunk.calls == Counter((i.kind, *i.call) for i in listed if i.call is not None) \
        == Counter({("retrieval", "", "others"): 2, ("error", "server", "audit_trail"): 1})
    assert chunk.verify and not Chunk.of(listed[:5]).verify
    assert chunk.nbytes == sum(len(i.body) for i in listed)
    assert chunk.ends == {SOURCE.identity.key: (SOURCE, 6)}


def test_a_batch_expects_the_sum_of_its_chunks() -> None:
    listed = items()
    batch = [Chunk.of(listed[:3]), Chunk.of(listed[3:5])]
    assert expected(batch) == Expected(
        Counter({"retrieval": 3, "error": 1, "deadletter": 1}), Counter({"parse_error": 1}),
        Counter({("retrieval", "churn"): 2, ("error", "fraud"): 1}),
        Counter({("retrieval", "", "others"): 2, ("error", "server", "audit_trail"): 1}), False)
    assert expected([*batch, Chunk.of(listed[5:])]).verify


def test_an_encoded_bulk_body_is_sent_as_it_is_and_anything_else_serialized_as_before() -> None:
    client = Elasticsearch("http://127.0.0.1:1")
    BulkSink(client, ShipperMetrics())
    serializers = client.transport.serializers
    body = b"".join(item.body for item in items())
    for mimetype in ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson; compatible-with=8"):
        assert serializers.dumps(body, mimetype=mimetype) is body
        assert serializers.dumps([{"create": {}}, {"a": 1}], mimetype=mimetype) == b'{"create":{}}\n{"a":1}\n'
        assert serializers.dumps(b'{"a":1}', mimetype=mimetype) == b'{"a":1}\n'  # no newline: added, as before
    BulkSink(client, ShipperMetrics())  # a second sink on the same client wraps nothing twice
    assert serializers.dumps(body, mimetype="application/x-ndjson") is body
    inner = getattr(serializers.get_serializer("application/x-ndjson"), "serializer", None)
    assert type(inner).__name__ == "NdjsonSerializer"
