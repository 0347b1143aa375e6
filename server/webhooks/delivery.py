"""The webhook delivery loop: sends the database outbox, in order per webhook.

`run()` waits for a wake-up (a commit that enqueued deliveries) or `interval`, then calls
`run_once()`, which leases due webhooks and starts one sender task per webhook, at most
`concurrency` at a time. A sender posts the webhook's oldest pending delivery (signed, see
`server.webhooks.signing`), records the outcome and goes on with the next one; on a failure
it leaves the delivery for a retry after a capped exponential backoff with jitter, so the next
delivery of that webhook waits: a receiver sees events in order. A delivery is retried until
at least `give_up_after` seconds after its event (and at least once), then marked failed.

The rollout controller only inserts rows; a slow or dead receiver costs this loop, never a
rollout. Delivery is at least once: a server that stops between sending and recording sends
again after a restart, so receivers dedupe on the delivery id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from server.db import webhooks as db
from server.db.session import Sessions
from server.loops import log_failure, unit_of_work, wait_set
from server.states import DeliveryStatus
from server.turns import MAX_WRITE_DEFER_SECONDS, Turns, Work
from server.webhooks import signing

log = logging.getLogger(__name__)

USER_AGENT = "flotilla-webhooks/1"
MAX_ERROR = 500


@dataclass(frozen=True)
class Policy:
    """How the sender behaves (create_app's `webhook_policy`; tests shorten the backoff)."""

    timeout: float = 5.0  # one attempt, connect to last byte
    concurrency: int = 8  # webhooks sent to at the same time
    backoff_base: float = 1.0  # the first retry waits about this long
    backoff_cap: float = 300.0
    give_up_after: float = 3600.0  # retried at least this long after the event
    interval: float = 1.0  # poll for due retries (and other replicas' events)
    lease: float = 60.0  # a sender's hold on a webhook, renewed after every attempt
    retention: float = 7 * 86400.0  # finished deliveries are kept this long
    prune_every: float = 600.0


def backoff(attempts: int, base: float, cap: float, rand: float) -> float:
    """Seconds before the next try after `attempts` failed ones; `rand` in [0, 1) is jitter."""
    delay = min(cap, base * 2.0 ** min(max(attempts - 1, 0), 30))
    return delay / 2 + delay / 2 * rand


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Deliverer:
    """Sends webhook deliveries; one per process, run by `deliveries_ctx`."""

    def __init__(
        self,
        sessions: Sessions,
        turns: Turns,
        wake: asyncio.Event,
        policy: Policy | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.sessions = sessions
        self.turns = turns
        self.policy = policy or Policy()
        self.rand = rand
        # set by a commit that enqueued deliveries (db.webhooks.commit_listener)
        self.wake = wake
        self._http: aiohttp.ClientSession | None = None  # while `run` runs
        self._senders: set[asyncio.Task[None]] = set()
        self._pruned = 0.0

    async def run(self) -> None:
        """Until cancelled: wait for a wake-up or the interval, then for the turn of writes
        (server.turns: a pass claims webhooks, a write), then one pass."""
        self._http = aiohttp.ClientSession()
        try:
            while True:
                # not asyncio.wait_for: on Python 3.11 it returns normally when it is cancelled
                # in the turn in which the wake-up completes (a sender that just finished, a
                # commit that enqueued), so a stopping server's loop ran on and its teardown hung
                await wait_set(self.wake, self.policy.interval)
                await self.turns.wait(Work.WRITES, MAX_WRITE_DEFER_SECONDS)
                self.wake.clear()
                try:
                    await unit_of_work(self.run_once())
                except Exception as exc:
                    log_failure(log, "webhook delivery pass", exc)
        finally:
            # let senders finish the attempt in flight (a cancelled database call can leak
            # its connection), then cancel whatever still waits on a slow receiver
            if self._senders:
                await asyncio.wait(set(self._senders), timeout=6)
            try:
                for task in self._senders:
                    task.cancel()
                await asyncio.gather(*self._senders, return_exceptions=True)
            finally:
                await self._http.close()
                self._http = None

    async def run_once(self) -> int:
        """Lease the webhooks that have a due delivery and start a sender for each."""
        free = self.policy.concurrency - len(self._senders)
        now = _now()
        async with self.sessions.begin() as session:
            claims = await db.claim(session, now, free, self._lease(now))
        for hook in claims:
            task = asyncio.create_task(self._send_all(hook), name=f"webhook-{hook.id}")
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        if time.monotonic() - self._pruned > self.policy.prune_every:
            self._pruned = time.monotonic()
            before = now - dt.timedelta(seconds=self.policy.retention)
            async with self.sessions.begin() as session:
                pruned = await db.prune(session, before)
            if pruned:
                log.info("pruned %d finished webhook deliveries", pruned)
        return len(claims)

    def _lease(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.policy.lease)

    async def _send_all(self, hook: db.Claim) -> None:
        """Send the webhook's due deliveries in order; stop at the first failure."""
        try:
            while True:
                async with self.sessions() as session:
                    due = await db.next_due(session, hook.id, _now())
                if due is None or not await self._attempt(hook, due):
                    break
        except Exception as exc:  # a bug: its trace; the database down: a line a minute
            log_failure(log, f"webhook sender of webhook={hook.id}", exc)
        finally:
            try:
                async with self.sessions.begin() as session:
                    await db.set_lease(session, hook.id, None)
            except Exception as exc:  # its lease expires
                log_failure(log, "webhook sender's release of its lease", exc)
            self.wake.set()  # deliveries enqueued while we held the lease

    async def _attempt(self, hook: db.Claim, due: db.Due) -> bool:
        """POST one delivery and record the outcome; True if it was delivered."""
        assert self._http is not None, "only run's senders attempt"
        body = json.dumps({"id": due.id, "event": due.event, **due.payload}).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signing.EVENT_HEADER: due.event,
            signing.DELIVERY_HEADER: str(due.id),
            signing.SIGNATURE_HEADER: signing.signature(hook.secret, int(time.time()), body),
        }
        code: int | None = None
        error: str | None = None
        try:
            async with self._http.post(
                hook.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            ) as resp:
                code = resp.status
                if not 200 <= code < 300:
                    error = f"HTTP {code} {resp.reason or ''}".strip()
        except TimeoutError:
            error = f"no answer within {self.policy.timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        now = _now()
        attempts = due.attempts + 1
        delivered = error is None
        if delivered:
            status, next_at = DeliveryStatus.DELIVERED, now
        elif (now - due.created_at).total_seconds() >= self.policy.give_up_after:
            status, next_at = DeliveryStatus.FAILED, now
        else:
            wait = backoff(attempts, self.policy.backoff_base, self.policy.backoff_cap, self.rand())
            status, next_at = DeliveryStatus.PENDING, now + dt.timedelta(seconds=wait)
        async with self.sessions.begin() as session:
            # the webhook row before its delivery, as DELETE /v1/webhooks/{id} locks them:
            # the other order deadlocks with it on PostgreSQL (see server.db.webhooks)
            await db.set_lease(session, hook.id, self._lease(now))
            await db.record(
                session,
                due.id,
                status=status,
                attempts=attempts,
                status_code=code,
                error=error,
                next_attempt_at=next_at,
                delivered_at=now if delivered else None,
            )
        if not delivered:
            log.warning(
                "webhook delivery %s webhook=%s delivery=%s event=%s attempts=%d: %s",
                "gave up" if status == DeliveryStatus.FAILED else "failed",
                hook.id, due.id, due.event, attempts, error,
            )  # fmt: skip
        return delivered


DELIVERER = web.AppKey("webhook_deliverer", Deliverer)


async def deliveries_ctx(app: web.Application) -> AsyncIterator[None]:
    """The delivery loop (it opens its own HTTP client), for the app's lifetime."""
    task = asyncio.create_task(app[DELIVERER].run(), name="webhook-deliveries")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
