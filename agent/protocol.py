"""The wire protocol between server and agent, imported by both sides (stdlib and orjson).

Desired state (server -> agent) and observed status (agent -> server) are separate types.
Every desired-state push carries the host's FULL desired state and a growing generation,
so a lost or repeated message does no harm: the agent applies only a newer generation.
Messages are JSON objects with a ``type`` field; unknown fields are ignored so that a newer
peer can add fields without breaking an older one.

Over 400 lines on purpose: the wire protocol is one versioned module that both sides import
(types, caps, encoding, decoding), so a change to it is seen whole.
"""

from __future__ import annotations

import functools
import json
import operator
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

import orjson

if TYPE_CHECKING:
    import msgspec
    from msgspec import Meta
else:

    class _Unchecked:
        """The constraints of a field, as msgspec.Meta takes them, kept until a message is
        first checked strictly (`_strict`). An agent checks only what the server sends it
        and never imports msgspec: importing it was 3.6 MiB of every agent's memory."""

        def __init__(self, **constraints: Any) -> None:
            self.constraints = constraints

    Meta = _Unchecked


PROTOCOL_VERSION = 1

# Caps on what an agent sends. The server refuses a report past any of them (decode_report);
# an agent clips what it sends to fit (fit_status, fit_event), so only a broken or hostile
# agent is refused. Past these a status is no longer a host's evidence but a flood.
MAX_NAME = 255  # a host, app or container name, a state, a reason, an event kind
MAX_REF = 1024  # a container id, an image reference, a digest
MAX_TEXT = 4096  # a problem's or an event's message
MAX_LOG_LINE = 1024
MAX_LOG_LINES = 50
MAX_ITEMS = 1000  # instances, digests, problems or ports in one status
MAX_INT = 2**63 - 1
# Log streams (`flotilla logs`): a chunk carries at most MAX_LOG_CHUNK lines; an agent sends at
# most LOG_CHUNKS_PER_SECOND chunks a second per stream (1,000 lines) and serves at most
# MAX_LOG_STREAMS streams at once; the server opens no more than that to one host.
MAX_LOG_CHUNK = 100
MAX_LOG_TAIL = 10_000
LOG_CHUNKS_PER_SECOND = 10
MAX_LOG_STREAMS = 8

Name = Annotated[str, Meta(max_length=MAX_NAME)]
Ref = Annotated[str, Meta(max_length=MAX_REF)]
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
LogLine = Annotated[str, Meta(max_length=MAX_LOG_LINE)]
Count = Annotated[int, Meta(ge=0, le=MAX_INT)]
PortNumber = Annotated[int, Meta(ge=0, le=65535)]
ExitCode = Annotated[int, Meta(ge=-(2**31), le=2**32)]

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
    state: Name  # docker's state: created | running | exited | paused | restarting | dead
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
    reason: Name  # pull_failed | exited | unhealthy | create_failed
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


@dataclass(frozen=True)
class Event:
    """Something the agent did on its own, e.g. healing drift; goes to the audit log."""

    host: Name
    kind: Name
    app: Name
    message: Text


@dataclass(frozen=True)
class LogsOpen:
    """Server -> agent: send the output of the app's containers on this host as stream
    `stream` (an id the server chose): at most `tail` lines of each container (None: all),
    none older than `since` (seconds since the epoch), and then new ones if `follow`."""

    stream: Count
    app: Name
    tail: Annotated[int, Meta(ge=0, le=MAX_LOG_TAIL)] | None = None
    since: float | None = None
    follow: bool = False


@dataclass(frozen=True)
class LogsStop:
    """Server -> agent: stop stream `stream` (its client went away); nothing is answered."""

    stream: Count


@dataclass(frozen=True)
class LogEntry:
    """One line of a container's output, masked and clipped by the agent."""

    container: Name
    replica: Count
    release: Count
    time: Name  # RFC 3339, as the Engine stamped the line ("" if it did not)
    line: LogLine


