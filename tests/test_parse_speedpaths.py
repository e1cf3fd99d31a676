"""The parsers' fast paths give byte for byte the documents of their reference paths (#31).

HTTP access lines of the usual shape are built in one step from cached request signatures
(``parsers.http_documents``), audit records in one step too (``parsers.audit_documents``),
canonical audit records of the schema's own types skip pydantic, and the usual uvicorn line is
read by a pattern without optional parts.
Each test parses generated lines both ways: the fast side is one parser whose caches have seen
every earlier example (a cache that let one line's value into another line's document would
show here), the reference a fresh parser with fresh caches and no fast path.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parsers.formats.audit as audit_format
import parsers.formats.json_access as json_access
from parsers import LineParser, ParseContext
from parsers.routes import Router, builtin

PROBE_UA = "regwatch-probe/1.0"
TARGETS = ["/health", "/", "/api/2.0/mlflow/registered-models/get?name=m", "/api/2.0/mlflow/registered-models/get",
           "/api/2.0/mlflow/model-versions/get?name=m&version=2", "/api/2.0/mlflow/model-versions/create",
           "/api/2.0/mlflow/registered-models/alias?name=m&alias=champion", "/api/2.0/mlflow/runs/get?run_id=1",
           "/ajax-api/2.0/mlflow/registered-models/search?filter=a%20b", "/api/2.0/mlflow/logged-models/m-4b6a",
           "/get-artifact?path=model%2FMLmodel&run_uuid=1", "/api/2.0/mlflow/model-versions/get-download-uri?name=x",
           "/model-versions/get-artifact?path=MLmodel&name=m&version=1", "/x?", "/api/2.0/mlflow/registered-models/"
           "set-tag?name=m&key=k&value=v", "/api/2.0/mlflow-artifacts/artifacts/1/model/MLmodel"]
word = st.text(st.sampled_from("abcXYZ09.-_/:@ %é"), min_size=1, max_size=12)
optional = st.one_of(st.none(), st.just("-"), word)
ip = st.sampled_from(["127.0.0.1", "10.0.0.5", "::1", "2001:db8::1", "-", "host.example", "300.1.1.1"])
status = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503])
target = st.one_of(st.sampled_from(TARGETS), st.builds(lambda a, b: f"{a}?{b}", st.sampled_from(TARGETS), word))
method = st.sampled_from(["GET", "POST", "DELETE", "PATCH", "PUT"])
agent = st.one_of(st.just("-"), st.just(PROBE_UA), st.just("mlflow-python-client/3.17.2"), word)
second = st.integers(min_value=0, max_value=59)


def _encoded(parser: LineParser, line: bytes) -> bytes:
    """The line's document as shipped; never a parser bug's dead letter (code shared by both paths
    that raised would make both sides the same dead letter, and the comparison pass)."""
    encoded = orjson.dumps(parser.parse(line, read_at="2026-11-25T00:00:00.000Z"))
    assert b'"parser_bug"' not in encoded, encoded[:500]
    return encoded


def _reference(fmt: str, **ctx: Any) -> LineParser:
    table = {"nginx": "mlflow", "gunicorn": "mlflow", "uvicorn": "mlflow", "nginx-json": "mlflow", "audit": "mlflow",
             "databricks-audit": "databricks", "cloudtrail": "sagemaker"}
    parser = LineParser(ParseContext(format=fmt, **ctx), Router(builtin(table[fmt]).table))  # caches of its own
    parser.docs = None  # the general path: fields, then events.event_document
    return parser


FAST: dict[tuple[str, bool], LineParser] = {}


def _fast(fmt: str, keep_original: bool) -> LineParser:
    key = (fmt, keep_original)
    if key not in FAST:  # one per format for the whole module: its caches see every example
        FAST[key] = LineParser(ParseContext(format=fmt, keep_original=keep_original, namespace="prod"))
    return FAST[key]


@pytest.mark.parametrize("fmt", ["nginx", "gunicorn"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), keep=st.booleans())
def test_access_lines_built_in_one_step_are_the_reference_documents(fmt: str, data: st.DataObject,
                                                                     keep: bool) -> None:
    tail = data.draw(st.sampled_from(["", ' rt=0.126 uct="0.000" urt="0.125"', " rt=1.5", ' urt="0.1, 0.2"',
                                      ' request_time="0.3"', " extra"]))
    size = data.draw(st.one_of(st.just("-"), st.integers(min_value=0, max_value=10**6).map(str)))
    line = (f'{data.draw(ip)} - {data.draw(optional) or "-"} [24/Nov/2026:23:55:{data.draw(second):02d} +0100] '
            f'"{data.draw(method)} {data.draw(target)} HTTP/1.1" {data.draw(status)} {size} '
            f'"{data.draw(optional) or "-"}" "{data.draw(agent)}"{tail}').encode()
    assert _encoded(_fast(fmt, keep), line) == _encoded(_reference(fmt, keep_original=keep, namespace="prod"), line)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), keep=st.booleans())
def test_uvicorn_lines_built_in_one_step_are_the_reference_documents(data: st.DataObject, keep: bool) -> None:
    prefix = data.draw(st.sampled_from(["", "2026-11-25 20:07:06,123 INFO uvicorn.access: ",
                                        "2026-11-25T20:07:06Z [1] [INFO] ", "2026/11/25 21:09:23 INFO:     "]))
    client = data.draw(st.sampled_from(["127.0.0.1:5", "[::1]:40001", "-", "host:1", "10.0.0.1"]))
    line = (f'{prefix}{client} - "{data.draw(method)} {data.draw(target)} HTTP/1.1" {data.draw(status)} OK').encode()
    assert _encoded(_fast("uvicorn", keep), line) == _encoded(_reference("uvicorn", keep_original=keep,
                                                                          namespace="prod"), line)


json_value = st.one_of(st.none(), st.just(""), st.just("-"), word, st.integers(min_value=-5, max_value=10**6),
                       st.booleans(), st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), keep=st.booleans())
def test_nginx_json_lines_built_in_one_step_are_the_reference_documents(data: st.DataObject, keep: bool) -> None:
    record: dict[str, Any] = {"time_iso8601": f"2026-11-25T20:07:{data.draw(second):02d}+00:00",
                              "status": data.draw(st.one_of(status, status.map(str)))}
    if data.draw(st.booleans()):
        record["request"] = f"{data.draw(method)} {data.draw(target)} HTTP/1.1"
    else:
        record["request_method"] = data.draw(st.one_of(method, method.map(str.lower), json_value))
        record["request_uri"] = data.draw(st.one_of(target, json_value))
        record["args"] = data.draw(st.one_of(json_value, st.just("name=m")))
    for key in ("remote_addr", "remote_user", "http_user_agent", "http_referer", "body_bytes_sent", "request_time",
                "upstream_response_time", "request_body"):
        if data.draw(st.booleans()):
            record[key] = data.draw(st.one_of(json_value, ip, agent, st.just('{"name": "m", "version": "3"}')))
    line = json.dumps(record).encode()
    assert _encoded(_fast("nginx-json", keep), line) == _encoded(_reference("nginx-json", keep_original=keep,
                                                                             namespace="prod"), line)


@settings(max_examples=400, deadline=None)
@given(record=st.fixed_dictionaries(
    {"@timestamp": st.one_of(st.just("2026-11-25T20:07:06Z"), st.integers(min_value=0, max_value=2**64),
                             st.floats(min_value=0, max_value=2e12), json_value),
     "entity": st.one_of(st.just("model_version"), st.just(""), json_value),
     "action": st.one_of(st.just("created"), json_value)},
    optional={key: json_value for key in ("platform", "delivery_id", "user", "user_email", "source_ip", "user_agent",
                                         "workspace", "error_code", "error_message", "status_code", "outcome")}
    | {"model": st.one_of(json_value, st.dictionaries(st.sampled_from(["name", "version", "alias", "stage", "x"]),
                                                      json_value, max_size=4)),
       "tags": st.one_of(json_value, st.dictionaries(word, st.one_of(word, json_value), max_size=2))}))
def test_canonical_records_of_the_schemas_types_skip_pydantic_with_the_same_document(
        record: dict[str, Any]) -> None:
    line = json.dumps(record).encode()
    fast = _encoded(_fast("audit", False), line)
    real = audit_format._canonical_fast
    audit_format._canonical_fast = lambda raw: None  # every record through CanonicalAudit
    try:
        reference = _encoded(_reference("audit", namespace="prod"), line)
    finally:
        audit_format._canonical_fast = real
    assert fast == reference


identity = st.one_of(json_value, st.fixed_dictionaries({}, optional={
    "email": st.one_of(json_value, st.just("alice@example.com")), "userName": json_value,
    "arn": st.one_of(json_value, st.just("arn:aws:iam::1:user/bob"))}))
params = st.one_of(json_value, st.just('{"name": "m"}'), st.dictionaries(
    st.sampled_from(["name", "version", "stage", "catalog_name", "schema_name", "full_name_arg",
                     "modelPackageGroupName", "modelPackageArn", "key", "value", "x"]),
    st.one_of(json_value, st.just("arn:aws:sagemaker:eu-west-1:1:model-package/fraud/3"), st.just("a.b")), max_size=4))

nginx_json_key = st.sampled_from([key for keys in json_access.DEFAULT_KEYS.values() for key in keys] + ["extra", ""])
hostile_value = st.one_of(json_value, st.text(max_size=8), st.just("\x00\u2028\u00e9\U0001f600"),
                          st.just("x" * 70_000), st.lists(st.integers(min_value=-9, max_value=9), max_size=2),
                          st.dictionaries(st.text(max_size=3), st.integers(min_value=-9, max_value=9), max_size=2),
                          st.just(1.2e21))


@settings(max_examples=600, deadline=None)
@given(record=st.dictionaries(nginx_json_key, hostile_value, max_size=16), mapped=st.booleans())
def test_nginx_json_records_read_in_c_give_the_values_of_the_field_loop(record: dict[str, Any],
                                                                         mapped: bool) -> None:
    """The one-call reader of a shape's fields (``json_access._read``) and the loop over each
    field's usual keys (``_values``) read the same values from any record: keys missing, extra or
    several for one field, values "" or "-", of any type, unicode, control characters, 70 KB. The
    one-step documents are compared with a reference that reads through ``_read`` too, so this is
    the check of the reader itself."""
    record = orjson.loads(orjson.dumps(record))  # as a line is read (orjson's strings and numbers)
    ctx = ParseContext(format="nginx-json", field_map={"ua": "extra"} if mapped else {})
    expected = json_access._values(record, json_access._steps(record, ctx.field_map, ctx))
    assert list(json_access._read(record, ctx)) == expected
    assert list(json_access._read(record, ctx)) == expected  # the shape's reader, now kept


databricks_key = st.sampled_from([key for keys in audit_format._DATABRICKS_KEYS for key in keys] + ["extra", ""])


@settings(max_examples=600, deadline=None)
@given(record=st.dictionaries(databricks_key, st.one_of(st.none(), hostile_value), max_size=16))
def test_databricks_records_read_in_one_call_give_each_fields_first_value(record: dict[str, Any]) -> None:
    """Each field of a Databricks record is the value of its first key with one (not None), whatever
    the shape: keys missing anywhere, several for one field, extra, values of any type; read the
    first time (the shape's plan made) and again (the plan kept). The reference path reads through
    the same plans, so this is the check of the plans themselves."""
    record = orjson.loads(orjson.dumps(record))
    expected = [next((record[key] for key in keys if record.get(key) is not None), None)
                for keys in audit_format._DATABRICKS_KEYS]
    assert list(audit_format._databricks_values(record)) == expected
    assert list(audit_format._databricks_values(record)) == expected


def test_the_readers_of_nginx_json_shapes_stay_bounded_whatever_the_keys() -> None:
    parser = LineParser(ParseContext(format="nginx-json"))
    for i in range(json_access._PLAN_LIMIT + 50):
        parser.parse(orjson.dumps({"time_iso8601": "2026-11-25T20:06:27+00:00", "status": 200,
                                   "request": "GET /health HTTP/1.1", f"extra{i}": 1}))
    assert 0 < len(json_access._readers) <= json_access._PLAN_LIMIT



AUDIT_RECORDS = {
    "databricks-audit": st.fixed_dictionaries(
        {"serviceName": st.one_of(st.just("mlflowModelRegistry"), st.just("modelRegistry"), json_value),
         "actionName": st.one_of(st.just("createRegisteredModel"), st.just("getModelVersion"), st.just("oddAction"),
                                 json_value),
         "timestamp": st.one_of(st.just(1795637226412), st.just("2026-11-25T20:07:06Z"), json_value)},
        optional={"requestParams": params, "response": st.one_of(json_value, st.fixed_dictionaries({}, optional={
            "statusCode": st.one_of(status, json_value), "errorMessage": json_value})), "userIdentity": identity,
            "sourceIPAddress": st.one_of(ip, json_value), "userAgent": st.one_of(agent, json_value),
            "workspaceId": json_value, "requestId": json_value, "event_id": json_value}),
    "cloudtrail": st.fixed_dictionaries(
        {"eventName": st.one_of(st.just("CreateModelPackage"), st.just("DescribeModelPackage"), st.just("OddCall"),
                                json_value),
         "eventTime": st.one_of(st.just("2026-11-25T20:07:06Z"), json_value)},
        optional={"eventSource": st.one_of(st.just("sagemaker.amazonaws.com"), json_value),
                  "requestParameters": params, "responseElements": params, "userIdentity": identity,
                  "sourceIPAddress": st.one_of(ip, json_value), "userAgent": st.one_of(agent, json_value),
                  "eventID": json_value, "awsRegion": json_value, "recipientAccountId": json_value,
                  "errorCode": st.one_of(st.just("AccessDenied"), json_value), "errorMessage": json_value}),
}


@pytest.mark.parametrize("fmt", ["databricks-audit", "cloudtrail"])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), keep=st.booleans())
def test_audit_records_built_in_one_step_are_the_reference_documents(fmt: str, data: st.DataObject,
                                                                      keep: bool) -> None:
    line = json.dumps(data.draw(AUDIT_RECORDS[fmt])).encode()
    assert _encoded(_fast(fmt, keep), line) == _encoded(_reference(fmt, keep_original=keep, namespace="prod"), line)


uvicorn_part = st.sampled_from([" ", "  ", "\t", " - ", ' - "', '"', "\\", "[", "]", "[1]", "[INFO]", "INFO",
                                "INFO:", "uvicorn.access:", "2026-11-25 20:07:06", "2026-11-25T20:07:06.5+01:00",
                                ",123", "Z",
                                "127.0.0.1:5", "[::1]:4", "-", "GET /x HTTP/1.1", "200", "OK", "x", "\u00a0"])


@settings(max_examples=1000, deadline=None)
@given(parts=st.lists(uvicorn_part, max_size=14), usual=st.booleans())
def test_the_usual_uvicorn_pattern_reads_what_the_full_one_reads(parts: list[str], usual: bool) -> None:
    """Wherever the usual-line pattern is taken (one ' - "' in the line), its groups are the full
    pattern's: a time of the same extent, the same client, request and status."""
    from parsers.formats.access import _UVICORN, _UVICORN_USUAL

    text = "".join(parts)
    if usual:  # around a line of the usual shape, so that both patterns match often
        text = (f'2026-11-25 20:07:06,123 {"".join(parts[:3])}127.0.0.1:5 - "GET /x{"".join(parts[3:6])} HTTP/1.1" '
                '200 OK')
    if text.count(' - "') != 1:
        return
    usual_match = _UVICORN_USUAL.fullmatch(text)
    if usual_match is not None:
        full = _UVICORN.fullmatch(text)
        assert full is not None and full.groups() == usual_match.groups(), text


@pytest.mark.parametrize("args", [True, 0, 7, 1.5, "", "name=m", None, {"a": 1}])
@pytest.mark.parametrize("uri", ["/api/2.0/mlflow/registered-models/get", "/api/2.0/mlflow/registered-models/get?x=1"])
def test_nginx_json_method_and_uri_with_args_of_any_type_are_the_reference_documents(args: Any, uri: str) -> None:
    line = json.dumps({"time_iso8601": "2026-11-25T20:07:06+00:00", "status": 200, "request_method": "get",
                       "request_uri": uri, "args": args}).encode()
    assert _encoded(_fast("nginx-json", False), line) == _encoded(_reference("nginx-json", namespace="prod"), line)


def test_the_caches_of_the_fast_path_stay_bounded_whatever_the_lines() -> None:
    from parsers.http_documents import CACHE_LIMIT, VALUE_CACHE_LENGTH

    parser = LineParser(ParseContext(format="nginx"))
    long_agent = "x" * (VALUE_CACHE_LENGTH + 1)
    for i in range(CACHE_LIMIT + 10):
        line = (f'10.0.{i // 250 % 250}.{i % 250} - - [24/Nov/2026:23:55:28 +0000] "GET /api/2.0/mlflow/registered-'
                f'models/get?name=m{i} HTTP/1.1" 200 1 "-" "agent {i}"').encode()
        parser.parse(line)
    parser.parse(f'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET /{"y" * 300} HTTP/1.1" 200 1 "-" "{long_agent}"'
                 .encode())
    from parsers.http_documents import HttpDocuments

    docs = parser.docs
    assert isinstance(docs, HttpDocuments)
    assert 0 < len(docs._signatures) <= CACHE_LIMIT
    assert 0 < len(docs._agents) <= CACHE_LIMIT and long_agent not in docs._agents
    assert 0 < len(docs._sources) <= CACHE_LIMIT
    assert not any(len(key[1]) > 256 for key in docs._signatures)  # long targets are not kept


def test_the_caches_of_encoded_blocks_stay_bounded_whatever_the_lines() -> None:
    from parsers.http_documents import CACHE_LIMIT, VALUE_CACHE_LENGTH

    parser = LineParser(ParseContext(format="nginx"))
    long_agent = "x" * (VALUE_CACHE_LENGTH + 1)
    lines = [(f'10.0.{i // 250 % 250}.{i % 250} - - [24/Nov/2026:23:55:28 +0000] "GET /api/2.0/mlflow/registered-'
              f'models/get?name=m{i} HTTP/1.{i}" 200 1 "-" "agent {i}"').encode() for i in range(CACHE_LIMIT + 10)]
    lines.append(f'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET /{"y" * 300} HTTP/1.1" 200 1 "-" "{long_agent}"'
                 .encode())
    counts: dict[str, int] = {}
    parser.encode_block(lines, counts)
    assert sum(counts.values()) == len(lines) and "modelregistry.deadletter" not in counts
    encoded = parser._encoded
    assert encoded is not None
    assert 0 < len(encoded._fragments) <= CACHE_LIMIT
    assert not any(len(key[1]) > 256 for key in encoded._fragments)  # long targets are not kept
    assert 0 < len(encoded._agents) <= CACHE_LIMIT and long_agent not in encoded._agents
    assert 0 < len(encoded._sources) <= CACHE_LIMIT
    assert 0 < len(encoded._versions) <= CACHE_LIMIT


JUNK = [b"", b"\n", b"   \r\n", b"\xff\xfe not utf-8", b"GET / HTTP/1.1", b'{"not": "nginx"}',
        b'1.2.3.4 - - [99/Nov/2026:23:55:28 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET / HTTP/1.1" 099 1 "-" "-"',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET / HTTP/1.1" 200 1234567890123456789012 "-" "-"',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET / HTTP/1.1" 200 1 "-" "-" rt=99999999999.0',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET / HTTP/1.1" 200 1 "a \\"q\\" b" "ua \\"x\\""',
        b'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "\x16\x03\x01" 400 0 "-" "-"',
        "1.2.3.4 - bob [24/Nov/2026:23:55:28 +0000] \"GET /\u00e9\u2028 HTTP/1.1\" 200 1 \"\u0000\" \"\u00e9\""
        .encode()]


@pytest.mark.parametrize("fmt", ["nginx", "gunicorn"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_encoded_blocks_are_the_documents_of_parse_encoded_byte_for_byte(fmt: str, data: st.DataObject,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``regwatch parse``'s blocks (``LineParser.encode_block``: the usual lines encoded without
    their dicts) are the JSON lines ``parse_encoded`` gives, line by line, with the same counts."""
    import parsers

    monkeypatch.setattr(parsers, "now_iso", lambda: "2026-11-25T00:00:00.000Z")  # dead letters' time
    lines = []
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        tail = data.draw(st.sampled_from(["", ' rt=0.126 uct="0.000" urt="0.125"', " rt=1.5", ' urt="0.1, 0.2"',
                                          ' request_time="0.3"', " extra", "\r"]))
        size = data.draw(st.one_of(st.just("-"), st.integers(min_value=0, max_value=10**6).map(str)))
        version = data.draw(st.sampled_from(["1.1", "1.0", "2", "2.0"]))
        lines.append((f'{data.draw(ip)} - {data.draw(optional) or "-"} [24/Nov/2026:23:55:{data.draw(second):02d} '
                      f'+0100] "{data.draw(method)} {data.draw(target)} HTTP/{version}" {data.draw(status)} {size} '
                      f'"{data.draw(optional) or "-"}" "{data.draw(agent)}"{tail}\n').encode())
        if data.draw(st.booleans()):
            lines.append(data.draw(st.sampled_from(JUNK)))
    reference = _reference(fmt, namespace="prod")
    expected_counts: dict[str, int] = {}
    expected = []
    for line in lines:
        doc, encoded = reference.parse_encoded(line)
        assert b'"parser_bug"' not in encoded, encoded[:500]
        expected.append(encoded)
        dataset = doc["data_stream"]["dataset"]
        expected_counts[dataset] = expected_counts.get(dataset, 0) + 1
    counts: dict[str, int] = {}
    got = _fast(fmt, False).encode_block(lines, counts)
    assert got.splitlines(keepends=True) == expected
    assert counts == expected_counts


def _hostile_lines(kind: str, i: int, size: int) -> bytes:
    """A line whose one odd part (a method, an entity, a record's keys, a platform, an agent and
    address, a request line, an event name) is ``size`` long and new. ``kind``: the format, or the
    format and which part is odd."""
    odd = "".join(chr(65 + int(digit)) for digit in f"{i:06d}") + "Q" * size  # letters: a method too
    if kind == "nginx":
        return f'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "{odd} /x HTTP/1.1" 200 1 "-" "-"'.encode()
    if kind == "nginx/path":  # an API call of no known route: its action made from its path
        return f'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET /api/2.0/mlflow/{odd} HTTP/1.1" 200 1 "-" "-"'.encode()
    if kind == "nginx/agent":  # an agent and an address (encode_block keeps their fragments)
        return f'{odd.lower()} - - [24/Nov/2026:23:55:28 +0000] "GET /x HTTP/1.1" 200 1 "-" "{odd}"'.encode()
    if kind == "nginx/version":  # an HTTP version (encode_block keeps its fragment)
        return f'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000] "GET /x HTTP/1.{i}{"1" * size}" 200 1 "-" "-"'.encode()
    if kind == "nginx/time":  # a time the parser reads, with a long tail after its zone
        return f'1.2.3.4 - - [24/Nov/2026:23:55:28 +0000 {odd}] "GET /x HTTP/1.1" 200 1 "-" "-"'.encode()
    if kind == "nginx-json/time":  # an ISO time padded with spaces
        return orjson.dumps({"time_iso8601": "2026-11-25T20:06:27+00:00" + " " * (size + i),
                             "request": "GET /health HTTP/1.1", "status": 200})
    if kind == "uvicorn":  # no time prefix: the general path and its request cache
        return f'127.0.0.1:1 - "{odd} /health HTTP/1.1" 200 OK'.encode()
    if kind.startswith("audit"):
        record = {"@timestamp": "2026-11-25T20:07:06.250Z", "platform": "mlflow", "entity": odd, "action": "created",
                  "delivery_id": f"d-{i}", "model": {"name": "m"}}
        if kind == "audit/platform":  # the record's own platform: service.name of its common fields
            record.update(entity="model_version", platform=odd)
        elif kind == "audit/agent":
            record.update(entity="model_version", user_agent=odd, source_ip=odd.lower())
        return orjson.dumps(record)
    if kind == "cloudtrail":
        return orjson.dumps({"eventTime": "2026-11-25T20:07:06Z", "eventSource": "sagemaker.amazonaws.com",
                             "eventName": odd, "eventID": f"e-{i}", "userAgent": "Boto3/1.35.0"})
    if kind == "nginx-json/request":
        return orjson.dumps({"time_iso8601": "2026-11-25T20:06:27+00:00", "remote_addr": "127.0.0.1",
                             "request": f"GET /{odd} HTTP/1.1", "status": 200})
    extra = {f"k{i}_{n}_{'z' * 20}": n for n in range(size // 30)}
    if kind == "nginx-json":
        return orjson.dumps({"time_iso8601": "2026-11-25T20:06:27+00:00", "remote_addr": "127.0.0.1",
                             "request": "GET /health HTTP/1.1", "status": 200, **extra})
    if kind == "databricks-audit/action":
        return orjson.dumps({"timestamp": 1795637226412, "serviceName": "mlflowModelRegistry", "actionName": odd,
                             "requestParams": {"name": "m"}, "response": {"statusCode": 200}})
    return orjson.dumps({"timestamp": 1795637226412, "serviceName": "mlflowModelRegistry",
                         "actionName": "getRegisteredModel", "requestParams": {"name": "m"},
                         "response": {"statusCode": 200}, **extra})


@pytest.mark.parametrize("kind", ["nginx", "nginx/path", "nginx/agent", "nginx/version", "nginx/time",
                                  "nginx-json/time", "uvicorn", "audit",
                                  "audit/platform", "audit/agent", "nginx-json", "nginx-json/request",
                                  "databricks-audit", "databricks-audit/action", "cloudtrail"])
def test_hostile_lines_keep_nothing_of_their_size_in_any_cache(kind: str) -> None:
    """Each new, oversized method, audit entity or action, key set, platform, agent or request
    line would be kept by a cache keyed on it (hundreds of MB from a few hundred 1 MB lines); what
    the parser holds after 40 lines of 50 KB each stays far below what they weigh (2 MB)."""
    import gc
    import tracemalloc

    fmt = kind.partition("/")[0]
    parser = LineParser(ParseContext(format=fmt))
    parser.parse(_hostile_lines(kind, 0, 10))  # the ordinary caches warmed by a small one
    parser.encode_block([_hostile_lines(kind, 0, 10)], {})
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        counts: dict[str, int] = {}
        for i in range(1, 41):
            line = _hostile_lines(kind, i, 50_000)
            assert parser.parse(line)["event"]["kind"] == "event"  # not a dead letter
            parser.encode_block([line + b"\n"], counts)  # regwatch parse's way (parsers.encoded_access)
        del line  # (the test's own last line is not what the parser keeps)
        assert "modelregistry.deadletter" not in counts
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 500_000, f"{kind}: {kept} bytes kept after 40 lines of 50 KB"
