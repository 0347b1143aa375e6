"""The wire protocol's messages to JSON text and back (orjson): `encode`, and `decode`, which
rebuilds the frozen dataclasses from plain JSON values: the server's messages leniently (a log
stream's request checked by hand), an agent's log messages strictly (agent/strict.py)."""

from __future__ import annotations

import json
import operator
from functools import lru_cache
from typing import Any

import orjson

from agent import strict
from agent.caps import MAX_INT, MAX_NAME
from agent.log_protocol import MAX_LOG_TAIL, LogChunk, LogsEnd, LogsOpen, LogsStop
from agent.protocol import (
    DIGEST,
    PROTOCOL_VERSION,
    AppProblem,
    Assignment,
    ContainerSpec,
    DesiredState,
    Event,
    HealthSpec,
    Hello,
    Instance,
    Message,
    PortSpec,
    Prepull,
    ProtocolError,
    PublishedPort,
    RegistryAuth,
    Status,
)

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
    return encode_desired(d, desired_lists(d))


def desired_lists(d: DesiredState) -> str:
    """The JSON of a desired state's assignments and pre-pulls, which a fan-out's hosts share
    (the same objects: server/desired.build), so that a push makes it once per distinct
    pair of lists (`encode_desired`)."""
    assignments = ",".join(_fragment(a) for a in d.assignments)
    prepull = ",".join(_fragment(p) for p in d.prepull)
    return f'"assignments":[{assignments}],"prepull":[{prepull}]'


def encode_desired(d: DesiredState, lists: str) -> str:
    """A desired state's JSON text, with its `desired_lists` made already."""
    registries = f',"registries":{dumps_json(d.registries)}' if d.registries else ""
    purges = f',"purge_volumes":{dumps_json(d.purge_volumes)}' if d.purge_volumes else ""
    return (
        f'{{"type":"desired","host":{dumps_json(d.host)},'
        f'"generation":{int(d.generation)},{lists}{registries}{purges}}}'
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
        return strict.convert(body, cls)
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
