"""The API's answers that handlers build as plain values (for speed or brevity), as models:
the OpenAPI document describes them (server/api/operations.py) and the schemathesis run
checks every answer against them. Apart from the server/api/schemas/ package, which holds the models
the handlers validate bodies with and answer through, to keep each module to one job."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from server.api.schemas.credentials import SecretOut
from server.api.schemas.deployments import DeploymentOut, ReleaseOut
from server.api.schemas.hosts import HostOut
from server.api.schemas.tokens import TokenOut
from server.api.schemas.webhooks import WebhookDeliveryOut, WebhookOut

# Responses that handlers build as plain values for speed (a list of models dumped one by
# one, `views.deployment_json`) are described by these models all the same; the schemathesis
# run (tests/server/test_openapi_fuzz.py) checks every answer against them, so they cannot
# drift from what is sent.


class ProblemFieldOut(BaseModel):
    """One field at fault in a problem."""

    field: str
    message: str


class ProblemOut(BaseModel):
    """An error, as RFC 9457 problem+json: clients read `code`, never the text."""

    type: str = Field(description="urn:flotilla:problem:<code>")
    title: str
    status: int
    code: str = Field(description="stable: what clients match on")
    detail: str
    instance: str = Field(description="the path of the request")
    errors: list[ProblemFieldOut] | None = Field(
        default=None, description="the fields at fault, when the request named some"
    )


class StatusOut(BaseModel):
    """GET /healthz and GET /readyz."""

    status: Literal["ok", "ready"]


class AppSummaryOut(BaseModel):
    """An app in GET /v1/apps."""

    name: str
    current_release: int | None
    last_release: int


class AppListOut(BaseModel):
    """GET /v1/apps."""

    apps: list[AppSummaryOut]


class VolumesRemovedOut(BaseModel):
    """DELETE /v1/apps/{app}?volumes=true: which volumes go, and where."""

    names: list[str] = Field(
        description="the Docker volumes its releases named (flotilla-APP-SOURCE)"
    )
    hosts: list[str] = Field(
        description="the hosts that ran the app: each agent removes them once the app's "
        "containers are gone there (an agent that is away, when it comes back)"
    )


class AppRemovedOut(BaseModel):
    """DELETE /v1/apps/{app}: the hosts the app was removed from (and, with
    `?volumes=true`, its volumes)."""

    app: str
    removed_from: list[str]
    volumes: VolumesRemovedOut | None = None


class ReleaseListOut(BaseModel):
    """GET /v1/apps/{app}/releases: newest first."""

    releases: list[ReleaseOut]
    next_cursor: str | None = None  # the next page's `cursor`; null on the last page


class DeploymentListOut(BaseModel):
    """GET /v1/deployments: newest first."""

    deployments: list[DeploymentOut]
    next_cursor: str | None = None  # the next page's `cursor`; null on the last page


class SecretSetOut(BaseModel):
    """PUT /v1/apps/{app}/secrets/{name}: the version the value now has."""

    app: str
    name: str
    version: int


class SecretListOut(BaseModel):
    """GET /v1/apps/{app}/secrets."""

    secrets: list[SecretOut]


class HostListOut(BaseModel):
    """GET /v1/hosts."""

    hosts: list[HostOut]
    next_cursor: str | None = None  # the next page's `cursor`; null on the last page


class EventOut(BaseModel):
    """One event of the log (GET /v1/events, and each `data` of GET /v1/events/stream)."""

    id: int
    at: dt.datetime
    kind: str
    actor: str
    app: str | None
    deployment: int | None
    host: str | None
    message: str


class EventListOut(BaseModel):
    """GET /v1/events: newest first."""

    events: list[EventOut]
    next_cursor: str | None = None  # the next page's `cursor`; null on the last page


class TokenListOut(BaseModel):
    """GET /v1/tokens."""

    tokens: list[TokenOut]
    next_cursor: str | None = None  # the next page's `cursor`; null on the last page


class AuditOut(BaseModel):
    """One entry of the audit trail."""

    id: int
    at: dt.datetime
    actor: str | None
    action: str
    target: str | None
    source: str | None
    user_agent: str | None
    request_id: str
    outcome: int
    detail: str | None


class AuditListOut(BaseModel):
    """GET /v1/audit: newest first."""

    audit: list[AuditOut]
    next_cursor: str | None = None  # the next page's `cursor`; null on the last page


class WebhookListOut(BaseModel):
    """GET /v1/webhooks."""

    webhooks: list[WebhookOut]


class WebhookDeliveryListOut(BaseModel):
    """GET /v1/webhooks/{id}/deliveries: newest first."""

    deliveries: list[WebhookDeliveryOut]
    next_cursor: str | None = None  # the next page's `cursor`; null on the last page


EventsOut = EventListOut  # the name the event stream's code uses
