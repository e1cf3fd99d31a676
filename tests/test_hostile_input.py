"""Hostile input through every stage: parse, encode, index. No line may stop shipping.

The parser must never fall back on its ``parser_bug`` safety net, and never hand on a value that
cannot be encoded or indexed (a lone surrogate, an integer beyond ``long``): such a line used to
kill the shipper's reader thread, and the restart died on it again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers import FORMATS, LineParser, ParseContext
from parsers.events import kind_of
from pipeline.inputs import ShipInput
from pipeline.shipper import Shipper, ShipperFailed
from regwatch.config import load_config
from regwatch.ship import build_shipper
from support.hostile import BIG_INTS, check_line, corpus
from support.shipping import indexed, write_config
from support.shipping import line as line_of

ALL_FORMATS = sorted(FORMATS)
REGWATCH = [sys.executable, "-m", "regwatch.cli"]


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_hostile_corpus_parses_and_encodes_without_parser_bugs(fmt: str) -> None:
    parser = LineParser(ParseContext(format=fmt))
    docs = [check_line(parser, line) for line in corpus(fmt)]
    assert len(docs) == len(corpus(fmt))
    assert any(kind_of(d) != "deadletter" for d in docs)  # the corpus reaches past the first checks


def test_lone_surrogate_in_a_logged_body_keeps_the_line_an_event() -> None:
    line = json.dumps({"time_iso8601": "2026-11-25T20:07:06+00:00", "status": 200,
                       "request": "POST /api/2.0/mlflow/registered-models/create HTTP/1.1",
                       "request_body": '{"name":"\\ud800"}'}).encode()
    doc = check_line(LineParser(ParseContext(format="nginx-json")), line)
    assert kind_of(doc) == "registration"
    assert "model" not in doc["modelregistry"]  # the body names no model it can say


@pytest.mark.parametrize("fmt,line", [
    ("gunicorn", b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET / HTTP/1.1" 200 99999999999999999999999 "-" "c"'),
    ("nginx", b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET / HTTP/1.1" 200 9 "-" "c" rt=99999999999999999999.0'),
    ("nginx-json", b'{"time_iso8601":"2026-11-25T20:07:06Z","status":200,"request":"GET / HTTP/1.1",'
                   b'"body_bytes_sent":9223372036854775808}'),
    ("databricks-audit", b'{"timestamp":1,"serviceName":"modelRegistry","actionName":"getModelVersion",'
                         b'"response":{"statusCode":99999999999999999999999}}'),
])
def test_numbers_beyond_long_make_a_deadletter_naming_the_field(fmt: str, line: bytes) -> None:
    doc = check_line(LineParser(ParseContext(format=fmt)), line)
    assert kind_of(doc) == "deadletter"
    assert doc["error"]["type"] in ("out_of_range", "wrong_type")
    assert "range" in doc["error"]["message"] or "integer" in doc["error"]["message"]


# Any Unicode, lone surrogates included, and any integer: dropped into every field of a valid record.
hostile_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=30)
hostile_value = st.one_of(hostile_text, st.integers(min_value=-(2**70), max_value=2**70),
                          st.sampled_from(BIG_INTS), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                          st.none(), st.lists(st.integers(), max_size=2), st.dictionaries(hostile_text, hostile_text,
                                                                                          max_size=2))
JSON_RECORDS = {
    "nginx-json": {"time_iso8601": "2026-11-25T20:07:06+00:00", "remote_addr": "127.0.0.1",
                   "request": "POST /api/2.0/mlflow/model-versions/create HTTP/1.1", "status": 200,
                   "body_bytes_sent": 2, "request_time": "0.001", "http_user_agent": "c", "remote_user": "u",
                   "request_body": '{"name":"m","version":"1"}'},
    "audit": {"@timestamp": "2026-11-25T20:07:06Z", "entity": "model_version", "action": "created",
              "model": {"name": "m", "version": "1"}, "user": "u", "status_code": 200, "source_ip": "1.2.3.4"},
    "databricks-audit": {"timestamp": 1795637226412, "serviceName": "modelRegistry", "actionName": "createModelVersion",
                         "requestParams": {"name": "m", "version": "1"}, "response": {"statusCode": 200},
                         "userIdentity": {"email": "a@b"}, "sourceIPAddress": "1.2.3.4", "requestId": "r"},
    "cloudtrail": {"eventTime": "2026-11-25T20:07:06Z", "eventSource": "sagemaker.amazonaws.com",
                   "eventName": "CreateModelPackage", "requestParameters": {"modelPackageGroupName": "m"},
                   "userIdentity": {"arn": "arn:aws:iam::1:user/u"}, "errorCode": None},
}


@pytest.mark.parametrize("fmt", sorted(JSON_RECORDS))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_hostile_values_in_any_json_field(fmt: str, data: st.DataObject) -> None:
    record = json.loads(json.dumps(JSON_RECORDS[fmt]))
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(record)))
        target = record[key]
        if isinstance(target, dict) and target and data.draw(st.booleans()):
            target[data.draw(st.sampled_from(sorted(target)))] = data.draw(hostile_value)
        else:
            record[key] = data.draw(hostile_value)
        if key in ("request_body", "requestParams") and data.draw(st.booleans()):  # JSON inside JSON
            record[key] = json.dumps({"name": data.draw(hostile_text), "version": data.draw(hostile_value)})
    check_line(LineParser(ParseContext(format=fmt)), json.dumps(record, ensure_ascii=True).encode())


@pytest.mark.parametrize("fmt", ["nginx", "gunicorn", "uvicorn"])
@settings(max_examples=300, deadline=None)
@given(ua=hostile_text, query=hostile_text, size=st.integers(0, 2**80), rt=st.floats(0, 1e30),
       status=st.integers(0, 99999))
def test_hostile_values_in_text_access_lines(fmt: str, ua: str, query: str, size: int, rt: float,
                                              status: int) -> None:
    if fmt == "uvicorn":
        text = f'INFO:     127.0.0.1:5 - "GET /api/2.0/mlflow/registered-models/get?name={query} HTTP/1.1" {status} OK'
    else:
        text = (f'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET /api/2.0/mlflow/registered-models/get?name={query} '
                f'HTTP/1.1" {status} {size} "-" "{ua}" rt={rt:f}')
    check_line(LineParser(ParseContext(format=fmt)), text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_parse_command_survives_the_hostile_corpus(fmt: str, tmp_path: Path) -> None:
    source = tmp_path / "hostile.log"
    lines = corpus(fmt)
    source.write_bytes(b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines))
    result = subprocess.run([*REGWATCH, "parse", "-f", fmt, str(source)], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"Traceback" not in result.stderr
    out = result.stdout.splitlines()
    assert len(out) == len(lines)
    for encoded in out:
        doc = orjson.loads(encoded)
        assert doc.get("error", {}).get("type") not in ("parser_bug", "unencodable")
    assert f"lines={len(lines)}" in result.stderr.decode()


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_hostile_corpus_ships_into_elasticsearch_each_line_once(fmt: str, es: Elasticsearch, es_url: str,
                                                                 namespace: str, tmp_path: Path) -> None:
    source = tmp_path / "hostile.log"
    lines = [line.replace(b"\n", b" ") for line in corpus(fmt)]
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(source)])
    raw = load_config(config).model_dump(mode="json")
    raw["inputs"][0]["format"] = fmt
    config.write_text(json.dumps(raw))
    result = subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"lines_read={len(lines)}" in result.stdout
    assert indexed(es, namespace) == len(lines)  # every line: one event or one dead-letter, none refused
    assert "deadletter_rejected" not in result.stderr
    again = subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                           check=True)
    assert "lines_read=0" in again.stdout
    assert indexed(es, namespace) == len(lines)


# -- the shipper itself: a document that cannot be encoded, a reader that dies ------------------


class _Sink:
    """Collects what would be indexed; enough for the reader and writer threads' own behaviour."""

    def __init__(self) -> None:
        from pipeline.metrics import ShipperMetrics
        from pipeline.sink import DeliveryReport

        self.metrics = ShipperMetrics()
        self.items: list = []
        self._report = DeliveryReport

    def deliver(self, items, give_up=None, expected=None):
        self.items.extend(items)
        report = self._report()
        for item in items:
            report.indexed[item.kind] += 1
        return report


