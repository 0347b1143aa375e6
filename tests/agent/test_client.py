"""The agent's reconnect backoff (agent/client.py, issue 20): short after a loss, longer
only when the server stays away, slow when the server refuses the token."""

from __future__ import annotations

from agent.client import SHORT_BACKOFF_MAX, SHORT_BACKOFF_SECONDS, reconnect_delay


def top(low: float, high: float) -> float:
    return high  # the jitter's upper end: the longest wait


def test_the_first_minute_after_a_loss_waits_5_s_at_most() -> None:
    delays = [reconnect_delay(n, 10.0, False, 30.0, top) for n in range(1, 30)]
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert max(delays) == SHORT_BACKOFF_MAX


def test_a_server_away_for_longer_is_tried_less_often() -> None:
    assert reconnect_delay(12, SHORT_BACKOFF_SECONDS + 1, False, 30.0, top) == 30.0


def test_a_refused_token_is_retried_slowly() -> None:
    assert reconnect_delay(1, 0.0, True, 30.0, top) == 30.0


def test_delays_are_jittered_down_to_half() -> None:
    assert reconnect_delay(3, 0.0, False, 30.0, lambda low, high: low) == 1.0
