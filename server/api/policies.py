"""Apps' security policies: read and set which rules of server.policy an app may break, and
the check every deployment passes (403 naming the rule, before anything is created)."""

from __future__ import annotations

from aiohttp import web

from server import policy
from server.api.auth import confine, require
from server.api.body import read_body
from server.api.params import app_name
from server.api.schemas.policies import PolicyIn, PolicyOut
from server.api.schemas.spec import DeploymentIn
from server.db import policies
from server.errors import FieldError, Refused
from server.keys import SESSIONS


async def get_policy(request: web.Request) -> web.Response:
    """GET /v1/apps/{app}/policy (read): the rules allowed for the app, and every rule."""
    caller = await require(request, "read")
    name = app_name(request)
    confine(caller, name)
    async with request.app[SESSIONS]() as session:
        allowed = await policies.allowed(session, name)
    out = PolicyOut(app=name, allow=sorted(allowed), rules=list(policy.RULES))
    return web.json_response(out.model_dump(mode="json"))


async def put_policy(request: web.Request) -> web.Response:
    """PUT /v1/apps/{app}/policy (admin): replace the rules allowed for the app (recorded in
    the audit log like every mutating call). Deployments made before keep what they run."""
    caller = await require(request, "admin")
    name = app_name(request)
    body = await read_body(request, PolicyIn)
    async with request.app[SESSIONS].begin() as session:
        await policies.set_allowed(session, name, list(dict.fromkeys(body.allow)), caller.name)
    out = PolicyOut(app=name, allow=sorted(set(body.allow)), rules=list(policy.RULES))
    return web.json_response(out.model_dump(mode="json"))


async def check(request: web.Request, app: str, body: DeploymentIn) -> None:
    """Refuse (403) a deployment that breaks a rule its app's policy does not allow; the
    policy is read only when the deployment asks for something a rule covers."""
    spec = body.model_dump(mode="json")
    if not policy.breaches(spec, frozenset()):
        return  # it asks for nothing a rule covers: no read on the deploy path
    async with request.app[SESSIONS]() as session:
        allowed = await policies.allowed(session, app)
    found = policy.breaches(spec, allowed)
    if not found:
        return
    first = found[0]
    error = Refused(first.rule or "dangerous_host_path", first.message, first.field)
    error.fields = [FieldError(b.field, b.message) for b in found]
    raise error
