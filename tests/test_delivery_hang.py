"""Issue 25: the rule runner beside a receiver that hangs, drips or never ends, and what a failed
delivery does next.

Real local servers in threads: one that answers one byte a second, one that sends a body without
end, one that accepts and never answers, each beside a healthy webhook; the real Elasticsearch
node; ``regwatch rules run`` as a subprocess for SIGTERM and memory. A 404 is dropped and counted,
503 and 429 are retried with a bounded back-off, a target failing for long raises the
``regwatch-notifier-failing`` alert on the other one, and one rule's bad response fails that rule
only.
"""

from __future__ import annotations

import json
import random
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from elasticsearch import Elasticsearch

from rules.notify import DeliveryFailed, WebhookTarget
from rules.runner import Runner
from rules.state import StateStore, alert_id
from support.monitoring import free_port
from support.rules import T0, Receiver, errors_now, index_events, write_rules

NOTIFIER_RULE = "regwatch-notifier-failing"  # the built-in alert's name, as users see it
SLOW_S = 2.0  # a receiver that takes this long to say 200: beyond the cycle's wait, within its timeout
CYCLE_S = 1.5  # the longest a cycle may take beside a target that does not answer (the old one: timeout_s)
# The first one also writes the alert, the claim and the first history line of the namespace (a
# new data stream): 0.65 s measured with a target that never answers, 2 s under a loaded machine.
FIRST_S = 3.0
RULE = errors_now("bad", "hook")


# -- receivers that misbehave ----------------------------------------------------------------


class Misbehaving(socketserver.BaseRequestHandler):
    """Reads the request, then answers as ``server.mode`` says: ``drip`` (the whole answer one
    byte a second), ``endless`` (a 503 whose chunked body never ends, ~20 MiB/s), ``silent``
    (nothing, ever), ``slow`` (a 200, after :data:`SLOW_S`), or a status (``404``) with a short
    body."""

    def handle(self) -> None:
        server = self.server
        sock = self.request
        sock.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += sock.recv(65536)
            server.requests.append((time.monotonic(), head, body))  # type: ignore[attr-defined]
            server.arrived.set()  # type: ignore[attr-defined]
            closing: threading.Event = server.closing  # type: ignore[attr-defined]
            mode = server.mode  # type: ignore[attr-defined]
            if mode == "drip":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                    sock.sendall(bytes([byte]))
                    if closing.wait(1.0):
                        return
            elif mode == "endless":
                sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
                while not closing.is_set():
                    sock.sendall(chunk)
                    time.sleep(0.003)
            elif mode == "silent":
                closing.wait(120)
            elif mode == "slow":
                if not closing.wait(SLOW_S):
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            else:
                answer = server.body  # type: ignore[attr-defined]
                sock.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (int(mode), len(answer), answer))
        except OSError:
            pass  # the client gave up: what these tests want it to do


@contextmanager
def misbehaving(mode: str, body: bytes = b"") -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    server.mode, server.body = mode, body  # type: ignore[attr-defined]
    server.requests, server.arrived, server.closing = [], threading.Event(), threading.Event()  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.closing.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


