"""Desired-state assembly: the wire messages agents receive, built from the database's rows.

A host's desired state is everything assigned to it (each app's release, replicas and
container spec, with the releases to retain for a fast rollback) and the images of the
rollouts coming its way, to pre-pull. Pushes are level-triggered: each carries the host's
whole desired state and its generation, so a lost or repeated push does no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agent.protocol import Assignment, DesiredState, Prepull, RegistryAuth, registry_of
from server import registries, secrets
from server.db.desired_rows import DesiredRows, desired_rows
from server.db.secrets import SecretKey
from server.secret_box import SecretBox
from server.wire import container_spec

log = logging.getLogger(__name__)


async def states(
    session: AsyncSession, names: Sequence[str], box: SecretBox | None = None
) -> dict[str, DesiredState]:
    """The full desired state of each of these hosts (those that exist), with the values of
    the secrets their releases name (opened with `box`)."""
    rows = await desired_rows(session, names)
    values: dict[SecretKey, str] = {}
    logins: dict[str, RegistryAuth] = {}
    if box is not None:
        apps = {r[5]: r[4] for r in rows.assignments}  # release id -> app name
        keys = set().union(*(secrets.needed(apps[i], rows.specs[i]) for i in apps))
        if keys:
            values = await secrets.open_values(session, box, keys)
        images = {rows.specs[i]["image"] for i in apps} | {p[3] for p in rows.prepull}
        logins = await registries.credentials(session, box, map(registry_of, images))
    return build(rows, values, logins)


def build(
    rows: DesiredRows,
    values: Mapping[SecretKey, str] | None = None,
    logins: Mapping[str, RegistryAuth] | None = None,
) -> dict[str, DesiredState]:
    """Desired states from their rows (and the secret values their releases name, and the
    credentials of the registries their images come from: only those a host needs). One wire
    assignment per (app, deployment) and one pre-pull per release, shared by every host that
    has it: a fan-out sends the same one to thousands of hosts, and the protocol encodes each
    distinct one once."""
    values = values or {}
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
                spec=replace(
                    container_spec(
                        spec, rows.strategies[deployment_id], _secrets(app_name, spec, values)
                    ),
                    digest=rows.pins.get(release_id),
                ),
                keep=rows.good.get(app_id, ()),
            )
        assignments[host_id].append(item)
    kinds: dict[tuple[str, int, str], Prepull] = {}
    prepull: dict[int, list[Prepull]] = {h[0]: [] for h in rows.hosts}
    for host_id, app_name, number, image, digest in rows.prepull:
        pull = kinds.get((app_name, number, image))
        if pull is None:
            pull = kinds[(app_name, number, image)] = Prepull(app_name, number, image, digest)
        prepull[host_id].append(pull)
    return {
        name: DesiredState(
            host=name,
            generation=generation,
            assignments=tuple(assignments[host_id]),
            prepull=tuple(prepull[host_id]),
            registries=_logins(assignments[host_id], prepull[host_id], logins) if logins else (),
            purge_volumes=rows.purges.get(host_id, ()),
        )
        for host_id, name, generation in rows.hosts
    }


def _logins(
    assignments: list[Assignment], prepull: list[Prepull], logins: Mapping[str, RegistryAuth]
) -> tuple[RegistryAuth, ...]:
    """The credentials of the registries this host's images come from, and no others."""
    images = {a.spec.image for a in assignments} | {p.image for p in prepull}
    needed = sorted({registry_of(i) for i in images} & set(logins))
    return tuple(logins[r] for r in needed)


def _secrets(
    app: str, spec: dict[str, Any], values: Mapping[SecretKey, str]
) -> tuple[tuple[str, str], ...]:
    """(name in the container, value) of each secret a release names, by name."""
    versions = spec.get("secret_versions") or {}
    out = []
    for target, name in sorted((spec.get("secrets") or {}).items()):
        value = values.get((app, name, int(versions.get(name, 0))))
        if value is None:  # removed while the deploy that named it was written
            log.warning("secret missing app=%s secret=%s version=%s", app, name, versions.get(name))
            continue
        out.append((target, value))
    return tuple(out)
