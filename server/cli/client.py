"""Client commands (`flotilla deploy`, `flotilla status`, ...): they talk to the REST API only.

Each exits with one of server/cli/api.Exit's codes and never prints a traceback: a server
that cannot be reached or is no Flotilla server, a refused token, bad input and Ctrl-C each
get one line and their own code (README: "Exit codes").
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import uuid
from typing import Any

from server.cli import app_logs, config, show
from server.cli import deploy as deploy_cmd
from server.cli import events as events_cmd
from server.cli.api import Exit, Unreachable, UsageError, app_name, call, report_problem, server_of
from server.cli.wait import LONG_POLL_SECONDS, Target, follow

__all__ = ["LONG_POLL_SECONDS", "add_commands", "run"]  # LONG_POLL_SECONDS: wait.py's

COMMANDS = {
    "deploy": "deploy an app: change only what the flags name (creates a new release)",
    "rollback": "roll an app back (default: to the release that served before the current one)",
    "diff": "show what changed between two releases of an app",
    "status": "what runs where: an app's hosts, with release, state and ports",
    "apps": "list apps and their current releases",
    "deployment": "show a deployment and its hosts",
    "history": "list an app's deployments, newest first",
    "releases": "list an app's releases and their outcomes",
    "hosts": "list hosts and whether their agents are connected",
    "logs": "print the output of an app's containers, through the agents; --follow streams",
    "events": "show what happened (deployments, hosts, drift); --follow streams",
    "pause": "pause a deployment (no new batch starts)",
    "resume": "resume a paused deployment",
    "promote": "promote a deployment's canaries to the rest of the hosts",
    "cancel": "cancel a deployment after its current batch (no rollback)",
}
HISTORY_LIMIT = 20
EVENTS_LIMIT = 20


def add_commands(sub: Any) -> None:
    """Add a subcommand, with its flags, for each of COMMANDS to `sub` (argparse subparsers)."""
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        config.add_flags(p)
        if name == "deploy":
            deploy_cmd.add_arguments(p)
        if name == "rollback":
            p.add_argument("app", type=app_name)
            p.add_argument(
                "--to", "--release", dest="release", type=int, help="release number to go to"
            )
            p.add_argument("--reason", help="why, recorded with the rollback")
            p.add_argument("--force", action="store_true", help="even to a release marked bad")
            p.add_argument(
                "--idempotency-key", help="repeat-safe key (default: a new one per command)"
            )
        if name in ("deploy", "rollback"):
            p.add_argument(
                "--wait",
                action="store_true",
                help="wait until the deployment (and an automatic rollback) ends; the exit "
                "code says how it ended",
            )
            p.add_argument(
                "--timeout",
                type=float,
                default=600,
                help="seconds to --wait (default %(default)s); past them the command exits 3 and the deployment goes on",
            )
        if name == "diff":
            p.add_argument("app", type=app_name)
            p.add_argument("a", nargs="?", type=int, metavar="A", help="from release A")
            p.add_argument("b", nargs="?", type=int, metavar="B", help="to release B")
        if name == "status":
            p.add_argument(
                "target",
                type=show.app_or_id,
                metavar="APP",
                help="the app; a number is taken as a deployment id, as `flotilla deployment "
                "ID` (for compatibility with older versions)",
            )
        if name in ("deployment", "pause", "resume", "promote", "cancel"):
            p.add_argument("deployment", type=show.deployment_id, metavar="ID")
        if name in ("history", "releases"):
            p.add_argument("app", type=app_name)
        if name in ("history", "events"):
            default = HISTORY_LIMIT if name == "history" else EVENTS_LIMIT
            p.add_argument(
                "--limit",
                type=show.limit,
                default=default,
                help="at most N, 1-1000 (default %(default)s)",
            )
        if name == "logs":
            app_logs.add_arguments(p)
        if name == "events":
            p.add_argument("--app", type=app_name, help="only this app's events")
            p.add_argument(
                "--follow",
                "-f",
                action="store_true",
                help="then stream new events as they happen, until Ctrl-C",
            )


def run(args: argparse.Namespace) -> int:
    """Run one client command against the server; return the exit code."""
    try:
        args.server, token = connect(args)
        return _run(args, token)
    except UsageError as exc:
        print(f"flotilla {args.command}: {exc}", file=sys.stderr)
        return Exit.USAGE
    except Unreachable as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return Exit.UNREACHABLE
    except KeyboardInterrupt:
        print("flotilla: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED


def _run(args: argparse.Namespace, token: str) -> int:
    if args.command == "deploy":
        status, answer = deploy_cmd.deploy(server_of(args), token, args)
        prefix = f"{args.file}: " if args.file is not None and status == 422 else ""
        if status >= 400:
            return report_problem(status, answer, prefix)
        if args.dry_run:
            if args.output == "json":
                print(json.dumps(answer, indent=2))
            else:
                deploy_cmd.print_dry_run(answer)
            return Exit.OK
        return _started(args, token, answer)
    if args.command == "rollback":
        body: dict[str, Any] = {}
        if args.release is not None:
            body["release"] = args.release
        if args.reason:
            body["reason"] = args.reason
        if args.force:
            body["force"] = True
        headers = {"Idempotency-Key": args.idempotency_key or f"cli-{uuid.uuid4()}"}
        path = f"/v1/apps/{args.app}/rollback"
        status, answer = call(server_of(args), token, "POST", path, body, headers)
        if status >= 400:
            return report_problem(status, answer)
        return _started(args, token, answer)
    if args.command == "diff":
        return deploy_cmd.diff(server_of(args), token, args)
    if args.command == "logs":
        return app_logs.run(server_of(args), token, args)
    if args.command == "events" and args.follow:
        return events_cmd.follow(server_of(args), token, args)
    return show.run(args, token)


def _started(args: argparse.Namespace, token: str, answer: dict[str, Any]) -> int:
    """Report a new deployment; with --wait, follow it to its end."""
    if args.output == "json":
        if args.wait:
            return _wait_json(args, token, answer)
        print(json.dumps(answer, indent=2))
        return Exit.OK
    print(
        f"deployment {answer['id']}: {answer['kind']} of {answer['app']} to release "
        f"{answer['release']} {answer['status']}"
    )
    if not args.wait:
        return Exit.OK
    return follow(Target(server_of(args), token), answer, args.timeout)


def _wait_json(args: argparse.Namespace, token: str, answer: dict[str, Any]) -> int:
    """--wait with -o json: the lines for people are left out (the evidence, and a plain
    line per change of the deployment, go to stderr); stdout gets one object, the exit code
    and the deployment as it ended."""
    with contextlib.redirect_stdout(io.StringIO()):
        code = follow(Target(server_of(args), token), answer, args.timeout, sys.stderr)
    final = answer
    with contextlib.suppress(Unreachable):
        status, body = call(server_of(args), token, "GET", f"/v1/deployments/{answer['id']}")
        final = body if status == 200 else answer
    print(json.dumps({"exit_code": int(code), "deployment": final}, indent=2))
    return code


def connect(args: argparse.Namespace) -> tuple[str, str]:
    """The server and token a command uses (server/cli/config.py); UsageError without a
    token."""
    where = config.resolve(args)
    args.ca = where.ca  # for server_of(args)
    if not where.token:
        raise UsageError(
            "no token: pass --token, set FLOTILLA_TOKEN, or save one with `flotilla login`"
        )
    return where.server, where.token


def default_token() -> str | None:
    """The admin token `flotilla dev`/`server` wrote into the data dir, if readable here."""
    return config.default_token()