def _shipper(tmp_path: Path, parse) -> tuple[Shipper, _Sink]:
    from pipeline.checkpoint import CheckpointStore
    from pipeline.scanner import InputSpec

    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntwo\nthree\n")
    parser = LineParser(ParseContext(format="nginx"))
    sink = _Sink()
    spec = InputSpec(index=0, paths=(str(log),), exclude=(), start_at="beginning")
    return Shipper(sink, [ShipInput(spec=spec, parse=parse, dead_letter=parser.dead_letter)],
                   CheckpointStore(tmp_path / "cp.json")), sink


def test_an_unencodable_document_becomes_a_deadletter_and_shipping_goes_on(tmp_path: Path) -> None:
    parser = LineParser(ParseContext(format="nginx"))

    def parse(raw: bytes) -> dict[str, Any]:
        doc = parser.parse(raw)
        if raw.startswith(b"two"):
            doc["user"] = {"name": "\ud800"}  # what a parser bug would let through
        return doc

    shipper, sink = _shipper(tmp_path, parse)
    summary = shipper.run(once=True)
    assert summary.lines_read == 3
    assert [i.kind for i in sink.items] == ["deadletter"] * 3  # "one", "three": not nginx lines either
    reasons = [orjson.loads(i.body.split(b"\n")[1])["error"]["type"] for i in sink.items]
    assert reasons == ["parse_error", "unencodable", "parse_error"]


