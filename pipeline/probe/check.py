"""One timed HTTP request of a check and what it says: up, or down with its reason.

Every failure is a result, never an exception: a probe that dies on a refused connection tells
nobody the registry is down. Reasons are few and stable (they are ``error.type`` in the documents
and a label in alerts): ``dns``, ``connection_refused``, ``connect_error``, ``timeout``, ``tls``,
``http_5xx``, ``unexpected_status``, ``unexpected_body``.

A request is bounded by the wall clock, not only per read: the whole exchange (connect, TLS,
headers, body) must end by ``timeout_s``, or the check is ``timeout``. A registry that sends its
answer one byte a second is exactly the degraded registry the probe exists to catch, and a
per-read timeout never fires on it. Three things enforce the deadline:

* the body is read in chunks, the deadline checked after each one (a drip-feed keeps every read
  short, so only this bounds it);
* each phase's own timeout is no longer than what remains (a server that sends nothing);
* the request runs in a worker thread the caller waits for until the deadline only: then it
  answers ``timeout`` itself and shuts the worker's socket down, which wakes a read blocked in
  the kernel (a stalled DNS look-up or TLS handshake cannot hold the check either, only the
  abandoned worker, until the phase's own timeout ends it).

At most ``max_body_bytes`` of an answer are read (the decision needs no more: a substring, a
small JSON document); beyond it the connection is closed and the check is ``unexpected_body``.
Memory stays flat under a never-ending body.

Messages are built from the kind of failure, never from the HTTP library's text, which can quote
a header value (a secret); text the server sent is stripped of every secret the request carried
(``contract.secrets.request_secrets``: header values, tokens, Basic credentials).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from contract.secrets import mask_secrets, redact_userinfo, request_secrets
from contract.traffic import probe_user_agent

STATUS_TEXT_BYTES = 512  # read of a bad status's body: enough to say what the server said
try:
    _VERSION = version("regwatch")
except PackageNotFoundError:  # run from a source tree that was never installed
    _VERSION = "dev"
# Every request says it is the probe's, so its events are told from users' (modelregistry.synthetic)
USER_AGENT = probe_user_agent(_VERSION)
JOIN_GRACE_S = 1.0  # how long the caller waits for a cancelled worker before leaving it
# httpcore's trace events at which an exchange past its deadline is ended (not the closing ones:
# a close must run whole, or the connection would be left open)
_BEFORE_ANSWER = tuple(f".{phase}.started" for phase in (
    "connect_tcp", "start_tls", "send_request_headers", "send_request_body", "receive_response_headers"))


@dataclass(frozen=True)
class CheckResult:
    target: str
    environment: str
    url: str  # without user and password
    step: str  # "health" or a synthetic transaction step
    up: bool
    started: float  # epoch seconds
    duration_s: float
    status: int | None = None
    reason: str | None = None  # why it is down; "stopped" when the probe itself was told to stop
    message: str | None = None
    body: Any = None  # the parsed JSON answer, for the steps after this one (not indexed)


@dataclass(frozen=True)
class Answer:
    """What the server sent, as far as it was read."""

    status: int
    content: bytes  # decoded (gzip/deflate), at most the cap
    truncated: bool  # the body went on past the cap
    charset: str | None

    def text(self) -> str:
        try:
            return self.content.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The parsed body; ValueError when it is not JSON."""
        import json

        try:
            return json.loads(self.content)
        except RecursionError:  # nested deeper than the parser goes: not an answer to read
            raise ValueError("the answer is nested too deep") from None


class _Deadline(Exception):
    """The wall-clock deadline passed (or the probe was told to stop) while the worker ran."""


class _Undecodable(Exception):
    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def failure_reason(exc: BaseException) -> str:
    """The reason a request that got no answer failed."""
    chain = _chain(exc)
    if isinstance(exc, (httpx.TimeoutException, _Deadline)) or any(isinstance(e, TimeoutError) for e in chain):
        return "timeout"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "dns"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "tls"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection_refused"
    text = _library_text(exc)  # the library's words, used to classify only, never repeated
    if "Name or service not known" in text or "nodename nor servname" in text or "Temporary failure in name" in text:
        return "dns"
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return "tls"
    if "Connection refused" in text:
        return "connection_refused"
    return "connect_error"


def _library_text(exc: BaseException) -> str:
    return " ".join(str(e) for e in _chain(exc))


