"""The shipper against a real Elasticsearch and real files: counts reconcile, replays dedupe."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from elasticsearch import ConnectionTimeout, Elasticsearch

from pipeline.checkpoint import CheckpointStore
from pipeline.docid import document_id
from pipeline.identity import Identity
from pipeline.metrics import ShipperMetrics
from pipeline.sink import BulkSink, make_item
from regwatch.config import ConfigError, load_config
from regwatch.ship import build_shipper
from support.shipping import indexed, line, seq_counts, wait_for, write_config

REGWATCH = [sys.executable, "-m", "regwatch.cli"]




def test_once_reconciles_garbage_long_lines_and_unknown_routes(es: Elasticsearch, es_url: str, namespace: str,
                                                                tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    good = [line(i) for i in range(300)]
    unknown = [line(1000 + i, path="/api/2.0/mlflow/experiments/unknown-thing") for i in range(50)]
    odd = [b'127.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "PROPFIND /whatever HTTP/1.1" 405 0 "-" "x"\n'] * 10
    garbage = [b"\x00\x01\x02 binary\n", b"not a log line at all\n", b'{"json": "in the wrong file"}\n'] * 10
    long_lines = [b"L" * 3000 + b"\n"] * 5
    mixed = good + unknown + odd + garbage + long_lines
    import random

    random.Random(7).shuffle(mixed)
    log.write_bytes(b"".join(mixed))
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)], max_line_bytes=2048)
    result = subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                            check=True)
    summary = result.stdout.strip()
    assert f"lines_read={len(mixed)}" in summary
    assert "deadletters=35" in summary
    assert indexed(es, namespace) == len(mixed)  # lines read = events indexed + dead-letters
    assert indexed(es, namespace, "deadletter") == 35
    assert indexed(es, namespace, "error") == 10  # PROPFIND 405
    assert indexed(es, namespace, "access") == 50
    reasons = es.search(index=f"logs-modelregistry.deadletter-{namespace}", size=0,
                        aggs={"r": {"terms": {"field": "error.type"}}})["aggregations"]["r"]["buckets"]
    by_reason = {b["key"]: b["doc_count"] for b in reasons}
    assert by_reason["line_too_long"] == 5
    assert sum(by_reason.values()) == 35
    hit = es.search(index=f"logs-modelregistry.deadletter-{namespace}", size=1,
                    query={"term": {"error.type": "line_too_long"}})["hits"]["hits"][0]["_source"]
    assert hit["event"]["original"].startswith("LLLL")
    assert hit["error"]["message"] == "line too long: 3001 bytes > 2048"
    assert hit["log"]["file"]["path"] == str(log)
    # A second run reads nothing; a run without checkpoints replays everything as duplicates.
    again = subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True, check=True)
    assert "lines_read=0" in again.stdout
    (tmp_path / "checkpoints.json").unlink()
    replay = subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                            check=True)
    assert f"duplicates_skipped={len(mixed)}" in replay.stdout
    assert indexed(es, namespace) == len(mixed)


def test_document_fields_from_the_shipper(es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(line(1) + line(2))
    config = load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)], host_name="reg-host"))
    summary = build_shipper(config).run(once=True)
    assert summary.events == 2
    es.indices.refresh(index=f"logs-modelregistry.retrieval-{namespace}")
    hits = es.search(index=f"logs-modelregistry.retrieval-{namespace}", sort=[{"log.offset": "asc"}])["hits"]["hits"]
    first, second = (h["_source"] for h in hits)
    assert first["log"]["offset"] == 0 and second["log"]["offset"] == len(line(1))
    assert first["log"]["file"]["path"] == str(log)
    assert first["host"] == {"name": "reg-host"}
    assert first["modelregistry"]["model"] == {"name": "m1"}
    assert hits[0]["_index"].startswith(f".ds-logs-modelregistry.retrieval-{namespace}-")
    identity = Identity(first["log"]["file"]["fingerprint"].split(":")[0], int(first["log"]["file"]["device_id"]),
                        int(first["log"]["file"]["inode"]))
    assert [h["_id"] for h in hits] == [document_id(identity, 0, "reg-host"),
                                        document_id(identity, len(line(1)), "reg-host")]


def test_progress_given_at_construction_is_told_the_bytes_of_every_line_read(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(line(1) + line(2) + line(3))
    config = load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)]))
    told: list[int] = []
    assert build_shipper(config, progress=told.append).run(once=True).lines_read == 3
    assert told == [len(line(1)), len(line(2)), len(line(3))]


def test_document_ids_are_stable_distinct_and_share_a_prefix_per_file() -> None:
    first, other = Identity("a" * 32, 64768, 12), Identity("a" * 32, 64768, 13)
    ids = [document_id(first, offset) for offset in range(0, 200_000, 7)]
    assert len(set(ids)) == len(ids)  # distinct offsets, distinct ids
    assert ids == [document_id(Identity("a" * 32, 64768, 12), offset) for offset in range(0, 200_000, 7)]
    assert len({i[:20] for i in ids}) == 1 and document_id(other, 0)[:20] != ids[0][:20]
    assert document_id(Identity("a" * 32, 64768, 12, generation=1), 0) != ids[0]  # truncated: new ids
    # The same content at the same device and inode on two hosts (two containers of one image):
    # two documents, never one id for both.
    assert document_id(first, 0, "registry-a") != document_id(first, 0, "registry-b")
    assert document_id(first, 0, "registry-a") == document_id(first, 0, "registry-a")
    assert all(len(i) <= 512 and i.replace("-", "").replace("_", "").isalnum() for i in ids)


def test_partial_last_line_waits_for_its_newline(es: Elasticsearch, es_url: str, namespace: str,
                                                 tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    whole = line(5)
    log.write_bytes(line(4) + whole[:40])
    config = load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)]))
    assert build_shipper(config).run(once=True).lines_read == 1
    with log.open("ab") as handle:
        handle.write(whole[40:])
    assert build_shipper(config).run(once=True).lines_read == 1
    assert sorted(seq_counts(es, namespace)) == [4, 5]


def test_mapping_rejection_becomes_a_deadletter_with_the_reason(es: Elasticsearch, namespace: str) -> None:
    from parsers import LineParser, ParseContext

    parser = LineParser(ParseContext(namespace=namespace, format="nginx"))
    doc = parser.parse(line(9))
    doc["http"]["response"]["status_code"] = "not-a-number"  # will never map to a long
    report = BulkSink(es, ShipperMetrics()).deliver(
        [make_item(doc, "bad-1", line(9), dead_letter=parser.dead_letter)])
    assert report.complete and report.deadletters == {"index_rejected": 1}
    es.indices.refresh(index=f"logs-modelregistry.deadletter-{namespace}")
    (hit,) = es.search(index=f"logs-modelregistry.deadletter-{namespace}",
                       query={"ids": {"values": ["bad-1"]}})["hits"]["hits"]  # same deterministic id
    assert hit["_source"]["event"]["original"] == line(9).decode().rstrip("\n")
    assert "rejected by Elasticsearch" in hit["_source"]["error"]["message"]
    assert "status_code" in hit["_source"]["error"]["message"]


def test_a_shipped_line_rejected_by_the_mapping_keeps_its_file_offset_and_agent(es: Elasticsearch,
                                                                                namespace: str) -> None:
    """The shipper's items name the fields a replacement dead-letter keeps instead of carrying a
    copy of them per line (#31): they are taken from the document as it was sent."""
    from parsers import LineParser, ParseContext
    from pipeline.inputs import ShipInput, line_items
    from pipeline.reader import FileSource, Line
    from pipeline.scanner import InputSpec

    parser = LineParser(ParseContext(namespace=namespace, format="nginx"))

    def parse(raw: bytes) -> dict:
        doc = parser.parse(raw)
        doc["http"]["response"]["status_code"] = "not-a-number"  # will never map to a long
        return doc

    source = FileSource(0, "/var/log/nginx/access.log", 7, 8, Identity("ab" * 8, 7, 8))
    shipped = ShipInput(InputSpec(index=0, paths=(source.path,)), parse, parser.dead_letter, "0:nginx")
    (item,) = line_items([Line(source, 4096, 4096 + len(line(9)), line(9))], [shipped], "host-a", 1 << 20,
                         agent={"type": "regwatch", "version": "1", "id": "shipper-a", "name": "host-a"})
    report = BulkSink(es, ShipperMetrics()).deliver([item])
    assert report.complete and report.deadletters == {"index_rejected": 1}
    es.indices.refresh(index=f"logs-modelregistry.deadletter-{namespace}")
    (hit,) = es.search(index=f"logs-modelregistry.deadletter-{namespace}",
                       query={"ids": {"values": [item.id]}})["hits"]["hits"]
    assert hit["_source"]["log"] == {"offset": 4096, "file": {
        "path": "/var/log/nginx/access.log", "device_id": "7", "inode": "8", "fingerprint": source.identity.key}}
    assert hit["_source"]["agent"] == {"type": "regwatch", "version": "1", "id": "shipper-a", "name": "host-a"}
    assert hit["_source"]["error"]["type"] == "index_rejected"


def test_replayed_lines_indexed_before_a_rollover_are_not_indexed_again(es: Elasticsearch, namespace: str) -> None:
    from parsers import LineParser, ParseContext

    parser = LineParser(ParseContext(namespace=namespace, format="nginx"))
    sink = BulkSink(es, ShipperMetrics())

    def items(verify: bool) -> list:
        batch = []
        for i in range(30):
            doc = parser.parse(line(i))
            doc["log"] = {"file": {"fingerprint": "fp:1:2:0"}, "offset": i}  # the shipper's fields
            batch.append(make_item(doc, f"replay-{i}", line(i)))
            if verify:  # read again below the saved "sent" mark (here: all of them)
                batch[-1].verify = ("fp:1:2:0", 10_000, i, f"legacy-{i}")
        return batch

    stream = f"logs-modelregistry.retrieval-{namespace}"
    assert sink.deliver(items(False)[:20]).indexed == {"retrieval": 20}
    assert es.indices.rollover(alias=stream)["rolled_over"]  # as the lifecycle does every 30 days
    report = sink.deliver(items(True))  # a restart reads the same lines again
    assert report.duplicates == 20 and report.indexed == {"retrieval": 10}
    assert indexed(es, namespace) == 30 and set(seq_counts(es, namespace).values()) == {1}
    # The hole this closes: op_type create alone sees the write index only.
    es.indices.rollover(alias=stream)
    assert sink.deliver(items(False)).indexed == {"retrieval": 30}
    assert indexed(es, namespace) == 60


def test_lines_an_older_version_shipped_before_a_crash_are_found_under_their_old_ids(es: Elasticsearch,
                                                                                     namespace: str) -> None:
    """Ids gained the host name; a line the previous version sent (id without the host) just
    before it died, read again by the new version, is found under the id it was given then."""
    from parsers import LineParser, ParseContext

    parser = LineParser(ParseContext(namespace=namespace, format="nginx"))
    sink = BulkSink(es, ShipperMetrics())

    def items(ids: str, verify: bool) -> list:
        batch = []
        for i in range(30):
            doc = parser.parse(line(i))
            doc["log"] = {"file": {"fingerprint": "fp:9:9:0"}, "offset": i}
            batch.append(make_item(doc, f"{ids}-{i}", line(i)))
            if verify:
                batch[-1].verify = ("fp:9:9:0", 10_000, i, f"old-{i}")
        return batch

    assert sink.deliver(items("old", False)[:20]).indexed == {"retrieval": 20}  # the old version, then a crash
    report = sink.deliver(items("new", True))  # the new version reads the same lines again
    assert report.duplicates == 20 and report.indexed == {"retrieval": 10}
    assert indexed(es, namespace) == 30 and set(seq_counts(es, namespace).values()) == {1}


def test_the_same_file_shipped_by_two_hosts_is_two_sets_of_documents(es: Elasticsearch, es_url: str, namespace: str,
                                                                      tmp_path: Path) -> None:
    """Two hosts whose files have the same first line, device and inode (containers of one image)
    were one set of ids: the second host's lines were taken for replays and dropped as 409s.
    Here one file read under two host names: each host's lines are indexed, once each."""
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(line(i) for i in range(25)))
    for host in ("registry-a", "registry-b"):
        folder = tmp_path / host
        folder.mkdir()
        config = load_config(write_config(folder / "c.yaml", es_url, namespace, [str(log)], host_name=host))
        summary = build_shipper(config).run(once=True)
        assert summary.events == 25 and summary.duplicates == 0, host
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    hosts = es.search(index=f"logs-modelregistry.*-{namespace}", size=0,
                      aggs={"h": {"terms": {"field": "host.name"}}})["aggregations"]["h"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in hosts} == {"registry-a": 25, "registry-b": 25}
    assert set(seq_counts(es, namespace).values()) == {2}


