"""Slack: Block Kit through an incoming webhook, every interpolated value escaped for mrkdwn.

A notification reads like the webhook payload it is made from: the message, the group, value and
bound in the rule's units, buttons to Discover and the alerts dashboard, and the sample events.
A digest is a list (Slack renders no Markdown table).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from rules.notify.base import (
    Notifier,
    digest_lines,
    facts,
    links,
    sample_lines,
    slack_escape,
    title,
    url_from_env,
)

TEXT_CHARS = 3000  # Slack's limit on a section's text
URL_CHARS = 3000  # and on a button's URL


class SlackTarget(Notifier):
    type: Literal["slack"]
    url_env: str  # incoming webhook URLs are secrets

    secret_url: ClassVar[bool] = True

    def check(self) -> None:
        url_from_env(self.url_env)

    def digest_text(self, payloads: list[dict[str, Any]]) -> str:
        return "\n".join(f"• {line}" for line in digest_lines(payloads))

    def send(self, payload: dict[str, Any]) -> None:
        heading = title(payload)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": heading[:150]}},  # plain_text: not parsed
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(payload["message"])[:TEXT_CHARS]}},
        ]
        if payload["state"] != "digest":
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(
                f"{name} {slack_escape(text)}" for name, text in facts(payload))}]})
        buttons = [{"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
                   for label, url in links(payload) if len(url) <= URL_CHARS]
        if buttons:
            blocks.append({"type": "actions", "elements": buttons})
        if samples := sample_lines(payload):
            # In a code block; a backtick would end it early, so it is shown as a quote.
            text = slack_escape("\n".join(samples).replace("`", "'"))[:TEXT_CHARS - 30]
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Sample events*\n```{text}```"}})
        self._post(url_from_env(self.url_env), json={"text": slack_escape(heading), "blocks": blocks})