def _in_thread(call, seconds: float):
    """``call()`` in a thread: its result, or an AssertionError if it is still running after
    ``seconds`` (the old runner hangs; a test must fail, not hang)."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"still running after {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- one POST ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["drip", "silent", "endless"])
def test_a_post_ends_by_its_timeout_whatever_the_receiver_does(mode: str) -> None:
    with misbehaving(mode) as server:
        target = WebhookTarget(url=server.url, timeout_s=2)
        started = time.monotonic()
        with pytest.raises(DeliveryFailed) as failed:
            _in_thread(lambda: target.send({"key": "k", "rule": "r"}), 30)
        took = time.monotonic() - started
    assert took < 4.5, took  # 2 s and the time to give up; the old client: 30 s and more
    assert failed.value.retryable
    if mode == "endless":  # answered 503 at once: the status decides, 4 KiB of the body are kept at most
        assert str(failed.value).startswith("HTTP 503: xxxx") and len(str(failed.value)) < 260
    else:
        assert str(failed.value) == "timed out: no complete answer within 2 s"


def test_an_accepted_post_does_not_read_the_body() -> None:
    """A 200 with a body without end: accepted at once, nothing of the body read."""
    served = []

    class Endless(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(20000):  # 1.3 GB if anyone read it all
                    self.request.sendall(b"10000\r\n" + b"y" * 65536 + b"\r\n")
                    served.append(1)
            except OSError:
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        _in_thread(lambda: WebhookTarget(url=f"http://127.0.0.1:{server.server_address[1]}/",
                                         timeout_s=5).send({"key": "k"}), 30)
        assert time.monotonic() - started < 3
        time.sleep(0.3)
        assert len(served) < 200  # the connection was closed, not drained
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (400, False), (401, False), (410, False),
                                                   (429, True), (500, True), (503, True)])
def test_each_refusal_says_whether_it_is_worth_retrying(status: int, retryable: bool) -> None:
    body = b"no such hook \x1b]8;;http://evil\x07 see https://user:pw@hooks.example/x " + b"z" * 5000
    with misbehaving(str(status), body) as server:
        with pytest.raises(DeliveryFailed) as failed:
            WebhookTarget(url=server.url, timeout_s=5).send({"key": "k"})
    assert failed.value.retryable is retryable
    text = str(failed.value)
    assert text.startswith(f"HTTP {status}: no such hook ]8;;http://evil see https://hooks.example/x zzz")
    assert "\x1b" not in text and "pw@" not in text and len(text) < 260


def test_a_connection_refused_is_retryable_and_says_no_more_than_its_type() -> None:
    port = free_port()
    with pytest.raises(DeliveryFailed) as failed:
        WebhookTarget(url=f"http://user:hunter22@127.0.0.1:{port}/x", timeout_s=2).send({"key": "k"})
    assert failed.value.retryable and str(failed.value) == "ConnectError: could not reach the target"


# -- the runner beside a hanging target ------------------------------------------------------


def _targets(bad_url: str, hook: dict, timeout_s: float = 3.0) -> dict:
    return {"bad": WebhookTarget(url=bad_url, timeout_s=timeout_s), **hook}


class _Timed:
    """Calls ``runner.cycle()`` (in a thread: the old runner hangs) and keeps each call's wall time."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.walls: list[float] = []
        # The state index is made before the clock runs: the cycles are timed, not its creation
        # (on a loaded node that alone can take a second of the first cycle's bound).
        StateStore(runner.client, runner.namespace).ensure()

    def cycle(self):
        started = time.monotonic()
        report = _in_thread(self.runner.cycle, 40)
        self.walls.append(time.monotonic() - started)
        return report

    def check(self) -> None:
        assert self.walls[0] < FIRST_S and max(self.walls[1:], default=0.0) < CYCLE_S, self.walls

    def next(self):
        """The next cycle, when the runner says something is due (at most a second on)."""
        time.sleep(max(0.0, min(self.runner.wake_at() - time.time(), 1.0)))
        return self.cycle()


