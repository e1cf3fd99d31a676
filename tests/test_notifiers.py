"""Each notifier against a real local receiver: an HTTP server, and an aiosmtpd SMTP server."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from rules.notify import (
    DeliveryFailed,
    EmailTarget,
    SlackTarget,
    SmsTarget,
    TeamsTarget,
    UnsafeTemplate,
    WebhookTarget,
    render,
    signature,
)

PAYLOAD = {"rule": "registry-error-ratio", "group": "*", "state": "firing", "value": 0.12, "threshold": 0.05,
           "severity": "critical", "labels": {"team": "ml"}, "since": 1.0, "at": 2.0,
           "message": "registry-error-ratio: 0.12 of registry calls failed", "key": "k-123"}


class Capture(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:
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
    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = auth_data.login == b"alerts" and auth_data.password == b"mail-pass"
        return AuthResult(success=ok, handled=False)


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
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

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
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
    # A list, not a Markdown table (Slack renders none); the names in it escaped.
    assert digest["blocks"][1]["text"]["text"] == (
        "• [FIRING] registry-error-ratio (critical) · &lt;!channel&gt; &lt;https://evil.example|Re-authenticate&gt;"
        " | x · 1|2 (bound 0.05)\n"
        "• [FIRING] registry-error-ratio (critical) · 0.12 (bound 0.05)")
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


# -- issue 25 and 26 ----------------------------------------------------------------------------


def test_slack_text_is_the_heading_and_the_whole_body(http_receiver, monkeypatch) -> None:
    """Issue 26: the fallback ``text`` (what notifications and screen readers show) was the
    string of a Python function."""
    monkeypatch.setenv("SLACK_URL", http_receiver + "/slack")
    SlackTarget(type="slack", url_env="SLACK_URL").send(PAYLOAD | {"group": "churn<1>"})
    (request,) = Capture.requests
    assert request["headers"]["content-type"] == "application/json"
    assert json.loads(request["body"]) == {
        "text": "[FIRING] registry-error-ratio (critical)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "[FIRING] registry-error-ratio (critical)"}},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": "registry-error-ratio: 0.12 of registry calls failed"}},
            {"type": "context", "elements": [{"type": "mrkdwn",
                                              "text": "group churn&lt;1&gt; · value 0.12 · bound 0.05"}]}]}


class Echo(BaseHTTPRequestHandler):
    """Refuses with a body that quotes the request's headers back (as some gateways do)."""

    seen: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Echo.seen.append({k.lower(): v for k, v in self.headers.items()})
        status = 200 if "ok" in self.path else 400
        said = (f"bad request, you sent: authorization={self.headers.get('Authorization')} ").encode() + body[:120]
        if "bare" in self.path:  # the credential alone, without its scheme word
            said = f"bad credential: {(self.headers.get('Authorization') or '').split()[-1]}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(said)))
        self.end_headers()
        self.wfile.write(said)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def echo():
    Echo.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_secrets_from_env_are_stripped_and_never_reach_an_error(echo, monkeypatch) -> None:
    """A key ending in a newline (a Kubernetes secret file) made the HTTP library refuse the header
    and quote the key in its message, which went to the state index and the log."""
    from rules.notify import AlertmanagerTarget, OpsgenieTarget, PagerDutyTarget

    monkeypatch.setenv("GENIE_KEY", "genie-secret-123\n")
    monkeypatch.setenv("AM_TOKEN", "am-token-456\n")
    monkeypatch.setenv("HOOK_SECRET", "hook-secret-789\n")
    monkeypatch.setenv("PD_KEY", "pd-routing-key\n")
    OpsgenieTarget(type="opsgenie", api_key_env="GENIE_KEY", url=echo + "/ok").send(PAYLOAD)
    AlertmanagerTarget(type="alertmanager", url=echo + "/ok", bearer_token_env="AM_TOKEN").send(PAYLOAD)
    WebhookTarget(url=echo + "/ok", secret_env="HOOK_SECRET").send(PAYLOAD)
    genie, am, hook = Echo.seen
    assert genie["authorization"] == "GenieKey genie-secret-123" and am["authorization"] == "Bearer am-token-456"
    assert hook["x-regwatch-signature"] == signature("hook-secret-789", json.dumps(PAYLOAD, sort_keys=True).encode())
    for send in (lambda: OpsgenieTarget(type="opsgenie", api_key_env="GENIE_KEY", url=echo + "/no").send(PAYLOAD),
                 lambda: AlertmanagerTarget(type="alertmanager", url=echo + "/no",
                                            bearer_token_env="AM_TOKEN").send(PAYLOAD),
                 lambda: PagerDutyTarget(type="pagerduty", routing_key_env="PD_KEY", url=echo + "/no").send(PAYLOAD)):
        with pytest.raises(DeliveryFailed) as failed:
            send()
        text = str(failed.value)
        assert text.startswith("HTTP 400: bad request, you sent:") and not failed.value.retryable
        assert "genie-secret" not in text and "am-token" not in text and "pd-routing" not in text and "***" in text
    monkeypatch.setenv("GENIE_KEY", "genie\x1b[2Jsecret")
    with pytest.raises(DeliveryFailed) as failed:
        OpsgenieTarget(type="opsgenie", api_key_env="GENIE_KEY").check()
    assert str(failed.value) == "environment variable GENIE_KEY holds a control character"
    monkeypatch.delenv("AM_TOKEN")
    with pytest.raises(DeliveryFailed, match="^environment variable AM_TOKEN is not set or empty$"):
        AlertmanagerTarget(type="alertmanager", url=echo, bearer_token_env="AM_TOKEN").check()
    monkeypatch.setenv("SMS_TOKEN", " \n")
    with pytest.raises(DeliveryFailed, match="SMS_TOKEN"):
        SmsTarget(type="sms", url=echo, username="AC1", password_env="SMS_TOKEN", to="1", sender="2").check()
    with pytest.raises(DeliveryFailed, match="SMTP_PASSWORD"):
        _email(25, ca_file=None).check()  # SMTP_PASSWORD is not set in this test


