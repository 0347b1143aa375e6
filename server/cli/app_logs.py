"""`flotilla logs APP [--host H] [--tail N] [--since T] [--follow]`: containers' output.

It reads `GET /v1/apps/{app}/logs` (newline-delimited JSON, server/api/logs.py) with urllib,
the transport of every other client command (server/cli/api.py), and prints each line as
`HOST REPLICA | line` (or each object as it came with `-o json`); a note of the server (a
host not connected, lines dropped) goes to stderr. It ends when the server ends the answer
(exit 0); Ctrl-C ends it quietly (exit 130, as shells count SIGINT).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from agent.log_protocol import MAX_LOG_TAIL
from server.cli import live
from server.cli.api import Exit, Server, Unreachable, UsageError, app_name, report_problem

READ_TIMEOUT = 45.0  # the server sends an empty line every 15 s while following


def tail(value: str) -> str:
    """`--tail`: a number of lines, 0-10000, or `all` (argparse's type)."""
    if value == "all" or (value.isdigit() and int(value) <= MAX_LOG_TAIL):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r}: a number of lines from 0 to {MAX_LOG_TAIL}, or all"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `flotilla logs`."""
    p.add_argument("app", type=app_name)
    p.add_argument("--host", type=app_name, help="only this host's containers")
    p.add_argument(
        "--tail", "-n", type=tail, help="the last N lines of each container (default: all)"
    )
    p.add_argument(
        "--since",
        help="only lines since then: a duration (10m, 1h30m), an RFC 3339 time "
        "(2026-12-06T14:00:00Z) or seconds since the epoch, as docker logs --since",
    )
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="then print new lines as they come, until Ctrl-C",
    )


def run(server: Server, token: str, args: argparse.Namespace) -> int:
    """Stream the app's logs to stdout; the exit code."""
    query = {"follow": "true" if args.follow else "false"}
    for name in ("host", "tail", "since"):
        value = getattr(args, name)
        if value is not None:
            query[name] = value
    path = f"/v1/apps/{args.app}/logs?" + urllib.parse.urlencode(query)
    try:
        return _stream(server, token, path, args.output)
    except KeyboardInterrupt:
        return Exit.INTERRUPTED  # Ctrl-C is how a --follow ends: quietly


def _stream(server: Server, token: str, path: str, output: str) -> int:
    url = server.url
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--server {url!r} is not an http:// or https:// URL")
    try:
        request = urllib.request.Request(url.rstrip("/") + path)
    except ValueError as exc:
        raise UsageError(f"--server {url!r}: {exc}") from None
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/x-ndjson")
    try:
        response = urllib.request.urlopen(request, timeout=READ_TIMEOUT, context=server.context())
    except urllib.error.HTTPError as exc:
        return report_problem(exc.code, _problem(exc))
    except urllib.error.URLError as exc:
        raise Unreachable(f"cannot reach {url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise Unreachable(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    with response:
        if not response.headers.get("Content-Type", "").startswith("application/x-ndjson"):
            raise Unreachable(f"{url} is not a Flotilla server (no log stream at {path})")
        try:
            for raw in iter(response.readline, b""):
                if raw.strip():
                    _print(raw, output)
        except BrokenPipeError:  # `flotilla logs APP | head`: the reader has had enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
            return Exit.OK
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"the log stream from {url} broke off: {exc}") from None
    return Exit.OK


def _problem(exc: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        answer = json.loads(exc.read() or b"{}")
    except (ValueError, OSError, http.client.HTTPException):
        answer = {}
    return answer if isinstance(answer, dict) else {}


def _print(raw: bytes, output: str) -> None:
    try:
        record = json.loads(raw)
    except ValueError:
        return  # not one of the server's objects: nothing to show
    if not isinstance(record, dict):
        return
    if output == "json":
        print(json.dumps(record), flush=True)
        return
    if "note" in record:
        note = live.printable(record["note"])  # an agent's words: no escape sequence
        print(f"flotilla logs: {record.get('host')}: {note}", file=sys.stderr, flush=True)
        return
    print(f"{record.get('host')} {record.get('replica')} | {record.get('line')}", flush=True)
