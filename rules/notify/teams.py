"""Microsoft Teams: an Adaptive Card through a Workflows webhook (the retired Office 365
connector card is not sent), every interpolated value escaped for its Markdown.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from rules.notify.base import Notifier, markdown_escape, title, url_from_env


class TeamsTarget(Notifier):
    type: Literal["teams"]
    url_env: str  # a Workflows ("When a Teams webhook request is received") URL

    secret_url: ClassVar[bool] = True

    def check(self) -> None:
        url_from_env(self.url_env)

    def send(self, payload: dict[str, Any]) -> None:
        md = markdown_escape
        card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4", "body": [
                    {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": md(title(payload)),
                     "wrap": True},
                    {"type": "TextBlock", "text": md(payload["message"]), "wrap": True},
                    {"type": "FactSet", "facts": [{"title": "Group", "value": md(payload["group"])},
                                                  {"title": "Value", "value": md(payload["value"])},
                                                  {"title": "Bound", "value": md(payload["threshold"])}]}]}
        message = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
        self._post(url_from_env(self.url_env), json=message)