def test_a_credential_quoted_alone_or_as_basic_auth_is_masked(echo, monkeypatch) -> None:
    """Masking the whole header value missed the token quoted alone and the Basic credentials
    made from ``auth=`` or a URL's user and password."""
    from rules.notify import AlertmanagerTarget

    monkeypatch.setenv("AM_TOKEN", "am-token-456")
    monkeypatch.setenv("SMS_TOKEN", "sms-pass-789")
    user_url = echo.replace("http://", "http://hookuser:webhookpw@")
    sends = {
        "alertmanager": lambda: AlertmanagerTarget(type="alertmanager", url=echo + "/bare",
                                                   bearer_token_env="AM_TOKEN").send(PAYLOAD),
        "sms": lambda: SmsTarget(type="sms", url=echo + "/bare", username="AC1", password_env="SMS_TOKEN", to="1",
                                 sender="2").send(PAYLOAD),
        "webhook": lambda: WebhookTarget(url=user_url + "/bare").send(PAYLOAD),
    }
    for name, send in sends.items():
        with pytest.raises(DeliveryFailed) as failed:
            send()
        assert str(failed.value) == "HTTP 400: bad credential: ***", name
    assert [seen["authorization"] for seen in Echo.seen] == [
        "Bearer am-token-456", "Basic " + base64.b64encode(b"AC1:sms-pass-789").decode(),
        "Basic " + base64.b64encode(b"hookuser:webhookpw").decode()]


def test_a_slack_url_quoted_back_in_an_answer_is_masked(http_receiver, monkeypatch) -> None:
    monkeypatch.setenv("SLACK_URL", http_receiver + "/fail/T000/B000/XXXXsecretpath")
    with pytest.raises(DeliveryFailed) as failed:
        SlackTarget(type="slack", url_env="SLACK_URL").send(PAYLOAD)
    assert str(failed.value) == "HTTP 500: ok" and failed.value.retryable


@pytest.mark.parametrize("template", ["{group:>500000000}", "{value:>9999999999}", "{value:.101f}",
                                      "{group:^1001}", "{value:,.1000000f}"])