def describe(reason: str, exc: BaseException | None, timeout_s: float) -> str:
    """A message for a request that got no (whole) answer, from the kind of failure alone."""
    if reason == "timeout":
        return f"no complete answer within {timeout_s:g} s"
    if reason == "dns":
        return "the host name does not resolve"
    if reason == "connection_refused":
        return "the connection was refused"
    if reason == "tls":
        ssl_error = next((e for e in _chain(exc) if isinstance(e, ssl.SSLError)), None) if exc else None
        detail = ""
        if isinstance(ssl_error, ssl.SSLCertVerificationError) and ssl_error.verify_message:
            detail = f": {ssl_error.verify_message}"
        elif ssl_error is not None and getattr(ssl_error, "reason", None):
            detail = f": {ssl_error.reason}"
        elif exc is not None and "CERTIFICATE_VERIFY_FAILED" in _library_text(exc):
            detail = ": certificate verify failed"
        return f"the TLS handshake failed{detail}"
    os_error = next((e for e in _chain(exc) if isinstance(e, OSError) and e.errno), None) if exc else None
    if os_error is not None and os_error.errno is not None and os_error.errno in errno.errorcode:
        return f"the connection failed: {os.strerror(os_error.errno)}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server broke the HTTP protocol or closed the connection"
    if isinstance(exc, httpx.LocalProtocolError):
        return "the request could not be sent (a header or the URL is not valid HTTP)"
    return f"the request failed ({type(exc).__name__})" if exc is not None else "the request failed"


class _Decoder:
    """Content-Encoding undone with a bound: a small compressed answer cannot grow past the cap."""

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise _Undecodable(encoding)

    def decode(self, data: bytes, limit: int) -> bytes:
        if self._zlib is None:
            return data[:limit]
        try:
            return self._zlib.decompress(data, limit)
        except zlib.error:
            raise _Undecodable("corrupt compressed data") from None


