"""Microsoft Teams: an Adaptive Card through a Workflows webhook (the retired Office 365
connector card is not sent), every interpolated value escaped for its Markdown.

The card reads like the webhook payload it is made from: the message, the group, value and bound
in the rule's units, the sample events, and actions opening Discover and the alerts dashboard. A
digest is one line per alert (a TextBlock renders no Markdown table).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from rules.notify.base import (
    Notifier,
    digest_lines,
    facts,
    links,
    markdown_escape,
    sample_lines,
    title,
    url_from_env,
)


class TeamsTarget(Notifier):
    type: Literal["teams"]
    url_env: str  # a Workflows ("When a Teams webhook request is received") URL

    secret_url: ClassVar[bool] = True

    def check(self) -> None:
        url_from_env(self.url_env)

    def digest_text(self, payloads: list[dict[str, Any]]) -> str:
        return "\n".join(digest_lines(payloads))

    def send(self, payload: dict[str, Any]) -> None:
        md = markdown_escape
        digest = payload["state"] == "digest"
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": md(title(payload)), "wrap": True}]
        # A digest's lines each a block: the escaping joins a block's lines into one.
        body += [{"type": "TextBlock", "text": md(line), "wrap": True}
                 for line in (payload["message"].splitlines() if digest else [payload["message"]])]
        if not digest:
            body.append({"type": "FactSet", "facts": [{"title": name.capitalize(), "value": md(text)}
                                                      for name, text in facts(payload)]})
        if samples := sample_lines(payload):
            body.append({"type": "TextBlock", "text": "Sample events", "weight": "Bolder", "wrap": True})
            body += [{"type": "TextBlock", "text": md(line), "fontType": "Monospace", "size": "Small", "wrap": True}
                     for line in samples]
        card: dict[str, Any] = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                                "version": "1.4", "body": body}
        if actions := [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in links(payload)]:
            card["actions"] = actions
        message = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
        self._post(url_from_env(self.url_env), json=message)
