"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.api.problems import HttpProblem
from server.db.store import ping
from server.keys import ENGINE, METRICS

log = logging.getLogger(__name__)


async def healthz(_: web.Request) -> web.Response:
    """GET /healthz: the process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: the database answers."""
    try:
        await ping(request.app[ENGINE])
    except Exception as exc:
        log.warning("readiness check failed: %s", exc)
        raise HttpProblem(503, "database_unavailable", "the database does not answer") from None
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