@dataclass(frozen=True)
class LogChunk:
    """Agent -> server: the next lines of an open stream."""

    host: Name
    stream: Count
    lines: Annotated[tuple[LogEntry, ...], Meta(max_length=MAX_LOG_CHUNK)] = ()


@dataclass(frozen=True)
class LogsEnd:
    """Agent -> server: stream `stream` has nothing more; `note` says why, when not simply at
    the end of the output (no such app here, no container, the Engine failed)."""

    host: Name
    stream: Count
    note: Text | None = None


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

_TYPES: dict[str, type[Any]] = {
    "hello": Hello,
    "status": Status,
    "event": Event,
    "desired": DesiredState,
    "logs_open": LogsOpen,
    "logs_stop": LogsStop,
    "logs": LogChunk,
    "logs_end": LogsEnd,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}


def encode(message: Message) -> str:
    """Serialise a message to JSON text.

    Through orjson, which writes dataclasses and tuples itself: a status in 2 µs, where the
    stdlib's encoder took 13 (and 22 after a Python walk of the values). At 10,000 hosts
    every status is encoded once by its agent and parsed once by the server."""
    if isinstance(message, DesiredState):
        return _encode_desired(message)
    return dumps_json({**message.__dict__, "type": _NAMES[type(message)]})


def loads_json(text: str | bytes) -> Any:
    """JSON text to values: orjson, else the stdlib for what `dumps_json` wrote through it
    (a lone surrogate, which orjson will not read)."""
    try:
        return orjson.loads(text)
    except ValueError:
        return json.loads(text)


def dumps_json(value: Any) -> str:
    """JSON text of a message or stored value: orjson, else the stdlib where orjson refuses."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson refuses a lone surrogate or an integer beyond 64 bits
        return json.dumps(value, default=operator.attrgetter("__dict__"), separators=(",", ":"))


@lru_cache(maxsize=4096)
def _fragment(item: Assignment | Prepull) -> str:
    """JSON of one assignment: a fan-out sends the same one to thousands of hosts."""
    return dumps_json(item)


def _encode_desired(d: DesiredState) -> str:
    assignments = ",".join(_fragment(a) for a in d.assignments)
    prepull = ",".join(_fragment(p) for p in d.prepull)
    registries = f',"registries":{dumps_json(d.registries)}' if d.registries else ""
    purges = f',"purge_volumes":{dumps_json(d.purge_volumes)}' if d.purge_volumes else ""
    return (
        f'{{"type":"desired","host":{dumps_json(d.host)},'
        f'"generation":{int(d.generation)},'
        f'"assignments":[{assignments}],"prepull":[{prepull}]{registries}{purges}}}'
    )


def decode(text: str | bytes) -> Message:
    """Parse JSON text into a typed message; raise ProtocolError if it is not one."""
    try:
        body = orjson.loads(text)
    except ValueError as exc:  # orjson's errors (deep nesting, Infinity too) are ValueErrors
        raise ProtocolError(f"not a protocol message: {exc}") from exc
    return from_body(body)


def from_body(body: Any) -> Message:
    """A typed message from already parsed JSON (left unchanged: a caller may keep it)."""
    try:
        kind = body["type"]
        cls = _TYPES[kind]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"not a protocol message: {exc}") from exc
    try:
        result: Message = _build(cls, body)
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
        raise ProtocolError(f"bad {kind} message: {exc}") from exc
    return result


Report = Hello | Status | Event | LogChunk | LogsEnd  # what an agent sends


@dataclass(frozen=True)
class _Strict:
    """msgspec's decoders of agents' reports, and what else a strict check needs of it."""

    envelope: msgspec.json.Decoder[Any]  # a message's type field
    reports: dict[str, msgspec.json.Decoder[Any]]  # by type
    convert: Callable[..., Any]  # msgspec.convert
    decode_errors: tuple[type[Exception], ...]
    validation_error: type[Exception]


_SWAPPING = threading.Lock()


def prepare_checks() -> None:
    """Import msgspec and build the strict checks now (the server, at its start), rather
    than at the first report."""
    _strict()


@functools.cache
def _strict() -> _Strict:
    """msgspec, imported for the first strict check (the server's, of every report; an
    agent's, of a log stream's request), with the constraints of the fields made msgspec's
    own: the aliases above are rebuilt with msgspec.Meta, and the annotations, which are
    strings, are read in this module's namespace when a decoder is built."""
    import msgspec

    with _SWAPPING:  # idempotent: a second run finds no stand-in left
        names = globals()
        stand_in = names["_Unchecked"]
        names["Meta"] = msgspec.Meta
        for name, value in list(names.items()):
            extras = getattr(value, "__metadata__", ())
            if any(isinstance(m, stand_in) for m in extras):
                metas = (
                    msgspec.Meta(**m.constraints) if isinstance(m, stand_in) else m for m in extras
                )
                names[name] = Annotated[(value.__origin__, *metas)]

    class Envelope(msgspec.Struct):
        type: str

    return _Strict(
        envelope=msgspec.json.Decoder(Envelope),
        reports={
            "hello": msgspec.json.Decoder(Hello),
            "status": msgspec.json.Decoder(Status),
            "event": msgspec.json.Decoder(Event),
            "logs": msgspec.json.Decoder(LogChunk),
            "logs_end": msgspec.json.Decoder(LogsEnd),
        },
        convert=msgspec.convert,
        decode_errors=(msgspec.DecodeError, RecursionError),
        validation_error=msgspec.ValidationError,
    )


