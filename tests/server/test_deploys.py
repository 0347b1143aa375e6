"""POST /v1/apps/{app}/deployments under concurrency, on SQLite and PostgreSQL (where the write
is one autocommitted statement, or a transaction when the event has webhook subscribers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from server import webhooks as public
from server.db import deploys, webhooks
from server.db.models import WebhookDelivery
from server.db.session import Sessions
from tests.conftest import Flotilla
from tests.harness import eventually

BODY = {"image": "flotilla-test/web:v1"}


async def events_of(flotilla: Flotilla, app: str) -> list[dict[str, Any]]:
    status, body = await flotilla.api.call("GET", f"/v1/events?app={app}&limit=1000")
    assert status == 200, body
    return list(reversed(body["events"]))


async def test_concurrent_deploys_of_a_new_app_number_releases_one_by_one(
    flotilla: Flotilla,
) -> None:
    answers = await asyncio.gather(
        *(
            flotilla.api.call("POST", "/v1/apps/fresh/deployments", {**BODY, "message": f"m{i}"})
            for i in range(20)
        )
    )
    assert {status for status, _ in answers} == {202}, answers
    by_release = {body["release"]: body for _, body in answers}
    assert sorted(by_release) == list(range(1, 21))
    for number, body in by_release.items():
        assert body["app"] == "fresh" and body["status"] == "pending" and body["kind"] == "deploy"
        assert body["hosts"] == [] and body["strategy"]["max_parallel"] >= 1
        deployment = await flotilla.api.deployment(body["id"])
        assert deployment["release"] == number and deployment["reason"] == body["reason"]
    status, releases = await flotilla.api.call("GET", "/v1/apps/fresh/releases")
    assert status == 200
    reasons = {r["number"]: r["message"] for r in releases["releases"]}
    assert reasons == {n: b["reason"] for n, b in by_release.items()}
    requested = [e for e in await events_of(flotilla, "fresh") if e["kind"] == "deploy_requested"]
    assert sorted(e["message"] for e in requested) == sorted(
        f"deploy of release {n} requested: {b['reason']}" for n, b in by_release.items()
    )
    assert {e["deployment"] for e in requested} == {b["id"] for b in by_release.values()}

    async def settled() -> bool:  # no host: each one fails, unless a newer one superseded it
        states = [(await flotilla.api.deployment(b["id"]))["status"] for b in by_release.values()]
        return set(states) <= {"failed", "superseded"}

    await eventually(settled)


async def test_a_published_requested_event_gets_its_deliveries(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were `deploy_requested` published, its deliveries would commit with the deploy.

    No server here, only the write: a running webhook sender that fails or is stopped while
    it sends can hang a server's teardown or deadlock a webhook's deletion (both older than
    this test; see the commit that added it)."""
    monkeypatch.setitem(public.PUBLIC_EVENTS, "deploy_requested", "deployment.requested")
    async with sessions.begin() as session:
        hook = await webhooks.create_webhook(session, "http://127.0.0.1:9/", ["*"], "s", "t")
    made = []
    for message in ("why", None):
        deployment, hosts = await deploys.deploy(
            sessions,
            "hooked",
            {"image": "flotilla-test/web:v1"},
            actor="t",
            message=message,
            strategy={},
            selector={},
            idempotency_key=None,
            body_hash="h",
        )
        assert hosts == []
        made.append(deployment)
    assert [d.release for d in made] == [1, 2]
    async with sessions() as session:
        rows = (await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all()
    assert [(r.webhook_id, r.event) for r in rows] == [(hook.id, "deployment.requested")] * 2
    assert [r.payload["deployment"] for r in rows] == [d.id for d in made]
    assert [r.payload["message"] for r in rows] == [
        "deploy of release 1 requested: why",
        "deploy of release 2 requested",
    ]
