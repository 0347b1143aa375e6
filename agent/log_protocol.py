"""The log-stream messages of the wire protocol (`flotilla logs`) and their caps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from agent.caps import Count, LogLine, Meta, Name, Text

# Log streams (`flotilla logs`): a chunk carries at most MAX_LOG_CHUNK lines; an agent sends at
# most LOG_CHUNKS_PER_SECOND chunks a second per stream (1,000 lines) and serves at most
# MAX_LOG_STREAMS streams at once; the server opens no more than that to one host.
MAX_LOG_CHUNK = 100
MAX_LOG_TAIL = 10_000
LOG_CHUNKS_PER_SECOND = 10
MAX_LOG_STREAMS = 8


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