@pytest.mark.parametrize("mode", ["drip", "silent", "endless"])
def test_a_hanging_target_delays_neither_the_other_target_nor_the_rules(es: Elasticsearch, namespace: str,
                                                                         tmp_path: Path, webhook, mode: str) -> None:
    rules = write_rules(tmp_path, RULE)
    with misbehaving(mode) as server:
        runner = Runner(es, rules, namespace, _targets(server.url, webhook, timeout_s=4.0), "a")
        timed = _Timed(runner)
        index_events(es, namespace, "error", time.time() - 5, 3)
        report = timed.cycle()
        assert [p["state"] for p, _ in Receiver.received] == ["firing"]  # the healthy target: in the first cycle
        assert server.arrived.wait(10) and report.evaluated == ["errors-now"]
        # The endless 503 is an answer, at once; the others are timeouts, recorded cycles later.
        reports = [report]
        started = time.monotonic()
        while not any(r.failed for r in reports):
            assert time.monotonic() - started < 20, "the bad target's outcome was never recorded"
            reports.append(timed.next())
        assert len(reports) == 1 if mode == "endless" else len(reports) > 3
        state = es.get(index=runner.store.index, id=alert_id("errors-now", "*"))["_source"]
        (entry,) = state["outbox"]
        assert entry["targets"] == ["bad"] and entry["attempts"] == 1 and "outbox_claimed_until" not in state
        expected = "HTTP 503: xxx" if mode == "endless" else "timed out: no complete answer within 4 s"
        assert entry["last_error"].startswith(f"bad: {expected}")
        # Rules keep their interval while the target keeps failing (it is retried with back-off).
        evaluations = sum(len(r.evaluated) for r in reports)
        started = time.monotonic()
        while runner.metrics.notifier_failures.labels("bad", "true")._value.get() < 2:
            assert time.monotonic() - started < 25, "the bad target was not retried"
            evaluations += len(timed.next().evaluated)
        assert evaluations >= len(timed.walls) - 3, (evaluations, len(timed.walls))  # ~1 a second
        timed.check()  # never the bad target's 4 s
        assert [p["state"] for p, _ in Receiver.received] == ["firing"]  # sent once, not again


def test_a_cycle_does_not_wait_for_a_target_that_never_answers(es: Elasticsearch, namespace: str, tmp_path: Path,
                                                               webhook) -> None:
    """Each cycle waits for answers a moment only: the healthy target is served in the first,
    the silent target's timeout is recorded by a later one, then the entry backs off and the
    claim is released. The old cycle waited for the silent target: 5 s each time."""
    rules = write_rules(tmp_path, RULE)
    with misbehaving("silent") as server:
        runner = Runner(es, rules, namespace, _targets(server.url, webhook, timeout_s=5.0), "a")
        timed = _Timed(runner)
        index_events(es, namespace, "error", time.time() - 5, 3)
        first = timed.cycle()
        assert [p["state"] for p, _ in Receiver.received] == ["firing"]
        assert server.arrived.wait(10) and first.evaluated == ["errors-now"]
        assert first.sent == first.failed == [] and timed.walls[0] < FIRST_S, timed.walls
        state = es.get(index=runner.store.index, id=alert_id("errors-now", "*"))["_source"]
        (entry,) = state["outbox"]  # hook took it (recorded at once); bad owes an answer: still claimed
        key = entry["key"]
        assert entry["targets"] == ["bad"] and entry["attempts"] == 0 and "last_error" not in entry
        assert state["outbox_claimed_by"] == "a" and state["outbox_claimed_until"] > time.time()
        sent_at = server.requests[0][0]
        reports = []
        while not any(r.failed for r in reports):
            assert time.monotonic() - sent_at < 20, "the timeout was never recorded"
            reports.append(timed.next())
            if not reports[-1].failed:  # in flight: held, and not sent again
                assert len(server.requests) == 1
        recorded = time.monotonic()
        *waiting, last = reports
        assert last.failed == [key] and last.sent == [] and recorded - sent_at >= 5.0
        assert len(waiting) >= 3 and all(r.evaluated == ["errors-now"] for r in waiting)  # a rule a second
        timed.check()
        state = es.get(index=runner.store.index, id=alert_id("errors-now", "*"))["_source"]
        (entry,) = state["outbox"]
        assert entry["targets"] == ["bad"] and entry["attempts"] == 1 and entry["key"] == key
        assert entry["last_error"].startswith("bad: timed out: no") and entry["errors"]["bad"].startswith("timed out")
        now = es.get(index=runner.store.index, id="runner:a")["_source"]["last_cycle"]  # the last cycle's clock
        assert 2 * 0.8 <= entry["due"] - now <= 2 * 1.2  # the first back-off, from the cycle that recorded it
        assert "outbox_claimed_until" not in state and "outbox_claimed_by" not in state
        notifier = es.get(index=runner.store.index, id="notifier:bad")["_source"]
        assert notifier["failures"] == 1 and notifier["last_error"].startswith("timed out: no")
        assert len(server.requests) == 1 and [p["state"] for p, _ in Receiver.received] == ["firing"]
        print(f"cycle wall times beside a silent target (timeout_s 5): {[round(w, 2) for w in timed.walls]}")


