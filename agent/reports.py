"""What the agent tells the server: its status, when it sends one, and its events.

A status is the full observed state of the host (instances with their readiness, image
digests, the problems of the releases still wanted, whether the Engine answers), with every
secret value of the desired state masked (agent/masking.py). It goes out only when it
changed, in the order statuses were built, and while a pass acts at most REPORT_SECONDS
after a change (`soon`), so that quick steps share one status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace

from agent.masking import mask_problem, secret_values
from agent.protocol import (
    AppProblem,
    DesiredState,
    Event,
    Instance,
    Message,
    Status,
    fit_event,
    fit_status,
)

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]

# While a pass acts, what changed goes out at most this much later, and at the pass's end at
# once: a quick pull-then-run, or stop-then-remove, is one status, not one per step (at 10,000
# hosts each status is a message the server must take), while a slow step (a long pull, a stop
# that waits out its grace period) still shows what came before it.
REPORT_SECONDS = 0.1


def build_status(
    host: str,
    desired: DesiredState | None,
    instances: Iterable[Instance],
    ready: frozenset[str],
    digests: Mapping[str, str],
    problems: Mapping[tuple[str, int], AppProblem],
    engine_error: str | None,
) -> Status:
    """The status of a host: its instances (those in `ready` marked ready), the digests of
    its images, the problems of the releases its desired state still assigns or pre-pulls,
    masked, and the Engine's error; fitted to the protocol's caps."""
    current = set()
    values = secret_values(desired)  # an app's output may show them: never reported
    if desired is not None:
        current = {(a.app, a.release) for a in desired.assignments}
        current |= {(p.app, p.release) for p in desired.prepull}
    return fit_status(
        Status(
            host=host,
            generation=desired.generation if desired else 0,
            instances=tuple(
                replace(i, ready=True) if i.container_id in ready else i for i in instances
            ),
            digests=tuple(sorted(digests.items())),
            problems=tuple(mask_problem(p, values) for k, p in problems.items() if k in current),
            engine_error=engine_error,
        )
    )


class Reporter:
    """Sends a host's statuses (built by `build` when they leave) and events to the server."""

    def __init__(self, host: str, build: Callable[[], Status]) -> None:
        self.host = host
        self._build = build
        self._send: Send | None = None
        self._last_status: Status | None = None
        self._lock = asyncio.Lock()  # statuses leave in the order they were built
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, send: Send | None) -> None:
        """Set (or clear, with None) where statuses and events go."""
        self._send = send
        self._last_status = None
        if send is None:
            self.cancel()  # nobody to report to; the next connection gets all

    def soon(self) -> None:
        """Report within REPORT_SECONDS, unless the pass ends (and reports) first."""
        if self._timer is None and self._send is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(REPORT_SECONDS, self._due)

    def cancel(self) -> None:
        """Drop the report `soon` asked for (one is about to go anyway)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.report())
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    async def report(self, force: bool = False) -> None:
        """Send the full observed status, if connected and it changed (or `force`)."""
        async with self._lock:
            if self._send is None:
                return
            status = self._build()
            if status == self._last_status and not force:
                return  # liveness is the WebSocket's ping/pong: an unchanged status is not news
            self._last_status = status
            await self._safe_send(status)

    async def event(self, kind: str, app: str, message: str) -> None:
        """Tell the server of an event of `app` on this host."""
        await self._safe_send(fit_event(Event(self.host, kind, app, message)))

    async def _safe_send(self, message: Message) -> None:
        send = self._send
        if send is None:
            return
        try:
            await send(message)
        except Exception as exc:  # the connection dropped; the client reconnects and resends
            log.debug("send failed host=%s: %s", self.host, exc)
