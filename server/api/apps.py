"""Apps and their releases."""

from __future__ import annotations

import contextlib

from aiohttp import web

from agent.protocol import volume_name
from server.api.answers import (
    AppListOut,
    AppRemovedOut,
    AppSummaryOut,
    ReleaseListOut,
    VolumesRemovedOut,
)
from server.api.auth import confine, require
from server.api.deployments import app_name
from server.api.pages import next_cursor, page_int
from server.api.params import flag
from server.api.views import app_out, release_out
from server.db import assignments, purges, rollouts, store
from server.errors import Conflict, NotFound
from server.keys import HUB, METRICS, READ_CACHE, SESSIONS, STATUSES
from server.states import EventKind


async def list_apps(request: web.Request) -> web.Response:
    """GET /v1/apps (a token confined to some apps sees those)."""
    caller = await require(request, "read")
    async with request.app[SESSIONS]() as session:
        apps = await store.list_apps(session)
    out = AppListOut(
        apps=[
            AppSummaryOut(
                name=a.name, current_release=a.current_release, last_release=a.last_release
            )
            for a in apps
            if caller.may_see(a.name)
        ]
    )
    return web.json_response(out.model_dump(mode="json"))


async def get_app(request: web.Request) -> web.Response:
    """GET /v1/apps/{app}: current release, its spec, and what runs on each host."""
    caller = await require(request, "read")
    name = app_name(request)
    confine(caller, name)
    sessions = request.app[SESSIONS]

    statuses = request.app[STATUSES]

    async def build() -> bytes:
        async with sessions() as session:
            app = await store.get_app(session, name)
            number = app.current_release or app.last_release
            release = await store.get_release(session, app, number) if number else None
            hosts = await store.list_hosts(session)
            assigned = {a.host_id: a.release for a in await store.assignments_of_app(session, app)}
            seen = await statuses.read(session, [(h.id, h.name) for h in hosts])
            replicas = await rollouts.replicas_of(session, app.id, set(assigned.values()))
        out = app_out(app, release, hosts, assigned, seen, lambda r: replicas.get(r, 1))
        return out.model_dump_json().encode()

    # the hosts' statuses are the status store's, not the database's: their version too
    key = f"{request.path}@{statuses.seq}"
    body = await request.app[READ_CACHE].fetch(key, build)
    return web.Response(body=body, content_type="application/json")


async def list_releases(request: web.Request) -> web.Response:
    """GET /v1/apps/{app}/releases[?limit=N&cursor=C]: newest first (every release when no
    limit is given)."""
    caller = await require(request, "read")
    name = app_name(request)
    confine(caller, name)
    page = page_int(request, None)
    async with request.app[SESSIONS]() as session:
        app = await store.get_app(session, name)
        releases = await store.list_releases(session, app, page.limit, page.after)
    out = ReleaseListOut(
        releases=[release_out(r) for r in releases],
        next_cursor=next_cursor(releases, page.limit, lambda r: r.number),
    )
    return web.json_response(out.model_dump(mode="json"))


async def remove_app(request: web.Request) -> web.Response:
    """DELETE /v1/apps/{app}[?volumes=true] (admin): stop and remove the app's containers on
    every host. Its releases, deployments and events are kept; a later deploy brings it back.
    With `?volumes=true` the agents of the hosts that ran it also remove its named volumes
    once its containers are gone (`db/purges.py`: until a deployment of it targets the host
    again). Refused (409) while one of its deployments is under way: cancel that first."""
    caller = await require(request, "admin")
    name = app_name(request)
    volumes = flag(request, "volumes")
    async with request.app[SESSIONS].begin() as session:
        app = await store.lock_app(session, name)
        if app is None:
            raise NotFound(f"app {name!r} does not exist", "app")
        if await rollouts.newest_active_release(session, app.id) is not None:
            raise Conflict(
                "deployment_in_progress",
                f"app {name!r} has a deployment under way: cancel it first",
            )
        purged: VolumesRemovedOut | None = None
        if volumes:  # before the assignments go: the hosts assigned it ran it
            purged = VolumesRemovedOut(
                hosts=await purges.purge(session, app.id),
                names=[volume_name(name, s) for s in await purges.volume_sources(session, app.id)],
            )
        hosts = await assignments.unassign(session, app.id)
        app.current_release = None
        where = ", ".join(hosts) if hosts else "no host"
        message = f"{name} removed from {where}"
        if purged is not None:
            message += (
                f"; its volumes ({', '.join(purged.names) or 'none named'}) removed on "
                f"{', '.join(purged.hosts) or 'no host'}"
            )
        await store.add_event(session, EventKind.APP_REMOVED, caller.name, message, app=name)
    request.app[HUB].request_push(sorted(set(hosts) | set(purged.hosts if purged else ())))
    with contextlib.suppress(KeyError):  # no series if it never had a current release
        request.app[METRICS].app_release.remove(name)
    out = AppRemovedOut(app=name, removed_from=hosts, volumes=purged)
    return web.json_response(out.model_dump(mode="json", exclude_none=True))