class _Exchange:
    """One request in a worker thread, with what it got or how it failed."""

    def __init__(self, client: httpx.Client, method: str, url: str, deadline: float, stop: threading.Event | None,
                 wanted: Callable[[int], int], request_options: dict[str, Any]) -> None:
        self.client = client
        self.method = method
        self.url = url
        self.deadline = deadline
        self.stop = stop
        self.wanted = wanted
        self.request_options = request_options
        self.done = threading.Event()
        self.cancelled = threading.Event()
        self.streams: list[Any] = []
        self.lock = threading.Lock()
        self.outcome: dict[str, Any] = {}

    def _expired(self) -> bool:
        return (self.cancelled.is_set() or time.monotonic() >= self.deadline
                or (self.stop is not None and self.stop.is_set()))

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: remember each network stream (to shut it down from outside),
        and end the exchange between phases once the deadline passed."""
        stream = info.get("return_value")
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")) and stream is not None:
            with self.lock:
                self.streams.append(stream)
            if self.cancelled.is_set():
                self._shut(stream)
        if event.endswith(_BEFORE_ANSWER) and self._expired():
            raise _Deadline()

    @staticmethod
    def _shut(stream: Any) -> None:
        try:
            sock = stream.get_extra_info("socket")
            if sock is not None:
                # the plain socket's shutdown, also for a TLS socket: wakes a recv blocked in another
                # thread without touching the TLS object that thread is using
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (OSError, ValueError, AttributeError):
            pass

    def cancel(self) -> None:
        self.cancelled.set()
        with self.lock:
            streams = list(self.streams)
        for stream in streams:
            self._shut(stream)

    def run(self) -> None:
        try:
            remaining = max(0.001, self.deadline - time.monotonic())
            with self.client.stream(self.method, self.url, timeout=httpx.Timeout(remaining),
                                    extensions={"trace": self._trace}, **self.request_options) as response:
                self.outcome["status"] = response.status_code
                self.outcome["charset"] = response.charset_encoding
                self.outcome["content"], self.outcome["truncated"] = self._read(response)
        except BaseException as exc:  # every failure is a result, said by its kind
            self.outcome["error"] = exc
        finally:
            self.outcome["finished"] = time.monotonic()
            self.done.set()

    def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        """At most the cap of the body, the deadline checked after every chunk."""
        cap = self.wanted(response.status_code)
        decoder = _Decoder(response.headers.get("content-encoding", ""))
        body = bytearray()
        if self._expired():
            raise _Deadline()
        for raw in response.iter_raw():
            room = cap + 1 - len(body)
            body += decoder.decode(raw, room)
            if len(body) > cap:
                return bytes(body[:cap]), True
            if self._expired():
                raise _Deadline()
        return bytes(body), False


def timed_request(client: httpx.Client, method: str, url: str, *, target: str, environment: str, step: str,
                  expected_status: list[int], timeout_s: float, max_body_bytes: int,
                  judge: Callable[[Answer], str | None] | None = None, stop: threading.Event | None = None,
                  headers: dict[str, str] | None = None, **request_options: Any) -> CheckResult:
    """Send one request, ended by ``timeout_s`` whatever the server does.

    ``judge`` may find a bad body in an answer with a good status (returns a reason); the body
    handed to the next step is the parsed JSON, when it is JSON. ``stop`` set ends the request
    at once, with reason ``stopped``."""
    started = time.time()
    clock = time.monotonic()
    deadline = clock + timeout_s
    # each header value, the credential after its scheme word (``Bearer T``: quoted alone too), and
    # the Basic credentials of the URL's user information
    secrets = request_secrets(url, headers)
    shown_url = redact_userinfo(url)
    # the probe's User-Agent unless the target's headers set one (docs/probe.md: the configured one
    # wins; it marks the events synthetic only when it too begins with regwatch-probe/)
    own_agent = not any(name.lower() == "user-agent" for name in headers or {})
    sent_headers = {"Accept-Encoding": "identity", **({"User-Agent": USER_AGENT} if own_agent else {}),
                    **(headers or {})}

    def wanted(status: int) -> int:
        return max_body_bytes if status in expected_status else min(max_body_bytes, STATUS_TEXT_BYTES)

    exchange = _Exchange(client, method, url, deadline, stop, wanted, {"headers": sent_headers, **request_options})
    worker = threading.Thread(target=exchange.run, name=f"probe-{target}-{step}", daemon=True)
    worker.start()
    stopped = False
    while not exchange.done.is_set():
        now = time.monotonic()
        if now >= deadline:
            break
        if stop is not None and stop.is_set():
            stopped = True
            break
        exchange.done.wait(min(0.05, deadline - now))
    answered = exchange.done.is_set()
    if not answered:
        # what the worker reports after this (the error of its socket being shut) is not the answer
        exchange.cancel()
        worker.join(JOIN_GRACE_S)

    def down(reason: str, message: str, status: int | None = None, duration: float | None = None) -> CheckResult:
        return CheckResult(target, environment, shown_url, step, False, started,
                           duration if duration is not None else time.monotonic() - clock,
                           status, reason, mask_secrets(message, secrets)[:500])

    if stopped:
        return down("stopped", "the probe was stopped")
    if not answered:  # the status, when the headers came and the body did not
        return down("timeout", describe("timeout", None, timeout_s), exchange.outcome.get("status"), timeout_s)
    outcome = exchange.outcome
    duration = outcome["finished"] - clock
    error = outcome.get("error")
    status = outcome.get("status")
    if isinstance(error, _Undecodable):
        return down("unexpected_body", f"the answer is encoded as {error.encoding!r}, which the probe does not read",
                    status, duration)
    if error is not None:
        if stop is not None and stop.is_set():
            return down("stopped", "the probe was stopped")
        if not isinstance(error, (httpx.HTTPError, _Deadline, OSError)):
            # not the network's doing: the request could not even be built (say, a header the
            # HTTP library refuses); said by its kind only, the library's text may quote a value
            return down("probe_error", f"the request could not be sent ({type(error).__name__})", status, duration)
        reason = failure_reason(error)
        return down(reason, describe(reason, error, timeout_s), status, duration)
    assert status is not None  # no error: the worker recorded the answer's status
    answer = Answer(status, outcome["content"], outcome["truncated"], outcome["charset"])
    if status not in expected_status:
        reason = "http_5xx" if status >= 500 else "unexpected_status"
        # the secrets out before the text is cut, or a cut secret would no longer match
        said = " ".join(mask_secrets(answer.text(), secrets).split())[:200]
        return down(reason, f"HTTP {status}: {said}", status, duration)
    if answer.truncated:
        return down("unexpected_body", f"the answer is longer than {max_body_bytes} bytes (max_body_bytes)",
                    status, duration)
    problem = judge(answer) if judge else None
    if problem is not None:
        return down("unexpected_body", problem, status, duration)
    try:
        body = answer.json()
    except ValueError:
        body = None
    return CheckResult(target, environment, shown_url, step, True, started, duration, status, body=body)
