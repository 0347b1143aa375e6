"""Deployments: create one (a new release), read one, list them."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from agent.protocol import registry_of
from server import secrets
from server.api import policies, releases
from server.api.auth import confine, require
from server.api.body import parse_body
from server.api.pages import next_cursor, page_int
from server.api.params import app_name, flag
from server.api.problems import HttpProblem
from server.api.schemas.spec import DeploymentIn, DeploymentPatchIn
from server.api.views import deployment_json, deployment_out, deployment_version
from server.db import deploys, rollouts, store, target_rows
from server.db.models import Deployment
from server.errors import FieldError, Invalid, NotFound, Refused
from server.keys import CONTROLLER, SESSIONS, SETTINGS, STATUSES, STOPPING
from server.loops import wait_set
from server.rollout.judgement import Wanted, judge
from server.states import TERMINAL, TargetState

__all__ = ["app_name"]  # imported from here by the other handlers of an app

MAX_WAIT_SECONDS = 600.0
MAX_VERSION_LENGTH = 100
WAIT_RECHECK_SECONDS = 1.0
WRITE_ATTEMPTS = 8


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
    """POST /v1/apps/{app}/deployments[?dry_run=true]: record release N+1 and a pending
    deployment. The body is the whole spec, or a merge patch on a `base` release; a dry run
    answers what would be created, and creates nothing."""
    caller = await require(request, "deploy")
    name = app_name(request)
    confine(caller, name)
    raw = await request.read()
    dry = _dry_run(request)
    key = idempotency_key(request)  # checked in a dry run too: it answers what a deploy would
    sessions = request.app[SESSIONS]
    base: int | None = None
    if _has_base(raw):
        patch = parse_body(raw, DeploymentPatchIn)
        body, base = await releases.merged(sessions, name, patch)
        # a retry of the patch must find what the first made, whatever it was merged into
        body_hash = store.request_hash({"patch": patch.model_dump(mode="json", exclude_unset=True)})
    else:
        body = parse_body(raw, DeploymentIn)
        body_hash = store.request_hash(body.model_dump(mode="json"))
    settings = request.app[SETTINGS]
    registry = registry_of(body.image)
    if settings.allowed_registries and registry not in settings.allowed_registries:
        raise Refused(
            "registry_not_allowed",
            f"images from {registry} are not allowed on this server (allowed: "
            f"{', '.join(settings.allowed_registries)})",
            "image",
        )
    await policies.check(request, name, body)
    if dry:
        preview = await releases.dry_run(sessions, name, body, base)
        return web.json_response(preview.model_dump(mode="json"))
    spec, strategy, selector = releases.parts_of(body)
    spec |= await _secrets_of(request, name, body)
    resources = dict(spec.get("resources") or {})  # the server's defaults, recorded: a
    resources["memory"] = resources.get("memory") or settings.default_memory  # rollback
    resources["pids"] = resources.get("pids") or settings.default_pids_limit  # keeps them
    spec["resources"] = resources
    for attempt in range(WRITE_ATTEMPTS):
        try:
            deployment, hosts = await deploys.deploy(
                sessions,
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
    """GET /v1/deployments/{id}[?wait=SECONDS[&version=V]]: with wait, answer once it ends
    or time is up; with version too, also as soon as its `version` is not V (a host's state
    or its status changed: what `deploy --wait` shows live), within WAIT_RECHECK_SECONDS."""
    caller = await require(request, "read")
    deployment_id = deployment_id_of(request)
    wait = _wait(request)
    seen = _version(request)
    deadline = time.monotonic() + wait
    sessions = request.app[SESSIONS]
    while True:
        finished = request.app[CONTROLLER].finished  # taken before the read: no lost wake-up
        async with sessions() as session:
            deployment, app = await store.deployment_and_app(session, deployment_id)
            confine(caller, app)  # before waiting: a token confined elsewhere learns nothing
            remaining = deadline - time.monotonic()
            if (
                deployment.status in TERMINAL
                or remaining <= 0
                or request.app[STOPPING][0]  # stopping: answer with the state as it is now
                or (seen is not None and deployment_version(deployment) != seen)
            ):  # the hosts in the same read, once: not on every wake-up
                hosts = await target_rows.deployment_hosts(session, deployment_id)
                pulling = await _pulling(request, session, deployment, app, hosts)
                break
        # woken when this process's controller ends a deployment; the timeout covers one
        # ended by another server process
        await wait_set(finished, min(remaining, WAIT_RECHECK_SECONDS))
    body = deployment_json(deployment, app, hosts, pulling)
    return web.Response(body=body, content_type="application/json")


async def _pulling(
    request: web.Request,
    session: AsyncSession,
    deployment: Deployment,
    app: str,
    hosts: Sequence[target_rows.Target],
) -> frozenset[str]:
    """The target hosts of a deployment under way that are pulling its image: pending (a
    pre-pull) or updating, and their last status shows neither the image, nor an instance of
    the release, nor a problem, as the one judgement sees it: what `deploy --wait` shows as
    "pulling". Empty once it ended (no read then)."""
    waiting = (TargetState.PENDING, TargetState.UPDATING)
    pending = [h.host_name for h in hosts if h.state in waiting]
    if deployment.status in TERMINAL or not pending:
        return frozenset()
    release = await rollouts.release_row(session, deployment.app_id, deployment.release)
    if release is None:
        return frozenset()
    replicas = int(release.spec.get("replicas", 1))
    wanted = Wanted(app, deployment.release, replicas, release.image, release.digest)
    latest = request.app[STATUSES].latest
    pulling = set()
    for host in pending:
        reported = latest(host)
        verdict = judge(wanted, reported.status if reported is not None else None)
        if reported is None or verdict.pulled or verdict.problem is not None:
            continue
        if verdict.state == TargetState.PENDING:  # no instance of the release yet
            pulling.add(host)
    return frozenset(pulling)


async def list_deployments(request: web.Request) -> web.Response:
    """GET /v1/deployments[?app=NAME&limit=N&cursor=C]: newest first, a page at a time."""
    caller = await require(request, "read")
    page = page_int(request, 50)
    limit = page.limit or 50
    async with request.app[SESSIONS]() as session:
        app = None
        if "app" in request.query:
            confine(caller, request.query["app"])
            app = await store.get_app(session, request.query["app"])
        rows: list[Deployment] = list(
            await store.list_deployments(session, app, limit, caller.apps, page.after)
        )
        names = await store.app_names(session, {d.app_id for d in rows})
        result = []
        for d in rows:
            hosts = await target_rows.deployment_hosts(session, d.id)
            result.append(deployment_out(d, names[d.app_id], hosts).model_dump(mode="json"))
    cursor = next_cursor(rows, limit, lambda d: d.id)
    return web.json_response({"deployments": result, "next_cursor": cursor})


def _has_base(raw: bytes) -> bool:
    """Whether a body is a merge patch on a base release (a JSON object with "base")."""
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return False  # the whole-spec path answers 400 malformed_json
    return isinstance(parsed, dict) and "base" in parsed


def _dry_run(request: web.Request) -> bool:
    return flag(request, "dry_run")


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


def _version(request: web.Request) -> str | None:
    """The `version` a long poll answers past (a deployment's `version`, as it was read)."""
    raw = request.query.get("version")
    if raw is not None and not 1 <= len(raw) <= MAX_VERSION_LENGTH:
        raise Invalid(
            f"version must be 1-{MAX_VERSION_LENGTH} characters",
            [FieldError("version", "a deployment's `version`, as an answer gave it")],
        )
    return raw
