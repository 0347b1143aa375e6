"""`flotilla events --follow`: the last events, then new ones as they happen, until Ctrl-C.

It reads `GET /v1/events/stream` (Server-Sent Events) with a small reader on urllib, the
transport of every other client command (server/cli/api.py): no second HTTP stack to
configure. A lost connection (a server restart) is reconnected with `Last-Event-ID`, so no
event is missed or shown twice.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from server.cli.api import Exit, Server, Unreachable, UsageError, call, report_problem
from server.cli.output import cell, when

READ_TIMEOUT = 45.0  # the server sends a keep-alive comment every 15 s
RETRY_SECONDS = (0.5, 1, 2, 5)  # between reconnections, then 5 s each


@dataclass
class Message:
    """One SSE message: its id, event name and data."""

    id: str | None
    event: str
    data: str


def parse(lines: Iterator[bytes]) -> Iterator[Message]:
    """SSE messages from the lines of a `text/event-stream` (the WHATWG rules; comments
    and unknown fields ignored)."""
    data: list[str] = []
    event, last_id = "message", None
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield Message(last_id, event, "\n".join(data))
            data, event = [], "message"
            continue
        if line.startswith(":"):
            continue  # a keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value


def follow(server: Server, token: str, args: argparse.Namespace) -> int:
    """Print the newest `--limit` events, then stream; returns only on a refusal."""
    query = {"limit": str(args.limit)}
    if args.app:
        query["app"] = args.app
    status, answer = call(server, token, "GET", "/v1/events?" + urllib.parse.urlencode(query))
    if status >= 400:
        return report_problem(status, answer)
    shown = list(reversed(answer.get("events") or []))
    for event in shown:
        _print(event, args.output)
    last = str(shown[-1]["id"]) if shown else "0"
    path = "/v1/events/stream" + (f"?app={args.app}" if args.app else "")
    failures = 0
    while True:
        try:
            for message in _messages(server, token, path, last):
                failures = 0
                if message.event != "event":
                    continue
                event = json.loads(message.data)
                _print(event, args.output)
                last = message.id or last
        except _Refused as exc:
            return report_problem(exc.status, exc.answer)
        except _NotFlotilla as exc:
            print(f"flotilla: {exc}", file=sys.stderr)
            return Exit.UNREACHABLE
        except (Unreachable, OSError, http.client.HTTPException, ValueError) as exc:
            if failures == 0:
                print(f"flotilla events: connection lost ({exc}); reconnecting", file=sys.stderr)
        delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
        failures += 1
        time.sleep(delay)


class _NotFlotilla(Exception):
    pass


class _Refused(Exception):
    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        super().__init__(status)
        self.status, self.answer = status, answer


def _messages(server: Server, token: str, path: str, last: str) -> Iterator[Message]:
    url = server.url
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--server {url!r} is not an http:// or https:// URL")
    request = urllib.request.Request(url.rstrip("/") + path)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "text/event-stream")
    request.add_header("Last-Event-ID", last)
    try:
        response = urllib.request.urlopen(request, timeout=READ_TIMEOUT, context=server.context())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read() or b"{}")
        except (ValueError, OSError):
            answer = {}
        if exc.code in (502, 503, 504):  # a server restarting: try again
            raise Unreachable(f"HTTP {exc.code}") from None
        raise _Refused(exc.code, answer if isinstance(answer, dict) else {}) from None
    except urllib.error.URLError as exc:
        raise Unreachable(f"cannot reach {url}: {exc.reason}") from None
    with response:
        if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            raise _NotFlotilla(f"{url} is not a Flotilla server (no event stream at {path})")
        yield from parse(iter(response.readline, b""))


def _print(event: dict[str, Any], output: str) -> None:
    if output == "json":
        print(json.dumps(event), flush=True)  # one object a line
        return
    where = event.get("app") or event.get("host") or "-"
    if event.get("app") and event.get("host"):
        where = f"{event['app']}@{event['host']}"
    line = f"{when(event.get('at'))}  {event.get('kind', ''):<24} {where:<20} "
    print(line + cell(event.get("message")), flush=True)
