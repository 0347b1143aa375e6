"""Converts rows into response schemas, at the edge; ORM rows are never serialised directly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.codec import dumps_json
from agent.protocol import ContainerState, Instance
from server.api.schemas.deployments import (
    AppHostOut,
    AppOut,
    DeploymentOut,
    HostState,
    InstanceOut,
    PublishedPortOut,
    ReleaseOut,
)
from server.api.schemas.hosts import HostOut
from server.db.models import App, Deployment, Host, Release
from server.db.store import as_utc
from server.db.target_rows import Target
from server.rollout.judgement import Wanted, judge
from server.states import HostStatus, TargetState, host_status
from server.statuses import Reported


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return as_utc(value)


def deployment_out(deployment: Deployment, app: str, hosts: Sequence[Target]) -> DeploymentOut:
    """A deployment and its target hosts as the API shows them."""
    return DeploymentOut(
        id=deployment.id,
        app=app,
        release=deployment.release,
        kind=deployment.kind,
        trigger=deployment.trigger,
        status=deployment.status,
        reason=deployment.reason,
        error=deployment.error,
        rollback_of=deployment.rollback_of,
        strategy=deployment.strategy,
        created_at=as_utc(deployment.created_at) or deployment.created_at,
        started_at=_utc(deployment.started_at),
        finished_at=_utc(deployment.finished_at),
        # built without validation: the rows are the database's own (validating 10,000 of
        # them was a third of answering for a large deployment)
        hosts=[HostState.model_construct(**_target_fields(h)) for h in hosts],
        version=deployment_version(deployment),
    )


def deployment_version(deployment: Deployment) -> str:
    """What a client that follows a deployment compares (`?wait=S&version=V`): it changes
    whenever the deployment's status or one of its target rows does (the controller, their
    only writer, bumps `targets_version` on every write of them)."""
    # a row just created holds no version until it is read back: it starts at 0
    return f"{deployment.targets_version or 0}.{deployment.status}"


def _target_fields(h: Target) -> dict[str, Any]:
    """A target row as the fields of HostState."""
    return {
        "name": h.host_name,
        "state": h.state,
        "error": h.error,
        "previous_release": h.previous_release,
        "evidence": h.evidence or {},
    }


def deployment_json(
    deployment: Deployment, app: str, hosts: Sequence[Target], pulling: frozenset[str] = frozenset()
) -> bytes:
    """The JSON of `deployment_out(...)`, hosts written as plain values: a long poll of a
    10,000-host deployment answers at its end, so building 10,000 models (and serialising
    them) was the last 0.1 s a waiting pipeline waited for. The hosts in `pulling` say so
    (`"pulling": true`; the others leave the field out: it is false)."""
    body = deployment_out(deployment, app, ()).model_dump(mode="json")
    body["hosts"] = [_target_fields(h) for h in hosts]
    if pulling:
        for host in body["hosts"]:
            if host["name"] in pulling:
                host["pulling"] = True
    return dumps_json(body).encode()


def release_out(release: Release) -> ReleaseOut:
    """A release as the API shows it."""
    return ReleaseOut(
        number=release.number,
        image=release.image,
        digest=release.digest,
        outcome=release.outcome,
        created_at=as_utc(release.created_at) or release.created_at,
        created_by=release.created_by,
        message=release.message,
    )


def host_out(
    host: Host, now: dt.datetime, timeout: float, reported: Reported | None = None
) -> HostOut:
    """A host; "connected" only if it also reported within `timeout` seconds of `now`, and
    "engine_unavailable" if its last status (`reported`) says its Docker Engine is down."""
    seen = as_utc(host.last_seen)
    fresh = seen is not None and (now - seen).total_seconds() <= timeout
    error = reported.status.engine_error if reported and reported.status else None
    status = host_status(host.connected and fresh, error)
    return HostOut(
        name=host.name,
        labels=host.labels,
        status=status,
        engine_error=error if status == HostStatus.ENGINE_UNAVAILABLE else None,
        last_seen=seen,
        agent_version=host.agent_version,
        docker_version=host.docker_version,
        cordoned=host.cordoned,
        schedulable=not host.cordoned,
    )


def app_out(
    app: App,
    release: Release | None,
    hosts: Sequence[Host],
    assigned: dict[int, int],
    statuses: Mapping[str, Reported],
    replicas: Callable[[int], int],
) -> AppOut:
    """The app with its current spec and, per host it is assigned to (or runs on), what runs
    there, from the host's last status (server.statuses), and its state: the judgement's
    verdict on the release assigned to it (`replicas(release)`: that release's replicas)."""
    per_host = []
    for host in hosts:
        reported = statuses.get(host.name)
        status = reported.status if reported is not None else None
        instances = [i for i in status.instances if i.app == app.name] if status else []
        wanted = assigned.get(host.id)
        if wanted is None and not instances:
            continue
        running = [i.release for i in instances if i.state == ContainerState.RUNNING]
        state = (
            judge(Wanted(app.name, wanted, replicas(wanted)), status).state
            if wanted is not None
            else TargetState.PENDING
        )
        per_host.append(
            AppHostOut(
                name=host.name,
                release=max(running, default=None),
                state=state,
                instances=[_instance(i) for i in instances],
            )
        )
    return AppOut(
        name=app.name,
        current_release=app.current_release,
        spec=release.spec if release is not None else None,
        created_at=as_utc(app.created_at) or app.created_at,
        hosts=per_host,
    )


def _instance(instance: Instance) -> InstanceOut:
    return InstanceOut(
        container_id=instance.container_id,
        name=instance.name,
        release=instance.release,
        state=instance.state,
        ready=instance.ready,
        ports=[
            PublishedPortOut(
                container=p.container,
                host_ip=p.host_ip,
                host_port=p.host_port,
                protocol=p.protocol,
            )
            for p in instance.ports
        ],
    )
