"""Webhooks against a real receiver on 127.0.0.1: order, signatures, retries, restarts, input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.app import create_app
from server.config import Settings
from server.db import migrate, store, tokens
from server.db import webhooks as webhooks_db
from server.db.models import WebhookDelivery
from server.db.session import create_engine, create_sessions
from server.keys import SESSIONS
from server.turns import Turns
from server.webhooks import public_name
from server.webhooks.delivery import DELIVERER, Deliverer, Policy, backoff
from server.webhooks.signing import signature, verify
from tests.conftest import Flotilla, Images
from tests.e2e.fleet import fleet, simple
from tests.harness import Api, eventually, free_port

SECRET = "a-webhook-secret-of-some-length"
FAST = Policy(backoff_base=0.05, backoff_cap=0.2, interval=0.1)


class Receiver:
    """A webhook receiver: answers `status`, records what it accepted, checks every request."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status = 200
        self.got: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.requests = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        payload = json.loads(body)
        sig = request.headers.get("Flotilla-Signature", "")
        if not verify(SECRET, sig, body, time.time()):
            self.problems.append(f"bad signature {sig!r} on delivery {payload.get('id')}")
        if request.headers.get("Flotilla-Event") != payload["event"]:
            self.problems.append(f"Flotilla-Event differs on delivery {payload['id']}")
        if request.headers.get("Flotilla-Delivery") != str(payload["id"]):
            self.problems.append(f"Flotilla-Delivery differs on delivery {payload['id']}")
        if request.content_type != "application/json":
            self.problems.append(f"content type {request.content_type}")
        if self.status // 100 == 2:
            self.got.append(payload)
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def seen(self) -> list[tuple[str, int | None, str | None]]:
        return [(p["event"], p["deployment"], p["host"]) for p in self.got]


@contextlib.asynccontextmanager
async def receiver(start: bool = True) -> AsyncIterator[Receiver]:
    r = Receiver()
    if start:
        await r.start()
    try:
        yield r
    finally:
        await r.stop()


@contextlib.asynccontextmanager
async def server(
    url: str,
    data_dir: Path,
    policy: Policy = FAST,
    before_start: Callable[[web.Application], None] | None = None,
) -> AsyncIterator[tuple[TestServer, Api]]:
    """A server (without agents) whose deliveries back off quickly."""
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(data_dir=data_dir, database_url=url, controller_interval=0.2)
    app = create_app(settings, webhook_policy=policy)
    if before_start is not None:
        before_start(app)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    api = Api(f"http://127.0.0.1:{srv.port}", (data_dir / "admin.token").read_text().strip())
    try:
        yield srv, api
    finally:
        await api.close()
        await srv.close()


