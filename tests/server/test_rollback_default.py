"""A rollback with no release given goes back to what served before the current release; while
a newer release is rolling out, "current" is what serves, so the rollback returns to it
instead of going past it (issue 20: 33 -> 13 during an in-flight deploy)."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from server.db.models import App, Assignment, Deployment, Host, Release, utcnow
from server.keys import SESSIONS
from tests.conftest import Flotilla


async def served(flotilla: Flotilla, *releases: int) -> None:
    """Mark these releases of web as having succeeded, the last one serving (no agents here:
    the rollout itself is the end-to-end tests' business)."""
    async with flotilla.server.app[SESSIONS].begin() as session:
        await session.execute(
            update(Release).where(Release.number.in_(releases)).values(outcome="succeeded")
        )
        await session.execute(
            update(Deployment).where(Deployment.release.in_(releases)).values(status="succeeded")
        )
        await session.execute(update(App).values(current_release=releases[-1]))
        app = (await session.execute(select(App))).scalar_one()
        newest = (
            await session.execute(select(Deployment).where(Deployment.release == releases[-1]))
        ).scalar_one()
        # the controller may have assigned a single host already (no pre-pull gate for one)
        await session.execute(delete(Assignment).where(Assignment.app_id == app.id))
        for host_id in (await session.execute(select(Host.id))).scalars():
            session.add(
                Assignment(
                    host_id=host_id,
                    app_id=app.id,
                    release=releases[-1],
                    deployment_id=newest.id,
                    updated_at=utcnow(),
                )
            )


async def deploy(flotilla: Flotilla, image: str) -> int:
    status, body = await flotilla.api.call("POST", "/v1/apps/web/deployments", {"image": image})
    assert status == 202, body
    return int(body["release"])


async def test_rollback_during_a_rollout_returns_to_what_serves(flotilla_sqlite: Flotilla) -> None:
    f = flotilla_sqlite
    await f.add_host()
    for v in (1, 2):
        await deploy(f, f"web:v{v}")
    await served(f, 1, 2)  # 2 serves, 1 served before it
    assert await deploy(f, "web:v3") == 3  # in flight
    status, body = await f.api.call("POST", "/v1/apps/web/rollback", {})
    assert status == 202, body
    assert body["release"] == 2


async def test_rollback_without_a_rollout_goes_to_the_release_before(
    flotilla_sqlite: Flotilla,
) -> None:
    f = flotilla_sqlite
    await f.add_host()
    for v in (1, 2):
        await deploy(f, f"web:v{v}")
    await served(f, 1, 2)
    status, body = await f.api.call("POST", "/v1/apps/web/rollback", {})
    assert status == 202, body
    assert body["release"] == 1


async def test_two_rollbacks_toggle(flotilla_sqlite: Flotilla) -> None:
    """Issue 19: like `kubectl rollout undo`, a second rollback returns to where the first
    one came from."""
    f = flotilla_sqlite
    await f.add_host()
    for v in (1, 2):
        await deploy(f, f"web:v{v}")
    await served(f, 1, 2)
    status, body = await f.api.call("POST", "/v1/apps/web/rollback", {"reason": "slow"})
    assert (status, body["release"]) == (202, 1), body
    async with f.server.app[SESSIONS].begin() as session:  # the rollback succeeded
        await session.execute(
            update(Deployment).where(Deployment.id == body["id"]).values(status="succeeded")
        )
        await session.execute(update(App).values(current_release=1))
    status, body = await f.api.call("POST", "/v1/apps/web/rollback", {})
    assert (status, body["release"]) == (202, 2), body


async def test_a_release_marked_bad_needs_force(flotilla_sqlite: Flotilla) -> None:
    f = flotilla_sqlite
    await f.add_host()
    for v in (1, 2):
        await deploy(f, f"web:v{v}")
    await served(f, 1, 2)
    async with f.server.app[SESSIONS].begin() as session:
        await session.execute(update(Release).where(Release.number == 1).values(outcome="bad"))
    status, problem = await f.api.call("POST", "/v1/apps/web/rollback", {"release": 1})
    assert status == 409 and problem["code"] == "release_bad", problem
    assert problem["errors"][0]["field"] == "force"
    status, body = await f.api.call("POST", "/v1/apps/web/rollback", {"release": 1, "force": True})
    assert (status, body["release"]) == (202, 1), body
