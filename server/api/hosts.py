"""Hosts: the fleet and whether each agent is connected."""

from __future__ import annotations

from aiohttp import web

from server.api.auth import require
from server.api.views import host_out
from server.db import store
from server.keys import SESSIONS, SETTINGS, STATUSES


async def list_hosts(request: web.Request) -> web.Response:
    """GET /v1/hosts."""
    await require(request, "read")
    timeout = request.app[SETTINGS].host_timeout
    async with request.app[SESSIONS]() as session:
        hosts = await store.list_hosts(session)
    now = store.now()
    latest = request.app[STATUSES].latest
    return web.json_response(
        {
            "hosts": [
                host_out(h, now, timeout, latest(h.name)).model_dump(mode="json") for h in hosts
            ]
        }
    )
