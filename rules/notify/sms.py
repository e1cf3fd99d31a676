"""SMS: the form POST of Twilio's Messages API, or any gateway with ``fields`` templated.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from rules.notify.base import (
    SMS_FIELDS,
    Notifier,
    UnsafeTemplate,
    check_template,
    check_url,
    render,
    secret_from_env,
    title,
)


class SmsTarget(Notifier):
    type: Literal["sms"]
    url: str  # Twilio: https://api.twilio.com/2010-04-01/Accounts/<sid>/Messages.json
    username: str | None = None  # Twilio: the account SID
    password_env: str | None = None  # Twilio: the auth token
    to: str
    sender: str
    fields: dict[str, str] = Field(default_factory=lambda: {"To": "{to}", "From": "{sender}", "Body": "{text}"})

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, "url")

    @field_validator("fields")
    @classmethod
    def _templates(cls, fields: dict[str, str]) -> dict[str, str]:
        for name, template in fields.items():
            try:
                check_template(template, SMS_FIELDS)
            except UnsafeTemplate as exc:
                raise ValueError(f"fields.{name}: {exc}") from None
        return fields

    def send(self, payload: dict[str, Any]) -> None:
        text = f"{title(payload)}: {payload['message']}"[:320]
        values = {"to": self.to, "sender": self.sender, "text": text, **payload}
        form = {name: render(template, values) for name, template in self.fields.items()}
        auth = (self.username, secret_from_env(self.password_env) or "") if self.username else None
        self._post(self.url, data=form, auth=auth)
