"""Why an agent's connection ended, as its `host_disconnected` event says (pure): the
agent's close or a broken connection (`closed`), or the server's own close (`cut`)."""

from __future__ import annotations

import pytest

from server.host_log import closed, cut


@pytest.mark.parametrize(
    ("code", "error", "why"),
    [
        (1000, None, "the agent closed the connection (close code 1000)"),
        (1001, None, "the agent closed the connection (close code 1001)"),
        (4005, None, "the agent closed the connection (close code 4005)"),  # its choice
        (0, None, "the agent closed the connection without a code"),
        (1006, None, "the connection broke (close code 1006)"),
        (None, None, "the connection broke (close code 1006)"),
        (1006, TimeoutError("No PONG received after 10.0 seconds"), "no answer to the server's heartbeat"),
        (1006, ConnectionResetError(), "the connection broke (close code 1006)"),
    ],
)  # fmt: skip
def test_why_a_connection_ended(code: int | None, error: BaseException | None, why: str) -> None:
    assert closed(code, error) == why


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (4004, "its token was rotated (close code 4004)"),
        (4005, "the host was removed (close code 4005)"),
        (1001, "the server is stopping (close code 1001)"),
        (4999, "closed by the server (close code 4999)"),
    ],
)
def test_why_the_server_closed_a_connection(code: int, why: str) -> None:
    assert cut(code) == why
