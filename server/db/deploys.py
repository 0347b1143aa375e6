"""The hot write of the API: a new release of an app and its pending deployment.

Deploys of one app are serialised by the app row's lock (it hands out release numbers), so
the time the lock is held bounds how many deploys per second one app can take. Taken by the
first of several statements, it was held across the event loop's turns between them (about a
millisecond each under load): 100% of the time at 200 deploys/s. On PostgreSQL the whole
write is therefore ONE statement (data-modifying CTEs: take the number, insert the release,
the deployment and its event), run on its own (autocommit: a statement is a transaction), so
the lock is held only while PostgreSQL executes it. Were the event published to a webhook
(`*_requested` events are not, today), its deliveries would have to commit with it: the same
statement then runs in a transaction with the outbox rows. SQLite (one writer at a time
anyway, no DML in CTEs) takes the same steps one statement at a time in a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, Text, bindparam, insert, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import store, target_rows, webhooks
from server.db.models import App, Deployment, Event, Release, utcnow
from server.db.session import Sessions, deferred, mark_written
from server.states import DeploymentKind, DeploymentStatus, EventKind

_APPS = cast(Table, App.__table__)
_RELEASES = cast(Table, Release.__table__)
_DEPLOYMENTS = cast(Table, Deployment.__table__)
_EVENTS = cast(Table, Event.__table__)

RELEASE_COLUMNS = ("image", "digest", "spec", "created_by", "message", "created_at")
DEPLOYMENT_COLUMNS = (
    "kind", "trigger", "status", "strategy", "selector", "reason", "rollback_of", "promoted",
    "cancel_requested", "idempotency_key", "request_hash", "created_at",
)  # fmt: skip
EVENT_COLUMNS = ("at", "kind", "actor", "app", "host")
HEAD = "deploy of release "


def _params(table: Table, names: tuple[str, ...], prefix: str) -> list[Any]:
    return [bindparam(f"{prefix}{n}", type_=table.c[n].type) for n in names]


# Statements are built once and constant (SQLAlchemy reuses their compiled form); the values
# go in as parameters. Core on the tables: no ORM unit of work on the hot path.
_TAKE = (
    update(_APPS)
    .where(_APPS.c.name == bindparam("app_name"))
    .values(last_release=_APPS.c.last_release + 1)
    .returning(_APPS.c.id, _APPS.c.last_release)
)
# an app's row on its first deploy; a concurrent first deploy may have made it (then nothing)
_INSERT_APP_IF_NEW = {
    "postgresql": postgresql.insert(_APPS).on_conflict_do_nothing(index_elements=["name"]),
    "sqlite": sqlite.insert(_APPS).on_conflict_do_nothing(index_elements=["name"]),
}
# the release and the event wait for the transaction's next trip (session.deferred): the
# release goes with the deployment's insert, the event with the commit
_INSERT_RELEASE = deferred(insert(_RELEASES))
_INSERT_DEPLOYMENT = insert(_DEPLOYMENTS).returning(_DEPLOYMENTS.c.id)
_INSERT_EVENT = deferred(insert(_EVENTS))


def _one_statement() -> Any:
    """PostgreSQL: take the number, insert release, deployment and event; answer (app id,
    release number, deployment id), or no row if the app does not exist yet."""
    taken = _TAKE.cte("taken")
    release = insert(_RELEASES).from_select(
        ["app_id", "number", *RELEASE_COLUMNS],
        select(taken.c.id, taken.c.last_release, *_params(_RELEASES, RELEASE_COLUMNS, "r_")),
    )
    deployment = (
        insert(_DEPLOYMENTS)
        .from_select(
            ["app_id", "release", *DEPLOYMENT_COLUMNS],
            select(
                taken.c.id, taken.c.last_release, *_params(_DEPLOYMENTS, DEPLOYMENT_COLUMNS, "d_")
            ),
        )
        .returning(_DEPLOYMENTS.c.app_id, _DEPLOYMENTS.c.release, _DEPLOYMENTS.c.id)
        .cte("deployment")
    )
    message = (
        bindparam("e_head", type_=Text)
        + sql_cast(deployment.c.release, Text)
        + bindparam("e_tail", type_=Text)
    )
    event = insert(_EVENTS).from_select(
        [*EVENT_COLUMNS, "deployment_id", "message"],
        select(*_params(_EVENTS, EVENT_COLUMNS, "e_"), deployment.c.id, message),
    )
    return (
        select(deployment.c.app_id, deployment.c.release, deployment.c.id)
        .add_cte(release.cte("release"))
        .add_cte(event.cte("event"))
    )


_DEPLOY = _one_statement()


async def deploy(
    sessions: Sessions,
    name: str,
    spec: dict[str, Any],
    *,
    actor: str,
    message: str | None,
    strategy: dict[str, Any],
    selector: dict[str, Any],
    idempotency_key: str | None,
    body_hash: str,
) -> tuple[Deployment, Sequence[target_rows.Target]]:
    """Record release N+1 of an app (created on its first deploy), its pending deployment and
    the `deploy_requested` event; or, for a repeated Idempotency-Key, find what the first
    request made. Returns the deployment (a detached copy when new) and its targets."""
    at = utcnow()
    release = {"image": spec["image"], "spec": spec, "created_by": actor, "message": message}
    # pinned from the start when the reference names a digest (repo:tag@sha256:...)
    release["digest"] = spec["image"].partition("@")[2] or None
    release["created_at"] = at
    deployment = {
        "kind": DeploymentKind.DEPLOY,
        "trigger": actor,
        "status": DeploymentStatus.PENDING,
        "strategy": strategy,
        "selector": selector,
        "reason": message,
        "rollback_of": None,
        "promoted": False,
        "cancel_requested": False,
        "idempotency_key": idempotency_key,
        "request_hash": body_hash,
        "created_at": at,
    }
    event = {
        "at": at,
        "kind": EventKind.DEPLOY_REQUESTED,
        "actor": actor,
        "app": name,
        "host": None,
    }
    new = _New(name, release, deployment, event, " requested" + (f": {message}" if message else ""))
    try:
        return await _write(sessions, new, idempotency_key, body_hash)
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent request with this Idempotency-Key wrote its deployment first (both
        # found none; the unique key of app and Idempotency-Key refused the second): answer
        # with what the first made. Any other constraint violation surfaces.
        async with sessions() as session:
            found = await _find(session, name, idempotency_key, body_hash)
        if found is None:
            raise
        return found


async def _write(
    sessions: Sessions, new: _New, idempotency_key: str | None, body_hash: str
) -> tuple[Deployment, Sequence[target_rows.Target]]:
    """`deploy`'s write: one statement on PostgreSQL, a transaction elsewhere or when the
    event has webhook subscribers."""
    name = new.app
    async with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            found = await _find(session, name, idempotency_key, body_hash)
            if found is not None:
                return found
            if not await webhooks.subscribed(session, EventKind.DEPLOY_REQUESTED):
                made = await _in_one_statement(session, new)
                if made is None:  # the app's first deploy
                    await _create_app(session, name)
                    made = await _in_one_statement(session, new)
                await session.commit()  # nothing left to commit; runs the after-commit hooks
                return new.answer(made), []
    async with sessions.begin() as session:
        found = await _find(session, name, idempotency_key, body_hash)
        if found is not None:
            return found
        postgres = session.get_bind().dialect.name == "postgresql"
        write = _in_one_statement if postgres else _step_by_step
        made = await write(session, new)
        if made is None:  # the app's first deploy
            await _create_app(session, name)
            made = await write(session, new)
        answer = new.answer(made)
        message = new.message(answer.release)
        await webhooks.enqueue(
            session,
            EventKind.DEPLOY_REQUESTED,
            message,
            app=name,
            deployment_id=answer.id,
            host=None,
        )
        return answer, []


async def _find(
    session: AsyncSession, name: str, key: str | None, body_hash: str
) -> tuple[Deployment, Sequence[target_rows.Target]] | None:
    """What an earlier request with this Idempotency-Key created, with its targets."""
    if key is None:
        return None
    found = await store.find_idempotent(session, name, key, body_hash)
    if found is None:
        return None
    return found, await target_rows.deployment_hosts(session, found.id)


@dataclass(frozen=True)
class _New:
    """The values a deploy writes (all but the app id and the numbers the database picks)."""

    app: str
    release: dict[str, Any]
    deployment: dict[str, Any]
    event: dict[str, Any]
    tail: str  # the event's message is HEAD + release number + tail

    def message(self, number: int) -> str:
        return f"{HEAD}{number}{self.tail}"

    def answer(self, made: tuple[int, int, int] | None) -> Deployment:
        if made is None:
            raise RuntimeError(f"app {self.app!r} vanished while being deployed")
        app_id, number, deployment_id = made
        return Deployment(id=deployment_id, app_id=app_id, release=number, **self.deployment)


async def _in_one_statement(session: AsyncSession, new: _New) -> tuple[int, int, int] | None:
    """PostgreSQL: (app id, release number, deployment id); None if the app does not exist."""
    params: dict[str, Any] = {"app_name": new.app, "e_head": HEAD, "e_tail": new.tail}
    params |= {f"r_{k}": v for k, v in new.release.items()}
    params |= {f"d_{k}": v for k, v in new.deployment.items()}
    params |= {f"e_{k}": v for k, v in new.event.items()}
    row = (await session.execute(_DEPLOY, params)).first()
    mark_written(session)  # (a SELECT to SQLAlchemy): the read cache must be bumped
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


async def _step_by_step(session: AsyncSession, new: _New) -> tuple[int, int, int] | None:
    """Any database, in a transaction: the same writes as `_in_one_statement`."""
    row = (await session.execute(_TAKE, {"app_name": new.app})).first()
    if row is None:
        return None
    app_id, number = int(row[0]), int(row[1])
    await session.execute(_INSERT_RELEASE, {"app_id": app_id, "number": number, **new.release})
    values = {"app_id": app_id, "release": number, **new.deployment}
    deployment_id = int((await session.execute(_INSERT_DEPLOYMENT, values)).scalar_one())
    values = {**new.event, "deployment_id": deployment_id, "message": new.message(number)}
    await session.execute(_INSERT_EVENT, values)
    return app_id, number, deployment_id


async def _create_app(session: AsyncSession, name: str) -> None:
    """The app's row, on its first deploy. A concurrent first deploy may have made it: then
    this does nothing (no error, so no retry), waiting on PostgreSQL for that one to commit,
    and the next statement takes a number from its row under the row's lock."""
    insert_if_new = _INSERT_APP_IF_NEW[session.get_bind().dialect.name]
    await session.execute(insert_if_new, {"name": name, "last_release": 0})


async def find_app(session: AsyncSession, name: str) -> App | None:
    """The app of this name, if it exists (not locked: a deploy's base and its dry run)."""
    return await session.scalar(select(App).where(App.name == name))


async def release_made(
    session: AsyncSession, app_id: int, number: int
) -> tuple[Release, Deployment | None] | None:
    """Release `number` of an app and the deploy that created it (its strategy and host
    selector are the rest of the release's document); None if there is no such release."""
    release = await session.scalar(
        select(Release).where(Release.app_id == app_id, Release.number == number)
    )
    if release is None:
        return None
    made = await session.scalar(
        select(Deployment)
        .where(
            Deployment.app_id == app_id,
            Deployment.release == number,
            Deployment.kind == DeploymentKind.DEPLOY,
        )
        .order_by(Deployment.id)
        .limit(1)
    )
    return release, made
