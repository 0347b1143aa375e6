"""Apps removed with their volumes (`DELETE /v1/apps/{app}?volumes=true`): which hosts' agents
are to remove the app's volumes. SQL only.

A row (host, app) says "remove this app's volumes on this host once its containers are gone".
Every desired state pushed to the host carries it (`db/desired_rows.desired_rows` reads the rows
in the hosts' own query: no statement added to a push), so an agent that was away does it
when it reconnects. The row goes when a deployment of the app targets the host again
(`db/target_rows.insert_targets`, before any assignment of the new release): from then on the
volumes of that name are the new release's, and no push tells the agent to remove them.
"""

from __future__ import annotations

from sqlalchemy import Integer, Table, bindparam, delete, insert, select, union, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Assignment, Deployment, DeploymentHost, Host, Release, VolumePurge
from server.db.session import deferred

_PURGES: Table = VolumePurge.__table__  # type: ignore[assignment]


async def purge(session: AsyncSession, app_id: int) -> list[str]:
    """Tell every host that ran the app (it is assigned there, or a deployment of it ever
    targeted the host) to remove the app's volumes; bump their generations so that they
    hear it now. The hosts' names, in order. Call it before the app's assignments go."""
    ran = union(
        select(Assignment.host_id).where(Assignment.app_id == app_id),
        select(DeploymentHost.host_id)
        .join(Deployment, Deployment.id == DeploymentHost.deployment_id)
        .where(Deployment.app_id == app_id),
    ).subquery()
    rows = (
        await session.execute(
            select(Host.id, Host.name).where(Host.id.in_(select(ran.c[0]))).order_by(Host.name)
        )
    ).all()
    ids = [host_id for host_id, _ in rows]
    if not ids:
        return []
    told = set(
        (
            await session.scalars(
                select(_PURGES.c.host_id).where(
                    _PURGES.c.app_id == app_id, _PURGES.c.host_id.in_(ids)
                )
            )
        ).all()
    )
    new = [{"host_id": h, "app_id": app_id} for h in ids if h not in told]
    if new:
        await session.execute(insert(VolumePurge), new)
    await session.execute(
        update(Host).where(Host.id.in_(ids)).values(generation=Host.generation + 1)
    )
    return [name for _, name in rows]


async def volume_sources(session: AsyncSession, app_id: int) -> list[str]:
    """The named volumes (their `source`) any release of the app mounted, in order."""
    specs = await session.scalars(select(Release.spec).where(Release.app_id == app_id))
    return sorted(
        {
            str(v["source"])
            for spec in specs
            for v in (spec or {}).get("volumes") or ()
            if v.get("type", "volume") == "volume" and v.get("source")
        }
    )


_OF_DEPLOYMENT = bindparam("of_deployment", type_=Integer())
# built once (about 0.2 ms to build): every deployment's first pass runs it; it waits for
# the pass's next trip (session.deferred). Its subquery of the target hosts is
# target_rows.TARGET_IDS written out again: target_rows imports this module, not the reverse
_WITHDRAW = deferred(
    delete(_PURGES).where(
        _PURGES.c.app_id
        == select(Deployment.app_id).where(Deployment.id == _OF_DEPLOYMENT).scalar_subquery(),
        _PURGES.c.host_id.in_(
            select(DeploymentHost.host_id).where(DeploymentHost.deployment_id == _OF_DEPLOYMENT)
        ),
    )
)


async def withdraw(session: AsyncSession, deployment_id: int) -> None:
    """A deployment of the app targets these hosts: their removal of its volumes no longer
    applies (the new release's volumes must not be removed)."""
    await session.execute(_WITHDRAW, {"of_deployment": deployment_id})