def test_a_slow_success_is_recorded_by_a_later_cycle_and_sent_once(es: Elasticsearch, namespace: str,
                                                                   tmp_path: Path, webhook) -> None:
    """A target that says 200 after 2 s (beyond the cycle's wait, within its timeout): its send
    stays in flight, the next cycle after the answer records the success and releases the claim,
    and the notification is not sent again."""
    rules = write_rules(tmp_path, RULE)
    with misbehaving("slow") as server:
        runner = Runner(es, rules, namespace, _targets(server.url, webhook, timeout_s=5.0), "a")
        timed = _Timed(runner)
        index_events(es, namespace, "error", time.time() - 5, 3)
        first = timed.cycle()
        assert [p["state"] for p, _ in Receiver.received] == ["firing"] and server.arrived.wait(10)
        assert first.sent == first.failed == [] and timed.walls[0] < FIRST_S, timed.walls
        sent_at = server.requests[0][0]
        reports = []
        while not any(r.sent for r in reports):
            assert time.monotonic() - sent_at < 20, "the success was never recorded"
            reports.append(timed.next())
        recorded = time.monotonic()
        key = reports[-1].sent[0]
        assert reports[-1].sent == [key] and all(r.failed == [] for r in reports)
        assert SLOW_S <= recorded - sent_at < SLOW_S + 2 * CYCLE_S
        state = es.get(index=runner.store.index, id=alert_id("errors-now", "*"))["_source"]
        assert "outbox" not in state and "outbox_claimed_until" not in state and "outbox_claimed_by" not in state
        assert not es.exists(index=runner.store.index, id="notifier:bad")  # it never failed
        assert runner.metrics.notifier_failures.labels("bad", "true")._value.get() == 0
        until = time.monotonic() + 3
        while time.monotonic() < until:  # the next cycles send nothing again
            assert timed.next().sent == []
        assert len(server.requests) == 1  # exactly one request: not sent again
        assert [p["state"] for p, _ in Receiver.received] == ["firing"]
        timed.check()
        print(f"cycle wall times beside a target answering after {SLOW_S:g} s: {[round(w, 2) for w in timed.walls]}")


def test_a_change_while_its_previous_notification_is_in_flight_sends_each_change_once(
        es: Elasticsearch, namespace: str, tmp_path: Path, webhook) -> None:
    """A change rule's write to its alert document dropped the claim of a send still in flight:
    the late success was then lost (``outbox_claim_lost``) and the change sent a second time."""
    rules = write_rules(tmp_path, """
rules:
  - name: champion-moved
    type: change
    kinds: [version]
    group_by: modelregistry.model.name
    field: modelregistry.model.version
    window: 1d
    interval: 1s
    notify: [bad, hook]
""")

    def alias(version: str) -> None:
        at = int(time.time() * 1000)
        es.index(index=f"logs-modelregistry.version-{namespace}", refresh=True, document={
            "@timestamp": at, "event": {"ingested": at, "action": "registered-model-alias-set"},
            "modelregistry": {"model": {"name": "fraud-detector", "version": version}}})

    with misbehaving("slow") as server:
        runner = Runner(es, rules, namespace, _targets(server.url, webhook, timeout_s=5.0), "a")
        timed = _Timed(runner)
        alias("1")
        time.sleep(1.2)
        timed.cycle()  # the baseline: nothing sent
        alias("2")
        time.sleep(1.2)
        timed.next()  # 1 -> 2: sent to hook at once, to bad in flight for SLOW_S
        assert server.arrived.wait(10)
        alias("3")  # a second change while the first is in flight to bad
        until = time.monotonic() + SLOW_S + 8
        while time.monotonic() < until:
            timed.next()
    changes = [(p["event"]["previous"], p["event"]["modelregistry.model.version"]) for p, _ in Receiver.received]
    assert changes == [("1", "2"), ("2", "3")]  # hook: each change once
    bodies = [json.loads(body)["event"] for _at, _head, body in server.requests]
    assert [(b["previous"], b["modelregistry.model.version"]) for b in bodies] == [("1", "2"), ("2", "3")]
    state = es.get(index=runner.store.index, id=alert_id("champion-moved", "fraud-detector"))["_source"]
    assert "outbox" not in state and "outbox_claimed_by" not in state


