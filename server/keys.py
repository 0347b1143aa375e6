"""Typed application keys: the only way handlers reach shared state."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from server.audit import AuditLog
from server.config import Settings
from server.db.session import Sessions
from server.event_feed import EventFeed
from server.hub import Hub
from server.metrics import Metrics
from server.read_cache import ReadCache
from server.rollout.controller import Controller
from server.secret_box import SecretBox
from server.statuses import StatusStore
from server.throttle import FailedLogins
from server.token_cache import TokenCache
from server.turns import Turns

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", Sessions)
METRICS = web.AppKey("metrics", Metrics)
HUB = web.AppKey("hub", Hub)
CONTROLLER = web.AppKey("controller", Controller)
STATUSES = web.AppKey("statuses", StatusStore)
TURNS = web.AppKey("turns", Turns)
LOGINS = web.AppKey("logins", FailedLogins)  # failed authentications per address
STOPPING = web.AppKey("stopping", list[bool])
READ_CACHE = web.AppKey("read_cache", ReadCache)
TOKENS = web.AppKey("tokens", TokenCache)  # validated tokens, for a second at most
AUDIT = web.AppKey("audit", AuditLog)
SECRET_BOX = web.AppKey("secret_box", SecretBox)  # the key of apps' secrets
EVENT_FEED = web.AppKey("event_feed", EventFeed)  # new events, read once for every stream
