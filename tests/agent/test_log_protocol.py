"""The log streams' wire messages (`flotilla logs`): round trips, strict checks and caps, and
the agent's pure helpers that cut the Engine's output into stamped lines."""

from __future__ import annotations

import json

import pytest

from agent.caps import MAX_LOG_LINE
from agent.codec import decode, encode
from agent.log_protocol import (
    MAX_LOG_CHUNK,
    MAX_LOG_TAIL,
    LogChunk,
    LogEntry,
    LogsEnd,
    LogsOpen,
    LogsStop,
)
from agent.logs import MAX_PENDING, lines_of, split_stamp
from agent.protocol import ProtocolError
from agent.strict import decode_report

ENTRY = LogEntry("web-1", 1, 3, "2026-12-06T14:00:00.5Z", "hello")


@pytest.mark.parametrize(
    "message",
    [
        LogsOpen(7, "web"),
        LogsOpen(8, "web", tail=10, since=1765000000.25, follow=True),
        LogsStop(7),
    ],
)
def test_what_the_server_sends_round_trips(message: LogsOpen | LogsStop) -> None:
    assert decode(encode(message)) == message


@pytest.mark.parametrize("message", [LogChunk("h1", 7, (ENTRY,)), LogsEnd("h1", 7, "why")])
def test_what_the_agent_sends_round_trips_through_the_strict_door(
    message: LogChunk | LogsEnd,
) -> None:
    assert decode_report(encode(message)) == message


def chunk_body(**entry: object) -> str:
    body = json.loads(encode(LogChunk("h1", 7, (ENTRY,))))
    body["lines"][0].update(entry)
    return json.dumps(body)


@pytest.mark.parametrize(
    "bad",
    [
        chunk_body(line="x" * (MAX_LOG_LINE + 1)),  # past the line cap
        chunk_body(replica="1"),  # a string for a number
        chunk_body(release=-1),
        json.dumps({"type": "logs", "host": "h1", "stream": "7", "lines": []}),
        json.dumps({"type": "logs", "host": "h1", "stream": 7, "lines": [{}]}),
        json.dumps(
            json.loads(encode(LogChunk("h1", 7, (ENTRY,) * (MAX_LOG_CHUNK + 1))))
        ),  # too many lines in one chunk
        json.dumps({"type": "logs_end", "host": "h1", "stream": 7, "note": 3}),
        encode(LogsOpen(7, "web")),  # the server's message, not an agent's
    ],
)
def test_the_door_refuses_a_malformed_log_frame(bad: str) -> None:
    with pytest.raises(ProtocolError):
        decode_report(bad)


@pytest.mark.parametrize(
    "bad",
    [
        '{"type": "logs_open", "stream": -1, "app": "web"}',
        '{"type": "logs_open", "stream": 1, "app": "web", "tail": "3"}',
        '{"type": "logs_open", "stream": 1, "app": "web", "tail": 10001}',
        '{"type": "logs_open", "stream": 1}',
        '{"type": "logs_stop"}',
    ],
)
def test_the_agent_refuses_a_malformed_request(bad: str) -> None:
    with pytest.raises(ProtocolError):
        decode(bad)


def test_chunks_are_cut_into_lines_and_a_line_without_end_is_bounded() -> None:
    chunks = [b"one\ntw", b"o\n", b"three\nfour", b"x" * (MAX_PENDING + 5)]
    out = list(lines_of(iter(chunks)))
    assert out[:3] == [b"one", b"two", b"three"]
    assert out[3] == (b"four" + b"x" * MAX_PENDING)[:MAX_PENDING]
    assert b"".join(out[3:]) == b"four" + b"x" * (MAX_PENDING + 5)
    assert all(len(line) <= MAX_PENDING for line in out)


def test_a_stamped_line_is_split_into_time_and_text() -> None:
    assert split_stamp(b"2026-12-06T14:00:00.123456789Z hello world\r") == (
        "2026-12-06T14:00:00.123456789Z",
        "hello world",
    )
    assert split_stamp(b"no stamp here") == ("", "no stamp here")
    assert split_stamp(b"\xff broken") == ("", "\ufffd broken")


def test_only_the_engines_own_stamp_is_a_time() -> None:
    """A piece of a cut line that starts like a stamp is text: a container's output must
    never make a field the server refuses (its agent would be disconnected)."""
    fake = b"2026-12-06T" + b"x" * 300 + b" tail"
    assert split_stamp(fake) == ("", fake.decode())
    assert split_stamp(b"2026-12-06T14:00:00+01:00 x") == ("2026-12-06T14:00:00+01:00", "x")


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "logs_open", "stream": "7", "app": "web"},
        {"type": "logs_open", "stream": -1, "app": "web"},
        {"type": "logs_open", "stream": 7, "app": "w" * 256},
        {"type": "logs_open", "stream": 7, "app": "web", "tail": MAX_LOG_TAIL + 1},
        {"type": "logs_open", "stream": 7, "app": "web", "since": "yesterday"},
        {"type": "logs_open", "stream": 7, "app": "web", "follow": "yes"},
        {"type": "logs_stop", "stream": True},
    ],
)
def test_an_agent_refuses_a_malformed_log_request(bad: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        decode(json.dumps(bad))
