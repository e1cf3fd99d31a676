"""One POST with a wall-clock deadline, reading at most a few KiB of the answer.

``httpx``'s ``timeout`` bounds each network operation, not the request: a receiver that drips its
answer one byte a second never times out, and ``httpx.post`` reads a body of any size whole. Here
every read, write, connect and TLS handshake gets the time left until one deadline (a network
backend that clamps each operation's timeout), so the whole request ends by then whatever the
receiver does; the status decides the outcome and only an error's first bytes are kept, as a short
excerpt, cleaned of control characters, credentials and the request's own secrets.

Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``) are honoured, as ``httpx.post`` did.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from contract.secrets import mask_secrets

MAX_ANSWER_BYTES = 4096  # of an error's body: enough for the receiver's reason
EXCERPT_CHARS = 200

# The errors a request can end with: httpx's, and httpcore's raised from the stream here.
_TIMEOUTS = (httpx.TimeoutException, httpcore.TimeoutException)
_UNUSABLE = (httpx.InvalidURL, httpx.UnsupportedProtocol, httpcore.UnsupportedProtocol, httpx.TooManyRedirects)
_NETWORK = (httpx.HTTPError, httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError, OSError)


class Answer:
    """A receiver's answer: its status and the first bytes of its body when it refused."""

    def __init__(self, status: int, head: bytes) -> None:
        self.status = status
        self.head = head


class RequestFailed(Exception):
    """No answer: ``kind`` is ``timeout``, ``network`` or ``unusable`` (a URL or scheme no
    request can succeed with), ``detail`` a short text without anything the request carried."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class _Stream(httpcore.NetworkStream):
    """A socket stream whose every operation waits at most until the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the request's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        left = self._left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, deadline: float) -> None:
        self._backend = httpcore.SyncBackend()
        self._deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the request's deadline passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, self._left(timeout), local_address, socket_options)
        return _Stream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_unix_socket(path, self._left(timeout), socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(self._deadline - time.monotonic(), 0.0)))


class _Body(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        stream = self._response.stream
        assert isinstance(stream, Iterable)  # a sync pool's response
        yield from stream

    def close(self) -> None:
        self._response.close()


class _Transport(httpx.BaseTransport):
    """httpx's request on an httpcore pool with the deadline backend (httpx's own transport does
    not take a network backend)."""

    def __init__(self, pool: httpcore.ConnectionPool | httpcore.HTTPProxy) -> None:
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(method=request.method,
                                url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                                                 port=request.url.port, target=request.url.raw_path),
                                headers=request.headers.raw, content=request.stream,
                                extensions=request.extensions)
        response = self._pool.handle_request(core)
        return httpx.Response(status_code=response.status, headers=response.headers, stream=_Body(response),
                              extensions=response.extensions)

    def close(self) -> None:
        self._pool.close()


def _pool(url: httpx.URL, deadline: float) -> httpcore.ConnectionPool | httpcore.HTTPProxy:
    backend = _Backend(deadline)
    context = httpx.create_ssl_context()
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.host) and proxy.startswith(("http://", "https://")):
        parsed = httpx.URL(proxy)
        auth = (parsed.username, parsed.password) if parsed.username else None
        return httpcore.HTTPProxy(proxy_url=str(parsed.copy_with(username=None, password=None)), proxy_auth=auth,
                                  ssl_context=context, network_backend=backend, max_connections=1)
    return httpcore.ConnectionPool(ssl_context=context, network_backend=backend, max_connections=1)


def post(url: str, deadline: float, **kwargs: Any) -> Answer:
    """POST and return the status (and, for a refusal, the body's first bytes) by ``deadline``
    (``time.monotonic()``); :class:`RequestFailed` when there is no answer by then."""
    headers = {"Accept-Encoding": "identity", **kwargs.pop("headers", {})}  # raw bytes: no decompression bomb
    try:
        parsed = httpx.URL(url)
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the request's deadline passed")
        with (httpx.Client(transport=_Transport(_pool(parsed, deadline)), timeout=left, trust_env=False,
                           follow_redirects=False) as client,
              client.stream("POST", parsed, headers=headers, **kwargs) as response):
            head = b""
            if response.status_code >= 300:  # accepted: the body does not matter, and is not read
                head = _head(response.iter_raw())
            return Answer(response.status_code, head)
    except _TIMEOUTS:
        raise RequestFailed("timeout", "no complete answer in time") from None
    except _UNUSABLE as exc:
        raise RequestFailed("unusable", type(exc).__name__) from None
    except _NETWORK as exc:
        raise RequestFailed("network", type(exc).__name__) from None


def _head(chunks: Iterator[bytes]) -> bytes:
    """At most :data:`MAX_ANSWER_BYTES` of a body; what came before a timeout or a cut is kept."""
    got = bytearray()
    try:
        for chunk in chunks:
            got += chunk[:MAX_ANSWER_BYTES - len(got)]
            if len(got) >= MAX_ANSWER_BYTES:
                break
    except (*_TIMEOUTS, *_NETWORK):
        pass
    return bytes(got)


_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/?#@]*@")


def excerpt(raw: bytes | str, secrets: Iterable[str] = ()) -> str:
    """Text fit for an error message, a log line or a document: the request's secrets masked,
    user info dropped from URLs, control characters gone, one short line."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = _USERINFO.sub(r"\1", mask_secrets(text, secrets))
    text = "".join(c if c.isprintable() else " " for c in text)
    text = " ".join(text.split())
    return text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else "")
