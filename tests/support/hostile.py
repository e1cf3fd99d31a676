"""A corpus of hostile lines per format: what an attacker (or a broken client) can put in a log.

Every line here must become exactly one document (an event or a dead-letter) that encodes as
JSON, fits the mapping (strings valid Unicode, integers within ``long``) and is indexed by a real
node: the tests in test_hostile_input.py run parse, encode and index over all of them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from parsers import LineParser
from parsers.events import validate_document
from parsers.values import LONG_MAX, LONG_MIN

# Values that broke, or could break, a stage after the parser.
SURROGATES = ["\ud800", "\udfff", "a\ud800b", "\udc00\ud800"]  # lone surrogates (as JSON escapes)
BIG_INTS = [2**63, 2**64 - 1, 2**64, 99999999999999999999999, -(2**63) - 1, 10**400]
ODD_TEXT = ["<!channel> <https://evil.example|Re-authenticate>", "| a | b |", "\u202eevil\u202c", "x" * 40_000,
            "\x00nul\x00", "\x1b[31mred", "💥" * 100, "e\u0301" * 50, "%ED%A0%80%00%FF"]
HUGE_NUMBERS_TEXT = ["99999999999999999999999", "9223372036854775808", "18446744073709551616", "1e400", "-1",
                     "NaN", "Infinity", "0x10", "١٢٣"]  # the last: Arabic-Indic digits (str.isdigit is True)
BAD_BYTES = [b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00", b"\xf4\x90\x80\x80", b"\r", b"\x85"]


def _json_line(record: dict) -> bytes:
    # ensure_ascii: lone surrogates become \\udXXX escapes, exactly as a JSON log would hold them.
    return json.dumps(record, ensure_ascii=True).encode()


def _nginx(ts: str = "24/Nov/2026:23:55:40 +0000", request: str = "GET /health HTTP/1.1", status: str = "200",
           size: str = "2", ua: str = "curl", tail: str = "") -> bytes:
    return f'127.0.0.1 - - [{ts}] "{request}" {status} {size} "-" "{ua}"{tail}'.encode("utf-8", "surrogatepass")


def nginx() -> list[bytes]:
    lines = [_nginx(size=n) for n in HUGE_NUMBERS_TEXT if n.isdigit()]
    lines += [_nginx(tail=f" rt={n}.0") for n in ("99999999999999999999999", "9223372036", "1")]
    lines += [_nginx(tail=f' rt={n} uct="0.0" urt="{n}"') for n in HUGE_NUMBERS_TEXT]
    lines += [_nginx(ua=text) for text in ODD_TEXT + SURROGATES]
    lines += [_nginx(request=f"GET /api/2.0/mlflow/registered-models/get?name={quote} HTTP/1.1")
              for quote in ("%ED%A0%80", "%00", "%FF%FE", "<!channel>", "x" * 40_000, "%" * 10, "a&name=b")]
    lines += [_nginx(request=f"POST /api/2.0/mlflow/{'x/' * 5000} HTTP/1.1")]
    lines += [_nginx(ts=ts) for ts in ("00/Nov/0000:00:00:00 +0000", "24/Nov/99999:23:55:40 +0000",
                                       "01/Jan/0001:00:00:00 +0100", "31/Dec/9999:23:59:59 -0100",
                                       "24/Nov/2026:23:55:40 +9999", "24/Xyz/2026:23:55:40 +0000")]
    lines += [_nginx() + b for b in BAD_BYTES] + [b + _nginx() for b in BAD_BYTES]
    lines += [b"", b" ", b"\x00" * 100, b"-" * 10, b'"' * 50, b"[" * 5000]
    return lines


def uvicorn() -> list[bytes]:
    base = 'INFO:     127.0.0.1:5 - "GET /api/2.0/mlflow/registered-models/get?name={q} HTTP/1.1" {s} OK'
    lines = [base.format(q=q, s=200).encode("utf-8", "surrogatepass") for q in ("%ED%A0%80", "<!here>", *SURROGATES)]
    lines += [base.format(q="m", s=s).encode() for s in ("000", "999", "99999999999999999999999")]
    lines += [b"2026-13-45 99:99:99,000 " + base.format(q="m", s=200).encode(),
              b"99999-01-01 00:00:00 " + base.format(q="m", s=200).encode(),
              b"0001-01-01 00:00:00+01:00 " + base.format(q="m", s=200).encode()]
    lines += [base.format(q="m", s=200).encode() + b for b in BAD_BYTES]
    return lines


def nginx_json() -> list[bytes]:
    good = {"time_iso8601": "2026-11-25T20:07:06+00:00", "remote_addr": "127.0.0.1",
            "request": "POST /api/2.0/mlflow/registered-models/create HTTP/1.1", "status": 200,
            "body_bytes_sent": 2, "request_time": "0.001", "request_body": '{"name":"m"}'}
    lines = []
    for value in SURROGATES + ODD_TEXT:
        lines.append(_json_line(good | {"request_body": json.dumps({"name": value}, ensure_ascii=True)}))
        lines.append(_json_line(good | {"request_body": json.dumps({"name": "m", "version": value})}))
        lines.append(_json_line(good | {"http_user_agent": value}))
        lines.append(_json_line(good | {"remote_user": value, "remote_addr": value}))
        lines.append(_json_line(good | {"request": f"GET /api/2.0/mlflow/registered-models/get?name={value} HTTP/1.1"}))
    for number in BIG_INTS:
        for key in ("status", "body_bytes_sent", "request_time", "msec"):
            lines.append(f'{{"time_iso8601":"2026-11-25T20:07:06+00:00","request":"GET / HTTP/1.1","status":200,'
                         f'"{key}":{number}}}'.encode())
        lines.append(_json_line(good | {"request_body": f'{{"name":"m","version":{number}}}'}))
    for text in HUGE_NUMBERS_TEXT:
        for key in ("status", "body_bytes_sent", "request_time"):
            lines.append(_json_line(good | {key: text}))
    lines += [b'{"time_iso8601":"2026-11-25T20:07:06+00:00","status":200,"request":"GET / HTTP/1.1","x":NaN}',
              b'{"status":200,"x":1e400,"time_iso8601":"2026-11-25T20:07:06+00:00","request":"GET / HTTP/1.1"}',
              b"[" * 100_000, b'{"a":' * 2000 + b"1" + b"}" * 2000, _json_line(good | {"time_iso8601": 1e300}),
              _json_line(good | {"time_iso8601": -1e18}),
              _json_line(good | {"time_iso8601": "0001-01-01T00:00:00+01:00"}),
              _json_line(good | {"time_iso8601": "9999-12-31T23:59:59-01:00"}),
              _json_line(good | {"request_body": "[" * 10_000}),
              _json_line({"time_iso8601": "\ud800"}), b'{"time_iso8601":"2026-11-25T20:07:06Z","status":200}\xff']
    return lines


def audit() -> list[bytes]:
    good = {"@timestamp": "2026-11-25T20:07:06Z", "entity": "model_version", "action": "created",
            "model": {"name": "m", "version": "1"}}
    lines = []
    for value in SURROGATES + ODD_TEXT:
        lines += [_json_line(good | {"model": {"name": value, "version": value}}),
                  _json_line(good | {"entity": value, "action": value, "user": value, "source_ip": value}),
                  _json_line(good | {"tags": {value: value}, "error_message": value, "outcome": "failure"})]
    for number in BIG_INTS:
        lines += [f'{{"@timestamp":"2026-11-25T20:07:06Z","entity":"e","action":"a","status_code":{number}}}'.encode(),
                  f'{{"@timestamp":{number},"entity":"e","action":"a"}}'.encode(),
                  f'{{"@timestamp":"2026-11-25T20:07:06Z","entity":"e","action":"a","model":{{"version":{number}}}}}'
                  .encode()]
    return lines


def databricks() -> list[bytes]:
    good = {"timestamp": 1795637226412, "serviceName": "modelRegistry", "actionName": "createModelVersion",
            "requestParams": {"name": "m"}, "response": {"statusCode": 200}, "requestId": "r1"}
    lines = []
    for value in SURROGATES + ODD_TEXT:
        lines += [_json_line(good | {"requestParams": {"name": value, "version": value, "catalog_name": value,
                                                       "schema_name": "s"}}),
                  _json_line(good | {"requestParams": json.dumps({"name": value})}),
                  _json_line(good | {"userIdentity": {"email": value}, "sourceIPAddress": value,
                                     "response": {"statusCode": 500, "errorMessage": value}}),
                  _json_line(good | {"serviceName": value, "actionName": value})]
    for number in BIG_INTS:
        lines += [f'{{"timestamp":1795637226412,"serviceName":"modelRegistry","actionName":"createModelVersion",'
                  f'"response":{{"statusCode":{number}}}}}'.encode(),
                  f'{{"timestamp":{number},"serviceName":"modelRegistry","actionName":"x"}}'.encode(),
                  f'{{"timestamp":1,"serviceName":"modelRegistry","actionName":"createModelVersion",'
                  f'"requestParams":{{"name":"m","version":{number}}}}}'.encode()]
    lines += [_json_line(good | {"response": {"statusCode": text}}) for text in HUGE_NUMBERS_TEXT]
    return lines


def cloudtrail() -> list[bytes]:
    good = {"eventTime": "2026-11-25T20:07:06Z", "eventSource": "sagemaker.amazonaws.com",
            "eventName": "CreateModelPackage", "requestParameters": {"modelPackageGroupName": "m"}}
    lines = []
    for value in SURROGATES + ODD_TEXT:
        lines += [_json_line(good | {"requestParameters": {"modelPackageGroupName": value}}),
                  _json_line(good | {"userIdentity": {"arn": value}, "awsRegion": value, "errorCode": value,
                                     "errorMessage": value}),
                  _json_line(good | {"responseElements": {"modelPackageArn": value}})]
    for number in BIG_INTS:
        lines += [f'{{"eventTime":{number},"eventName":"CreateModelPackage"}}'.encode(),
                  f'{{"eventTime":"2026-11-25T20:07:06Z","eventName":"CreateModelPackage","recipientAccountId":'
                  f'{number}}}'.encode()]
    return lines


CORPUS = {"nginx": nginx, "gunicorn": nginx, "uvicorn": uvicorn, "nginx-json": nginx_json, "audit": audit,
          "databricks-audit": databricks, "cloudtrail": cloudtrail}


def corpus(fmt: str) -> list[bytes]:
    return CORPUS[fmt]()


def assert_fits_mapping(value: Any, where: str = "") -> None:
    """Every string encodes as strict UTF-8, every integer fits a long, every float is finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_fits_mapping(key, where)
            assert_fits_mapping(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            assert_fits_mapping(item, where)
    elif isinstance(value, str):
        value.encode("utf-8")  # raises on a lone surrogate
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        assert LONG_MIN <= value <= LONG_MAX, f"{where}={value} does not fit a long"
    elif isinstance(value, float):
        assert math.isfinite(value), f"{where}={value}"
    else:
        raise AssertionError(f"{where}: unexpected {type(value).__name__}")


def check_line(parser: LineParser, line: bytes) -> dict[str, Any]:
    doc, encoded = parser.parse_encoded(line)
    assert doc.get("error", {}).get("type") not in ("parser_bug", "unencodable"), (line[:200], doc["error"])
    validate_document(doc)
    assert_fits_mapping(doc)
    assert orjson.loads(encoded) == doc
    return doc
