"""The shipper's documents written from encoded parts are the documents it built as dicts (#31).

nginx and gunicorn lines of the usual shape are shipped without a dict per line: the parser's
encoded parts (``parsers.encoded_access``) with the shipper's own fields spliced in as encoded
fragments (``pipeline.inputs.line_items``). Each test ships the same lines both ways and compares
every item field for field: the bulk action line and ``_id``, the document's bytes, its stream,
kind, counters, the raw line kept for a dead-letter, what it acknowledges and whether it is looked
for after a restart. The fast side is one parser whose caches have seen every earlier example; the
reference a fresh parser without encoded parts, whose dicts ``sink.item_of`` encodes as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parsers
import pipeline.inputs
from parsers import LineParser, ParseContext
from parsers.encoded_access import encoded_parts
from parsers.routes import Router, builtin
from pipeline.identity import Identity
from pipeline.inputs import ShipInput, line_items
from pipeline.reader import FileSource, Line
from pipeline.scanner import InputSpec
from pipeline.sink import Item

SAMPLES = Path(__file__).parent / "samples"
NOW = "2026-11-25T00:00:00.000Z"
AGENT = {"type": "regwatch", "version": "1.2.3", "id": "shipper-a", "name": "host-a"}
MAX_LINE = 4096
PROBE_UA = "regwatch-probe/1.0"
TARGETS = ["/health", "/", "/api/2.0/mlflow/registered-models/get?name=m", "/api/2.0/mlflow/registered-models/get",
           "/api/2.0/mlflow/model-versions/get?name=m&version=2", "/api/2.0/mlflow/model-versions/create",
           "/api/2.0/mlflow/model-versions/get-download-uri?name=x&version=3",
           "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/model/model.pkl", "/x?",
           "/ajax-api/2.0/mlflow/registered-models/search?filter=a%20b", "/api/2.0/mlflow/logged-models/m-4b6a"]
word = st.text(st.sampled_from("abcXYZ09.-_/:@ %é\"\\"), min_size=1, max_size=12)
optional = st.one_of(st.none(), st.just("-"), word)
JUNK = [b"\n", b"   \r\n", b"\xff\xfe not utf-8\n", b'{"not": "nginx"}\n',
        b'1.2.3.4 - - [99/Nov/2026:23:55:28 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET / HTTP/1.1" 200 1 "-" "-" rt=99999999999.0\n',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET / HTTP/1.1" 200 1234567890123456789012 "-" "-"\n',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "\x16\x03\x01" 400 0 "-" "-"\n',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET /' + b"y" * MAX_LINE + b' HTTP/1.1" 200 1 "-" "-"\n']


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``event.ingested`` and a dead-letter's time: the same on both sides."""
    monkeypatch.setattr(pipeline.inputs, "now_iso", lambda: NOW)
    monkeypatch.setattr(parsers, "now_iso", lambda: NOW)


def _input(fmt: str, encoded: bool, parser: LineParser | None = None) -> ShipInput:
    table = {"nginx": "mlflow", "gunicorn": "mlflow", "nginx-json": "mlflow", "uvicorn": "mlflow", "audit": "mlflow",
             "databricks-audit": "databricks", "cloudtrail": "sagemaker"}[fmt]
    if parser is None:
        parser = LineParser(ParseContext(namespace="prod", format=fmt, host_name="host-a", max_line_bytes=MAX_LINE),
                            Router(builtin(table).table))  # caches of its own
    return ShipInput(InputSpec(index=0, paths=("/var/log/x.log",)), parser.parse, parser.dead_letter, f"0:{fmt}",
                     encode=encoded_parts(parser) if encoded else None)


FAST: dict[str, ShipInput] = {}


def _fast(fmt: str) -> ShipInput:
    """One input per format for every example: its caches have seen the earlier examples' lines."""
    if fmt not in FAST:
        FAST[fmt] = _input(fmt, True)
    return FAST[fmt]


def _lines(raws: list[bytes], verify_below: int = 0) -> list[Line]:
    source = FileSource(0, "/var/log/x.log", 7, 8, Identity("ab" * 8, 7, 8), verify_below)
    lines, offset = [], 1000
    for raw in raws:
        too_long = len(raw) if len(raw) > MAX_LINE else 0
        lines.append(Line(source, offset, offset + len(raw), raw[:64] if too_long else raw, too_long))
        offset += len(raw)
    return lines


def _fields(item: Item) -> tuple[Any, ...]:
    """Every field of an item; the dead-letter function as whether there is one (two parsers' own)."""
    return (item.index, item.id, item.body, item.kind, item.raw, item.dead_letter is not None, item.extra,
            item.reason, item.ack, item.verify, item.model, item.call, item.family)


def _ship(shipped: ShipInput, lines: list[Line], enrich: Any = None) -> tuple[list[tuple[Any, ...]], list[int]]:
    missing: list[int] = []
    items = line_items(lines, [shipped], "host-a", MAX_LINE, no_duration=lambda _i, _p, count: missing.append(count),
                       enrich=enrich, agent=AGENT)
    return [_fields(item) for item in items], missing


def _both(fmt: str, raws: list[bytes], verify_below: int = 0, enrich: Any = None) -> None:
    lines = _lines(raws, verify_below)
    got, got_missing = _ship(_fast(fmt), lines, enrich)
    expected, expected_missing = _ship(_input(fmt, False), lines, enrich)
    assert len(got) == len(expected) == len(raws)
    for got_item, expected_item in zip(got, expected, strict=True):
        assert got_item == expected_item
    assert got_missing == expected_missing


