"""A host's desired state lists, for each app assigned to it, the app's newest releases that
succeeded (or were rolled back to), at most KEEP_GOOD: what its agent keeps stopped for a
fast rollback. On SQLite and PostgreSQL; other apps' releases do not leak in."""

from __future__ import annotations

from sqlalchemy import select, update

from server import desired
from server.db import deploys, store
from server.db.desired_rows import KEEP_GOOD
from server.db.models import App, Assignment, Deployment, Host, Release
from server.db.session import Sessions
from server.states import Outcome

SPEC = {"replicas": 1, "ports": [], "env": {}}


async def _releases(sessions: Sessions, app: str, count: int) -> Deployment:
    """`count` releases of `app` (each with its deployment); the last deployment."""
    last = None
    for n in range(1, count + 1):
        last, _ = await deploys.deploy(
            sessions,
            app,
            {**SPEC, "image": f"{app}:{n}"},
            actor="test",
            message=None,
            strategy={},
            selector={},
            idempotency_key=None,
            body_hash=f"{app}{n}",
        )
    assert last is not None
    return last


async def test_each_app_keeps_its_own_newest_good_releases(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        for name in ("h1", "h2", "h3"):
            await store.add_host(session, name, {})
    web = await _releases(sessions, "web", 9)
    api = await _releases(sessions, "api", 3)
    await _releases(sessions, "other", 2)  # assigned to no host: read for none
    outcomes = {
        "web": {1: Outcome.SUCCEEDED, 2: Outcome.SUCCEEDED, 3: Outcome.FAILED,
                4: Outcome.SUCCEEDED, 5: Outcome.ROLLED_BACK, 6: Outcome.SUCCEEDED,
                7: Outcome.FAILED, 8: Outcome.SUCCEEDED, 9: Outcome.SUCCEEDED},
        "api": {1: Outcome.SUCCEEDED, 2: Outcome.FAILED},
        "other": {1: Outcome.SUCCEEDED, 2: Outcome.SUCCEEDED},
    }  # fmt: skip
    async with sessions.begin() as session:
        apps = {n: i for n, i in await session.execute(select(App.name, App.id))}
        hosts = {n: i for n, i in await session.execute(select(Host.name, Host.id))}
        for app, numbers in outcomes.items():
            for number, outcome in numbers.items():
                await session.execute(
                    update(Release)
                    .where(Release.app_id == apps[app], Release.number == number)
                    .values(outcome=outcome)
                )
        for host, deployment in (("h1", web), ("h2", web), ("h2", api)):
            session.add(
                Assignment(
                    host_id=hosts[host],
                    app_id=deployment.app_id,
                    release=deployment.release,
                    deployment_id=deployment.id,
                    updated_at=store.now(),
                )
            )
    async with sessions() as session:
        states = await desired.states(session, ["h1", "h2", "h3"])

    web_good = (9, 8, 6, 5, 4)  # the newest KEEP_GOOD of web's good ones, newest first
    assert len(web_good) == KEEP_GOOD
    keep = {name: {a.app: a.keep for a in s.assignments} for name, s in states.items()}
    assert keep == {"h1": {"web": web_good}, "h2": {"api": (1,), "web": web_good}, "h3": {}}