def test_a_reader_that_dies_stops_the_shipper_with_an_error_not_a_summary(tmp_path: Path) -> None:
    def parse(raw: bytes) -> dict[str, Any]:
        raise RuntimeError("boom")

    shipper, sink = _shipper(tmp_path, parse)
    with pytest.raises(ShipperFailed, match="reader failed: RuntimeError: boom"):
        shipper.run(once=True)
    assert sink.items == []
    assert all(p.offset == 0 for p in shipper.store.all())  # nothing checkpointed past an unshipped line


def test_a_file_name_that_is_not_utf8_ships_its_lines_and_reports_it(es: Elasticsearch, es_url: str, namespace: str,
                                                                     tmp_path: Path) -> None:
    """A log file named with bytes that are not UTF-8 stopped the shipper: log.file.path could not
    be encoded, not even into a dead letter. Its lines are events now, the name written \\xNN, in
    the documents and in the heartbeat."""
    import os

    from pipeline.heartbeat import shippers

    folder = tmp_path / "logs"
    folder.mkdir()
    name = os.fsencode(folder) + b"/acc\xffess\x7f.log"
    with open(name, "wb") as handle:
        handle.write(b"".join(line_of(i) for i in range(3)) + b"not a log line \xfe\x00\n")
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(folder / "acc*.log")])
    summary = build_shipper(load_config(config)).run(once=True)
    assert summary.events == 3 and sum(summary.deadletters.values()) == 1
    assert indexed(es, namespace) == 4
    hits = es.search(index=f"logs-modelregistry.*-{namespace}", size=10)["hits"]["hits"]
    shown = f"{folder}/acc\\xffess\x7f.log"
    assert {hit["_source"]["log"]["file"]["path"] for hit in hits} == {shown}
    (beat,) = shippers(es, namespace)
    assert [f["path"] for f in beat["files"]] == [shown] and beat["events"] == 3
    for extra in ([], ["--json"]):  # the checkpoint's own status, as a table and as JSON
        status = subprocess.run([sys.executable, "-m", "regwatch.cli", "status", "-c", str(config), *extra],
                                capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
        assert status.returncode == 0 and "acc\\xffess" in status.stdout.replace("\\\\", "\\"), status.stderr


# -- issue 25: impossible durations and bounds in rule files -----------------------------------------

_DURATION_RULES = """rules:
  - {name: a, type: absence, notify: [], window: .inf}
  - {name: b, type: absence, notify: [], window: 1.0e+300}
  - {name: c, type: absence, notify: [], interval: .nan}
  - {name: d, type: absence, notify: [], for: -5}
  - {name: e, type: absence, notify: [], renotify: 99999999999999999999d}
  - {name: f, type: absence, notify: [], aggregation: 400d}
  - {name: g, type: new_term, field: x, notify: [], lookback: .inf}
  - {name: h, type: absence, notify: [], window: 366d, interval: 1s}
  - {name: i, type: absence, notify: [], interval: 500ms}
  - {name: j, type: threshold, notify: [], condition: {op: ">", value: .nan}}
  - {name: k, type: spike, notify: [], factor: .inf}
  - {name: fine, type: absence, notify: [], window: 366d, interval: 6m, for: 0s, renotify: 1h}
"""


def test_impossible_durations_are_refused_at_load_naming_file_rule_and_key(tmp_path: Path) -> None:
    """``window: .inf`` or ``1.0e+300`` passed ``rules validate``; then every cycle failed for all
    rules (no date is that far) and claimed windows were lost."""
    (tmp_path / "r.yaml").write_text(_DURATION_RULES)
    result = subprocess.run([*REGWATCH, "rules", "validate", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "unexpected" not in result.stderr
    path = tmp_path / "r.yaml"
    assert result.stderr.splitlines() == [f"error: {path}: {line}" for line in [
        "rule 'a' window: inf is not a finite duration (use 30s, 5m, 1h, 2d)",
        "rule 'b' window: 1e+300 is more than 366 days",
        "rule 'c' interval: nan is not a finite duration (use 30s, 5m, 1h, 2d)",
        "rule 'd' for: -5 is a negative duration",
        "rule 'e' renotify: '99999999999999999999d' is more than 366 days",
        "rule 'f' aggregation: '400d' is more than 366 days",
        "rule 'g' lookback: inf is not a finite duration (use 30s, 5m, 1h, 2d)",
        "rule 'h' interval: 1s is too short for window 366d: at most 100000 intervals per window",
        "rule 'i' interval: 0.5s: a rule is evaluated at most once a second (interval >= 1s)",
        "rule 'j' condition.value: Input should be a finite number",
        "rule 'k' factor: Input should be a finite number",
    ]], result.stderr


def test_the_runner_refuses_an_infinite_window_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text("rules:\n  - {name: a, type: absence, notify: [], window: .inf}\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"elasticsearch: {{hosts: ['http://127.0.0.1:9']}}\nrules: {{folder: {tmp_path / 'rules'}}}\n")
    result = subprocess.run([*REGWATCH, "rules", "run", "--once", "-c", str(config)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'rules' / 'r.yaml'}: rule 'a' window: inf is not a finite duration "
                      "(use 30s, 5m, 1h, 2d)"], result.stderr


@pytest.mark.parametrize("text,seconds_", [("30s", 30.0), ("5m", 300.0), ("250ms", 0.25), ("366d", 366 * 86400.0),
                                           (0, 0.0), (1.5, 1.5)])
def test_durations_within_bounds(text, seconds_: float) -> None:
    from rules.model import seconds

    assert seconds(text) == seconds_


@pytest.mark.parametrize("text", [float("inf"), float("nan"), -1, 1e300, "367d", "5x", "", "1.5h", True])
def test_durations_out_of_bounds(text) -> None:
    from rules.model import seconds

    with pytest.raises(ValueError):
        seconds(text)


def test_control_codes_in_a_rule_file_key_are_shown_escaped(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text('rules:\n  - {name: q, type: absence, notify: [], "la\\x1b]0;x\\x07bels": {}}\n')
    result = subprocess.run([*REGWATCH, "rules", "validate", str(tmp_path)], capture_output=True, timeout=60)
    assert result.returncode == 1 and b"\x1b" not in result.stderr and b"\x07" not in result.stderr
    assert result.stderr.decode().splitlines() == [
        f"error: {tmp_path / 'r.yaml'}: rule 'q' la\\x1b]0;x\\x07bels: Extra inputs are not permitted"]