@pytest.mark.parametrize("fmt", ["nginx", "gunicorn"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_shipped_access_lines_are_the_documents_built_as_dicts_field_for_field(fmt: str, data: st.DataObject) -> None:
    raws = []
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        tail = data.draw(st.sampled_from(["", ' rt=0.126 uct="0.000" urt="0.125"', " rt=1.5", ' urt="0.1, 0.2"',
                                          " extra", "\r"]))
        size = data.draw(st.one_of(st.just("-"), st.integers(min_value=0, max_value=10**6).map(str)))
        version = data.draw(st.sampled_from(["1.1", "1.0", "2"]))
        ip = data.draw(st.sampled_from(["127.0.0.1", "::1", "-", "host.example"]))
        target = data.draw(st.one_of(st.sampled_from(TARGETS),
                                     st.builds(lambda a, b: f"{a}?{b}", st.sampled_from(TARGETS), word)))
        method = data.draw(st.sampled_from(["GET", "POST", "DELETE"]))
        status = data.draw(st.sampled_from([200, 201, 301, 401, 404, 429, 500, 503]))
        agent = data.draw(st.one_of(st.just("-"), st.just(PROBE_UA), st.just("mlflow-python-client/3.17.2"), word))
        raws.append((f'{ip} - {data.draw(optional) or "-"} [24/Nov/2026:23:55:{data.draw(st.integers(0, 59)):02d} '
                     f'+0100] "{method} {target} HTTP/{version}" {status} {size} "{data.draw(optional) or "-"}" '
                     f'"{agent}"{tail}\n').encode())
        if data.draw(st.booleans()):
            raws.append(data.draw(st.sampled_from(JUNK)))
    _both(fmt, raws, verify_below=data.draw(st.integers(min_value=0, max_value=1000 + sum(map(len, raws)))))


@pytest.mark.parametrize(("fmt", "sample"), [
    ("nginx", "mlflow-nginx/nginx_access.log"), ("gunicorn", "mlflow-nginx/gunicorn_access.log"),
    ("nginx-json", "mlflow-nginx-json/nginx_access.json"), ("uvicorn", "mlflow-uvicorn/server_access.log"),
    ("audit", "audit/canonical.jsonl"), ("databricks-audit", "audit/databricks.jsonl"),
    ("cloudtrail", "audit/cloudtrail.jsonl")])
def test_shipped_sample_logs_are_the_documents_built_as_dicts_field_for_field(fmt: str, sample: str) -> None:
    """Every line of each sample log, read again after a restart from its middle on (looked for)."""
    raws = (SAMPLES / sample).read_bytes().splitlines(keepends=True)
    _both(fmt, raws, verify_below=1000 + sum(map(len, raws)) // 2)


@pytest.mark.parametrize("fmt", ["nginx", "gunicorn"])
def test_usual_access_lines_are_shipped_without_a_dict(fmt: str) -> None:
    """The usual lines of the sample logs take the encoded way: ``parse`` sees none of them."""
    raws = (SAMPLES / "mlflow-nginx" / f"{fmt}_access.log").read_bytes().splitlines(keepends=True)
    parsed: list[bytes] = []
    fast = _input(fmt, True)
    parse = fast.parse
    fast.parse = lambda raw: parsed.append(raw) or parse(raw)  # type: ignore[func-returns-value]
    line_items(_lines(raws), [fast], "host-a", MAX_LINE, agent=AGENT)
    assert len(parsed) <= len(raws) // 50, parsed[:5]


def test_retrievals_are_still_named_by_the_attribution() -> None:
    """With an inventory, a retrieval's document goes by its dict: the attribution adds its model."""
    def enrich(doc: dict[str, Any]) -> None:
        doc["modelregistry"]["model"] = {"name": "churn", "version": "7"}

    raws = (SAMPLES / "mlflow-nginx" / "nginx_access.log").read_bytes().splitlines(keepends=True)
    _both("nginx", raws, enrich=enrich)
    fast = _input("nginx", True)
    items = line_items(_lines(raws), [fast], "host-a", MAX_LINE, enrich=enrich, agent=AGENT)
    retrievals = [item for item in items if item.kind == "retrieval"]
    assert retrievals and all(b'"model":{"name":"churn","version":"7"}' in item.body for item in retrievals)


def test_the_fragments_of_new_queries_stay_bounded_whatever_the_lines() -> None:
    """A model named per line, or a query as long as a line: kept within the caches' bounds."""
    from parsers.document_caches import CACHE_LIMIT

    parser = LineParser(ParseContext(format="nginx"))
    encode = encoded_parts(parser)
    assert encode is not None
    for i in range(CACHE_LIMIT + 10):
        assert encode(f'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET /api/2.0/mlflow/registered-models/get?'
                      f'name=m{i}&seq={i} HTTP/1.1" 200 1 "-" "-"', b"") is not None
    assert encode(f'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET /api/2.0/mlflow/registered-models/get?'
                  f'name={"y" * 300} HTTP/1.1" 200 1 "-" "-"', b"") is not None
    encoded = parser._encoded
    assert encoded is not None
    assert 0 < len(encoded._queried) <= CACHE_LIMIT and 0 < len(encoded._fragments) <= CACHE_LIMIT
    assert not any(len(key[3][0][1]) > 256 for key in encoded._queried)  # a long query is not kept
