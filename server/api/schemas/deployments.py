"""Deployments, releases and apps as the API answers them: a deployment and its hosts' states,
a release, the diff of two releases and a dry run's, an app and what runs on its hosts."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field, JsonValue


class ChangeOut(BaseModel):
    """One difference between two release documents, at a JSON Pointer path."""

    path: str
    op: Literal["add", "remove", "change"]
    old: JsonValue = None
    new: JsonValue = None


class ReleaseDiffOut(BaseModel):
    """GET /v1/apps/{app}/releases/{n}/diff: what changed from release `against` to `release`."""

    app: str
    release: int
    against: int | None
    changes: list[ChangeOut]


class DryRunOut(BaseModel):
    """POST /v1/apps/{app}/deployments?dry_run=true: the spec a deploy would create, its
    changes against the current release, and the hosts it would target; nothing is created."""

    dry_run: Literal[True] = True
    app: str
    base: int | None
    current_release: int | None
    spec: dict[str, JsonValue]
    changes: list[ChangeOut]
    hosts: list[str]


class HostState(BaseModel):
    """One target host of a deployment in a response: its state and evidence."""

    name: str
    state: str
    error: str | None = None
    previous_release: int | None = None
    evidence: dict[str, object] = Field(default_factory=dict)
    # pulling the release's image: pending or updating, neither the image nor an instance of
    # the release there yet (GET /v1/deployments/{id}, while the deployment is under way)
    pulling: bool = False


class DeploymentOut(BaseModel):
    """A deployment in a response, with its target hosts."""

    id: int
    app: str
    release: int
    kind: str
    trigger: str
    status: str
    reason: str | None = None
    error: str | None = None
    rollback_of: int | None = None
    strategy: dict[str, object]
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    hosts: list[HostState]
    # opaque; changes whenever the status or a host's state does (`?wait=S&version=V`
    # answers once it is not V)
    version: str = ""


class ReleaseOut(BaseModel):
    """A release of an app in a response."""

    number: int
    image: str
    digest: str | None
    outcome: str | None
    created_at: dt.datetime
    created_by: str
    message: str | None


class PublishedPortOut(BaseModel):
    """A published port of an instance in a response."""

    container: int
    host_ip: str
    host_port: int
    protocol: str


class InstanceOut(BaseModel):
    """One container of an app on a host, as its agent last reported it."""

    container_id: str
    name: str
    release: int
    state: str
    ready: bool
    ports: list[PublishedPortOut]


class AppHostOut(BaseModel):
    """One host of an app in a response: what runs there and its state."""

    name: str
    release: int | None
    state: str
    instances: list[InstanceOut]


class AppOut(BaseModel):
    """An app in a response: its current release, spec and hosts."""

    name: str
    current_release: int | None
    spec: dict[str, object] | None
    created_at: dt.datetime
    hosts: list[AppHostOut] = Field(default_factory=list)
