"""Hosts: the fleet and whether each agent is connected (scope read); adding a host,
rotating its token, cordoning, uncordoning, draining and removing it (scope admin).

A cordoned host is no target of new deployments; what runs there stays. Draining cordons it
and removes every app from it (its agent stops and removes Flotilla's containers). A host
that is a target of an active deployment cannot be drained or removed (409 `host_in_use`):
cancel the deployment or let it end first. A host that an app is still assigned to is not
removed (409 `host_not_drained`) unless `?force=true` (its containers are then left running).
A rotation or a removal cuts the host's live agent connection at once (`Hub.disconnect`,
close code 4004 or 4005).
"""

from __future__ import annotations

import re

from aiohttp import web

from server.api.audit import TARGET
from server.api.auth import require
from server.api.body import read_body
from server.api.pages import next_cursor, page_str
from server.api.params import flag
from server.api.schemas.fields import DNS_LABEL
from server.api.schemas.hosts import HostDrained, HostIn, HostOut, HostToken
from server.api.views import host_out
from server.db import hosts as db
from server.db import store
from server.db.models import Host
from server.errors import NotFound
from server.host_log import REMOVED, ROTATED
from server.keys import HUB, SESSIONS, SETTINGS, STATUSES


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if len(name) > 63 or not re.fullmatch(DNS_LABEL, name):
        raise NotFound(f"host {name[:80]!r} does not exist", "name")
    return name


async def list_hosts(request: web.Request) -> web.Response:
    """GET /v1/hosts[?limit=N&cursor=C]: by name (every host when no limit is given)."""
    await require(request, "read")
    page = page_str(request, None)
    timeout = request.app[SETTINGS].host_timeout
    async with request.app[SESSIONS]() as session:
        hosts = await store.list_hosts(session, page.limit, page.after)
    now = store.now()
    latest = request.app[STATUSES].latest
    return web.json_response(
        {
            "hosts": [
                host_out(h, now, timeout, latest(h.name)).model_dump(mode="json") for h in hosts
            ],
            "next_cursor": next_cursor(hosts, page.limit, lambda h: h.name),
        }
    )


async def add_host(request: web.Request) -> web.Response:
    """POST /v1/hosts: register a host; 201 with its token, shown only in this answer."""
    caller = await require(request, "admin")
    body = await read_body(request, HostIn)
    request[TARGET] = f"host={body.name}"
    async with request.app[SESSIONS].begin() as session:
        token = await store.add_host(session, body.name, dict(body.labels), caller.name)
    out = HostToken(name=body.name, labels=dict(body.labels), token=token)
    return web.json_response(
        out.model_dump(mode="json"),
        status=201,
        headers={"Location": f"/v1/hosts/{body.name}", "Cache-Control": "no-store"},
    )


async def rotate_token(request: web.Request) -> web.Response:
    """POST /v1/hosts/{name}/token: a new token (shown once); the old one stops working
    and the agent connected with it is cut off."""
    caller = await require(request, "admin")
    name = _name(request)
    async with request.app[SESSIONS].begin() as session:
        host, token = await db.new_host_token(session, name, caller.name)
        out = HostToken(name=name, labels=dict(host.labels), token=token)
    await request.app[HUB].disconnect(name, ROTATED, "host token rotated")
    return web.json_response(
        out.model_dump(mode="json"), status=201, headers={"Cache-Control": "no-store"}
    )


def _host(request: web.Request, host: Host) -> HostOut:
    """The host as GET /v1/hosts shows it."""
    latest = request.app[STATUSES].latest(host.name)
    return host_out(host, store.now(), request.app[SETTINGS].host_timeout, latest)


async def cordon(request: web.Request) -> web.Response:
    """POST /v1/hosts/{name}/cordon: no target of new deployments; what runs there stays."""
    return await _cordon(request, True)


async def uncordon(request: web.Request) -> web.Response:
    """POST /v1/hosts/{name}/uncordon: a target of new deployments again."""
    return await _cordon(request, False)


async def _cordon(request: web.Request, on: bool) -> web.Response:
    caller = await require(request, "admin")
    name = _name(request)
    request[TARGET] = f"host={name}"
    async with request.app[SESSIONS].begin() as session:
        host = await db.cordon(session, name, caller.name, on)
    out = _host(request, host)
    return web.json_response(out.model_dump(mode="json"))


async def drain(request: web.Request) -> web.Response:
    """POST /v1/hosts/{name}/drain: cordon the host and remove every app from it."""
    caller = await require(request, "admin")
    name = _name(request)
    request[TARGET] = f"host={name}"
    async with request.app[SESSIONS].begin() as session:
        host, apps = await db.drain(session, name, caller.name)
    request.app[HUB].request_push([name])
    out = HostDrained(**(_host(request, host)).model_dump(), removed=apps)
    return web.json_response(out.model_dump(mode="json"))


async def remove_host(request: web.Request) -> web.Response:
    """DELETE /v1/hosts/{name}[?force=true]: the host is forgotten and its agent cut off."""
    caller = await require(request, "admin")
    name = _name(request)
    force = flag(request, "force")
    async with request.app[SESSIONS].begin() as session:
        host_id = await db.remove_host(session, name, caller.name, force)
    await request.app[HUB].disconnect(name, REMOVED, "host removed")
    request.app[STATUSES].forget(name, host_id)
    return web.Response(status=204)
