"""Notifiers: a generic webhook, Slack, Microsoft Teams, email over SMTP, SMS through an HTTP API,
Alertmanager, PagerDuty (Events API v2), Opsgenie.

One module per target, each a :class:`~rules.notify.base.Notifier` that validates its settings
when the configuration loads and sends one payload (or a digest of several). ``NOTIFIERS`` maps
the ``type:`` a configuration names to its class; ``Target`` is the union the configuration
model validates against.
"""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import Field

from rules.notify.alertmanager import AlertmanagerTarget
from rules.notify.base import (
                               MESSAGE_FIELDS,
                               SMS_FIELDS,
                               DeliveryFailed,
                               Notifier,
                               UnsafeTemplate,
                               check_template,
                               check_url,
                               markdown_escape,
                               render,
                               signature,
                               slack_escape,
                               table_cell,
)
from rules.notify.email import EmailTarget
from rules.notify.opsgenie import OpsgenieTarget
from rules.notify.pagerduty import PagerDutyTarget
from rules.notify.slack import SlackTarget
from rules.notify.sms import SmsTarget
from rules.notify.teams import TeamsTarget
from rules.notify.webhook import WebhookTarget

NOTIFIERS: dict[str, type[Notifier]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in (WebhookTarget, SlackTarget, TeamsTarget, EmailTarget, SmsTarget, AlertmanagerTarget,
                PagerDutyTarget, OpsgenieTarget)
}

Target = Annotated[WebhookTarget | SlackTarget | TeamsTarget | EmailTarget | SmsTarget | AlertmanagerTarget
                   | PagerDutyTarget | OpsgenieTarget, Field(discriminator="type")]

__all__ = ["AlertmanagerTarget", "OpsgenieTarget", "PagerDutyTarget", "MESSAGE_FIELDS", "NOTIFIERS", "SMS_FIELDS",
           "DeliveryFailed", "EmailTarget", "Notifier", "SlackTarget",
           "SmsTarget", "Target", "TeamsTarget", "UnsafeTemplate", "WebhookTarget", "check_template", "check_url",
           "markdown_escape", "render", "signature", "slack_escape", "table_cell"]
