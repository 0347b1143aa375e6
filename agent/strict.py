"""The server's strict check of what an agent sends (decode_report, status_of), through
msgspec, imported on the first check: an agent, which never checks a report, never loads it."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from agent import caps, log_protocol, protocol
from agent.log_protocol import LogChunk, LogsEnd
from agent.protocol import Event, Hello, ProtocolError, Status

if TYPE_CHECKING:
    import msgspec

# Where the messages' annotations are read: msgspec resolves a dataclass's annotations, which
# are strings, in the namespace of the module that defines it. So every module that defines a
# checked message or writes `Meta(...)` in an annotation is here, and caps.py, whose aliases
# they import.
_ANNOTATED = (caps, protocol, log_protocol)

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
    own: the aliases of agent/caps.py are rebuilt with msgspec.Meta in each module of
    `_ANNOTATED`, and the annotations, which are strings, are read in those namespaces when a
    decoder is built."""
    import msgspec

    with _SWAPPING:  # idempotent: a second run finds no stand-in left
        stand_in = vars(caps)["_Unchecked"]
        for module in _ANNOTATED:
            names = vars(module)
            names["Meta"] = msgspec.Meta
            for name, value in list(names.items()):
                extras = getattr(value, "__metadata__", ())
                if any(isinstance(m, stand_in) for m in extras):
                    metas = (
                        msgspec.Meta(**m.constraints) if isinstance(m, stand_in) else m
                        for m in extras
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


def convert(value: Any, cls: type[Any]) -> Any:
    """A `cls` from already parsed JSON, checked as strictly as a report on the wire; raises
    msgspec's ValidationError (a ValueError) if it is not one."""
    return _strict().convert(value, cls)
