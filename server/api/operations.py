"""What each route of the API does, for the OpenAPI document: one entry per route name.

The router (`server/api/routes.py`) is the one list of routes (method, path, handler); this
module says, under each route's name, what the document tells of it: scope, parameters,
bodies and answers, the bodies being the pydantic models the handlers validate and answer
with (the `server/api/schemas/` package). `server/api/openapi.document` walks the router and refuses
a route that has no entry here, and an entry that has no route: a route added without its
description fails tests/server/test_openapi.py.

(Over 400 lines: one entry per route, and a route's description is read beside the others;
split, a new route's entry would have no obvious home.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from server.api import answers as a
from server.api.schemas.credentials import RegistryIn, RegistryListOut, RegistrySetOut, SecretIn
from server.api.schemas.deployments import AppOut, DeploymentOut, DryRunOut, ReleaseDiffOut
from server.api.schemas.fields import DNS_LABEL
from server.api.schemas.hosts import HostDrained, HostIn, HostOut, HostToken
from server.api.schemas.policies import PolicyIn, PolicyOut
from server.api.schemas.spec import DeploymentIn, DeploymentPatchIn
from server.api.schemas.strategy import RollbackIn
from server.api.schemas.tokens import TOKEN_NAME, TokenCreated, TokenIn
from server.api.schemas.webhooks import WebhookIn, WebhookOut
from server.secrets import MAX_NAME as MAX_SECRET_NAME

MAX_NUMBER = 2**31 - 1
Scope = Literal["read", "rollback", "deploy", "admin", "host", "public"]

APP = {"type": "string", "pattern": DNS_LABEL, "minLength": 1, "maxLength": 63}
DEPLOYMENT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_NUMBER}
RELEASE = {"type": "integer", "minimum": 1, "maximum": MAX_NUMBER}
LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
HOST = APP
TOKEN = {"type": "string", "pattern": TOKEN_NAME}
SECRET = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": MAX_SECRET_NAME}
# the path parameters' schemas, by name, unless an entry says otherwise
PATH_PARAMS: dict[str, dict[str, Any]] = {"app": APP, "id": DEPLOYMENT_ID, "n": RELEASE}


@dataclass(frozen=True)
class Param:
    """A query or header parameter."""

    name: str
    schema: dict[str, Any]
    description: str
    where: Literal["query", "header"] = "query"


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status, and its body's model (None: no body) or media type."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    media: str = "application/json"


@dataclass(frozen=True)
class Op:
    """One route as the document describes it."""

    summary: str
    scope: Scope
    answers: tuple[Answer, ...]
    body: tuple[type[BaseModel], ...] = ()  # several: the body is one of them
    params: tuple[Param, ...] = ()
    path: dict[str, dict[str, Any]] = field(default_factory=dict)  # beyond PATH_PARAMS
    errors: tuple[int, ...] = ()  # besides those every route of its kind may answer
    description: str = ""


def _ok(model: type[BaseModel], description: str = "OK") -> tuple[Answer, ...]:
    return (Answer(200, description, model),)


_GONE = (Answer(204, "Done: nothing to answer"),)
_LIMIT = Param("limit", LIMIT, "at most this many, newest first")
_CURSOR = Param(
    "cursor", {"type": "string", "maxLength": 200}, "the `next_cursor` of the page before"
)
_IDEMPOTENCY = Param(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 200},
    "a repeat with the same key and body answers what the first made, and creates nothing",
    "header",
)

OPERATIONS: dict[str, Op] = {
    "healthz": Op("The process is up", "public", _ok(a.StatusOut)),
    "readyz": Op("The database answers", "public", _ok(a.StatusOut)),
    "metrics": Op(
        "Prometheus metrics",
        "public",
        (Answer(200, "Prometheus' text format", media="text/plain"),),
    ),
    "openapi": Op("This document (OpenAPI 3.1)", "public", (Answer(200, "The document"),)),
    "docs": Op(
        "A browsable page of this document",
        "public",
        (Answer(200, "HTML", media="text/html"),),
    ),
    "docs.asset": Op(
        "The page's scripts and styles (Swagger UI, shipped in the package)",
        "public",
        (Answer(200, "A script or style sheet", media="*/*"),),
        path={"file": {"type": "string"}},
        errors=(404,),
    ),
    "app.list": Op("Apps (a confined token sees its own)", "read", _ok(a.AppListOut)),
    "app.get": Op(
        "An app: its current release, spec, and what runs on each host",
        "read",
        _ok(AppOut),
        errors=(404,),
    ),
    "app.remove": Op(
        "Stop and remove the app's containers on every host; its history is kept",
        "admin",
        _ok(a.AppRemovedOut),
        params=(
            Param(
                "volumes",
                {"type": "string", "enum": ["true", "false", "1", "0"]},
                "also remove its named volumes on the hosts that ran it (kept by default)",
            ),
        ),
        errors=(404, 409),
        description="409 `deployment_in_progress` while one of its deployments is under way.",
    ),
    "app.logs": Op(
        "Stream the output of the app's containers, through the agents",
        "read",
        (
            Answer(
                200,
                "Newline-delimited JSON, one object a line: a line of output (`host`, `app`, "
                "`container`, `replica`, `release`, `time`, `line`, masked of the app's "
                "secrets) or a note (`host`, `note`); an empty line is a keep-alive. It ends "
                "when every host's stream has ended",
                media="application/x-ndjson",
            ),
        ),
        params=(
            Param("host", HOST, "only this host (it must run the app, its agent connected)"),
            Param(
                "tail",
                {
                    "anyOf": [
                        {"type": "integer", "minimum": 0, "maximum": 10_000},
                        {"type": "string", "enum": ["all"]},
                    ]
                },
                "the last N lines of each container (default: all)",
            ),
            Param(
                "since",
                {"type": "string", "maxLength": 64},
                "only lines since then: a duration (`10m`, `1h30m`), an RFC 3339 time or "
                "seconds since the epoch, as `docker logs --since`",
            ),
            Param(
                "follow",
                {"type": "string", "enum": ["true", "false", "1", "0"]},
                "then stream new lines until the containers stop or the client goes away",
            ),
        ),
        errors=(404, 409),
        description="409 `not_on_host` when `host` does not run the app, `host_not_connected` "
        "when its agent is not connected to this server, `too_many_log_streams` when the host "
        "already serves 8. A host whose agent is not connected gets a note, not an error, "
        "when `host` is not given. Lines a slow client did not read in time are dropped, "
        "oldest first, and a note says how many.",
    ),
    "release.list": Op(
        "An app's releases, newest first", "read", _ok(a.ReleaseListOut), errors=(404,)
    ),
    "release.diff": Op(
        "What changed from release `against` (default n-1) to release n",
        "read",
        _ok(ReleaseDiffOut),
        params=(Param("against", RELEASE, "the release to compare with (default: n-1)"),),
        errors=(404,),
    ),
    "deployment.create": Op(
        "Deploy: a new release and a pending deployment",
        "deploy",
        (
            Answer(202, "Accepted: the deployment (Location: /v1/deployments/{id})", DeploymentOut),
            Answer(200, "?dry_run=true: what would be created; nothing is", DryRunOut),
        ),
        body=(DeploymentIn, DeploymentPatchIn),
        params=(
            Param(
                "dry_run",
                {"type": "string", "enum": ["true", "false", "1", "0"]},
                "answer the new spec's changes and target hosts, create nothing",
            ),
            _IDEMPOTENCY,
        ),
        errors=(403, 404, 409),
        description='The body is the whole spec, or `base` ("current" or a release number) '
        "and a JSON merge patch (RFC 7396) on that release's spec: `null` removes a key. "
        "403 `registry_not_allowed` for an image from a registry the server does not allow.",
    ),
    "secret.list": Op(
        "An app's secrets: names and versions, never values",
        "read",
        _ok(a.SecretListOut),
        errors=(404,),
    ),
    "secret.set": Op(
        "Set a secret: a new version each time",
        "deploy",
        _ok(a.SecretSetOut),
        body=(SecretIn,),
        path={"name": SECRET},
    ),
    "secret.remove": Op(
        "Remove a secret; releases that use it keep their version",
        "deploy",
        _GONE,
        path={"name": SECRET},
        errors=(404,),
    ),
    "deployment.list": Op(
        "Deployments, newest first",
        "read",
        _ok(a.DeploymentListOut),
        params=(Param("app", APP, "only this app's"), _LIMIT, _CURSOR),
        errors=(404,),
    ),
    "deployment.get": Op(
        "A deployment and its hosts; with `wait`, answered once it ends or the time is up "
        "(with `version` too: or as soon as a host's state or its status changed)",
        "read",
        _ok(DeploymentOut),
        params=(
            Param(
                "wait",
                {"type": "number", "minimum": 0, "maximum": 600},
                "seconds to wait for the deployment to end (long poll)",
            ),
            Param(
                "version",
                {"type": "string", "minLength": 1, "maxLength": 100},
                "with `wait`: answer as soon as the deployment's `version` is not this one",
            ),
        ),
        errors=(404,),
    ),
    "app.rollback": Op(
        "Roll back: a deployment of an earlier release through the same health gates",
        "rollback",
        (Answer(202, "Accepted: the rollback deployment", DeploymentOut),),
        body=(RollbackIn,),
        params=(_IDEMPOTENCY,),
        errors=(404, 409),
    ),
    "deployment.pause": Op(
        "Start no new batch until resumed", "rollback", _ok(DeploymentOut), errors=(404, 409)
    ),
    "deployment.resume": Op(
        "Resume a paused rollout", "rollback", _ok(DeploymentOut), errors=(404, 409)
    ),
    "deployment.promote": Op(
        "The canaries are good: roll out to the rest",
        "deploy",
        _ok(DeploymentOut),
        errors=(404, 409),
    ),
    "deployment.cancel": Op(
        "Stop after the current batch; hosts stay as they are",
        "rollback",
        _ok(DeploymentOut),
        errors=(404, 409),
    ),
    "host.list": Op("Hosts, and whether each agent is connected", "read", _ok(a.HostListOut)),
    "host.add": Op(
        "Register a host: its token is in this answer only",
        "admin",
        (Answer(201, "Created", HostToken),),
        body=(HostIn,),
        errors=(409,),
    ),
    "host.rotate_token": Op(
        "A new token for a host (shown once); the old one stops working",
        "admin",
        (Answer(201, "Created", HostToken),),
        path={"name": HOST},
        errors=(404,),
    ),
    "host.remove": Op(
        "Forget a host and cut its agent off",
        "admin",
        _GONE,
        path={"name": HOST},
        params=(
            Param(
                "force",
                {"type": "string", "enum": ["true", "false"]},
                "remove it though apps are still assigned to it",
            ),
        ),
        errors=(404, 409),
        description="409 `host_in_use` while it is a target of an active deployment, "
        "`host_not_drained` while an app is assigned to it (unless force).",
    ),
    "host.cordon": Op(
        "New deployments skip the host; what runs there stays",
        "admin",
        _ok(HostOut),
        path={"name": HOST},
        errors=(404,),
    ),
    "host.uncordon": Op(
        "The host is a target of new deployments again",
        "admin",
        _ok(HostOut),
        path={"name": HOST},
        errors=(404,),
    ),
    "host.drain": Op(
        "Cordon the host and remove every app from it",
        "admin",
        _ok(HostDrained),
        path={"name": HOST},
        errors=(404, 409),
        description="409 `host_in_use` while an active deployment targets it.",
    ),
    "registry.set": Op(
        "Store (or replace) a private registry's credentials, encrypted",
        "admin",
        (Answer(201, "Stored", RegistrySetOut),),
        body=(RegistryIn,),
    ),
    "registry.list": Op(
        "Registries with credentials (never a password)", "admin", _ok(RegistryListOut)
    ),
    "registry.remove": Op(
        "Forget a registry's credentials",
        "admin",
        _GONE,
        path={"registry": {"type": "string", "maxLength": 255}},
        errors=(404,),
    ),
    "policy.get": Op(
        "The security rules allowed for the app, and every rule",
        "read",
        _ok(PolicyOut),
        errors=(404,),
    ),
    "policy.set": Op(
        "Replace the security rules allowed for the app (audited)",
        "admin",
        _ok(PolicyOut),
        body=(PolicyIn,),
    ),
    "event.list": Op(
        "Events, newest first",
        "read",
        _ok(a.EventListOut),
        params=(
            Param("app", APP, "only this app's"),
            Param("deployment", DEPLOYMENT_ID, "only this deployment's"),
            _LIMIT,
            _CURSOR,
        ),
    ),
    "event.stream": Op(
        "Events as Server-Sent Events, live, resuming past Last-Event-ID",
        "read",
        (
            Answer(
                200, "An endless event stream (each `data`: an event)", media="text/event-stream"
            ),
        ),
        params=(
            Param("app", APP, "only this app's"),
            Param(
                "Last-Event-ID",
                {"type": "string", "maxLength": 20},
                "resume after this event id",
                "header",
            ),
        ),
    ),
    "token.create": Op(
        "Create an API token: the token is in this answer only",
        "admin",
        (Answer(201, "Created", TokenCreated),),
        body=(TokenIn,),
        errors=(409,),
    ),
    "token.list": Op(
        "Tokens: names, scopes, apps and times, never a token", "admin", _ok(a.TokenListOut)
    ),
    "token.revoke": Op(
        "Revoke a token",
        "admin",
        _GONE,
        path={"name": TOKEN},
        errors=(404, 409),
        description="409 `last_admin_token` for the last unconfined admin token.",
    ),
    "audit.list": Op(
        "The audit trail, newest first",
        "admin",
        _ok(a.AuditListOut),
        params=(
            Param("actor", {"type": "string"}, "only this token's calls"),
            Param("action", {"type": "string"}, "only this route's calls, such as token.create"),
            Param("since", {"type": "string", "format": "date-time"}, "from this time on"),
            Param("until", {"type": "string", "format": "date-time"}, "up to this time"),
            _LIMIT,
            _CURSOR,
        ),
    ),
    "webhook.create": Op(
        "Subscribe a URL to events",
        "admin",
        (Answer(201, "Created", WebhookOut),),
        body=(WebhookIn,),
    ),
    "webhook.list": Op("Webhooks", "admin", _ok(a.WebhookListOut)),
    "webhook.delete": Op(
        "Stop sending to a webhook; its pending deliveries are dropped",
        "admin",
        _GONE,
        path={"id": DEPLOYMENT_ID},
        errors=(404,),
    ),
    "webhook.deliveries": Op(
        "A webhook's recent deliveries, newest first",
        "admin",
        _ok(a.WebhookDeliveryListOut),
        params=(_LIMIT, _CURSOR),
        path={"id": DEPLOYMENT_ID},
        errors=(404,),
    ),
    "agent.connect": Op(
        "An agent's WebSocket (a host's token, not an API token)",
        "host",
        (Answer(101, "Switching Protocols: the agent's socket"),),
        description="The wire protocol is agent/protocol.py's; not an API call.",
    ),
}
