"""The client's one HTTP call to the REST API, and what the command line makes of its faults.

Every client command goes through `call`: a server that cannot be reached, or that does not
answer as a Flotilla server would (no JSON object), is an `Unreachable` (exit 5), never a
traceback. Exit codes are named here once; README.md has their table. An https:// server
is verified with `--ca` (FLOTILLA_CA) or the system's CAs (`Server`); a certificate that
cannot be verified is an `Unreachable` that says to pass --ca.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from agent.tls import TlsError, client_context


class Exit(IntEnum):
    """The exit codes of the client commands (README: "Exit codes")."""

    OK = 0
    FAILED = 1  # the deployment failed or was rolled back; a request refused for another reason
    USAGE = 2  # bad flags or input; a request the server refused as invalid (400, 422)
    TIMED_OUT = 3  # --wait ran out of time; the deployment goes on
    STOPPED = 4  # the deployment was cancelled or superseded
    UNREACHABLE = 5  # no Flotilla server answered, or it refused the credentials (401, 403)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells count it)


class Unreachable(Exception):
    """No Flotilla server answered: the address is wrong, it is down, or it is another kind
    of server."""


class UsageError(Exception):
    """Input the command cannot use (a file, a URL); said in one line, exit 2."""


@dataclass(frozen=True)
class Server:
    """Where the client commands call: the server's URL, and the CA file that vouches for
    an https:// server (None: the system's CAs)."""

    url: str
    ca: str | None = None

    def context(self) -> ssl.SSLContext | None:
        """The TLS context of an https:// call; None for http://. Raise UsageError if the CA
        file cannot be used."""
        if not self.url.startswith("https://"):
            return None
        try:
            return client_context(self.ca)
        except TlsError as exc:
            raise UsageError(str(exc)) from None


def server_of(args: argparse.Namespace) -> Server:
    """The server a command's flags name."""
    return Server(args.server, args.ca)


def call(
    server: Server,
    token: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, Any]]:
    """One request: (HTTP status, JSON object answered). Raise Unreachable if no Flotilla
    server answered (or its certificate is not one `server.ca` vouches for), UsageError if
    `server` is not an http(s) URL or its CA file cannot be used."""
    url = server.url
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--server {url!r} is not an http:// or https:// URL")
    context = server.context()
    if body is None and method == "POST":
        body = {}
    data = json.dumps(body).encode() if body is not None else None
    try:
        request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    except ValueError as exc:
        raise UsageError(f"--server {url!r}: {exc}") from None
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, _read(exc)
    except urllib.error.URLError as exc:
        raise Unreachable(f"cannot reach {url}: {_reason(exc.reason)}") from None
    except ssl.SSLError as exc:
        raise Unreachable(f"cannot reach {url}: {_reason(exc)}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # reset, timeout, garbage
        raise Unreachable(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise Unreachable(
            f"{url} is not a Flotilla server (HTTP {status} to {method} {path}, not a JSON "
            "object): check --server or FLOTILLA_SERVER"
        )
    return status, answer


def _reason(reason: object) -> str:
    """Why a connection failed; for a certificate the server's CA does not vouch for, what
    to do about it."""
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate: {reason.verify_message} (pass --ca FILE or set FLOTILLA_CA)"
    if isinstance(reason, ssl.SSLError):
        return f"TLS: {reason.reason or reason}"
    return str(reason)


def _read(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""


_APP = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # server/api/schemas/fields.DNS_LABEL


def app_name(value: str) -> str:
    """An app's name as a flag or argument: a lowercase DNS label (argparse's type)."""
    if not _APP.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an app name: 1-63 characters of a-z, 0-9 and '-'"
        )
    return value


def problem_exit(status: int) -> Exit:
    """The exit code of a request the server refused with `status`."""
    if status in (401, 403):
        return Exit.UNREACHABLE
    if status in (400, 422):
        return Exit.USAGE
    return Exit.FAILED


def report_problem(status: int, answer: dict[str, Any], prefix: str = "") -> Exit:
    """Print a problem+json answer (its detail and the fields at fault) to stderr; its exit."""
    detail = answer.get("detail") or answer.get("title") or f"HTTP {status}"
    if status == 401:
        detail = f"the server refused the token: {detail}"
    print(f"flotilla: {prefix}{detail}", file=sys.stderr)
    for err in answer.get("errors") or []:
        if isinstance(err, dict):
            print(f"  {prefix}{err.get('field')}: {err.get('message')}", file=sys.stderr)
    return problem_exit(status)
