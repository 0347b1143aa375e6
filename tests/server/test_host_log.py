"""Why an agent's connection ended, as its `host_disconnected` event says (pure)."""

from __future__ import annotations

import pytest

from server.host_log import closed


@pytest.mark.parametrize(
    ("code", "error", "why"),
    [
        (1000, None, "the connection was closed (close code 1000)"),
        (1001, None, "going away (the agent or the server stopping) (close code 1001)"),
        (1006, None, "the connection broke (close code 1006)"),
        (4004, None, "its token was rotated (close code 4004)"),
        (4005, None, "the host was removed (close code 4005)"),
        (4321, None, "closed (close code 4321)"),  # any other code an agent sends: its number
        (None, None, "the connection broke"),
        (1006, TimeoutError("No PONG received after 10.0 seconds"), "no answer to the server's heartbeat"),
        (1006, ConnectionResetError(), "the connection broke (close code 1006)"),
    ],
)  # fmt: skip
def test_why_a_connection_ended(code: int | None, error: BaseException | None, why: str) -> None:
    assert closed(code, error) == why