def test_a_later_cycle_writing_a_held_alert_loses_no_outcome(es: Elasticsearch, namespace: str, tmp_path: Path,
                                                           webhook) -> None:
    """While a send is in flight its alert document is still written by later cycles (here: the
    value changes); the late outcome is recorded on top of that write, not lost to a conflict."""
    rules = write_rules(tmp_path, RULE)
    with misbehaving("silent") as server:
        runner = Runner(es, rules, namespace, _targets(server.url, webhook, timeout_s=3.0), "a")
        timed = _Timed(runner)
        index_events(es, namespace, "error", time.time() - 5, 3)
        timed.cycle()
        assert server.arrived.wait(10)
        index_events(es, namespace, "error", time.time() - 1.5, 2)  # the next window reads 5, not 3
        reports = []
        while not any(r.failed for r in reports):
            assert len(reports) < 20, "the timeout was never recorded"
            reports.append(timed.next())
        state = es.get(index=runner.store.index, id=alert_id("errors-now", "*"))["_source"]
        assert state["state"] == "firing" and state["value"] == 5.0  # the later cycle's write, kept
        (entry,) = state["outbox"]
        assert entry["targets"] == ["bad"] and entry["attempts"] == 1
        assert entry["last_error"].startswith("bad: timed out")
        assert "outbox_claimed_until" not in state and "outbox_claimed_by" not in state
        assert len(server.requests) == 1 and [p["state"] for p, _ in Receiver.received] == ["firing"]
        timed.check()


# -- retry or drop -----------------------------------------------------------------------------


class Statuses(socketserver.BaseRequestHandler):
    """Answers each path with the status it names (``/404``), counting requests per path."""

    seen: dict[str, int] = {}
    override: dict[str, int] = {}

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.request.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += self.request.recv(65536)
        path = head.split(b" ")[1].decode()
        Statuses.seen[path] = Statuses.seen.get(path, 0) + 1
        status = Statuses.override.get(path, int(path.strip("/")))
        said = b"gone for good" if status == 404 else b"later"
        self.request.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (status, len(said), said))


@pytest.fixture
def statuses() -> Iterator[str]:
    Statuses.seen, Statuses.override = {}, {}
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Statuses)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_404_is_dropped_and_counted_503_and_429_back_off(es: Elasticsearch, namespace: str, tmp_path: Path,
                                                           statuses: str) -> None:
    rules = write_rules(tmp_path, RULE.replace("[bad, hook]", "[gone, busy, limited]"))
    targets = {"gone": WebhookTarget(url=f"{statuses}/404"), "busy": WebhookTarget(url=f"{statuses}/503"),
               "limited": WebhookTarget(url=f"{statuses}/429")}
    runner = Runner(es, rules, namespace, targets, "a", retry_max_s=20, rng=random.Random(7))
    index_events(es, namespace, "error", T0, 3)
    now = T0 + 61
    report = runner.cycle(now=now)
    key = report.failed[0]
    assert report.dropped == [key] and report.sent == []
    doc = es.get(index=runner.store.index, id=alert_id("errors-now", "*"))["_source"]
    (entry,) = doc["outbox"]
    assert entry["targets"] == ["busy", "limited"] and entry["dropped"] == ["gone"] and entry["attempts"] == 1
    assert entry["errors"] == {"gone": "HTTP 404: gone for good", "busy": "HTTP 503: later",
                               "limited": "HTTP 429: later"}
    assert entry["last_error"] in {f"{name}: {error}" for name, error in entry["errors"].items()}
    gaps = [entry["due"] - now]
    gone = es.get(index=runner.store.index, id="notifier:gone")["_source"]
    assert gone == {"type": "notifier", "target": "gone", "failing_since": now, "last_error": "HTTP 404: gone for good",
                    "retryable": False, "last_failure": now, "last_success": None, "failures": 1, "dropped": 1,
                    "updated": now, "runner": "a"}
    metric = runner.metrics.notifier_failures
    assert metric.labels("gone", "false")._value.get() == 1 and metric.labels("busy", "true")._value.get() == 1
    assert metric.labels("limited", "true")._value.get() == 1
    for _ in range(6):
        now = entry["due"]
        before = dict(Statuses.seen)
        runner.cycle(now=now - 0.01)
        assert Statuses.seen == before  # not before its time
        runner.cycle(now=now)
        (entry,) = es.get(index=runner.store.index, id=alert_id("errors-now", "*"))["_source"]["outbox"]
        gaps.append(entry["due"] - now)
    assert Statuses.seen["/404"] == 1  # never retried
    assert Statuses.seen["/503"] == Statuses.seen["/429"] == 7 and entry["attempts"] == 7
    for attempt, gap in enumerate(gaps, start=1):  # 2, 4, 8, 16 s ±20 %, then the bound of 20 s
        assert min(20, 2 ** attempt * 0.8) <= gap <= min(20, 2 ** attempt * 1.2), (attempt, gaps)
    assert gaps[-1] == 20 and len({round(g, 3) for g in gaps[:3]}) == 3
    Statuses.override = {"/503": 200, "/429": 200}
    report = runner.cycle(now=entry["due"])
    assert report.sent == [key]
    assert es.get(index=runner.store.index, id=alert_id("errors-now", "*"))["_source"].get("outbox") is None