def test_template_widths_and_precisions_are_capped_at_load(template: str, tmp_path: Path) -> None:
    from rules.model import RuleError, load_rules

    with pytest.raises(UnsafeTemplate, match="(width|precision) \\d+ is more than (1000|100)$"):
        render(template, {"group": "g", "value": 1.5})
    (tmp_path / "r.yaml").write_text(f"""
rules:
  - name: wide
    type: threshold
    kinds: [error]
    condition: {{op: ">", value: 1}}
    notify: [hook]
    message: "{template}"
""")
    with pytest.raises(RuleError) as refused:
        load_rules(tmp_path)
    assert "\n" not in str(refused.value) and "message" in str(refused.value) and "more than" in str(refused.value)
    assert render("{group:>1000}|{value:.100f}", {"group": "g", "value": 1.5}).startswith(" " * 999 + "g|1.5")


class DripSmtp:
    """Greets, then answers EHLO one byte a second; or (``greeting``) drips the greeting itself;
    or (``endless``) greets with continuation lines without end, as fast as they are taken."""

    def __init__(self, mode: str = "ehlo") -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.closing = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            if self.mode == "endless":
                line = b"220-" + b"x" * 1000 + b"\r\n"
                while not self.closing.is_set():
                    try:
                        conn.sendall(line * 64)
                    except OSError:
                        return
                return
            if self.mode == "ehlo":
                conn.sendall(b"220 drip ESMTP\r\n")
                conn.recv(1024)
            answer = b"220 drip ESMTP\r\n" if self.mode == "greeting" else b"250-drip\r\n250 STARTTLS\r\n"
            for byte in answer:
                if self.closing.wait(1.0):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.closing.set()
        self.sock.close()


@pytest.mark.parametrize("mode", ["ehlo", "greeting"])
def test_an_smtp_session_ends_by_its_timeout(monkeypatch, mode: str) -> None:
    """The greeting too: smtplib reads it while it connects, before the session is under way."""
    import time

    server = DripSmtp(mode)
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "mail-pass")
        target = _email(server.sock.getsockname()[1], timeout_s=2)
        started = time.monotonic()
        with pytest.raises(DeliveryFailed) as failed:
            target.send(PAYLOAD)
        assert time.monotonic() - started < 4  # smtplib's own timeout is per read: 25 s of dripping
        assert str(failed.value) == "timed out: the mail server did not finish within 2 s" and failed.value.retryable
    finally:
        server.close()


def test_an_endless_smtp_greeting_is_cut_at_the_reply_cap_not_read_to_the_end(monkeypatch) -> None:
    """A greeting of continuation lines without end grew the runner by 1.5 GB in 4 s."""
    import resource

    monkeypatch.setenv("SMTP_PASSWORD", "mail-pass")
    server = DripSmtp("endless")
    try:
        target = _email(server.sock.getsockname()[1], timeout_s=5)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(DeliveryFailed) as failed:
            target.send(PAYLOAD)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    finally:
        server.close()
    assert str(failed.value) == "SMTPServerDisconnected" and failed.value.retryable
    assert grown_mb < 50, grown_mb


# -- issue 27 item 6: texts people read, not debug output ------------------------------------------

SHOWN = PAYLOAD | {
    "group": "churn", "value": 0.40089186286863654, "message": "registry-error-ratio: 40.1 % of registry calls failed",
    "shown": {"group": "churn", "value": "40.1 %", "threshold": "5 %"},
    "discover": "https://kibana.example/app/discover#/?_g=(time:(from:'2026-12-04T10:00:00.000Z'))",
    "dashboard": "https://kibana.example/app/dashboards#/view/regwatch-dashboard-alerts",
    "events": [{"user": {"name": "a<b>"}, "url": {"path": "/api/2.0/mlflow/registered-models/create"}},
               {"user": {"name": "`x`"}}]}


