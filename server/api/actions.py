"""Acting on rollouts: manual rollback, and pause, resume, cancel, promote of a deployment."""

from __future__ import annotations

from aiohttp import web

from server.api.auth import confine, require
from server.api.body import read_body
from server.api.deployments import app_name, deployment_id_of, idempotency_key
from server.api.schemas.deployments import DeploymentOut
from server.api.schemas.strategy import RollbackIn, StrategyIn
from server.api.views import deployment_json, deployment_out
from server.db import assignments, rollouts, store, target_rows
from server.errors import Conflict, FieldError, Invalid, NotFound
from server.keys import CONTROLLER, METRICS, SESSIONS
from server.rollout.transitions import act, control_of
from server.states import Action, DeploymentKind, Outcome, requested


async def rollback(request: web.Request) -> web.Response:
    """POST /v1/apps/{app}/rollback: a rollback deployment through the same health gates."""
    caller = await require(request, "rollback")
    name = app_name(request)
    confine(caller, name)
    body = await read_body(request, RollbackIn)
    key = idempotency_key(request)
    body_hash = store.request_hash({"rollback": body.model_dump(mode="json")})
    async with request.app[SESSIONS].begin() as session:
        app = await store.lock_app(session, name)
        if app is None:
            raise NotFound(f"app {name!r} does not exist", "app")
        found = await store.find_idempotent(session, name, key, body_hash) if key else None
        if found is not None:  # a retry: what the first request made
            hosts_of = await target_rows.deployment_hosts(session, found.id)
            return _accepted(deployment_out(found, name, hosts_of))
        current = app.current_release
        target = body.release
        if target is None:
            if current is None:
                raise Conflict("nothing_to_roll_back", f"app {name!r} has no current release")
            rolling = await rollouts.newest_active_release(session, app.id)
            if rolling is not None and rolling != current:
                # a release is rolling out: going back means to what serves, not past it
                target = current
            else:
                target = await rollouts.served_before(session, app.id, current)
            if target is None:
                raise Conflict(
                    "nothing_to_roll_back",
                    f"app {name!r} has no release that served before release {current}",
                )
        release = await store.get_release(session, app, target)
        if release is None:
            raise Invalid(
                f"release {target} of {name!r} does not exist",
                [FieldError("release", f"no release {target}")],
            )
        if release.outcome == Outcome.BAD and not body.force:
            error = Conflict(
                "release_bad",
                f"release {target} of {name!r} is marked bad (a rollout of it failed): "
                "roll back to it with force (flotilla rollback --force)",
            )
            error.fields.append(FieldError("force", "needed for a release marked bad"))
            raise error
        hosts = await assignments.assigned_hosts(session, app.id)
        if not hosts:
            raise Conflict("nothing_to_roll_back", f"app {name!r} is not on any host")
        last = await store.list_deployments(session, app, 1)
        base = dict(last[0].strategy) if last else {}
        strategy = (body.strategy or StrategyIn.model_validate(_known(base))).model_dump(
            mode="json"
        )
        strategy["auto_rollback"] = False  # a failing rollback stops; it never bounces back
        deployment = await store.create_deployment(
            session,
            app,
            target,
            kind=DeploymentKind.ROLLBACK,
            trigger=caller.name,
            strategy=strategy,
            selector={"names": hosts},
            reason=body.reason,
            idempotency_key=key,
            body_hash=body_hash,
        )
        request.app[METRICS].rollbacks.labels(name, "manual").inc()
        out = deployment_out(deployment, name, [])
    request.app[CONTROLLER].rollout_requested()
    return _accepted(out)


def _accepted(out: DeploymentOut) -> web.Response:
    return web.json_response(
        out.model_dump(mode="json"), status=202, headers={"Location": f"/v1/deployments/{out.id}"}
    )


def _known(raw: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in raw.items() if k in StrategyIn.model_fields}


async def _act(request: web.Request, action: Action) -> web.Response:
    # promoting ships the release to the rest of the hosts: deploy; the others stop a
    # rollout or let it go on: rollback
    caller = await require(request, "deploy" if action == Action.PROMOTE else "rollback")
    deployment_id = deployment_id_of(request)
    async with request.app[SESSIONS].begin() as session:
        deployment = await rollouts.lock_deployment(session, deployment_id)
        if deployment is None:
            raise NotFound(f"deployment {deployment_id} does not exist", "id")
        names = await store.app_names(session, {deployment.app_id})
        confine(caller, names[deployment.app_id])  # before anything is changed
        control = control_of(
            deployment.id,
            deployment.status,
            deployment.promoted,
            deployment.cancel_requested,
            deployment.strategy,
        )
        acted = act(control, action)
        deployment.status = acted.status
        deployment.promoted = acted.promoted
        deployment.cancel_requested = acted.cancel_requested
        if acted.progress_restarts:
            deployment.progress_at = store.now()
        await store.add_event(
            session,
            requested(action),
            caller.name,
            f"{action} of {deployment.kind} {deployment_id} requested",
            app=names[deployment.app_id],
            deployment_id=deployment_id,
        )
        hosts = await target_rows.deployment_hosts(session, deployment_id)
        body = deployment_json(deployment, names[deployment.app_id], hosts)
    request.app[CONTROLLER].deployment_changed(deployment_id)
    return web.Response(body=body, content_type="application/json")


async def pause(request: web.Request) -> web.Response:
    """POST /v1/deployments/{id}/pause: no new batch starts until resumed."""
    return await _act(request, Action.PAUSE)


async def resume(request: web.Request) -> web.Response:
    """POST /v1/deployments/{id}/resume."""
    return await _act(request, Action.RESUME)


async def promote(request: web.Request) -> web.Response:
    """POST /v1/deployments/{id}/promote: the canaries are good; roll out to the rest."""
    return await _act(request, Action.PROMOTE)


async def cancel(request: web.Request) -> web.Response:
    """POST /v1/deployments/{id}/cancel: stop after the current batch; hosts stay as they are."""
    return await _act(request, Action.CANCEL)
