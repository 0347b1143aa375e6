"""The scheduler: the one place that says which background work yields to which.

Everything the server does runs on one event loop, so work that can wait must stay off the
path of work that cannot. The order, most urgent first:

1. `JUDGING`: the rollout controller has news of hosts a running rollout waits on, or a pass
   runs. Statuses are judged from memory (server.statuses), so nothing else needs to happen
   before a pass.
2. `PUSHING`: desired states a pass assigned are being sent. The controller's next pass
   waits for the push: no host can report on an assignment before it hears of it.
3. `ANSWERING`: a deployment just ended; the clients waiting for its end (`GET
   /v1/deployments/{id}?wait=`, `flotilla deploy --wait`) are being answered (a fixed
   ANSWER_SECONDS after the pass that ended it).
4. `ROLLING`: a rollout is under way (pending or running; a paused one is not), from the
   request that created it until a pass finds none.

Background work asks for its turn with `await turns.wait(Work.X, max_wait)`, which waits
until no phase listed for it in WAITS_FOR is on, `max_wait` at most for each phase in all (a
write that waited out a pass still waits for the answer to an end, and a collection that
waited for an answer waits for the rollout that began meanwhile):

- `Work.NEXT_PASS`, the controller's pass after one that assigned hosts: PUSHING;
- `Work.WRITES`, statuses', reports' and the audit trail's writes, and the webhook sender's
  pass (it claims webhooks): JUDGING, then ROLLING, then ANSWERING (on SQLite a write holds
  the one write lock, and a pass that wanted it slept in the driver's busy handler: 20 to
  70 ms of a 100-host deploy's 100);
- `Work.STREAM`, the event feed's read for `GET /v1/events/stream` clients: JUDGING (a
  pass's own events are read once it is over);
- `Work.METRICS`, the fleet gauges' refresh (it reads every host): ROLLING, then ANSWERING;
- `Work.COLLECT`, the garbage collector's catch-up (server.gc_tuning): ROLLING, then
  ANSWERING; while ROLLING, young collections are put off (`until_begins`).

A phase is begun and ended by its owner only: JUDGING and ROLLING by the controller (and the
API's request of a rollout), PUSHING by the hub, ANSWERING by the controller's `answer`.
Every bound keeps a stuck phase from starving the work behind it.
"""

from __future__ import annotations

import asyncio
from enum import Enum

from server.loops import wait_set

ANSWER_SECONDS = 0.25  # answering an end: long enough for a reply of a 10,000-host deployment
MAX_WRITE_DEFER_SECONDS = 1.0  # how long a write (Work.WRITES) yields to each phase before it


class Phase(Enum):
    """Work that other work yields to, most urgent first."""

    JUDGING = 1
    PUSHING = 2
    ANSWERING = 3
    ROLLING = 4


class Work(Enum):
    """Background work that asks for its turn."""

    NEXT_PASS = "next_pass"
    WRITES = "writes"
    STREAM = "stream"
    METRICS = "metrics"
    COLLECT = "collect"


WAITS_FOR: dict[Work, tuple[Phase, ...]] = {
    Work.NEXT_PASS: (Phase.PUSHING,),
    Work.WRITES: (Phase.JUDGING, Phase.ROLLING, Phase.ANSWERING),
    Work.STREAM: (Phase.JUDGING,),
    Work.METRICS: (Phase.ROLLING, Phase.ANSWERING),
    Work.COLLECT: (Phase.ROLLING, Phase.ANSWERING),
}


class Turns:
    """Which phases are on now; background work waits for its turn here."""

    def __init__(self, answer_seconds: float = ANSWER_SECONDS) -> None:
        self.answer_seconds = answer_seconds
        self._off = {phase: asyncio.Event() for phase in Phase}
        self._on = {phase: asyncio.Event() for phase in Phase}
        for event in self._off.values():
            event.set()
        self._answering: asyncio.TimerHandle | None = None

    def begin(self, phase: Phase) -> None:
        """`phase` is on: work that yields to it waits."""
        self._off[phase].clear()
        self._on[phase].set()

    def end(self, phase: Phase) -> None:
        """`phase` is over: work that waited for it goes on."""
        self._on[phase].clear()
        self._off[phase].set()

    def set(self, phase: Phase, on: bool) -> None:
        """Begin or end `phase`."""
        if on:
            self.begin(phase)
        else:
            self.end(phase)

    def is_on(self, phase: Phase) -> bool:
        """Is `phase` on now?"""
        return self._on[phase].is_set()

    def answer(self) -> None:
        """A deployment ended: ANSWERING for the next `answer_seconds`."""
        self.begin(Phase.ANSWERING)
        if self._answering is not None:
            self._answering.cancel()
        loop = asyncio.get_running_loop()
        self._answering = loop.call_later(self.answer_seconds, self.end, Phase.ANSWERING)

    async def wait(self, work: Work, max_wait: float) -> None:
        """Wait for `work`'s turn: every phase it yields to over at the same time (one that
        began again while it waited for a later one is waited for again), `max_wait` at
        most for each phase in all."""
        phases = WAITS_FOR[work]
        left = dict.fromkeys(phases, max_wait)
        loop = asyncio.get_running_loop()
        while on := [p for p in phases if not self._off[p].is_set() and left[p] > 0]:
            began = loop.time()
            await wait_set(self._off[on[0]], left[on[0]])
            left[on[0]] -= loop.time() - began

    async def until_begins(self, phase: Phase) -> None:
        """Wait until `phase` is on."""
        await self._on[phase].wait()

    async def until_over(self, phase: Phase, max_wait: float) -> None:
        """Wait until `phase` is over, `max_wait` at most."""
        await wait_set(self._off[phase], max_wait)