async def create_hook(api: Api, url: str, **extra: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/webhooks", {"url": url, "secret": SECRET, **extra})
    assert status == 201, (status, body)
    return dict(body)


async def published(api: Api) -> list[tuple[str, int | None, str | None]]:
    """The audit log, oldest first, as the public events a subscriber to "*" must get."""
    status, body = await api.call("GET", "/v1/events?limit=1000")
    assert status == 200
    out = []
    for e in reversed(body["events"]):
        name = public_name(e["kind"])
        if name is not None:
            out.append((name, e["deployment"], e["host"]))
    return out


async def deliveries(api: Api, hook: dict[str, Any]) -> list[dict[str, Any]]:
    status, body = await api.call("GET", f"/v1/webhooks/{hook['id']}/deliveries?limit=1000")
    assert status == 200, (status, body)
    return list(reversed(body["deliveries"]))


async def failed_deploy(api: Api, app: str = "web") -> int:
    """A deployment that matches no host: the controller starts and fails it at once."""
    d = await api.deploy(app, {"image": "flotilla-test/web:v1"})
    assert (await api.wait(d["id"]))["status"] == "failed"
    return int(d["id"])


async def all_received(r: Receiver, api: Api) -> bool:
    expected = await published(api)
    return bool(expected) and r.seen() == expected


def assert_once_each_in_order(r: Receiver) -> None:
    assert not r.problems, r.problems
    ids = [p["id"] for p in r.got]
    assert ids == sorted(set(ids)), f"duplicates or out of order: {ids}"


async def test_receiver_gets_every_event_of_a_deploy_and_a_rollback_in_order(
    flotilla: Flotilla, images: Images, docker_url: str
):
    f = flotilla
    async with receiver() as r:
        hook = await create_hook(f.api, r.url)
        assert hook["events"] == ["*"] and "secret" not in hook
        async with fleet(f, docker_url, size=2) as fl:
            d1 = await f.api.deploy("web", simple(images.v1, strategy={"max_parallel": 1}))
            assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
            d2 = await f.api.deploy("web", simple(images.v2, strategy={"max_parallel": 1}))
            assert (await f.api.wait(d2["id"]))["status"] == "succeeded"
            status, rb = await f.api.call("POST", "/v1/apps/web/rollback", {"release": 1})
            assert status == 202, rb
            assert (await f.api.wait(rb["id"]))["status"] == "succeeded"
            await eventually(lambda: all_received(r, f.api), timeout=30)
        assert_once_each_in_order(r)
        seen = r.seen()
        for d in (d1["id"], d2["id"], rb["id"]):
            mine = [e for e, dep, _ in seen if dep == d]
            assert mine == [
                "deployment.started",
                "deployment.batch_done",
                "deployment.batch_done",
                "deployment.succeeded",
            ], (d, mine)
        assert [h for e, _, h in seen if e == "host.connected"] == fl.hosts
        first = r.got[0]
        assert set(first) == {"id", "event", "at", "app", "deployment", "host", "message"}
        rollback = next(p for p in r.got if p["deployment"] == rb["id"])
        assert rollback["app"] == "web" and "rollback" in rollback["message"]


async def test_receiver_down_for_a_while_gets_each_event_once_in_order(
    database_url: str, tmp_path: Path
):
    async with receiver(start=False) as r, server(database_url, tmp_path) as (_, api):
        hook = await create_hook(api, r.url, events=["deployment.*"])
        for app in ("web", "api", "db"):
            await failed_deploy(api, app)

        async def retried() -> list[dict[str, Any]] | None:
            rows = await deliveries(api, hook)
            return rows if rows and rows[0]["attempts"] >= 3 else None

        rows = await eventually(retried)
        assert len(rows) == 6 and rows[0]["status"] == "pending", rows
        assert "Connect" in (rows[0]["last_error"] or ""), rows[0]
        assert all(row["attempts"] == 0 for row in rows[1:]), "only the head is tried"
        await r.start()
        await eventually(lambda: all_received(r, api))
        rows = await deliveries(api, hook)
        assert [row["status"] for row in rows] == ["delivered"] * 6, rows
        assert rows[0]["last_status_code"] == 200 and rows[0]["next_attempt_at"] is None
    assert_once_each_in_order(r)
    assert r.requests == 6
    assert [e for e, _, _ in r.seen()] == ["deployment.started", "deployment.failed"] * 3


async def test_pending_deliveries_are_sent_by_a_new_server_on_the_same_database(
    database_url: str, tmp_path: Path
):
    async with receiver(start=False) as r:
        async with server(database_url, tmp_path) as (_, api):
            hook = await create_hook(api, r.url)
            deployment = await failed_deploy(api)

            async def tried() -> bool:
                rows = await deliveries(api, hook)
                return bool(rows) and rows[0]["attempts"] >= 1

            await eventually(tried)
        # while no server runs, another process (say the CLI) records an event
        engine = create_engine(database_url)
        try:
            async with create_sessions(engine).begin() as session:
                await store.add_event(
                    session,
                    "deployment_succeeded",
                    "test",
                    "recorded while the server was stopped",
                    app="web",
                    deployment_id=deployment,
                )
        finally:
            await engine.dispose()
        await r.start()
        async with server(database_url, tmp_path) as (_, api):
            await eventually(lambda: all_received(r, api))
            assert r.seen() == [
                ("deployment.started", deployment, None),
                ("deployment.failed", deployment, None),
                ("deployment.succeeded", deployment, None),
            ]
    assert_once_each_in_order(r)


async def test_gives_up_after_the_retry_window_and_goes_on(sqlite_url: str, tmp_path: Path):
    # the window counts from the event, so it must outlast a first attempt made late
    # on a loaded machine (CI once made the first one after 0.5 s, and gave up at once)
    policy = Policy(backoff_base=0.05, backoff_cap=0.1, interval=0.1, give_up_after=2.0)
    async with receiver() as r, server(sqlite_url, tmp_path, policy) as (_, api):
        r.status = 500
        hook = await create_hook(api, r.url, events=["deployment.failed"])
        await failed_deploy(api)

        async def failed() -> list[dict[str, Any]] | None:
            rows = await deliveries(api, hook)
            return rows if rows and rows[0]["status"] == "failed" else None

        (row,) = await eventually(failed)
        assert row["attempts"] >= 2 and row["last_status_code"] == 500, row
        assert row["last_error"].startswith("HTTP 500") and row["delivered_at"] is None
        r.status = 204
        second = await failed_deploy(api)

        async def got() -> list[dict[str, Any]]:
            return r.got

        await eventually(got)
        assert r.seen() == [("deployment.failed", second, None)]
        rows = await deliveries(api, hook)
        assert [x["status"] for x in rows] == ["failed", "delivered"]


async def test_bad_input_and_scopes(sqlite_url: str, tmp_path: Path):
    async with server(sqlite_url, tmp_path) as (srv, api):
        good = {"url": "https://example.test/hook", "secret": SECRET}
        cases = [
            ({**good, "url": "ftp://example.test/hook"}, "url"),
            ({**good, "url": "not a url"}, "url"),
            ({**good, "url": "http://"}, "url"),
            ({**good, "secret": "short"}, "secret"),
            ({**good, "secret": "x" * 201}, "secret"),
            ({"url": good["url"]}, "secret"),
            ({**good, "events": ["nothing.*"]}, "events.0"),
            ({**good, "events": ["deployment.*", "host disconnected"]}, "events.1"),
            ({**good, "events": []}, "events"),
            ({**good, "extra": 1}, "extra"),
        ]
        for body, field in cases:
            status, problem = await api.call("POST", "/v1/webhooks", body)
            assert status == 422, (body, status, problem)
            assert problem["code"] == "invalid_request"
            assert field in [e["field"] for e in problem["errors"]], (body, problem)
            assert SECRET not in json.dumps(problem)

        async with srv.app[SESSIONS].begin() as session:
            deploy_token = await tokens.create_token(session, "ci", ["deploy"])
        for method, path in [
            ("POST", "/v1/webhooks"),
            ("GET", "/v1/webhooks"),
            ("DELETE", "/v1/webhooks/1"),
            ("GET", "/v1/webhooks/1/deliveries"),
        ]:
            status, problem = await api.call(method, path, good, token=deploy_token)
            assert (status, problem["code"]) == (403, "forbidden"), (method, path, problem)
            status, _ = await api.call(method, path, good, token="")
            assert status == 401

        hook = await create_hook(api, good["url"], events=["deployment.*", "host.disconnected"])
        assert hook["events"] == ["deployment.*", "host.disconnected"]
        status, listing = await api.call("GET", "/v1/webhooks")
        assert status == 200 and [h["id"] for h in listing["webhooks"]] == [hook["id"]]
        assert SECRET not in json.dumps(listing)
        assert (await api.call("GET", f"/v1/webhooks/{hook['id']}/deliveries"))[1] == {
            "deliveries": [],
            "next_cursor": None,
        }
        assert (await api.call("DELETE", f"/v1/webhooks/{hook['id']}"))[0] == 204
        status, problem = await api.call("DELETE", f"/v1/webhooks/{hook['id']}")
        assert (status, problem["code"]) == (404, "not_found")
        status, _ = await api.call("GET", f"/v1/webhooks/{hook['id']}/deliveries")
        assert status == 404
        status, problem = await api.call("GET", "/v1/webhooks/x/deliveries")
        assert status == 422 and problem["errors"][0]["field"] == "id"


async def pending_rows(url: str) -> list[WebhookDelivery]:
    """The outbox as another process sees it."""
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            query = select(WebhookDelivery).where(WebhookDelivery.status == "pending")
            return list((await session.scalars(query)).all())
    finally:
        await engine.dispose()


STOPS = 4


async def test_a_server_stops_promptly_while_a_delivery_waits_for_its_retry(
    database_url: str, tmp_path: Path
):
    """The sender is woken (a commit that enqueued, a sender that finished) in the very turn
    of the event loop in which teardown cancels it: the widest form of a race that hung
    about 1 teardown in 4 in test_deploys (a webhook to 127.0.0.1:9 at server stop)."""

    async def wake_now(app: web.Application) -> None:
        app[DELIVERER].wake.set()  # runs just before deliveries_ctx's teardown

    def woken_at_stop(app: web.Application) -> None:
        app.on_cleanup.insert(0, wake_now)

    hook: dict[str, Any] = {}
    async with receiver(start=False) as r:
        for stop in range(STOPS):
            async with server(database_url, tmp_path, before_start=woken_at_stop) as (srv, api):
                if not hook:
                    hook = await create_hook(api, r.url, events=["deployment.*"])
                    await failed_deploy(api)

                async def retried(
                    api: Api = api, hook: dict[str, Any] = hook, floor: int = stop
                ) -> bool:
                    rows = await deliveries(api, hook)
                    return bool(rows) and rows[0]["attempts"] > floor

                await eventually(retried)
                started = time.monotonic()
                try:
                    async with asyncio.timeout(10):
                        await srv.close()
                except TimeoutError:
                    raise AssertionError(f"teardown {stop + 1} of {STOPS} hung") from None
                assert time.monotonic() - started < 3, f"teardown {stop + 1} was slow"
            rows = await pending_rows(database_url)
            assert [row.status for row in rows] == ["pending", "pending"], "kept in the outbox"
            assert rows[0].attempts > stop and rows[1].attempts == 0


async def test_the_sender_stops_when_cancelled_just_as_it_is_woken(sqlite_url: str, tmp_path: Path):
    """The wake-up and the cancellation land in the same turn of the event loop: the
    cancellation must win (asyncio.wait_for of Python 3.11 dropped it, and the loop ran on)."""
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        for turns in range(12):
            deliverer = Deliverer(
                create_sessions(engine), Turns(), asyncio.Event(), Policy(interval=60)
            )
            task = asyncio.create_task(deliverer.run())
            for _ in range(3):
                await asyncio.sleep(0)  # into its wait
            deliverer.wake.set()
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            try:
                async with asyncio.timeout(5):
                    await task
            except asyncio.CancelledError:
                pass
            except TimeoutError:
                raise AssertionError(f"cancelled {turns} turns after a wake-up: ran on") from None
            else:
                raise AssertionError(f"cancelled {turns} turns after a wake-up: returned")
    finally:
        await engine.dispose()


async def waiting_on_a_lock(url: str) -> bool:
    """Does a transaction wait for a row lock? (PostgreSQL; SQLite has one writer lock.)"""
    if not url.startswith("postgresql"):
        return True
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            return bool(await conn.scalar(text(query)))
    finally:
        await engine.dispose()


async def test_deleting_a_webhook_while_the_sender_records_an_attempt(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
):
    """DELETE lands between the writes of the sender's transaction that records an attempt.

    A test-only hook holds that transaction open after its outcome write until the DELETE
    waits on a lock: the widest form of a race in which the DELETE answered 500 "deadlock
    detected" on PostgreSQL (2 of 12 runs of test_deploys before the fix)."""
    record = webhooks_db.record
    delete = webhooks_db.delete_webhook
    recorded, deleting, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def record_and_hold(session: AsyncSession, delivery_id: int, **outcome: Any) -> None:
        await record(session, delivery_id, **outcome)
        if not recorded.is_set():
            recorded.set()
            async with asyncio.timeout(10):
                await go_on.wait()

    async def delete_noted(session: AsyncSession, webhook_id: int) -> bool:
        deleting.set()
        return await delete(session, webhook_id)

    monkeypatch.setattr(webhooks_db, "record", record_and_hold)
    monkeypatch.setattr(webhooks_db, "delete_webhook", delete_noted)
    async with receiver(start=False) as r, server(database_url, tmp_path) as (_, api):
        hook = await create_hook(api, r.url, events=["deployment.*"])
        await failed_deploy(api)
        async with asyncio.timeout(10):
            await recorded.wait()
        deletion = asyncio.create_task(api.call("DELETE", f"/v1/webhooks/{hook['id']}"))
        async with asyncio.timeout(10):
            await deleting.wait()

        async def blocked() -> bool:
            return await waiting_on_a_lock(database_url)

        await eventually(blocked, timeout=10, interval=0.05)
        go_on.set()
        status, body = await deletion
        assert status == 204, (status, body)
        status, _ = await api.call("GET", f"/v1/webhooks/{hook['id']}/deliveries")
        assert status == 404
    assert await pending_rows(database_url) == [], "its deliveries went with it"
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert errors == [], errors


def test_signature_and_backoff():
    body = b'{"id":1}'
    header = signature(SECRET, 1_700_000_000, body)
    assert verify(SECRET, header, body, 1_700_000_100)
    assert not verify(SECRET, header, body + b" ", 1_700_000_100)
    assert not verify("another-secret-entirely", header, body, 1_700_000_100)
    assert not verify(SECRET, header, body, 1_700_001_000), "too old: a replay"
    assert not verify(SECRET, "garbage", body, 1_700_000_000)
    delays = [backoff(n, 1.0, 300.0, 0.999) for n in range(1, 12)]
    assert delays[0] < 1.0 and delays == sorted(delays) and max(delays) < 300.0
    assert backoff(100, 1.0, 300.0, 0.0) == 150.0
