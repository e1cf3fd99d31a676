"""Each notifier against a real local receiver: an HTTP server, and an aiosmtpd SMTP server."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from rules.notify import (DeliveryFailed, EmailTarget, SlackTarget, SmsTarget, TeamsTarget, UnsafeTemplate,
                          WebhookTarget, render, signature)

PAYLOAD = {"rule": "registry-error-ratio", "group": "*", "state": "firing", "value": 0.12, "threshold": 0.05,
           "severity": "critical", "labels": {"team": "ml"}, "since": 1.0, "at": 2.0,
           "message": "registry-error-ratio: 0.12 of registry calls failed", "key": "k-123"}


class Capture(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Capture.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                 "body": body})
        self.send_response(200 if "fail" not in self.path else 500)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_receiver():
    Capture.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_webhook_json_signed(http_receiver, monkeypatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "shh")
    WebhookTarget(url=http_receiver + "/hook", secret_env="HOOK_SECRET").send(PAYLOAD)
    (request,) = Capture.requests
    assert json.loads(request["body"]) == PAYLOAD
    assert request["headers"]["x-regwatch-signature"] == signature("shh", request["body"])
    assert request["headers"]["x-regwatch-idempotency-key"] == "k-123"
    with pytest.raises(DeliveryFailed, match="HTTP 500"):
        WebhookTarget(url=http_receiver + "/fail").send(PAYLOAD)


def test_slack_block_kit_and_teams_adaptive_card(http_receiver, monkeypatch) -> None:
    monkeypatch.setenv("SLACK_URL", http_receiver + "/slack")
    monkeypatch.setenv("TEAMS_URL", http_receiver + "/teams")
    SlackTarget(type="slack", url_env="SLACK_URL").send(PAYLOAD)
    TeamsTarget(type="teams", url_env="TEAMS_URL").send(PAYLOAD)
    slack, teams = (json.loads(r["body"]) for r in Capture.requests)
    assert slack["blocks"][0] == {"type": "header", "text": {"type": "plain_text",
                                                              "text": "[FIRING] registry-error-ratio (critical)"}}
    assert slack["blocks"][1]["text"]["text"] == PAYLOAD["message"]
    (attachment,) = teams["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"].startswith("[FIRING]")
    assert {"title": "Value", "value": "0.12"} in card["body"][2]["facts"]


def test_sms_twilio_form_post_with_basic_auth(http_receiver, monkeypatch) -> None:
    monkeypatch.setenv("TWILIO_TOKEN", "tok")
    SmsTarget(type="sms", url=http_receiver + "/2010-04-01/Accounts/AC1/Messages.json", username="AC1",
              password_env="TWILIO_TOKEN", to="+15550001111", sender="+15550002222").send(PAYLOAD)
    (request,) = Capture.requests
    form = dict(urllib.parse.parse_qsl(request["body"].decode()))
    assert form["To"] == "+15550001111" and form["From"] == "+15550002222"
    assert form["Body"].startswith("[FIRING] registry-error-ratio (critical): registry-error-ratio: 0.12")
    assert request["headers"]["authorization"] == "Basic QUMxOnRvaw=="  # AC1:tok


def test_templates_are_plain_names_only() -> None:
    assert render("{rule} at {value:.1f}", {"rule": "r", "value": 0.25}) == "r at 0.2"
    for bad in ("{rule.__class__}", "{labels[team]}", "{rule!r}"):
        with pytest.raises(UnsafeTemplate):
            render(bad, {"rule": "r", "labels": {"team": "x"}})


class Authenticator:
    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        ok = auth_data.login == b"alerts" and auth_data.password == b"mail-pass"
        return AuthResult(success=ok, handled=False)


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
        self.messages.append(envelope)
        return "250 OK"


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


def test_email_over_starttls_with_auth(tmp_path: Path, monkeypatch) -> None:
    from regwatch.demo import free_port

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=_self_signed(tmp_path),
                            require_starttls=True, authenticator=Authenticator(), auth_required=True)
    controller.start()
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "mail-pass")
        target = EmailTarget(type="email", host="127.0.0.1", port=port,
                             username="alerts", password_env="SMTP_PASSWORD", sender="regwatch@example.com",
                             to=["oncall@example.com"])
        target.send(PAYLOAD)
        monkeypatch.setenv("SMTP_PASSWORD", "wrong")
        with pytest.raises(DeliveryFailed, match="SMTPAuthenticationError"):
            target.send(PAYLOAD)
    finally:
        controller.stop()
    (envelope,) = inbox.messages
    assert envelope.rcpt_tos == ["oncall@example.com"]
    text = envelope.content.decode()
    assert "Subject: [FIRING] registry-error-ratio (critical)" in text
    assert "X-Regwatch-Idempotency-Key: k-123" in text and "0.12 of registry calls failed" in text
