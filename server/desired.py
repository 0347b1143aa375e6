"""Desired-state assembly: the wire messages agents receive, built from the database's rows.

A host's desired state is everything assigned to it (each app's release, replicas and
container spec, with the releases to retain for a fast rollback) and the images of the
rollouts coming its way, to pre-pull. Pushes are level-triggered: each carries the host's
whole desired state and its generation, so a lost or repeated push does no harm.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from agent.protocol import Assignment, DesiredState, Prepull
from server.db import rollouts
from server.wire import container_spec


async def states(session: AsyncSession, names: Sequence[str]) -> dict[str, DesiredState]:
    """The full desired state of each of these hosts (those that exist)."""
    return build(await rollouts.desired_rows(session, names))


def build(rows: rollouts.DesiredRows) -> dict[str, DesiredState]:
    """Desired states from their rows. One wire assignment per (app, deployment) and one
    pre-pull per release, shared by every host that has it: a fan-out sends the same one to
    thousands of hosts, and the protocol encodes each distinct one once."""
    shared: dict[tuple[int, int], Assignment] = {}
    assignments: dict[int, list[Assignment]] = {h[0]: [] for h in rows.hosts}
    for host_id, app_id, release, deployment_id, app_name, release_id in rows.assignments:
        item = shared.get((app_id, deployment_id))
        if item is None:
            spec = rows.specs[release_id]
            item = shared[(app_id, deployment_id)] = Assignment(
                app=app_name,
                release=release,
                deployment=deployment_id,
                replicas=int(spec.get("replicas", 1)),
                spec=container_spec(spec, rows.strategies[deployment_id]),
                keep=rows.good.get(app_id, ()),
            )
        assignments[host_id].append(item)
    kinds: dict[tuple[str, int, str], Prepull] = {}
    prepull: dict[int, list[Prepull]] = {h[0]: [] for h in rows.hosts}
    for host_id, app_name, number, image in rows.prepull:
        pull = kinds.get((app_name, number, image))
        if pull is None:
            pull = kinds[(app_name, number, image)] = Prepull(app_name, number, image)
        prepull[host_id].append(pull)
    return {
        name: DesiredState(
            host=name,
            generation=generation,
            assignments=tuple(assignments[host_id]),
            prepull=tuple(prepull[host_id]),
        )
        for host_id, name, generation in rows.hosts
    }
