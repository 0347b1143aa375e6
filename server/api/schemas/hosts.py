"""The hosts' bodies: registering one (its token shown once), a host as the API shows it,
and a drained host."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from server.api.schemas.fields import DnsLabel, Labels, Strict
from server.states import HostStatus


class HostOut(BaseModel):
    """A host in a response, with whether its agent is connected."""

    name: str
    labels: dict[str, str]
    status: HostStatus
    last_seen: dt.datetime | None
    agent_version: str | None
    docker_version: str | None
    engine_error: str | None = None  # why its Docker Engine does not answer
    cordoned: bool = False  # no target of new deployments (POST /v1/hosts/{name}/cordon)
    schedulable: bool = True  # not cordoned


class HostDrained(HostOut):
    """POST /v1/hosts/{name}/drain: the host, and the apps removed from it."""

    removed: list[str]


class HostIn(Strict):
    """POST /v1/hosts."""

    name: DnsLabel
    labels: Labels = Field(default_factory=dict)


class HostToken(BaseModel):
    """A host's new token, shown once (POST /v1/hosts, POST /v1/hosts/{name}/token)."""

    name: str
    labels: dict[str, str]
    token: str