def test_a_failing_target_raises_notifier_failing_on_the_other_one(es: Elasticsearch, es_url: str, namespace: str,
                                                                   tmp_path: Path, statuses: str, webhook) -> None:
    rules = write_rules(tmp_path, RULE.replace("[bad, hook]", "[bad]"))
    runner = Runner(es, rules, namespace, {"bad": WebhookTarget(url=f"{statuses}/503"), **webhook}, "a",
                    failing_after=30, rng=random.Random(1))
    index_events(es, namespace, "error", T0, 3)
    runner.cycle(now=T0 + 61)  # bad fails from here on
    assert Receiver.received == []
    assert runner.metrics.notifier_failing.labels("bad")._value.get() == 0
    runner.cycle(now=T0 + 95)  # failing for 34 s: the alert fires, and is sent to hook
    assert runner.metrics.notifier_failing.labels("bad")._value.get() == 1
    assert runner.metrics.notifier_failing.labels("hook")._value.get() == 0
    ((payload, headers),) = Receiver.received
    state = runner.store.index
    assert payload == {
        "rule": NOTIFIER_RULE, "group": "bad", "group_by": "target", "state": "firing", "value": 34.0,
        "threshold": 30.0, "severity": "critical", "labels": {}, "since": T0 + 95, "at": T0 + 95,
        "message": "notifier bad has delivered nothing for 34 s", "key": payload["key"],
        "shown": {"group": "bad", "value": "34", "threshold": "30"},
        "alert": alert_id(NOTIFIER_RULE, "bad"), "groups": {"target": "bad"},
        "window": {"start": "2023-11-14T22:14:25.000Z", "end": "2023-11-14T22:14:55.000Z",
                   "time_field": "event.ingested"},
        "index": state, "query": {"bool": {"filter": [{"bool": {"should": [
            {"range": {"event.ingested": {"format": "epoch_millis", "gte": 1700000065000, "lt": 1700000095000}}},
            {"bool": {"must_not": [{"exists": {"field": "event.ingested"}}],
                      "filter": [{"range": {"@timestamp": {"format": "epoch_millis", "gte": 1700000065000,
                                                           "lt": 1700000095000}}}]}}],
            "minimum_should_match": 1}}]}}}
    assert headers["x-regwatch-idempotency-key"] == payload["key"] and len(payload["key"]) == 40
    # What `rules status` (and `top`) show: bad, failing since its first failure at T0 + 61.
    from rules.overview import NotifierHealth, failing_notifiers, read

    (health,) = failing_notifiers(es, namespace, 30, now=T0 + 100)
    assert health == NotifierHealth(target="bad", failing_since=T0 + 61, failing_for=39.0, failing=True,
                                    last_error="HTTP 503: later", failures=health.failures, dropped=0)
    assert health.failures >= 2
    assert health.line() == (f"notifier bad FAILING for 39s failures={health.failures} dropped=0 "
                             "last_error=HTTP 503: later")
    assert read(es, namespace, now=T0 + 100, notifier_failing_after=30).notifiers == [health]
    (tmp_path / "config").mkdir()
    config = tmp_path / "config" / "status.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace, "rules": {
        "folder": str(tmp_path), "notifier_failing_after_s": 30}}))
    status = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "status", "-c", str(config), "--check"],
                            capture_output=True, text=True, timeout=60)
    lines = status.stdout.splitlines()
    assert status.returncode == 1, status.stderr  # the runner "a" is stale too, and bad is failing
    failing_line = [line for line in lines if line.startswith("notifier ")]
    assert len(failing_line) == 1 and failing_line[0].startswith("notifier bad FAILING for ")
    assert failing_line[0].endswith(f"s failures={health.failures} dropped=0 last_error=HTTP 503: later")
    assert sorted(line for line in lines if line.startswith("firing ")) == [
        "firing errors-now group=* value=3.0", f"firing {NOTIFIER_RULE} group=bad value=34.0"]
    assert lines[-1] == "runners=1 alive=0 firing=2 failing_notifiers=1"
    Statuses.override = {"/503": 200}  # bad recovers: its retry goes through, the alert resolves on hook
    for moment in (T0 + 200, T0 + 210):
        runner.cycle(now=moment)
    assert [(p["rule"], p["state"]) for p, _ in Receiver.received] == [(NOTIFIER_RULE, "firing"),
                                                                         (NOTIFIER_RULE, "resolved")]
    assert runner.metrics.notifier_failing.labels("bad")._value.get() == 0
    bad = es.get(index=state, id="notifier:bad")["_source"]
    assert bad["failing_since"] is None and bad["last_success"] == T0 + 200
    assert failing_notifiers(es, namespace, 30, now=T0 + 210) == []