def test_slack_shows_values_in_their_units_with_links_and_samples(http_receiver, monkeypatch) -> None:
    """Issue 27: "value 0.40089186286863654" and no way to Discover or the samples from Slack."""
    monkeypatch.setenv("SLACK_URL", http_receiver + "/slack")
    SlackTarget(type="slack", url_env="SLACK_URL").send(SHOWN)
    (request,) = Capture.requests
    assert json.loads(request["body"]) == {
        "text": "[FIRING] registry-error-ratio (critical)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "[FIRING] registry-error-ratio (critical)"}},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": "registry-error-ratio: 40.1 % of registry calls failed"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "group churn · value 40.1 % · bound 5 %"}]},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open in Discover"},
                 "url": SHOWN["discover"]},
                {"type": "button", "text": {"type": "plain_text", "text": "Alerts dashboard"},
                 "url": SHOWN["dashboard"]}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                "*Sample events*\n```"
                '{"url": {"path": "/api/2.0/mlflow/registered-models/create"}, "user": {"name": "a&lt;b&gt;"}}\n'
                '{"user": {"name": "\'x\'"}}```')}}]}


def test_teams_shows_values_in_their_units_with_links_and_samples(http_receiver, monkeypatch) -> None:
    monkeypatch.setenv("TEAMS_URL", http_receiver + "/teams")
    TeamsTarget(type="teams", url_env="TEAMS_URL").send(SHOWN)
    (request,) = Capture.requests
    assert json.loads(request["body"]) == {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": {
            "type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4", "body": [
                {"type": "TextBlock", "size": "Medium", "weight": "Bolder",
                 "text": "\\[FIRING\\] registry-error-ratio \\(critical\\)", "wrap": True},
                {"type": "TextBlock", "text": "registry-error-ratio: 40.1 % of registry calls failed", "wrap": True},
                {"type": "FactSet", "facts": [{"title": "Group", "value": "churn"},
                                              {"title": "Value", "value": "40.1 %"},
                                              {"title": "Bound", "value": "5 %"}]},
                {"type": "TextBlock", "text": "Sample events", "weight": "Bolder", "wrap": True},
                {"type": "TextBlock", "fontType": "Monospace", "size": "Small", "wrap": True,
                 "text": '{"url": {"path": "/api/2.0/mlflow/registered-models/create"}, '
                         '"user": {"name": "a\\<b\\>"}}'},
                {"type": "TextBlock", "fontType": "Monospace", "size": "Small", "wrap": True,
                 "text": '{"user": {"name": "\\`x\\`"}}'}],
            "actions": [{"type": "Action.OpenUrl", "title": "Open in Discover", "url": SHOWN["discover"]},
                        {"type": "Action.OpenUrl", "title": "Alerts dashboard", "url": SHOWN["dashboard"]}]}}]}


def test_an_event_alert_shows_no_bound_and_a_digest_is_a_list(http_receiver, monkeypatch) -> None:
    """A new term's alert said "bound None"; a digest was a Markdown table Slack shows as pipes."""
    monkeypatch.setenv("SLACK_URL", http_receiver + "/slack")
    monkeypatch.setenv("TEAMS_URL", http_receiver + "/teams")
    term = PAYLOAD | {"rule": "new-model", "group": "term:ranker", "state": "fired", "value": 1.0,
                      "threshold": None, "severity": "info",
                      "message": "new-model: new modelregistry.model.name ranker",
                      "shown": {"group": "ranker", "value": "1", "threshold": None}}
    SlackTarget(type="slack", url_env="SLACK_URL").send(term)
    TeamsTarget(type="teams", url_env="TEAMS_URL", digest=True).send_digest([SHOWN, term])
    slack, teams = (json.loads(r["body"]) for r in Capture.requests)
    assert slack["blocks"][2] == {"type": "context", "elements": [{"type": "mrkdwn",
                                                                   "text": "group ranker · value 1"}]}
    assert teams["attachments"][0]["content"]["body"] == [
        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": "\\[digest\\] 2 alerts \\(critical\\)",
         "wrap": True},
        {"type": "TextBlock", "wrap": True,
         "text": "\\[FIRING\\] registry-error-ratio \\(critical\\) · churn · 40.1 % \\(bound 5 %\\)"},
        {"type": "TextBlock", "text": "\\[FIRED\\] new-model \\(info\\) · ranker · 1", "wrap": True}]
