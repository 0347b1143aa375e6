"""The wire protocol between server and agent, imported by both sides (stdlib only): its
messages, the image references they carry, and how an agent clips what it sends to the caps.

Desired state (server -> agent) and observed status (agent -> server) are separate types.
Every desired-state push carries the host's FULL desired state and a growing generation,
so a lost or repeated message does no harm: the agent applies only a newer generation.
Messages are JSON objects with a ``type`` field (agent/codec.py writes and reads them); unknown
fields are ignored so that a newer peer can add fields without breaking an older one.
The caps and field types are in agent/caps.py, the log-stream messages in
agent/log_protocol.py, the server's strict check of reports in agent/strict.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Annotated

from agent.caps import (
    MAX_ITEMS,
    MAX_LOG_LINE,
    MAX_LOG_LINES,
    MAX_TEXT,
    Count,
    ExitCode,
    LogLine,
    Meta,
    Name,
    PortNumber,
    Ref,
    Text,
)
from agent.log_protocol import LogChunk, LogsEnd, LogsOpen, LogsStop

PROTOCOL_VERSION = 1

LABEL_APP = "flotilla.app"
LABEL_RELEASE = "flotilla.release"
LABEL_HOST = "flotilla.host"
LABEL_DEPLOYMENT = "flotilla.deployment"
LABEL_REPLICA = "flotilla.replica"


class ProtocolError(ValueError):
    """A message that does not follow this protocol."""


@dataclass(frozen=True)
class PortSpec:
    """A container port to publish; `host` 0 lets Docker pick the host port."""

    container: int
    host: int = 0
    host_ip: str = "127.0.0.1"
    protocol: str = "tcp"


@dataclass(frozen=True)
class HealthSpec:
    """How the agent probes an instance before counting it ready."""

    type: str  # "http" | "tcp" | "cmd"
    port: int | None = None
    path: str = "/"
    command: tuple[str, ...] = ()
    interval: float = 1.0
    timeout: float = 1.0
    retries: int = 3
    start_period: float = 0.0


@dataclass(frozen=True)
class ContainerSpec:
    """What one instance of a release looks like: the release's container spec."""

    image: str
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortSpec, ...] = ()
    memory: int | None = None  # bytes
    cpus: float | None = None
    pids_limit: int | None = None
    restart: str = "unless-stopped"
    labels: tuple[tuple[str, str], ...] = ()
    health: HealthSpec | None = None
    min_healthy_time: float = 0.0
    stop_first: bool = False
    user: str | None = None  # None: the image's user
    read_only: bool = False  # a read-only root file system
    security_profile: str = "baseline"  # or "restricted" (capabilities: NET_BIND_SERVICE only)
    # the release's secrets, (environment or file name, value): kept in memory, never logged,
    # masked in what the agent reports (out of repr, so no log line can show them)
    secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secrets_dir: str | None = None  # None: as environment variables; else files in this dir
    # what the app's policy allowed (server/policy.py): the host's namespaces, devices, mounts
    privileged: bool = False
    network_mode: str = "bridge"  # or "host"
    pid_mode: str = "private"  # or "host"
    ipc_mode: str = "private"  # or "host"
    cap_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str, bool], ...] = ()  # (host path, container path, read-only)
    volumes: tuple[tuple[str, str, bool], ...] = ()  # (volume name, container path, read-only)
    tmpfs: tuple[tuple[str, int | None], ...] = ()  # (container path, size in bytes)
    networks: tuple[str, ...] = ()  # user-defined networks (flotilla-NAME), alias: the app
    # the digest the release is pinned to (given in its image reference, or resolved by the
    # first host that ran it); None: not pinned yet. The agent then runs exactly that image
    digest: str | None = None


@dataclass(frozen=True)
class Assignment:
    """The desired state of one app on one host."""

    app: str
    release: int
    deployment: int
    replicas: int
    spec: ContainerSpec
    keep: tuple[int, ...] = ()  # releases that succeeded: retain their containers first


@dataclass(frozen=True)
class Prepull:
    """An image to have on the host before a rollout reaches it (pulled, nothing started)."""

    app: str
    release: int
    image: str
    digest: str | None = None  # the release's pin, as in ContainerSpec.digest


# a digest as the OCI reference grammar has it: algorithm:encoded
DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")


def digest_in(image: str) -> str | None:
    """The digest an image reference names (`repo:tag@sha256:...`), if it names one."""
    _, sep, digest = image.partition("@")
    return digest if sep else None


def pinned_ref(image: str, digest: str) -> str:
    """The reference of `image` at `digest`: its repository (no tag) `@digest`."""
    repo = image.partition("@")[0]
    name, sep, tag = repo.rpartition(":")
    if sep and "/" not in tag:  # a tag, not a registry's port
        repo = name
    return f"{repo}@{digest}"