def decode_report(text: str | bytes) -> Report:
    """Parse an agent's message into its typed model, checking every field's type strictly
    (a release must be an integer, a message a string); raise ProtocolError if it is not
    one. msgspec parses and checks in one pass in C: a status of 14 instances costs about
    as much as orjson's parse alone plus a walk over its fields."""
    strict = _strict()
    try:
        kind = strict.envelope.decode(text).type
    except strict.decode_errors as exc:  # RecursionError: too deep to be a message
        raise ProtocolError(f"not a protocol message: {exc}") from exc
    decoder = strict.reports.get(kind)
    if decoder is None:
        raise ProtocolError(f"an agent does not send {kind!r} messages")
    try:
        report: Report = decoder.decode(text)
    except strict.decode_errors as exc:
        raise ProtocolError(f"bad {kind} message: {exc}") from exc
    return report


def status_of(value: Any) -> Status:
    """A Status from already parsed JSON (a stored one), checked as strictly as on the wire."""
    strict = _strict()
    try:
        status: Status = strict.convert(value, Status)
    except strict.validation_error as exc:
        raise ProtocolError(f"bad status: {exc}") from exc
    return status


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in value)


def _count(value: object, most: int = MAX_INT) -> int:
    """A whole number from 0 to `most` (a bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise ValueError(f"expected a whole number from 0 to {most}, got {value!r}")
    return value


def _number(value: object) -> float | int:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _text(value: object, most: int) -> str:
    if not isinstance(value, str) or len(value) > most:
        raise ValueError(f"expected a string of at most {most} characters, got {value!r:.40}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _build(cls: type[Any], body: dict[str, Any]) -> Any:
    """Rebuild nested frozen dataclasses from plain JSON values."""
    if cls is LogsOpen:  # checked by hand: an agent that serves a stream needs no msgspec
        tail, since = body.get("tail"), body.get("since")
        return LogsOpen(
            stream=_count(body["stream"]),
            app=_text(body["app"], MAX_NAME),
            tail=None if tail is None else _count(tail, MAX_LOG_TAIL),
            since=None if since is None else float(_number(since)),
            follow=_flag(body.get("follow", False)),
        )
    if cls is LogsStop:
        return LogsStop(stream=_count(body["stream"]))
    if cls in (LogChunk, LogsEnd):  # an agent's, checked as strictly as any report
        return _strict().convert(body, cls)
    if cls is DesiredState:
        return DesiredState(
            host=body["host"],
            generation=int(body["generation"]),
            assignments=tuple(_assignment_of(a) for a in body.get("assignments", ())),
            prepull=tuple(
                Prepull(str(p["app"]), int(p["release"]), str(p["image"]), _digest(p))
                for p in body.get("prepull", ())
            ),
            registries=tuple(
                RegistryAuth(str(r["registry"]), str(r["username"]), str(r["password"]))
                for r in body.get("registries", ())
            ),
            purge_volumes=tuple(str(a) for a in body.get("purge_volumes", ())),
        )
    if cls is Status:
        return Status(
            host=body["host"],
            generation=int(body["generation"]),
            instances=tuple(_instance(i) for i in body.get("instances", ())),
            digests=_pairs(body.get("digests", ())),
            problems=tuple(_problem(p) for p in body.get("problems", ())),
        )
    if cls is Hello:
        return Hello(
            host=body["host"],
            agent_version=str(body["agent_version"]),
            docker_version=str(body["docker_version"]),
            protocol=int(body.get("protocol", PROTOCOL_VERSION)),
        )
    return Event(host=body["host"], kind=body["kind"], app=body["app"], message=body["message"])


def _digest(body: dict[str, Any]) -> str | None:
    """A pin (`digest`), None when absent; refused unless it is a digest."""
    digest = body.get("digest")
    if digest is not None and not (isinstance(digest, str) and DIGEST.fullmatch(digest)):
        raise ValueError(f"digest {str(digest)[:80]!r} is not a digest")
    return digest


def _known(cls: type[Any], body: dict[str, Any]) -> dict[str, Any]:
    names = cls.__dataclass_fields__
    return {k: v for k, v in body.items() if k in names}


def _assignment_of(body: Any) -> Assignment:
    """An assignment, built once per distinct JSON: every push carries all of a host's
    assignments, most of them unchanged since the last push (and a fan-out sends one to
    every host). Its canonical JSON is the key: re-encoding costs a tenth of rebuilding."""
    try:
        key = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson will not write (nesting beyond 255): built uncached
        return _assignment(body)
    return _cached_assignment(key)


@lru_cache(maxsize=1024)
def _cached_assignment(text: bytes) -> Assignment:
    return _assignment(orjson.loads(text))


def _assignment(body: dict[str, Any]) -> Assignment:
    spec = dict(body["spec"])
    health = spec.get("health")
    return Assignment(
        app=body["app"],
        release=int(body["release"]),
        deployment=int(body["deployment"]),
        replicas=int(body["replicas"]),
        keep=tuple(int(r) for r in body.get("keep", ())),
        spec=ContainerSpec(
            **{
                **_known(ContainerSpec, spec),
                "command": tuple(spec["command"]) if spec.get("command") is not None else None,
                "digest": _digest(spec),
                "env": _pairs(spec.get("env", ())),
                "secrets": _pairs(spec.get("secrets", ())),
                "labels": _pairs(spec.get("labels", ())),
                "cap_add": tuple(str(c) for c in spec.get("cap_add", ())),
                "networks": tuple(str(n) for n in spec.get("networks", ())),
                "devices": tuple(str(d) for d in spec.get("devices", ())),
                "mounts": tuple((str(s), str(t), bool(r)) for s, t, r in spec.get("mounts", ())),
                "volumes": tuple((str(s), str(t), bool(r)) for s, t, r in spec.get("volumes", ())),
                "tmpfs": tuple(
                    (str(t), int(n) if n is not None else None) for t, n in spec.get("tmpfs", ())
                ),
                "ports": tuple(PortSpec(**_known(PortSpec, p)) for p in spec.get("ports", ())),
                "health": (
                    HealthSpec(
                        **{
                            **_known(HealthSpec, health),
                            "command": tuple(health.get("command", ())),
                        }
                    )
                    if health
                    else None
                ),
            }
        ),
    )


def _instance(body: dict[str, Any]) -> Instance:
    ports = tuple(PublishedPort(**_known(PublishedPort, p)) for p in body.get("ports", ()))
    return Instance(**{**_known(Instance, body), "ports": ports})


def _problem(body: dict[str, Any]) -> AppProblem:
    return AppProblem(**{**_known(AppProblem, body), "logs": tuple(body.get("logs", ()))})