def test_sent_mark_is_reserved_ahead_and_survives_a_restart(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cp.json")
    identity = Identity("f" * 32, 1, 2)
    assert store.reserve(identity, 500, "/x.log", ahead=1000)  # first bulk: mark moved, save needed
    assert not store.reserve(identity, 1400, "/x.log", ahead=1000)  # still below 1500: no save
    store.advance(identity, 300, "/x.log")
    store.save()
    (position,) = CheckpointStore(tmp_path / "cp.json").all()
    assert (position.offset, position.sent) == (300, 1500)
    assert store.reserve(identity, 1600, "/x.log", ahead=1000) and store.all()[0].sent == 2600


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("namespace: Not-Valid\ninputs:\n  - paths: [/x]\n    format: apache\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "namespace" in str(info.value) and "inputs.0.format" in str(info.value)
    result = subprocess.run([*REGWATCH, "ship", "-c", str(bad), "--once"], capture_output=True, text=True)
    assert result.returncode == 1 and "inputs.0.format" in result.stderr


def test_minimal_config_from_the_issue_validates(tmp_path: Path) -> None:
    minimal = tmp_path / "minimal.yaml"
    minimal.write_text(
        'elasticsearch:\n  hosts: ["http://127.0.0.1:9200"]\nnamespace: default\n'
        "checkpoint_file: /var/lib/regwatch/checkpoints.json\n"
        'inputs:\n  - paths: ["/var/log/nginx/mlflow_access.log*"]\n    format: nginx\n')
    config = load_config(minimal)
    assert config.inputs[0].start_at == "beginning" and config.batch.max_docs == 2000
    example = Path(__file__).parent.parent / "examples" / "regwatch.yaml"
    assert load_config(example).inputs


def test_daemon_follows_new_lines_serves_metrics_and_stops_on_sigterm(es: Elasticsearch, es_url: str, namespace: str,
                                                                      tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(line(i) for i in range(100)))
    port = 19464 + os.getpid() % 500
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(tmp_path / "*.log")], metrics_port=port)
    daemon = subprocess.Popen([*REGWATCH, "ship", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: indexed(es, namespace) == 100)
        with log.open("ab") as handle:
            handle.write(b"".join(line(i) for i in range(100, 150)))
        (tmp_path / "second.log").write_bytes(b"".join(line(i) for i in range(150, 160)))  # new file, picked up
        wait_for(lambda: indexed(es, namespace) == 160)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'regwatch_events_indexed_total{kind="retrieval"} 160.0' in metrics
        assert "regwatch_bulk_latency_seconds_bucket" in metrics and "regwatch_queue_depth" in metrics
        assert "regwatch_bytes_behind" in metrics
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if daemon.poll() is None:
            daemon.kill()
    checkpoints = json.loads((tmp_path / "checkpoints.json").read_text())["files"]
    assert sorted(p["offset"] for p in checkpoints) == sorted(
        [log.stat().st_size, (tmp_path / "second.log").stat().st_size])
    assert "lines_read=160" in daemon.stdout.read().decode()
    status = subprocess.run([*REGWATCH, "status", "-c", str(config), "--json"], capture_output=True, text=True,
                            check=True)
    rows = {row["path"]: row for row in map(json.loads, status.stdout.splitlines())}
    assert rows[str(log)] == {"path": str(log), "offset": log.stat().st_size, "size": log.stat().st_size, "behind": 0}


def test_start_at_end_skips_history_but_not_what_follows(es: Elasticsearch, es_url: str, namespace: str,
                                                         tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(line(i) for i in range(20)))
    path = write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)])
    raw = json.loads(json.dumps(__import__("yaml").safe_load(path.read_text())))
    raw["inputs"][0]["start_at"] = "end"
    path.write_text(json.dumps(raw))
    config = load_config(path)
    shipper = build_shipper(config)
    runner = threading.Thread(target=shipper.run)
    runner.start()
    try:
        time.sleep(1.0)
        with log.open("ab") as handle:
            handle.write(b"".join(line(i) for i in range(20, 25)))
        wait_for(lambda: indexed(es, namespace) == 5)
    finally:
        shipper.stop()
        runner.join(timeout=15)
    assert sorted(seq_counts(es, namespace)) == list(range(20, 25))