def run_ref(image: str, digest: str | None) -> str:
    """The reference to pull and run: the pinned one if there is a pin, else `image`."""
    return pinned_ref(image, digest) if digest else image


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry, sent only to hosts whose images come from it; the agent
    keeps them in memory for its pulls and never logs them (out of repr)."""

    registry: str
    username: str
    password: str = field(repr=False)


def registry_of(image: str) -> str:
    """The registry host of an image reference, as Docker reads it: the first component when
    it has a dot or a port or is localhost, else Docker Hub (docker.io)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


@dataclass(frozen=True)
class DesiredState:
    """Everything one host should run, at a generation that only grows (server -> agent)."""

    host: str
    generation: int
    assignments: tuple[Assignment, ...] = ()
    prepull: tuple[Prepull, ...] = ()
    registries: tuple[RegistryAuth, ...] = field(default=(), repr=False)
    # apps removed with their volumes: remove each one's volumes here once its containers
    # are gone (never an app this state assigns or pre-pulls)
    purge_volumes: tuple[str, ...] = ()


def volume_name(app: str, source: str) -> str:
    """The Docker Engine's name of an app's named volume: per app, so that another app's
    `data` is another volume."""
    return f"flotilla-{app}-{source}"


@dataclass(frozen=True)
class PublishedPort:
    """A container port as Docker published it on the host."""

    container: PortNumber
    host_ip: Name
    host_port: PortNumber
    protocol: Name = "tcp"


class ContainerState(StrEnum):
    """An instance's `state`: the Docker Engine's word for its container, all of them (the
    agent reports whatever word the Engine uses; Flotilla acts on running, restarting,
    paused, exited and dead)."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


class ProblemReason(StrEnum):
    """Why an app cannot converge on a host (an AppProblem's `reason`)."""

    PULL_FAILED = "pull_failed"  # its image could not be pulled
    CREATE_FAILED = "create_failed"  # its container could not be created or started
    EXITED = "exited"  # a container that ran for this release exited with an error
    UNHEALTHY = "unhealthy"  # its health check fails


@dataclass(frozen=True)
class Instance:
    """One container as the agent observes it."""

    container_id: Ref
    name: Name
    host: Name  # the flotilla.host label; an agent acts only on its own
    app: Name
    release: Count
    replica: Count
    deployment: Count
    state: Name  # the Engine's word for its container (ContainerState)
    health: Name = "none"  # none | starting | healthy | unhealthy
    exit_code: ExitCode | None = None
    image: Ref = ""
    ports: Annotated[tuple[PublishedPort, ...], Meta(max_length=MAX_ITEMS)] = ()
    ready: bool = False  # passed its health gate for min_healthy_time (set by the agent)


@dataclass(frozen=True)
class AppProblem:
    """Evidence of why an app cannot converge on this host (pull error, crash, failed probe)."""

    app: Name
    release: Count
    reason: Name  # ProblemReason
    message: Text
    exit_code: ExitCode | None = None
    logs: Annotated[tuple[LogLine, ...], Meta(max_length=MAX_LOG_LINES)] = ()


@dataclass(frozen=True)
class Status:
    """The agent's full observed state, sent when it changed (within 0.1 s while acting)."""

    host: Name
    generation: Count  # the desired generation the agent is working on
    instances: Annotated[tuple[Instance, ...], Meta(max_length=MAX_ITEMS)] = ()
    # (image as given, repo digest)
    digests: Annotated[tuple[tuple[Ref, Ref], ...], Meta(max_length=MAX_ITEMS)] = ()
    problems: Annotated[tuple[AppProblem, ...], Meta(max_length=MAX_ITEMS)] = ()
    engine_error: Text | None = None  # the host's Docker Engine does not answer: why


@dataclass(frozen=True)
class Hello:
    """The agent's first message on a connection: who it is and what it speaks."""

    host: Name
    agent_version: Name
    docker_version: Name
    protocol: Count = PROTOCOL_VERSION


# the kinds of event an agent sends (the server's EventKind has each under the same name)
DRIFT_HEALED = "drift_healed"  # it restarted or replaced a container that drifted


@dataclass(frozen=True)
class Event:
    """Something the agent did on its own, e.g. healing drift; goes to the audit log."""

    host: Name
    kind: Name
    app: Name
    message: Text


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def fit_status(status: Status) -> Status:
    """The status clipped to the protocol's caps, as an agent sends it: problems' messages
    and log lines cut, the newest MAX_LOG_LINES lines kept, lists cut at MAX_ITEMS."""
    problems = tuple(
        replace(
            p,
            message=clip(p.message, MAX_TEXT),
            logs=tuple(clip(line, MAX_LOG_LINE) for line in p.logs[-MAX_LOG_LINES:]),
        )
        for p in status.problems[:MAX_ITEMS]
    )
    return replace(
        status,
        instances=status.instances[:MAX_ITEMS],
        digests=status.digests[:MAX_ITEMS],
        problems=problems,
    )


def fit_event(event: Event) -> Event:
    """The event with its message clipped to the protocol's cap."""
    return replace(event, message=clip(event.message, MAX_TEXT))


Message = Hello | Status | Event | DesiredState | LogsOpen | LogsStop | LogChunk | LogsEnd