def test_forged_notifier_documents_are_left_out_not_a_crash() -> None:
    from rules.overview import NotifierHealth, notifier_health

    documents = [{"type": "notifier", "target": "a", "failing_since": "12"},
                 {"type": "notifier", "target": "b", "failing_since": True},
                 {"type": "notifier", "target": "c", "failing_since": 100.0, "failures": "9", "dropped": None,
                  "last_error": {"x": 1}}]
    assert notifier_health(documents, 30, now=200.0) == [NotifierHealth(
        target="c", failing_since=100.0, failing_for=100.0, failing=True, last_error="{'x': 1}", failures=0,
        dropped=0)]


# -- one rule's failure is its own -------------------------------------------------------------


def test_one_rule_failing_in_the_search_does_not_fail_the_others(es: Elasticsearch, namespace: str, tmp_path: Path,
                                                                webhook) -> None:
    rules = write_rules(tmp_path, RULE.replace("[bad, hook]", "[hook]") + """
  - name: broken-regexp
    type: threshold
    kinds: [error]
    window: 1h
    interval: 1s
    query: {regexp: {"user.name": {"value": "[unclosed"}}}
    condition: {op: ">", value: 0}
    notify: [hook]
""")
    runner = Runner(es, rules, namespace, webhook, "a")
    index_events(es, namespace, "error", T0, 3)
    report = runner.cycle(now=T0 + 61)
    assert report.evaluated == ["errors-now"] and report.rule_failures == ["broken-regexp"]
    assert [p["rule"] for p, _ in Receiver.received] == ["errors-now"]
    assert runner.metrics.rule_failures.labels("broken-regexp")._value.get() == 1
    cycle = es.get(index=runner.store.index, id="cycle:broken-regexp")["_source"]
    assert cycle["last_end"] == T0 + 60 - 1  # given back: the window is evaluated again next cycle
    report = runner.cycle(now=T0 + 62)
    assert report.rule_failures == ["broken-regexp"] and report.evaluated == ["errors-now"]


