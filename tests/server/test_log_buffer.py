"""A log stream's buffer on the server (`server/log_streams.py`): bounded, the oldest dropped
when the client falls behind, and the client told how many, per host, before what follows;
and `since` read as `docker logs --since` reads it; the intake hands on log chunks only
for a stream opened to its own host."""

from __future__ import annotations

import datetime as dt

import pytest

from agent.codec import encode
from agent.log_protocol import LogChunk, LogEntry, LogsEnd
from agent.protocol import Message, ProtocolError
from server.api.logs import since_of
from server.intake import Intake
from server.log_streams import MAX_BUFFERED, LogStreams
from server.metrics import create_metrics
from server.statuses import StatusStore
from server.turns import Turns


async def test_a_slow_client_loses_the_oldest_lines_and_is_told() -> None:
    sent: list[tuple[str, Message]] = []

    async def send(host: str, message: Message) -> bool:
        sent.append((host, message))
        return True

    streams = LogStreams(send)
    tap = await streams.open("web", ["h1"], None, None, True)
    ((_, opened),) = sent
    entries = tuple(LogEntry("web-1", 1, 1, "", f"line {n}") for n in range(100))
    for _ in range(MAX_BUFFERED // 100 + 5):
        assert streams.take("h1", LogChunk("h1", opened.stream, entries))  # type: ignore[union-attr]
    assert not streams.take("h2", LogChunk("h2", opened.stream, entries))  # type: ignore[union-attr]
    out = tap.take()
    assert out[0] == {"host": "h1", "note": "500 lines dropped: this client read too slowly"}
    assert len(out) == MAX_BUFFERED + 1
    assert out[-1]["line"] == "line 99"
    assert streams.take("h1", LogsEnd("h1", opened.stream))  # type: ignore[union-attr]
    assert tap.ended


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", 1000.0 - 600),
        ("1h30m", 1000.0 - 5400),
        ("2.5s", 997.5),
        ("1500", 1500.0),
        ("1970-01-01T00:10:00Z", 600.0),
        ("1970-01-01T01:10:00+01:00", 600.0),
        ("1970-01-01T00:10:00", 600.0),
    ],
)
def test_since_reads_durations_times_and_timestamps(text: str, expected: float) -> None:
    assert since_of(text, 1000.0) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "10 minutes", "-5m", "", "10x"])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        since_of(text, dt.datetime.now().timestamp())


async def test_the_intake_keeps_log_chunks_only_for_streams_opened_to_its_host() -> None:
    metrics = create_metrics()
    store = StatusStore(None, Turns())  # type: ignore[arg-type]  # nothing is written

    async def send(host: str, message: Message) -> bool:
        return True

    streams = LogStreams(send)
    tap = await streams.open("web", ["h1", "h2"], 5, None, False)
    mine, theirs = sorted(stream for _, stream in tap.open)  # h1's, then h2's
    intake = Intake(
        7, "h1", store, metrics, lambda s: None, lambda e: None, lambda e: None,
        logs=lambda message, over: streams.take("h1", message, over),
    )  # fmt: skip
    entry = (LogEntry("web-0", 0, 1, "", "hello"),)
    intake.take(encode(LogChunk("h1", mine, entry)))
    intake.take(encode(LogChunk("h1", theirs, entry)))  # h2's stream, from h1
    intake.take(encode(LogChunk("h1", 12345, entry)))  # never opened
    with pytest.raises(ProtocolError):  # another host's name on h1's connection
        intake.take(encode(LogChunk("h2", theirs, entry)))
    assert [r.get("line") for r in tap.take()] == ["hello"]
    refused = metrics.registry.get_sample_value
    assert refused("flotilla_agent_reports_refused_total", {"reason": "stream"}) == 2
