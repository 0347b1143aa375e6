"""JSON logs: one object per line, with the ids the line names as fields."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from server.cli.logs import JsonFormatter, configure_logging


def test_json_line_carries_level_message_and_ids() -> None:
    record = logging.LogRecord(
        "server.rollout.controller", logging.INFO, __file__, 1,
        "deployment finished app=%s deployment=%s release=%s status=%s",
        ("web", 12, 3, "succeeded"), None,
    )  # fmt: skip
    line = JsonFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body["level"] == "info"
    assert body["message"] == "deployment finished app=web deployment=12 release=3 status=succeeded"
    assert (body["app"], body["deployment"], body["release"]) == ("web", "12", "3")


def test_json_line_keeps_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed host=h1", (), sys.exc_info()
        )
    body = json.loads(JsonFormatter().format(record))
    assert body["host"] == "h1" and "RuntimeError: boom" in body["error"]


def test_a_cancelled_checkin_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The server stopping while a task gives a connection back: SQLAlchemy's pool logs the
    cancelled reset with a traceback; the server prints one line instead."""
    root = logging.getLogger()
    quiet = ("aiohttp.access", "alembic.runtime.plugins", "aiosqlite")
    saved = root.handlers[:], root.level, [logging.getLogger(n).level for n in quiet]
    try:
        configure_logging("info", "text")
        pool = logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool")
        try:
            raise asyncio.CancelledError
        except asyncio.CancelledError:
            pool.error("Exception during reset or similar", exc_info=True)
        try:
            raise ValueError("a real failure")
        except ValueError:
            logging.getLogger("server.hub").error("push failed", exc_info=True)
    finally:  # the root logger as pytest set it up
        root.handlers[:], level, levels = saved
        root.setLevel(level)
        for name, was in zip(quiet, levels, strict=True):
            logging.getLogger(name).setLevel(was)
    err = capsys.readouterr().err
    assert "WARNING sqlalchemy.pool.impl.AsyncAdaptedQueuePool: a database connection" in err
    assert err.count("Traceback") == 1, err  # the other failure keeps its traceback
    assert "ValueError: a real failure" in err