def test_partial_line_is_flushed_after_the_configured_silence(es: Elasticsearch, es_url: str, namespace: str,
                                                             tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(line(30) + line(31).rstrip(b"\n"))  # the writer died mid-way: no newline, ever
    config = load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)], partial_line_flush_s=1.0))
    shipper = build_shipper(config)
    runner = threading.Thread(target=shipper.run)
    runner.start()
    try:
        wait_for(lambda: indexed(es, namespace) == 2, timeout=20)
    finally:
        shipper.stop()
        runner.join(timeout=15)
    assert sorted(seq_counts(es, namespace)) == [30, 31]


def test_changed_config_file_is_reloaded_without_a_signal(es: Elasticsearch, es_url: str, namespace: str,
                                                          tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(line(40))
    second.write_bytes(line(41))
    path = write_config(tmp_path / "c.yaml", es_url, namespace, [str(first)])
    shipper = build_shipper(load_config(path), path)
    runner = threading.Thread(target=shipper.run)
    runner.start()
    try:
        wait_for(lambda: indexed(es, namespace) == 1)
        raw = __import__("yaml").safe_load(path.read_text())
        raw["inputs"][0]["paths"].append(str(second))
        time.sleep(0.05)
        path.write_text(__import__("yaml").safe_dump(raw))
        os.utime(path, (time.time() + 5, time.time() + 5))  # a distinct mtime even on coarse clocks
        wait_for(lambda: indexed(es, namespace) == 2)
    finally:
        shipper.stop()
        runner.join(timeout=15)


def test_an_item_is_addressed_by_the_streams_its_document_names_not_by_parsing_a_name_back() -> None:
    doc = {"@timestamp": "2026-01-01T00:00:00.000Z",
           "data_stream": {"type": "logs", "dataset": "modelregistry.deadletter", "namespace": "prod"},
           "error": {"type": "parse_error"}, "modelregistry": {"model": {"name": "churn"}}}
    item = make_item(doc, "id-1", b"raw")
    assert (item.index, item.kind, item.family, item.reason, item.model) == (
        "logs-modelregistry.deadletter-prod", "deadletter", "logs-modelregistry.*-prod", "parse_error", "churn")
    probe = make_item({"data_stream": {"type": "metrics", "dataset": "modelregistry.availability",
                                       "namespace": "default"}}, "id-2", b"")
    assert (probe.index, probe.kind, probe.family) == (
        "metrics-modelregistry.availability-default", "availability", "metrics-modelregistry.*-default")


def test_setup_gives_existing_streams_the_fields_added_since(es, namespace) -> None:
    """A field added to the mapping (modelregistry.failure) is searchable on a stream made before it
    at once, not only after the stream's next rollover: the template alone reaches new indices only."""
    from pipeline import templates

    stream = f"logs-modelregistry.error-{namespace}"
    old = templates.node_mappings(es)  # the mapping as this node holds it (ECS types it lacks degraded)
    del old["properties"]["modelregistry"]["properties"]["failure"]
    es.indices.put_index_template(name=f"old-{namespace}", index_patterns=[stream], data_stream={}, priority=900,
                                  template={"mappings": old, "settings": {"number_of_replicas": 0}})
    try:
        es.index(index=stream, document={"@timestamp": "2026-01-01T00:00:00Z"}, op_type="create", refresh=True)
    finally:
        es.indices.delete_index_template(name=f"old-{namespace}")

    def failure_field() -> dict | None:
        found = es.indices.get_mapping(index=stream)
        (backing,) = found.values()
        return backing["mappings"]["properties"]["modelregistry"]["properties"].get("failure")

    assert failure_field() is None
    templates.install(es, replicas=0)
    assert templates.apply_mappings(es) is True
    assert failure_field() == templates.node_mappings(es)["properties"]["modelregistry"]["properties"]["failure"]


def test_a_shard_with_no_active_copy_is_answered_and_named_not_timed_out(es: Elasticsearch, namespace: str) -> None:
    """A stream whose only copy is on a lost node (here: a primary that may be allocated nowhere)
    holds every write to it. The shipper lets Elasticsearch wait ``shard_wait_s``, less than its
    request timeout: each attempt is answered with the shard named (not the document), logged,
    retried, nothing lost."""
    from structlog.testing import capture_logs

    from parsers import LineParser, ParseContext

    stream = f"logs-modelregistry.retrieval-{namespace}"
    (real,) = es.indices.get_index_template(name="logs-modelregistry.retrieval")["index_templates"]
    template = {**real["index_template"], "index_patterns": [stream], "priority": 1000}
    template["template"] = {**template.get("template", {}), "settings": {
        **template.get("template", {}).get("settings", {}),
        "index.routing.allocation.require._name": "no-such-node", "index.number_of_replicas": 0}}
    es.indices.put_index_template(name=f"nowhere-{namespace}", **template)
    try:
        try:  # made at once; the request itself waits half a minute for a shard that never starts
            es.options(request_timeout=1, max_retries=0).index(index=stream, document={"@timestamp": 0})
        except ConnectionTimeout:
            pass
        wait_for(lambda: es.indices.exists(index=stream), what="the stream made")
        item = make_item(LineParser(ParseContext(namespace=namespace, format="nginx")).parse(line(1)),
                         "nowhere-1", line(1))
        sink = BulkSink(es, ShipperMetrics(), shard_wait_s=1.0)
        give_up, reports = threading.Event(), []
        with capture_logs() as logs:
            sender = threading.Thread(target=lambda: reports.append(sink.deliver([item], give_up)))
            sender.start()
            try:
                wait_for(lambda: sum(e["event"] == "bulk_items_retried" for e in logs) >= 2, timeout=90,
                         what="two attempts answered")
            finally:
                give_up.set()
                sender.join(60)
        (report,) = reports
        assert (report.complete, report.indexed, report.rejected, report.duplicates) == (False, {}, 0, 0)
        events = [e for e in logs if e["log_level"] != "debug"]
        assert {e["event"] for e in events} == {"bulk_items_retried"}, events  # answered, never timed out
        for event in events:
            assert set(event) == {"event", "log_level", "docs", "status", "error"}
            assert (event["docs"], event["status"]) == (1, 503)
            assert re.fullmatch(r"unavailable_shards_exception: \[\.ds-logs-modelregistry\.retrieval-"
                                + namespace + r"-[0-9.]+-000001\]\[0\] primary shard is not active Timeout: \[1s\]",
                                event["error"]), event["error"]
    finally:
        es.indices.delete_index_template(name=f"nowhere-{namespace}")
        # The node has no data-stream API to delete it with: the stream's shard may go anywhere
        # again, so that the node is green for the tests after this one.
        es.indices.put_settings(index=stream, settings={"index.routing.allocation.require._name": None},
                                expand_wildcards="all", allow_no_indices=True)
        es.cluster.health(index=stream, wait_for_status="green", timeout="30s")
