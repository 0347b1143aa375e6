"""JSON logs: one object per line, with the ids the line names as fields."""

from __future__ import annotations

import json
import logging

from server.cli.logs import JsonFormatter


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
