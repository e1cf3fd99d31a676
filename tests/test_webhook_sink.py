"""The demo's webhook sink: a body's length is checked before a byte is read (a negative, absent,
malformed or huge Content-Length is refused), and a stalled client is cut off at its timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regwatch.demo.webhook_sink import MAX_BODY, received, serve


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    out = tmp_path / "n.jsonl"
    server = serve("127.0.0.1", 0, out, timeout_s=0.5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, out
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _exchange(port: int, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


@pytest.mark.parametrize("length_header,status", [
    (b"Content-Length: -1\r\n", b"400"),
    (b"Content-Length: abc\r\n", b"400"),
    (b"Content-Length: +5\r\n", b"400"),
    (b"Content-Length: 1e3\r\n", b"400"),
    (b"", b"411"),
    (b"Transfer-Encoding: chunked\r\n", b"411"),
    (f"Content-Length: {MAX_BODY + 1}\r\n".encode(), b"413"),
    (b"Content-Length: 99999999999999999999999999\r\n", b"413"),
])
def test_a_bad_length_is_refused_before_the_body_and_nothing_is_written(sink, length_header: bytes,
                                                                         status: bytes) -> None:
    port, out = sink
    started = time.monotonic()
    answer = _exchange(port, b"POST /notify HTTP/1.1\r\nHost: x\r\n" + length_header + b"\r\n", b"{}")
    assert answer.startswith(b"HTTP/1.0 " + status + b" "), answer[:80]
    assert time.monotonic() - started < 3  # answered at once, not after reading to the end of the stream
    assert received(out) == []


def test_stalled_and_silent_clients_are_cut_off_and_a_good_post_still_lands(sink) -> None:
    port, out = sink
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        stalled.sendall(b"POST /notify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":")
        started = time.monotonic()
        assert stalled.recv(100) == b""  # the body never came: closed at the timeout, nothing answered
        assert silent.recv(100) == b""
        assert time.monotonic() - started < 5
    finally:
        stalled.close()
        silent.close()
    answer = _exchange(port, b"POST /notify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"X-Regwatch-Idempotency-Key: k1\r\nContent-Length: 9\r\n\r\n", b'{"n": 1} ')
    assert answer.startswith(b"HTTP/1.0 200 ") and answer.endswith(b"{}")
    [record] = received(out)
    assert set(record) == {"received", "path", "key", "payload"}
    assert record["path"] == "/notify" and record["key"] == "k1" and record["payload"] == {"n": 1}
