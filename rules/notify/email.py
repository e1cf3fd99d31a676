"""Email over SMTP: STARTTLS that verifies the server (a CA file for a private CA; an explicit
opt-out that warns), no login in clear unless allowed, a text and an escaped HTML part.

The whole SMTP session ends by the send's deadline: ``smtplib``'s timeout bounds each socket
operation only, so a watchdog shuts the connection down when the deadline passes.
"""

from __future__ import annotations

import contextlib
import html
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rules.notify.base import (
    DeliveryFailed,
    Notifier,
    facts,
    header_value,
    links,
    log,
    secret_from_env,
    title,
)
from rules.notify.http import excerpt


class EmailTarget(Notifier):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ca_file: Path | None = None  # the CA that signed the server's certificate (default: the system's)
    verify_certs: bool = True  # false: TLS without checking whom we talk to (warned at load)
    allow_insecure_login: bool = False  # log in without TLS: the password crosses the network in clear
    username: str | None = None
    password_env: str | None = None
    sender: str
    to: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _safe_login(self) -> EmailTarget:
        if self.username and not self.starttls and not self.allow_insecure_login:
            raise ValueError("username without starttls would send the password in clear: set starttls: true "
                             "(or allow_insecure_login: true)")
        if self.starttls and not self.verify_certs:
            log.warning("smtp_tls_unverified", host=self.host,
                        detail="verify_certs: false, anyone in the middle can read the password and the mail")
        if self.username and not self.starttls:
            log.warning("smtp_login_in_clear", host=self.host)
        return self

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if not self.verify_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def send(self, payload: dict[str, Any]) -> None:
        message = EmailMessage()
        message["Subject"] = header_value(title(payload))
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["X-Regwatch-Idempotency-Key"] = header_value(payload["key"])
        fields = [*facts(payload), ("key", payload["key"])]
        message.set_content(f"{payload['message']}\n\n" + "".join(f"{k}: {v}\n" for k, v in fields)
                            + "".join(f"{label}: {url}\n" for label, url in links(payload)))
        rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in fields)
        rows += "".join(f'<tr><th>{html.escape(label)}</th><td><a href="{html.escape(url)}">{html.escape(label)}</a>'
                        "</td></tr>" for label, url in links(payload))
        message.add_alternative(f"<html><body><p>{html.escape(str(payload['message']))}</p><table>{rows}</table>"
                                "</body></html>", subtype="html")
        password = secret_from_env(self.password_env) if self.username else None
        deadline = self.deadline()
        cut = threading.Event()
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            smtp = _Session(timeout=min(self.timeout_s, left))  # not connected yet: the watchdog is armed first
            try:
                with _watchdog(smtp, deadline, cut):
                    smtp.connect(self.host, self.port)  # the greeting is read here, under the deadline
                    if self.starttls:
                        smtp.starttls(context=self._tls())
                    if self.username:
                        smtp.login(self.username, password or "")
                    smtp.send_message(message)
                    try:
                        smtp.quit()
                    except (OSError, smtplib.SMTPException):
                        pass  # the message was taken: a lost goodbye changes nothing
            finally:
                smtp.close()
        except smtplib.SMTPResponseException as exc:  # the server said no: 4xx may pass later, 5xx will not
            said = (exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes)
                    else str(exc.smtp_error))
            raise DeliveryFailed(f"{type(exc).__name__}: {exc.smtp_code} {excerpt(said, [password or ''])}",
                                 retryable=exc.smtp_code < 500) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryFailed(f"SMTPRecipientsRefused: {len(exc.recipients)} recipient(s)",
                                 retryable=False) from None
        except (OSError, smtplib.SMTPException, ValueError) as exc:  # ssl.SSLError is an OSError
            if cut.is_set() or isinstance(exc, TimeoutError):
                raise DeliveryFailed(f"timed out: the mail server did not finish within {self.timeout_s:g} s") from None
            raise DeliveryFailed(_smtp_error(exc), retryable=_smtp_retryable(exc)) from None


def _smtp_error(exc: BaseException) -> str:
    """The exception's type and its reason, never its whole text (which may quote what was sent)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{type(exc).__name__}: {exc.reason} {excerpt(str(exc.verify_message or ''))}".strip()
    if isinstance(exc, ssl.SSLError):
        return f"{type(exc).__name__}: {exc.reason or ''}".strip()
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {excerpt(exc.strerror)}"
    return type(exc).__name__


def _smtp_retryable(exc: BaseException) -> bool:
    """A server away or a connection cut may pass; a certificate, a missing STARTTLS or a
    message the library refuses will not."""
    return not isinstance(exc, (ssl.SSLCertVerificationError, smtplib.SMTPNotSupportedError, ValueError))


MAX_REPLY_BYTES = 64 * 1024  # one SMTP reply, continuation lines included (a greeting is a few hundred)


class _CappedReader:
    """The reply stream of a session, refusing a reply longer than :data:`MAX_REPLY_BYTES`:
    smtplib keeps reading ``220-`` continuation lines for as long as the server sends them."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.left = MAX_REPLY_BYTES

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self.raw.readline(size)
        self.left -= len(line)
        if self.left < 0:
            raise smtplib.SMTPServerDisconnected(f"the mail server's answer is longer than {MAX_REPLY_BYTES} bytes")
        return line

    def close(self) -> None:
        self.raw.close()


class _Session(smtplib.SMTP):
    """smtplib's client, each reply read through a :class:`_CappedReader` of its own, and
    connected after it was made (so that the watchdog is armed before the greeting is read)."""

    def connect(self, host: str = "localhost", port: int = 0, source_address: Any = None) -> tuple[int, bytes]:
        self._host = host  # STARTTLS checks the certificate against it (smtplib sets it only in __init__)
        return super().connect(host, port, source_address)

    def getreply(self) -> tuple[int, bytes]:
        if self.sock is not None:
            if self.file is None:
                self.file = _CappedReader(self.sock.makefile("rb"))
            elif isinstance(self.file, _CappedReader):
                self.file.left = MAX_REPLY_BYTES
        return super().getreply()


@contextlib.contextmanager
def _watchdog(smtp: smtplib.SMTP, deadline: float, cut: threading.Event) -> Iterator[None]:
    """Shuts the session's connection down (waking any blocked read or write) if ``deadline``
    passes first, from the connect on: the socket is looked up when the deadline comes (a server
    dripping its greeting is cut as one dripping any later answer). Shutting a socket down does
    not close it: smtplib still closes it, once."""

    def fire() -> None:
        cut.set()
        sock = smtp.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
