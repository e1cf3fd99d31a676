"""Email over SMTP: STARTTLS that verifies the server (a CA file for a private CA; an explicit
opt-out that warns), no login in clear unless allowed, a text and an escaped HTML part.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rules.notify.base import DeliveryFailed, Notifier, header_value, secret_from_env, title, log


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
        fields = [("group", payload["group"]), ("value", payload["value"]), ("bound", payload["threshold"]),
                  ("key", payload["key"])]
        message.set_content(f"{payload['message']}\n\n" + "".join(f"{k}: {v}\n" for k, v in fields))
        rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in fields)
        message.add_alternative(f"<html><body><p>{html.escape(str(payload['message']))}</p><table>{rows}</table>"
                                "</body></html>", subtype="html")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=self._tls())
                if self.username:
                    smtp.login(self.username, secret_from_env(self.password_env) or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException, ValueError) as exc:  # ssl.SSLError is an OSError
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
