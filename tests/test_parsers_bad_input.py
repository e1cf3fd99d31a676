"""Bad input never raises out of a parser: always one event or one dead-letter with a reason."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import FORMATS, LineParser, ParseContext
from parsers.events import kind_of
from support.hostile import check_line  # parse and encode; fails on a parser_bug
from support.parsing import parse_lines

ALL_FORMATS = sorted(FORMATS)
GOOD_NGINX = b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET /health HTTP/1.1" 200 2 "-" "curl/7.88.1"\n'


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=600))
def test_arbitrary_bytes_give_exactly_one_valid_document(fmt: str, raw: bytes) -> None:
    parser = LineParser(ParseContext(format=fmt, max_line_bytes=512))
    doc = check_line(parser, raw)
    if kind_of(doc) == "deadletter":
        assert doc["error"]["message"]
        assert doc["event"]["original"] is not None


# Lines that look nearly right: mutations of valid lines reach deeper into each parser.
VALID = {
    "nginx": GOOD_NGINX,
    "gunicorn": GOOD_NGINX,
    "uvicorn": b'INFO:     127.0.0.1:5 - "GET /api/2.0/mlflow/registered-models/get?name=m HTTP/1.1" 200 OK',
    "nginx-json": (b'{"time_iso8601":"2026-11-25T20:07:06+00:00","remote_addr":"127.0.0.1",'
                   b'"request":"GET /health HTTP/1.1","status":200,"body_bytes_sent":2,"request_time":0.001,'
                   b'"request_body":""}'),
    "audit": (b'{"@timestamp":"2026-11-25T20:07:06Z","entity":"model_version","action":"created",'
              b'"model":{"name":"m","version":"1"}}'),
    "databricks-audit": (b'{"timestamp":1795637226412,"serviceName":"modelRegistry","actionName":"createModelVersion",'
                         b'"requestParams":{"name":"m"},"response":{"statusCode":200}}'),
    "cloudtrail": (b'{"eventTime":"2026-11-25T20:07:06Z","eventSource":"sagemaker.amazonaws.com",'
                   b'"eventName":"CreateModelPackage","requestParameters":{"modelPackageGroupName":"m"}}'),
}


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_valid_lines_never_raise(fmt: str, data: st.DataObject) -> None:
    line = bytearray(VALID[fmt])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(line) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            line[at] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del line[at:]
            if not line:
                break
        else:
            line[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    check_line(LineParser(ParseContext(format=fmt)), bytes(line))


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_valid_line_of_each_format_is_an_event(fmt: str) -> None:
    (doc,) = parse_lines(fmt, [VALID[fmt]])
    assert kind_of(doc) != "deadletter", doc.get("error")


def test_each_kind_of_bad_line_has_its_reason() -> None:
    docs = parse_lines("nginx-json", [
        b"\xff\xfe\x00garbage\n",
        b'{"time_iso8601": "2026-11-25T20:07:06+00:00", "status": 200, "request": "GET /x HTTP/1.1"',
        b'{"time_iso8601": "2026-11-25T20:07:06+00:00", "status": "two hundred", "request": "GET /x HTTP/1.1"}',
        b"x" * 2000,
        b"\n",
        b"[1, 2]",
    ], max_line_bytes=1024)
    assert [d["error"]["type"] for d in docs] == [
        "invalid_utf8", "invalid_json", "wrong_type", "line_too_long", "empty_line", "invalid_json"]
    assert docs[0]["event"]["original"] == "\\xff\\xfe\x00garbage"
    assert docs[3]["error"]["message"] == "line too long: 2000 bytes > 1024"
    assert all(d["data_stream"]["dataset"] == "modelregistry.deadletter" for d in docs)


def test_huge_line_keeps_a_bounded_raw_excerpt() -> None:
    (doc,) = parse_lines("nginx", [b"a" * (2 * 1024 * 1024)])
    assert doc["error"]["type"] == "line_too_long"
    assert len(doc["event"]["original"]) < 40 * 1024
    assert doc["event"]["original"].endswith("more bytes]")


def test_lines_equal_events_plus_deadletters_on_mixed_input() -> None:
    good = (GOOD_NGINX, b'10.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "POST /api/2.0/mlflow/model-versions/create '
                        b'HTTP/1.1" 200 9 "-" "c"\n')
    bad = (b"\x00\x01binary", b"truncated line [24/Nov", b"z" * 5000,
           b'1.2.3.4 - - [99/Foo/2026:99:99:99 +0000] "GET / HTTP/1.1" 200 1 "-" "-"')
    lines = [good[i % 2] if i % 3 else bad[i % 4] for i in range(600)]
    docs = parse_lines("nginx", lines, max_line_bytes=4096)
    dead = [d for d in docs if kind_of(d) == "deadletter"]
    events = [d for d in docs if kind_of(d) != "deadletter"]
    assert len(docs) == len(lines) == len(dead) + len(events)
    assert len(dead) == sum(1 for i in range(600) if i % 3 == 0)


@pytest.mark.parametrize("status", ["10:", "1٣٣", "9.9"])
def test_a_three_character_status_that_sorts_among_the_codes_is_not_one(status: str) -> None:
    """"10:" sorts between "100" and "999" (":" follows "9") and "1٣٣" is digits, not ASCII: each
    is a status that is no HTTP status, the line a dead-letter saying so (it was a parser bug)."""
    line = orjson.dumps({"time_iso8601": "2026-11-25T20:07:06+00:00", "request": "GET /health HTTP/1.1",
                         "status": status})
    doc = check_line(LineParser(ParseContext(format="nginx-json")), line)
    assert doc["error"] == {"message": f"wrong field type: status={status!r} is not an integer",
                            "type": "wrong_type"}
