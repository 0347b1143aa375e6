"""The agents' door: who may open an agent socket, and how often it is pinged.

A socket names its host by the host's token (looked up once a minute at most per token: a
reconnect storm of 10,000 agents is cheap), and with mutual TLS (`--agent-ca`) it also
needs a client certificate naming that host. Guessed tokens and refused certificates count
towards the same throttle as the API's (`FailedLogins`). The ping interval of a new socket
grows with the fleet. The hub (`server.hub`) asks at each connection and forgets a host's
token when it cuts the host off.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from agent.tls import certificate_names
from server.db import store
from server.db.session import Sessions
from server.errors import CertificateRefused, Throttled, Unauthorized
from server.metrics import Metrics
from server.throttle import FailedLogins

log = logging.getLogger(__name__)

MAX_PINGS_PER_SECOND = 200.0  # the server's pings to all agents: at 10,000 hosts one in 50 s
TOKEN_CACHE_SECONDS = 60.0
MAX_CACHED_TOKENS = 100_000


class Door:
    """Admits agents' sockets: their host, their certificate, their heartbeat."""

    def __init__(
        self,
        sessions: Sessions,
        metrics: Metrics,
        logins: FailedLogins,
        client_certs: bool,
        heartbeat: float,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.logins = logins
        self.client_certs = client_certs  # mutual TLS: a client certificate must name the host
        self.heartbeat = heartbeat  # the ping interval in a small fleet (Settings.agent_heartbeat)
        self._tokens: dict[str, tuple[int, str, float]] = {}  # token -> host id, name, expiry
        self._fleet = 0  # registered hosts, counted at most once a minute
        self._fleet_checked = float("-inf")

    async def admit(self, request: web.Request) -> tuple[int, str]:
        """The host (id, name) a connecting agent speaks for; Throttled, Unauthorized or
        CertificateRefused if it may not connect."""
        address = request.remote or "?"
        wait = self.logins.retry_after(address, "agent socket")
        if wait:
            raise Throttled(wait)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        known = await self._host_of(token)
        if known is None:
            if token:
                self.logins.failed(address)
            raise Unauthorized("unknown host token")
        if self.client_certs:
            self._check_certificate(request, address, known[1])
        return known

    def forget(self, name: str) -> None:
        """Forget the cached tokens of this host (its token was rotated, or it was removed)."""
        for token in [t for t, (_, host, _) in self._tokens.items() if host == name]:
            del self._tokens[token]

    async def heartbeat_seconds(self) -> float:
        """Seconds between this server's pings on a new agent socket (a silent, dead socket is
        closed within 1.5 of them). Like Nomad's heartbeat TTL it grows with the fleet, so the
        server sends at most MAX_PINGS_PER_SECOND in all: at 10,000 agents a ping every 20 s
        each was 58% of an idle server's CPU samples (py-spy)."""
        now = time.monotonic()
        if now >= self._fleet_checked + 60.0:
            self._fleet_checked = now  # first: a reconnect storm counts once, not per agent
            async with self.sessions() as session:
                self._fleet = await store.host_count(session)
        return max(self.heartbeat, self._fleet / MAX_PINGS_PER_SECOND)

    async def _host_of(self, token: str) -> tuple[int, str] | None:
        """The host a token belongs to; cached for a minute (a reconnect storm is cheap)."""
        if not token:
            return None
        now = time.monotonic()
        cached = self._tokens.get(token)
        if cached is not None and cached[2] > now:
            return cached[0], cached[1]
        async with self.sessions() as session:
            host = await store.host_by_token(session, token)
        if host is None:
            return None
        if len(self._tokens) > MAX_CACHED_TOKENS:
            self._tokens.clear()
        self._tokens[token] = (host.id, host.name, now + TOKEN_CACHE_SECONDS)
        return host.id, host.name

    def _check_certificate(self, request: web.Request, address: str, name: str) -> None:
        """Mutual TLS: the TLS handshake verified the client certificate against --agent-ca;
        here its name (CN or a DNS name) must be the host's the token belongs to. A refusal
        is an authentication that failed (403, audited, counted towards the throttle)."""
        transport = request.transport
        names = certificate_names(transport.get_extra_info("peercert") if transport else None)
        if name in names:
            return
        self.logins.failed(address)
        self.metrics.agent_refused.labels("certificate").inc()
        if names:
            why = f"the client certificate is for {', '.join(sorted(names))}, not host {name}"
        else:
            why = f"host {name} must present a client certificate signed by the agents' CA"
        log.warning("agent refused host=%s address=%s: %s", name, address, why)
        raise CertificateRefused(why)
