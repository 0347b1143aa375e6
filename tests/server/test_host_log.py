"""Why an agent's connection ended, as its `host_disconnected` event says and
flotilla_agent_disconnects_total counts it (pure): the agent's close or a broken connection
(`closed`), or the server's own close (`cut`)."""

from __future__ import annotations

import pytest

from server.host_log import (
    CAUSES,
    HANDLER_ENDED,
    Ending,
    closed,
    cut,
    frame_refused,
    message_refused,
    send_cut,
)


@pytest.mark.parametrize(
    ("code", "error", "cause", "why"),
    [
        (1000, None, "agent", "the agent closed the connection (close code 1000)"),
        (1001, None, "agent", "the agent closed the connection (close code 1001)"),
        (4005, None, "agent", "the agent closed the connection (close code 4005)"),  # its choice
        (0, None, "agent", "the agent closed the connection without a code"),
        (1006, None, "broken", "the connection broke (close code 1006)"),
        (None, None, "broken", "the connection broke (close code 1006)"),
        (1006, TimeoutError("No PONG received after 10.0 seconds"), "heartbeat", "no answer to the server's heartbeat"),
        (1006, ConnectionResetError(), "broken", "the connection broke (close code 1006)"),
    ],
)  # fmt: skip
def test_why_a_connection_ended(
    code: int | None, error: BaseException | None, cause: str, why: str
) -> None:
    assert closed(code, error) == Ending(cause, why)
    assert cause in CAUSES


@pytest.mark.parametrize(
    ("code", "cause", "why"),
    [
        (4004, "rotated", "its token was rotated (close code 4004)"),
        (4005, "removed", "the host was removed (close code 4005)"),
        (1001, "stopping", "the server is stopping (close code 1001)"),
        (4999, "server", "closed by the server (close code 4999)"),
    ],
)
def test_why_the_server_closed_a_connection(code: int, cause: str, why: str) -> None:
    assert cut(code) == Ending(cause, why)
    assert cause in CAUSES


def test_the_hubs_own_reasons() -> None:
    assert send_cut(7.4) == Ending("send_timeout", "cut by the server: a frame waited 7 s")
    assert frame_refused("too big") == Ending("bad_frame", "a bad frame: too big")
    assert message_refused("no generation") == Ending("bad_message", "a bad message: no generation")
    assert (HANDLER_ENDED.cause, HANDLER_ENDED.why) == ("server", "ended by the server")
