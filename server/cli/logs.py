"""Logging setup for the entry point: plain text, or one JSON object per line.

Log lines carry their ids as `key=value` (`app=web deployment=12 host=web-1`); the JSON
formatter lifts those into fields, so every existing line is structured without a second
logging convention.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

ID_FIELDS = ("app", "release", "deployment", "host", "image", "status")
_IDS = re.compile(r"\b(" + "|".join(ID_FIELDS) + r")=([^\s,]+)")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the `key=value` ids of the message as fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        message = record.getMessage()
        body: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in _IDS.findall(message):
            body.setdefault(key, value)
        if record.exc_info:
            body["error"] = self.formatException(record.exc_info)
        return json.dumps(body, separators=(",", ":"))


class CancelledCheckin(logging.Filter):
    """SQLAlchemy's pool logs an ERROR with a traceback when a task is cancelled while its
    connection goes back to the pool (the server stopping while a request or a loop held
    one): the pool then closes that connection, and the cancellation goes on. Nothing is
    lost, so it is one line, not a traceback printed at every such stop."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the pool's record of a cancelled check-in; let every other one through."""
        if not (record.exc_info and record.name.startswith("sqlalchemy.pool")):
            return True
        import asyncio  # here: the client commands import this module, and never need it

        if isinstance(record.exc_info[1], asyncio.CancelledError):
            record.msg = "a database connection given back by a cancelled task was closed"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: str, fmt: str) -> None:
    """Configure the root logger once, in the entry point."""
    handler = logging.StreamHandler()
    handler.addFilter(CancelledCheckin())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # at DEBUG, aiosqlite logs two lines per statement: 170,000 lines in a 10,000-host
    # benchmark, which drowned the server's own timings and slowed it down
    logging.getLogger("aiosqlite").setLevel(max(root.level, logging.INFO))
