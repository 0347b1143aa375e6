"""Deployments: create one (a new release), read one, list them."""

from __future__ import annotations

import asyncio
import random
import re
import time

from aiohttp import web

from server import secrets
from server.api.auth import require
from server.api.body import read_body
from server.api.problems import HttpProblem
from server.api.schemas import DNS_LABEL, DeploymentIn, HostSelector, StrategyIn, registry_of
from server.api.views import deployment_json, deployment_out
from server.db import deploys, store
from server.db.models import Deployment
from server.errors import FieldError, Invalid, NotFound, Refused
from server.keys import CONTROLLER, SESSIONS, SETTINGS, STOPPING
from server.loops import wait_set
from server.states import TERMINAL

_APP_NAME = re.compile(DNS_LABEL)
MAX_WAIT_SECONDS = 600.0
WAIT_RECHECK_SECONDS = 1.0
WRITE_ATTEMPTS = 8


def app_name(request: web.Request) -> str:
    """The {app} of the URL, refused unless it is a lowercase DNS label."""
    name = request.match_info["app"]
    if len(name) > 63 or not _APP_NAME.fullmatch(name):
        raise Invalid(
            "app names are lowercase DNS labels: 1-63 characters of a-z, 0-9 and '-'",
            [FieldError("app", f"{name[:80]!r} is not a valid app name")],
        )
    return name


def idempotency_key(request: web.Request) -> str | None:
    """The Idempotency-Key header, if any: a repeated request with it creates nothing new."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise Invalid(
            "Idempotency-Key must be 1-200 characters",
            [FieldError("Idempotency-Key", "must be 1-200 characters")],
        )
    return key


async def create_deployment(request: web.Request) -> web.Response:
    """POST /v1/apps/{app}/deployments: record release N+1 and a pending deployment."""
    caller = await require(request, "deploy")
    name = app_name(request)
    body = await read_body(request, DeploymentIn)
    key = idempotency_key(request)
    raw = body.model_dump(mode="json")
    body_hash = store.request_hash(raw)
    spec = body.model_dump(
        mode="json",
        exclude={"message", "hosts", "strategy", "secrets", "secrets_as", "secrets_dir"},
    )
    settings = request.app[SETTINGS]
    registry = registry_of(body.image)
    if settings.allowed_registries and registry not in settings.allowed_registries:
        raise Refused(
            "registry_not_allowed",
            f"images from {registry} are not allowed on this server (allowed: "
            f"{', '.join(settings.allowed_registries)})",
            "image",
        )
    spec |= await _secrets_of(request, name, body)
    resources = dict(spec.get("resources") or {})  # the server's defaults, recorded: a
    resources["memory"] = resources.get("memory") or settings.default_memory  # rollback
    resources["pids"] = resources.get("pids") or settings.default_pids_limit  # keeps them
    spec["resources"] = resources
    strategy = (body.strategy or StrategyIn()).model_dump(mode="json")
    selector = (body.hosts or HostSelector()).model_dump(mode="json", exclude_none=True)
    for attempt in range(WRITE_ATTEMPTS):
        try:
            deployment, hosts = await deploys.deploy(
                request.app[SESSIONS],
                name,
                spec,
                actor=caller.name,
                message=body.message,
                strategy=strategy,
                selector=selector,
                idempotency_key=key,
                body_hash=body_hash,
            )
            break
        except store.DatabaseError as exc:
            if not store.retryable(exc):  # a constraint violation fails the same way again
                raise
            if attempt == WRITE_ATTEMPTS - 1:
                message = "concurrent requests changed this app; retry"
                raise HttpProblem(409, "conflict", message) from None
            # a serialization failure or deadlock (PostgreSQL), or busy (SQLite): a fresh
            # transaction gets past it; try again shortly
            await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    request.app[CONTROLLER].rollout_requested()
    out = deployment_out(deployment, name, hosts)
    return web.json_response(
        out.model_dump(mode="json"),
        status=202,
        headers={"Location": f"/v1/deployments/{deployment.id}"},
    )


async def _secrets_of(request: web.Request, app: str, body: DeploymentIn) -> dict[str, object]:
    """The release's secret fields: which secrets under which names, how, and the version of
    each (the live one now: a rollback to this release runs with the same values)."""
    names = secrets.wanted(body.secrets)
    if not names:
        return {}
    async with request.app[SESSIONS]() as session:
        versions = await secrets.resolve(session, app, names)
    out: dict[str, object] = {"secrets": names, "secrets_as": body.secrets_as}
    if body.secrets_as == "files":
        out["secrets_dir"] = body.secrets_dir
    out["secret_versions"] = {n: versions[n] for n in sorted(set(names.values()))}
    return out


async def get_deployment(request: web.Request) -> web.Response:
    """GET /v1/deployments/{id}[?wait=SECONDS]: with wait, answer once it ends or time is up."""
    await require(request, "read")
    deployment_id = deployment_id_of(request)
    wait = _wait(request)
    deadline = time.monotonic() + wait
    sessions = request.app[SESSIONS]
    while True:
        finished = request.app[CONTROLLER].finished  # taken before the read: no lost wake-up
        async with sessions() as session:
            deployment = await store.get_deployment(session, deployment_id)
        remaining = deadline - time.monotonic()
        if deployment.status in TERMINAL or remaining <= 0 or request.app[STOPPING][0]:
            break  # stopping: answer with the state as it is now, at once
        # woken when this process's controller ends a deployment; the timeout covers one
        # ended by another server process
        await wait_set(finished, min(remaining, WAIT_RECHECK_SECONDS))
    async with sessions() as session:  # the hosts once, not on every wake-up
        hosts = await store.deployment_hosts(session, deployment_id)
        names = await store.app_names(session, {deployment.app_id})
    body = deployment_json(deployment, names[deployment.app_id], hosts)
    return web.Response(body=body, content_type="application/json")


async def list_deployments(request: web.Request) -> web.Response:
    """GET /v1/deployments[?app=NAME&limit=N]: newest first."""
    await require(request, "read")
    limit = _int(request.query.get("limit", "50"), "limit")
    if not 1 <= limit <= 1000:
        raise Invalid("limit must be 1-1000", [FieldError("limit", "must be 1-1000")])
    async with request.app[SESSIONS]() as session:
        app = None
        if "app" in request.query:
            app = await store.get_app(session, request.query["app"])
        rows: list[Deployment] = list(await store.list_deployments(session, app, limit))
        names = await store.app_names(session, {d.app_id for d in rows})
        result = []
        for d in rows:
            hosts = await store.deployment_hosts(session, d.id)
            result.append(deployment_out(d, names[d.app_id], hosts).model_dump(mode="json"))
    return web.json_response({"deployments": result})


def deployment_id_of(request: web.Request) -> int:
    """The {id} of the URL; one out of range is a deployment that does not exist."""
    return _int(request.match_info["id"], "id")


MAX_ID = 2**31 - 1  # ids are 32-bit integers in every database we support


def _int(value: str, field: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Invalid(
            f"{field} must be an integer", [FieldError(field, "not an integer")]
        ) from None
    if not 0 <= number <= MAX_ID:
        if field == "id":  # a well-formed id that cannot exist
            raise NotFound(f"deployment {number} does not exist", "id")
        raise Invalid(f"{field} must be from 0 to {MAX_ID}", [FieldError(field, "out of range")])
    return number


def _wait(request: web.Request) -> float:
    raw = request.query.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise Invalid(
            f"wait must be 0-{MAX_WAIT_SECONDS:g} seconds",
            [FieldError("wait", f"must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}")],
        )
    return wait
