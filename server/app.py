"""The application factory: every dependency comes in as an argument."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from agent.strict import prepare_checks
from server.api.audit import audit_middleware
from server.api.problems import OUTAGE, Outage, problems_middleware
from server.api.routes import setup_routes
from server.audit import AuditLog
from server.config import Settings
from server.db import events, hosts, store, tokens, webhooks
from server.db.session import create_engine, create_sessions
from server.event_feed import EventFeed
from server.fleet_metrics import FleetMetrics
from server.hub import Hub
from server.keys import (
    AUDIT,
    CONTROLLER,
    ENGINE,
    EVENT_FEED,
    HUB,
    LOGINS,
    METRICS,
    READ_CACHE,
    SECRET_BOX,
    SESSIONS,
    SETTINGS,
    STATUSES,
    STOPPING,
    TOKENS,
    TURNS,
)
from server.metrics import create_metrics
from server.read_cache import ReadCache
from server.rollout.controller import Controller
from server.rollout.wakeups import Wakeups
from server.secret_box import SecretBox
from server.statuses import StatusStore
from server.throttle import FailedLogins
from server.token_cache import TokenCache
from server.turns import Turns
from server.webhooks.delivery import DELIVERER, Deliverer, Policy, deliveries_ctx

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin.token"


def create_app(settings: Settings, webhook_policy: Policy | None = None) -> web.Application:
    """Build the server; the database must already be migrated (see server.db.migrate).
    `webhook_policy`: how the webhook sender retries (the default, Policy(), but for tests
    that need a quick backoff).

    The middle is built in dependency order, each part handed what it uses, and nothing is
    set on a part after it is built: the scheduler (server.turns), the status store, the
    controller's wake-ups, the hub, the controller (docs/architecture.md)."""
    prepare_checks()  # msgspec's strict checks of agents' reports, built once, now
    app = web.Application(
        # the audit's is outermost: it sees the status every call was answered with
        middlewares=[audit_middleware, problems_middleware],
        client_max_size=settings.max_body_bytes,
    )
    engine = create_engine(settings.effective_database_url)
    read_cache = ReadCache()
    enqueued = asyncio.Event()  # a commit enqueued webhook deliveries: wakes their sender
    added = asyncio.Event()  # a commit added events: wakes the event feed
    sessions = create_sessions(
        engine,
        on_commit=read_cache.bump,
        listeners=(webhooks.commit_listener(enqueued.set), events.commit_listener(added.set)),
    )
    metrics = create_metrics()
    turns = Turns()
    statuses = StatusStore(sessions, turns)
    wakeups = Wakeups(turns)
    logins = FailedLogins()
    secret_box = SecretBox(settings.data_dir, settings.secret_key)
    hub = Hub(
        sessions,
        metrics,
        statuses,
        wakeups.host,
        turns,
        logins,
        secret_box=secret_box,
        client_certs=bool(settings.agent_ca),
        heartbeat=settings.agent_heartbeat,
    )
    controller = Controller(
        sessions, metrics, statuses, hub, turns, wakeups, settings.controller_interval
    )
    app[SETTINGS] = settings
    app[SECRET_BOX] = secret_box
    app[ENGINE] = engine
    app[SESSIONS] = sessions
    app[METRICS] = metrics
    app[TURNS] = turns
    app[LOGINS] = logins
    app[STATUSES] = statuses
    app[HUB] = hub
    app[CONTROLLER] = controller
    app[STOPPING] = [False]
    app[OUTAGE] = Outage()
    app[READ_CACHE] = read_cache
    app[TOKENS] = TokenCache()
    app[AUDIT] = AuditLog(sessions, metrics.audit_dropped, turns)
    app[DELIVERER] = Deliverer(sessions, turns, enqueued, webhook_policy)
    app[EVENT_FEED] = EventFeed(sessions, turns, added)
    setup_routes(app)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_loops_ctx)
    app.cleanup_ctx.append(deliveries_ctx)
    app.on_shutdown.append(_on_shutdown)
    return app


async def ensure_admin_token(app: web.Application) -> str | None:
    """On first start with no tokens, create an admin token and write it to the data dir."""
    settings = app[SETTINGS]
    async with app[SESSIONS].begin() as session:
        if await store.count_tokens(session):
            return None
        token = await tokens.create_token(session, "admin", ["admin"])
    path = Path(settings.data_dir) / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return token


def secure_data_dir(settings: Settings) -> None:
    """The data dir readable by its owner only (0700), and the SQLite files in it 0600: they
    hold every host's token hash and every release's environment."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    for path in data_dir.glob("flotilla.db*"):
        path.chmod(0o600)


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    secure_data_dir(app[SETTINGS])
    app[SECRET_BOX].load()  # FLOTILLA_SECRET_KEY, or <data-dir>/secret.key (made on first start)
    # hosts are disconnected until their agents connect to this process: after a crash the
    # rows still say connected, and /v1/hosts and flotilla_hosts said so for ~20 s
    async with app[SESSIONS].begin() as session:
        await hosts.forget_connections(session)
    token = await ensure_admin_token(app)
    if token is not None:  # its path, never the token: output like this ends up in logs
        path = Path(app[SETTINGS].data_dir) / ADMIN_TOKEN_FILE
        print(f"Created the admin token: it is in {path} (readable by this user only)", flush=True)
    yield
    await app[ENGINE].dispose()


async def _loops_ctx(app: web.Application) -> AsyncIterator[None]:
    """The background loops: rollout controller, fleet gauges, the hub's pushes and writes,
    the status store's writes."""
    settings = app[SETTINGS]
    fleet = FleetMetrics(
        app[SESSIONS],
        app[METRICS],
        app[STATUSES],
        app[HUB],
        app[TURNS],
        settings.host_timeout,
        settings.fleet_metrics_interval,
    )
    tasks = [
        asyncio.create_task(app[CONTROLLER].run(), name="rollout-controller"),
        asyncio.create_task(fleet.run(), name="fleet-metrics"),
        asyncio.create_task(app[HUB].run(), name="hub"),
        asyncio.create_task(app[STATUSES].run(), name="status-writes"),
        asyncio.create_task(app[AUDIT].run(), name="audit-writes"),
        asyncio.create_task(app[EVENT_FEED].run(), name="event-feed"),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _on_shutdown(app: web.Application) -> None:
    """SIGTERM: new requests get 503, clients waiting for a deployment's end get its state
    now, agents are told we are going (their containers keep running)."""
    app[STOPPING][0] = True
    app[CONTROLLER].release_waiters()
    app[EVENT_FEED].close_all()  # the event streams end
    await app[HUB].close_all()
