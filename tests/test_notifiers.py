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
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"].startswith("\\[FIRING\\]")
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


def _certificate(tmp_path: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for ``name`` (its own CA): the file to trust, and the server's context."""
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"
                    if name == "localhost" else f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return cert, context


class RecordingAuthenticator(Authenticator):
    seen: list[bytes] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        RecordingAuthenticator.seen.append(auth_data.password)
        return super().__call__(server, session, envelope, mechanism, auth_data)


@pytest.fixture
def smtp_server(tmp_path: Path):
    """A real STARTTLS SMTP server (aiosmtpd) with a certificate for ``localhost``."""
    from regwatch.demo import free_port

    def start(name: str = "localhost"):
        cert, context = _certificate(tmp_path, name)
        inbox = Inbox()
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                                authenticator=RecordingAuthenticator(), auth_required=True)
        controller.start()
        started.append(controller)
        return port, cert, inbox

    started: list = []
    RecordingAuthenticator.seen = []
    yield start
    for controller in started:
        controller.stop()


def _email(port: int, **extra) -> EmailTarget:
    return EmailTarget(type="email", host="localhost", port=port, username="alerts", password_env="SMTP_PASSWORD",
                       sender="regwatch@example.com", to=["oncall@example.com"], **extra)


def test_email_over_starttls_with_auth(smtp_server, monkeypatch) -> None:
    port, cert, inbox = smtp_server()
    monkeypatch.setenv("SMTP_PASSWORD", "mail-pass")
    target = _email(port, ca_file=cert)
    target.send(PAYLOAD)
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    with pytest.raises(DeliveryFailed, match="SMTPAuthenticationError"):
        target.send(PAYLOAD)
    (envelope,) = inbox.messages
    assert envelope.rcpt_tos == ["oncall@example.com"]
    text = envelope.content.decode()
    assert "Subject: [FIRING] registry-error-ratio (critical)" in text
    assert "X-Regwatch-Idempotency-Key: k-123" in text and "0.12 of registry calls failed" in text


def test_email_refuses_a_certificate_it_cannot_verify_before_sending_the_password(smtp_server, tmp_path,
                                                                                 monkeypatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "mail-pass")
    port, _, inbox = smtp_server()  # self-signed, not in the system's trust store
    with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED"):
        _email(port).send(PAYLOAD)
    other_port, other_cert, other_inbox = smtp_server("mail.other.example")  # trusted, but for another name
    with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED|match"):
        _email(other_port, ca_file=other_cert).send(PAYLOAD)
    assert RecordingAuthenticator.seen == [] and inbox.messages == [] and other_inbox.messages == []
    _email(port, verify_certs=False).send(PAYLOAD)  # the explicit opt-out still encrypts, and warns at load
    assert len(inbox.messages) == 1


def test_email_login_without_tls_is_refused_at_load_unless_allowed() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="password in clear"):
        EmailTarget(type="email", host="smtp.example", starttls=False, username="u", password_env="P",
                    sender="a@b", to=["c@d"])
    EmailTarget(type="email", host="smtp.example", starttls=False, username="u", password_env="P", sender="a@b",
                to=["c@d"], allow_insecure_login=True)


HOSTILE = {**PAYLOAD, "group": "<!channel> <https://evil.example|Re-authenticate> | x", "value": "1|2",
           "message": "model <!here> [Re-authenticate](https://evil.example) & *urgent*\n# heading"}


def test_names_from_logs_are_escaped_for_each_target(http_receiver, smtp_server, monkeypatch) -> None:
    monkeypatch.setenv("SLACK_URL", http_receiver + "/slack\n")  # a trailing newline from $(cat file)
    monkeypatch.setenv("TEAMS_URL", http_receiver + "/teams")
    SlackTarget(type="slack", url_env="SLACK_URL").send(HOSTILE)
    TeamsTarget(type="teams", url_env="TEAMS_URL").send(HOSTILE)
    SlackTarget(type="slack", url_env="SLACK_URL").send_digest([HOSTILE, PAYLOAD])
    slack, teams, digest = (json.loads(r["body"]) for r in Capture.requests)
    rendered = json.dumps(slack)
    assert "<!channel>" not in rendered and "<!here>" not in rendered and "<https://evil" not in rendered
    assert "&lt;!channel&gt;" in slack["blocks"][2]["elements"][0]["text"]
    assert "&lt;!here&gt; [Re-authenticate](https://evil.example) &amp; *urgent*" in slack["blocks"][1]["text"]["text"]
    card = teams["attachments"][0]["content"]
    assert card["body"][1]["text"] == ("model \\<!here\\> \\[Re-authenticate\\]\\(https://evil.example\\) & "
                                       "\\*urgent\\* # heading")
    assert card["body"][2]["facts"][0]["value"].startswith("\\<!channel\\>")
    table = digest["blocks"][1]["text"]["text"]
    hostile_row = [row for row in table.splitlines() if "channel" in row][0]
    assert hostile_row.count(" | ") == 4  # five cells: the | in the group and value are escaped
    monkeypatch.setenv("SMTP_PASSWORD", "mail-pass")
    port, cert, inbox = smtp_server()
    _email(port, ca_file=cert).send(HOSTILE)
    mail = inbox.messages[0].content.decode()
    assert "&lt;!channel&gt;" in mail and "<!channel>" not in mail.split("text/html")[1]


def test_bad_urls_and_templates_are_refused_at_load() -> None:
    from pydantic import ValidationError

    for url in ("http://hooks.example/x\n", "not a url", "ftp://x/y", "http://"):
        with pytest.raises(ValidationError, match="url"):
            WebhookTarget(url=url)
    with pytest.raises(ValidationError, match="fields.Body"):
        SmsTarget(type="sms", url="https://sms.example/", to="1", sender="2", fields={"Body": "{group:d}"})
    with pytest.raises(ValidationError, match="not a plain name"):
        SmsTarget(type="sms", url="https://sms.example/", to="1", sender="2", fields={"Body": "{rule.__class__}"})


def test_an_invalid_url_in_env_is_a_delivery_failure_not_an_exception(monkeypatch) -> None:
    monkeypatch.setenv("SLACK_URL", "http://exa mple/\x01")
    with pytest.raises(DeliveryFailed, match="SLACK_URL"):
        SlackTarget(type="slack", url_env="SLACK_URL").send(PAYLOAD)
    with pytest.raises(DeliveryFailed, match="SLACK_URL"):
        SlackTarget(type="slack", url_env="SLACK_URL").check()
