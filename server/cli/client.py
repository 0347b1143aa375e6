"""Client commands (`flotilla deploy`, `flotilla status`): they talk to the REST API only."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from server.states import TERMINAL, DeploymentStatus

# The server answers a long poll after this long at most (MAX_WAIT_SECONDS of
# GET /v1/deployments/{id}?wait=): a longer --timeout polls again until it has passed.
LONG_POLL_SECONDS = 600.0

COMMANDS = {
    "deploy": "deploy an image of an app (creates a new release)",
    "rollback": "roll an app back (default: to the last release that succeeded before)",
    "status": "show a deployment",
    "history": "list an app's deployments, newest first",
    "releases": "list an app's releases and their outcomes",
    "hosts": "list hosts and whether their agents are connected",
    "events": "show the audit log",
    "pause": "pause a deployment (no new batch starts)",
    "resume": "resume a paused deployment",
    "promote": "promote a deployment's canaries to the rest of the hosts",
    "cancel": "cancel a deployment after its current batch (no rollback)",
}


def add_commands(sub: Any) -> None:
    """Add a subcommand, with its flags, for each of COMMANDS to `sub` (argparse subparsers)."""
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--server",
            default=os.environ.get("FLOTILLA_SERVER", "http://127.0.0.1:8700"),
            help="server URL (env FLOTILLA_SERVER; default %(default)s)",
        )
        p.add_argument(
            "--token",
            default=os.environ.get("FLOTILLA_TOKEN"),
            help="API token (env FLOTILLA_TOKEN; default: .flotilla/admin.token if readable)",
        )
        if name == "deploy":
            p.add_argument("app")
            p.add_argument("image")
            p.add_argument(
                "--port",
                action="append",
                default=[],
                metavar="CONTAINER[:HOST]",
                help="publish a container port on 127.0.0.1 (host 0 or absent: ephemeral)",
            )
            p.add_argument("--message", help="why: a commit, a ticket")
            p.add_argument("--idempotency-key", help="repeat-safe key for retries")
        if name == "rollback":
            p.add_argument("app")
            p.add_argument("--release", type=int, help="release number to go back to")
            p.add_argument("--reason", help="why, for the audit log")
        if name in ("deploy", "rollback"):
            p.add_argument(
                "--wait",
                action="store_true",
                help="wait until the deployment ends; exit 0 only if it succeeded",
            )
            p.add_argument("--timeout", type=float, default=600, help="seconds to --wait")
        if name in ("status", "pause", "resume", "promote", "cancel"):
            p.add_argument("deployment", type=int)
        if name in ("history", "releases"):
            p.add_argument("app")
        if name == "events":
            p.add_argument("--app")


def run(args: argparse.Namespace) -> int:
    """Run one client command against the server; return the exit code."""
    token = args.token or _default_token()
    if not token:
        print("flotilla: no token: pass --token or set FLOTILLA_TOKEN", file=sys.stderr)
        return 2
    try:
        if args.command == "deploy":
            return _deploy(args, token)
        if args.command == "rollback":
            body: dict[str, Any] = {}
            if args.release is not None:
                body["release"] = args.release
            if args.reason:
                body["reason"] = args.reason
            status, answer = _call(
                args.server, token, "POST", f"/v1/apps/{args.app}/rollback", body
            )
            return _started(args, token, status, answer)
        method, path = _route(args)
        status, answer = _call(args.server, token, method, path)
        if status >= 400:
            return _problem(answer)
        print(json.dumps(answer, indent=2))
        return 0
    except urllib.error.URLError as exc:
        print(f"flotilla: cannot reach {args.server}: {exc.reason}", file=sys.stderr)
        return 1


def _route(args: argparse.Namespace) -> tuple[str, str]:
    if args.command == "status":
        return "GET", f"/v1/deployments/{args.deployment}"
    if args.command in ("pause", "resume", "promote", "cancel"):
        return "POST", f"/v1/deployments/{args.deployment}/{args.command}"
    if args.command == "history":
        return "GET", f"/v1/deployments?app={args.app}"
    if args.command == "releases":
        return "GET", f"/v1/apps/{args.app}/releases"
    if args.command == "hosts":
        return "GET", "/v1/hosts"
    return "GET", "/v1/events" + (f"?app={args.app}" if args.app else "")


def _problem(answer: Any) -> int:
    detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
    print(f"flotilla: {detail}", file=sys.stderr)
    for err in answer.get("errors", []) if isinstance(answer, dict) else []:
        print(f"  {err['field']}: {err['message']}", file=sys.stderr)
    return 1


def _started(args: argparse.Namespace, token: str, status: int, answer: Any) -> int:
    """Report a new deployment; with --wait, follow it to its end."""
    if status >= 400:
        return _problem(answer)
    print(
        f"deployment {answer['id']}: {answer['kind']} of {answer['app']} to release "
        f"{answer['release']} {answer['status']}"
    )
    if not args.wait:
        return 0
    deployment_id = answer["id"]
    deadline = time.monotonic() + args.timeout
    while True:
        wait = min(LONG_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
        path = f"/v1/deployments/{deployment_id}?wait={wait:.3f}"
        status, answer = _call(args.server, token, "GET", path, timeout=wait + 30)
        if status >= 400:
            return _problem(answer)
        if answer.get("status") in TERMINAL or time.monotonic() >= deadline:
            break
    print(f"deployment {deployment_id}: {answer['status']}")
    if answer.get("error"):
        print(f"  {answer['error']}", file=sys.stderr)
    return 0 if answer.get("status") == DeploymentStatus.SUCCEEDED else 1


def _deploy(args: argparse.Namespace, token: str) -> int:
    ports = []
    for item in args.port:
        container, _, host = item.partition(":")
        ports.append({"container": int(container), "host": int(host or 0)})
    body: dict[str, Any] = {"image": args.image, "ports": ports}
    if args.message:
        body["message"] = args.message
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    path = f"/v1/apps/{args.app}/deployments"
    status, answer = _call(args.server, token, "POST", path, body, headers)
    return _started(args, token, status, answer)


def _call(
    server: str,
    token: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, Any]]:
    if body is None and method == "POST":
        body = {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.rstrip("/") + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _default_token() -> str | None:
    path = Path(os.environ.get("FLOTILLA_DATA_DIR", ".flotilla")) / "admin.token"
    try:
        return path.read_text().strip()
    except OSError:
        return None
