"""What wakes the rollout controller: a deduplicating queue of deployments with news.

News comes from the hub (a host reported, connected or went away), the API (a deployment was
requested or acted on) and the controller's own passes (an automatic rollback). A host's news
matters only while a rollout watches it; the controller says which hosts it watches. Between
passes the controller rests (`rest`), so that thousands of statuses arriving together are
judged together instead of one pass each; a deployment queued meanwhile (a request, an
operator's action, an automatic rollback) ends the rest at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from server.loops import wait_set
from server.turns import Phase, Turns

# A rest lasts this share of the pass before it, at most MAX_REST_SECONDS: back-to-back
# passes over 10,000 targets would take the event loop from the hub receiving the statuses.
# (At 10,000 hosts a pass takes 0.2-0.4 s and their statuses 0.4-0.7 s to come in after the
# push: a cap of 0.25 s began a second pass, of 0.2-0.6 s, before half of them were in.)
REST_SHARE = 2.0
MAX_REST_SECONDS = 1.0
# ...but once hosts have had news since the pass began, it ends when none has had any for
# this long (the flood is over), or at once when every host the rollouts wait on (updating)
# has had news: nothing more is coming to judge together with theirs. After a long pass the
# silence must last the pass's time over REST_SHARE (half of it): a flood has gaps of 20-60
# ms (the agents' side pausing), and one taken for its end began a pass as long as that one
# with a fifth of the statuses in (bench/results/ab/20261207-10k-rest).
QUIET_SECONDS = 0.02


class Wakeups:
    """Deployments to drive and hosts with news since the controller last took them."""

    def __init__(self, turns: Turns) -> None:
        self.turns = turns
        self._deployments: set[int | None] = set()  # None: look for new deployments
        self._hosts: set[str] = set()
        self._watched: frozenset[str] = frozenset()
        self._awaited: set[str] = set()  # watched hosts updating, without news since a pass
        self._news = 0  # how many news there were, ever
        self._woken = asyncio.Event()
        # a rest ends at once: every awaited host had news, or a deployment was queued
        self._rest_over = asyncio.Event()

    def deployment(self, deployment_id: int | None = None) -> None:
        """Drive this deployment soon (None: a new one, not known yet)."""
        self._deployments.add(deployment_id)
        self._woken.set()
        self._rest_over.set()  # a rest gathers hosts' news, and holds up no request or action

    def host(self, name: str) -> bool:
        """A host reported, connected or went away; whether a rollout watches it (then it
        is news to judge, and JUDGING begins). Without one there is nothing to judge: waking
        for each status an idle fleet sends was most of an idle server's CPU at 10,000 hosts."""
        if name not in self._watched:
            return False
        if not self._hosts:  # else JUDGING is on: it ends only once a pass took them all
            self.turns.begin(Phase.JUDGING)
        self._hosts.add(name)
        self._news += 1
        self._woken.set()
        if self._awaited:
            self._awaited.discard(name)
            if not self._awaited:
                self._rest_over.set()
        return True

    def pending(self) -> bool:
        """Is there news no pass has taken yet?"""
        return bool(self._hosts or self._deployments)

    def take(self) -> tuple[set[int | None], set[str]]:
        """The deployments and hosts with news since the last take."""
        deployments, self._deployments = self._deployments, set()
        hosts, self._hosts = self._hosts, set()
        self._woken.clear()
        return deployments, hosts

    def watch(self, hosts: Iterable[str], updating: Iterable[str]) -> None:
        """After a pass: the running rollouts' hosts, and those of them the rollouts wait on."""
        self._watched = frozenset(hosts)
        waiting = set(updating)
        self._awaited = waiting - self._hosts
        if (waiting and not self._awaited) or self._deployments:  # the last of them reported
            self._rest_over.set()  # during the pass, or a deployment was queued meanwhile
        else:
            self._rest_over.clear()

    @property
    def news(self) -> int:
        """A count that grows with every host's news."""
        return self._news

    async def next(self, timeout: float) -> None:
        """Wait until something is queued, `timeout` at most."""
        await wait_set(self._woken, timeout)

    async def rest(self, took: float, news: int) -> None:
        """Rest after a pass that took `took` seconds and began when `news` was the count:
        REST_SHARE of it, MAX_REST_SECONDS at most, cut short as said above."""
        until = time.monotonic() + min(MAX_REST_SECONDS, REST_SHARE * took)
        quiet = max(QUIET_SECONDS, took / REST_SHARE)
        while (left := until - time.monotonic()) > 0.002:
            if self._rest_over.is_set():
                return
            before = self._news
            await wait_set(self._rest_over, min(quiet, left))
            if self._news == before and before != news:
                return