# -- the daemon: SIGTERM mid-send, memory under a body without end -----------------------------


def _config(tmp_path: Path, es_url: str, namespace: str, bad_url: str, hook_url: str, timeout_s: float) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.yaml").write_text(RULE)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace, "rules": {
        "folder": str(tmp_path / "rules"), "metrics_port": free_port(), "notifiers": {
            "bad": {"type": "webhook", "url": bad_url, "timeout_s": timeout_s},
            "hook": {"type": "webhook", "url": hook_url}}}}))
    return config


@contextmanager
def _runner(config: Path) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-m", "regwatch.cli", "rules", "run", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_the_daemon_exits_within_seconds_of_sigterm_mid_send(es: Elasticsearch, es_url: str, namespace: str,
                                                            tmp_path: Path, webhook) -> None:
    with misbehaving("drip") as server:
        config = _config(tmp_path, es_url, namespace, server.url, webhook["hook"].url, timeout_s=20)
        index_events(es, namespace, "error", time.time() - 5, 3)
        with _runner(config) as proc:
            assert server.arrived.wait(60), "the runner never sent"
            time.sleep(1.0)  # mid-send: the answer drips
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                raise AssertionError("still running 10 s after SIGTERM") from None
            took = time.monotonic() - sent
            print(f"SIGTERM to exit mid-send: {took:.2f} s")
            assert code == 0 and took < 5, took
    assert [p["state"] for p, _ in Receiver.received] == ["firing"]
    state = es.get(index=f"regwatch-alert-state-{namespace}", id=alert_id("errors-now", "*"))["_source"]
    (entry,) = state["outbox"]  # what it knew: hook took it, bad did not answer; the claim released
    assert entry["targets"] == ["bad"] and entry["last_error"] == "bad: the runner stopped before the target answered"
    assert "outbox_claimed_until" not in state


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_the_daemon_keeps_its_memory_under_a_body_without_end(es: Elasticsearch, es_url: str, namespace: str,
                                                             tmp_path: Path, webhook) -> None:
    with misbehaving("endless") as server:
        config = _config(tmp_path, es_url, namespace, server.url, webhook["hook"].url, timeout_s=5)
        index_events(es, namespace, "error", time.time() - 5, 3)
        with _runner(config) as proc:
            assert server.arrived.wait(60), "the runner never sent"
            deadline = time.time() + 10
            while time.time() < deadline and len(server.requests) < 3:
                time.sleep(0.2)
            peak = _peak_rss_mib(proc.pid)
            print(f"peak RSS beside a body without end: {peak:.0f} MiB after {len(server.requests)} sends")
            assert peak < 200, peak  # the old runner read the body whole: 20 MiB more every second
            assert proc.poll() is None
            port = json.loads(config.read_text())["rules"]["metrics_port"]
            scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert 'regwatch_notifier_failing{target="bad"} 0.0' in scrape  # not yet for 600 s
            failures = [line for line in scrape.splitlines()
                        if line.startswith('regwatch_notifier_failures_total{retryable="true",target="bad"}')]
            assert len(failures) == 1 and float(failures[0].split()[-1]) >= 1
            assert 'target="hook"' not in scrape.split("regwatch_notifier_failures_total")[1].split("# HELP")[0]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    assert [p["state"] for p, _ in Receiver.received] == ["firing"]


@pytest.mark.parametrize(("rules", "message"), [
    ({"lease_s": 10, "notifiers": {"bad": {"type": "webhook", "url": "http://h/", "timeout_s": 9}}},
     "rules: notifiers.bad.timeout_s: 9 s is more than rules.lease_s (10 s) less its margin allows "
     "(7.5 s)"),
    ({"notifier_failing_notify": ["nobody"]},
     "rules: notifier_failing_notify: no notifier named nobody"),
    ({"retry_max_s": 0}, "rules.retry_max_s: Input should be greater than or equal to 1"),
])
def test_delivery_settings_that_cannot_work_are_one_line_at_load(tmp_path: Path, rules: dict, message: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"rules": rules}))
    done = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {config}: {message}"
