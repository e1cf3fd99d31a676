"""The writes a cycle leaves for its end (rules.tail) never outlive a send: the history line of a
transition is stored before its notification leaves, so a runner killed (kill -9) while the send
is in flight has lost nothing but the send, which a restarted runner sends again."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from contract import streams
from rules.notify import WebhookTarget
from rules.runner import Runner
from support.rules import errors_now, index_events, write_rules

pytestmark = pytest.mark.elasticsearch

RULE = errors_now("probe")


def test_a_transitions_history_line_is_stored_before_its_notification_is_sent(
        es: Elasticsearch, namespace: str, tmp_path: Path) -> None:
    history = streams.data_stream_name("alert", namespace)
    seen: list[list[dict]] = []  # the history lines stored when each notification arrived

    class Probe(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            es.indices.refresh(index=history, ignore_unavailable=True, allow_no_indices=True)
            hits = es.search(index=history, ignore_unavailable=True, allow_no_indices=True, size=10)["hits"]["hits"]
            seen.append([hit["_source"] for hit in hits])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Probe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        runner = Runner(es, write_rules(tmp_path, RULE), namespace,
                        {"probe": WebhookTarget(url=f"http://127.0.0.1:{server.server_address[1]}/")}, "a")
        index_events(es, namespace, "error", time.time() - 5, 3)
        report = runner.cycle()
        assert report.sent and len(seen) == 1
        es.indices.refresh(index=history)
        (line,) = [hit["_source"] for hit in es.search(index=history, size=10)["hits"]["hits"]]
        assert line["rule"]["name"] == "errors-now" and line["event"]["action"] == "firing", line
        assert seen == [[line]]  # the firing transition's line, already stored when its send left
    finally:
        server.shutdown()
        server.server_close()


def test_history_lines_of_a_cycle_that_failed_after_its_writes_are_written_at_a_clean_stop(
        es: Elasticsearch, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cycle that fails after its alerts were written (a search of the runners refused) leaves
    their history lines for the next cycle's last request; a clean stop before it writes them."""
    rules = write_rules(tmp_path, RULE.replace("notify: [probe]", "notify: []"))
    runner = Runner(es, rules, namespace, {}, "a")
    index_events(es, namespace, "error", time.time() - 5, 3)

    def refused(*_args: object) -> None:
        raise RuntimeError("runners search refused")

    monkeypatch.setattr(runner.liveness, "check_runners", refused)
    with pytest.raises(RuntimeError, match="runners search refused"):
        runner.cycle()
    monkeypatch.undo()
    runner.stopped()
    history = streams.data_stream_name("alert", namespace)
    es.indices.refresh(index=history, ignore_unavailable=True, allow_no_indices=True)
    hits = es.search(index=history, ignore_unavailable=True, allow_no_indices=True, size=10)["hits"]["hits"]
    assert [(hit["_source"]["rule"]["name"], hit["_source"]["event"]["action"]) for hit in hits] == [
        ("errors-now", "firing")]
