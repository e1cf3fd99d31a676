"""Slack: Block Kit through an incoming webhook, every interpolated value escaped for mrkdwn.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from rules.notify.base import Notifier, slack_escape, title, url_from_env


class SlackTarget(Notifier):
    type: Literal["slack"]
    url_env: str  # incoming webhook URLs are secrets

    secret_url: ClassVar[bool] = True

    def check(self) -> None:
        url_from_env(self.url_env)

    def send(self, payload: dict[str, Any]) -> None:
        heading = title(payload)
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": heading[:150]}},  # plain_text: not parsed
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(payload["message"])[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"group {slack_escape(payload['group'])} · "
                                              f"value {slack_escape(payload['value'])} · "
                                              f"bound {slack_escape(payload['threshold'])}"}]},
        ]
        self._post(url_from_env(self.url_env), json={"text": slack_escape(heading), "blocks": blocks})
