"""The webhooks' bodies: subscribing a URL (its URL and event patterns checked by
server.webhooks), a webhook as listed (never its secret) and one of its deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from server import webhooks
from server.api.schemas.fields import Strict
from server.states import DeliveryStatus


def _webhook_url(value: str) -> str:
    return webhooks.check_url(value)


def _event_pattern(value: str) -> str:
    return webhooks.check_pattern(value)


class WebhookIn(Strict):
    """POST /v1/webhooks."""

    url: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_webhook_url)]
    events: list[Annotated[str, AfterValidator(_event_pattern)]] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=100
    )
    secret: str = Field(min_length=16, max_length=200)


class WebhookOut(BaseModel):
    """A webhook as the API shows it: never with its secret."""

    id: int
    url: str
    events: list[str]
    created_by: str
    created_at: dt.datetime


class WebhookDeliveryOut(BaseModel):
    """One webhook delivery in a response: its state and last attempt."""

    id: int
    event: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
