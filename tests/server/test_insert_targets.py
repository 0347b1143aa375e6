"""A new deployment's target rows are written as the controller's first pass planned them,
on SQLite and PostgreSQL: rows alike but for their host are copied from the hosts table
(INSERT ... SELECT), the others inserted with their values; either way each row gets its id.
A single batch is assigned by subqueries on those rows, with the same outcome as by ids."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from server.db import assignments, deploys, store, target_rows
from server.db.models import Assignment, Deployment, Host
from server.db.session import Sessions

AT = dt.datetime(2026, 11, 30, 3, 0, 0, 123456, tzinfo=dt.UTC)
LATER = AT + dt.timedelta(seconds=1)


async def test_target_rows_are_written_as_planned(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        for i in range(130):
            await store.add_host(session, f"h{i:03d}", {})
    deployment, _ = await deploys.deploy(
        sessions,
        "web",
        {"image": "web:2", "replicas": 1, "ports": [], "env": {}},
        actor="test",
        message=None,
        strategy={"max_parallel": 60},
        selector={},
        idempotency_key=None,
        body_hash="h",
    )
    async with sessions() as session:
        hosts = (await session.execute(select(Host.id, Host.name).order_by(Host.name))).all()
    planned = [
        # assigned in the first pass, coming from release 1: copied from `hosts`
        *(target_rows.Target(h, n, "updating", 1, None, {}, AT, AT) for h, n in hosts[:60]),
        # waiting their turn, with no release before: copied too
        *(target_rows.Target(h, n, "pending", None, None, {}, None, AT) for h, n in hosts[60:120]),
        # too few alike, or with evidence: inserted with their values
        *(target_rows.Target(h, n, "pending", 7, None, {}, None, LATER) for h, n in hosts[120:127]),
        *(
            target_rows.Target(h, n, "failed", 1, "disconnected", {"why": [n, 1]}, AT, LATER)
            for h, n in hosts[127:]
        ),
    ]
    async with sessions.begin() as session:
        await target_rows.insert_targets(session, deployment.id, planned)
    async with sessions() as session:
        written = await target_rows.deployment_hosts(session, deployment.id)
        generations = set((await session.scalars(select(Host.generation))).all())

    def fields(t: target_rows.Target) -> tuple[object, ...]:
        return (
            t.host_id, t.host_name, t.state, t.previous_release, t.error, t.evidence,
            store.as_utc(t.assigned_at), store.as_utc(t.updated_at),
        )  # fmt: skip

    assert sorted(map(fields, written)) == sorted(map(fields, planned))
    assert generations == {1}  # every target host's desired state changed once

    # rows are named by (deployment, host): alike changes share a statement, others not
    healthy = target_rows.Changes(state="healthy", error=None, updated_at=LATER)
    changes = {t.host_id: target_rows.Changes(**healthy) for t in planned[:70]}
    changes[planned[70].host_id] = {"state": "failed", "error": "boom", "evidence": {"a": 1}}
    async with sessions.begin() as session:
        await target_rows.save_targets(session, deployment.id, changes)
    async with sessions() as session:
        after = {t.host_id: t for t in await target_rows.deployment_hosts(session, deployment.id)}
    assert {after[h].state for h in changes} - {"failed"} == {"healthy"}
    failed = after[planned[70].host_id]
    assert (failed.state, failed.error, failed.evidence) == ("failed", "boom", {"a": 1})
    untouched = [t for h, t in after.items() if h not in changes]
    assert untouched and all(t.state != "healthy" for t in untouched)


@pytest.mark.parametrize("every_target", [True, False], ids=["subqueries", "id-lists"])
async def test_assigning_a_deployments_targets(sessions: Sessions, every_target: bool) -> None:
    """A single batch assigns all of a deployment's targets by subqueries on its target rows;
    it must leave what the per-host path leaves: targets with and without an assignment of
    the app point at the new release, a host it does not target keeps its own, and only the
    targets' generations move."""

    async def deploy(image: str, selector: dict[str, object]) -> Deployment:
        deployment, _ = await deploys.deploy(
            sessions,
            "web",
            {"image": image, "replicas": 1, "ports": [], "env": {}},
            actor="test",
            message=None,
            strategy={"max_parallel": 10},
            selector=selector,
            idempotency_key=None,
            body_hash=image,
        )
        return deployment

    async with sessions.begin() as session:
        for name in ("h1", "h2", "h3", "h4"):
            await store.add_host(session, name, {})
    async with sessions() as session:
        ids = dict((await session.execute(select(Host.name, Host.id))).all())
    first = await deploy("web:1", {})
    async with sessions.begin() as session:
        await assignments.assign(session, [ids["h1"], ids["h2"], ids["h4"]], first)
    second = await deploy("web:2", {"names": ["h1", "h2", "h3"]})
    targets = ("h1", "h2", "h3")
    async with sessions.begin() as session:
        planned = [
            target_rows.Target(ids[n], n, "updating", None, None, {}, AT, AT) for n in targets
        ]
        await target_rows.insert_targets(session, second.id, planned)  # bumps them once
        chosen = [] if every_target else [ids[n] for n in targets]
        await assignments.assign(session, chosen, second, every_target=every_target)
    async with sessions() as session:
        query = select(Host.name, Assignment.release, Assignment.deployment_id).join(
            Assignment, Assignment.host_id == Host.id
        )
        assigned = {name: (r, d) for name, r, d in await session.execute(query)}
        generations = dict((await session.execute(select(Host.name, Host.generation))).all())

    new, old = (second.release, second.id), (first.release, first.id)
    assert assigned == {"h1": new, "h2": new, "h3": new, "h4": old}
    assert generations == {"h1": 3, "h2": 3, "h3": 2, "h4": 1}
