"""Admin commands: `flotilla token create|list|revoke` and `flotilla host
add|list|rotate-token|cordon|uncordon|drain|rm`. They talk to the REST API (scope admin)
with `--server` and `--token` (env FLOTILLA_SERVER, FLOTILLA_TOKEN) and `--ca`, like every
client command.

`flotilla host add NAME --data-dir DIR` (or `--database-url URL`) still registers a host
directly in the server's database, for a first host before any server runs; `main.py` does
that part (see `local`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from server.cli import api, client, config, output, show

COMMANDS = {
    "token": "manage API tokens: create, list, revoke (scope admin)",
    "host": "manage hosts: add, list, rotate-token, cordon, uncordon, drain, rm "
    "(scope admin; list: read)",
    "app": "manage apps: rm (scope admin)",
}
_DURATION = re.compile(r"([0-9]+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: str) -> int:
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{value!r}: seconds, or a number with s, m, h or d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _connection(p: argparse.ArgumentParser) -> None:
    config.add_flags(p)  # --server, --token, --context, -o


def add_commands(sub: Any) -> None:
    """Add `token` and `host` with their actions to `sub` (argparse subparsers)."""
    p = sub.add_parser("token", help=COMMANDS["token"])
    actions = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    a = actions.add_parser("create", help="create a token and print it (shown once)")
    a.add_argument("name", help="1-63 characters of A-Z, a-z, 0-9, '.', '_', '-'")
    a.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=("read", "rollback", "deploy", "admin"),
        help="read, rollback, deploy or admin; repeatable",
    )
    a.add_argument("--app", action="append", help="confine the token to this app; repeatable")
    a.add_argument(
        "--expires-in",
        type=_duration,
        metavar="DURATION",
        help="expire after this long: seconds, or 30m, 12h, 90d (default: never)",
    )
    _connection(a)
    _connection(actions.add_parser("list", help="list tokens (never the tokens themselves)"))
    r = actions.add_parser("revoke", help="revoke a token: refused from now on")
    r.add_argument("name")
    _connection(r)

    p = sub.add_parser("host", help=COMMANDS["host"])
    actions = p.add_subparsers(dest="host_command", required=True, metavar="ACTION")
    a = actions.add_parser("add", help="register a host and print its token (shown once)")
    a.add_argument("name", help="host name: a lowercase DNS label")
    a.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="a label, repeatable"
    )
    _connection(a)
    a.add_argument(
        "--data-dir",
        default=None,
        help="register directly in this data dir's database instead (no server needed)",
    )
    a.add_argument(
        "--database-url",
        default=None,
        help="register directly in this database instead (no server needed)",
    )
    _connection(actions.add_parser("list", help="list hosts and their agents' connections"))
    r = actions.add_parser("rotate-token", help="give a host a new token; cuts its agent off")
    r.add_argument("name")
    _connection(r)
    for action, what in _LIFECYCLE.items():
        r = actions.add_parser(action, help=what)
        r.add_argument("name")
        _connection(r)
    r = actions.add_parser(
        "rm", help="remove a drained host (or one no app is assigned to); cuts its agent off"
    )
    r.add_argument("name")
    r.add_argument(
        "--force",
        action="store_true",
        help="remove it even if apps are still assigned to it (their containers keep running)",
    )
    _connection(r)
    _app_commands(sub)


def _app_commands(sub: Any) -> None:
    p = sub.add_parser("app", help=COMMANDS["app"])
    actions = p.add_subparsers(dest="app_command", required=True, metavar="ACTION")
    r = actions.add_parser(
        "rm",
        help="stop and remove an app's containers on every host; its history stays",
    )
    r.add_argument("name", type=api.app_name)
    r.add_argument(
        "--volumes",
        action="store_true",
        help="also remove its named volumes on the hosts that ran it (kept by default)",
    )
    _connection(r)


_LIFECYCLE = {
    "cordon": "no new deployment targets the host; what runs there stays",
    "uncordon": "new deployments target the host again",
    "drain": "cordon the host and stop and remove every app's containers there",
}


def local(args: argparse.Namespace) -> bool:
    """Is this `host add` to write the database directly (`--data-dir` or `--database-url`
    given)? Then the data dir is made explicit for the server's Settings."""
    if args.command != "host" or args.host_command != "add":
        return False
    if args.data_dir is None and args.database_url is None:
        return False
    if args.data_dir is None:
        args.data_dir = os.environ.get("FLOTILLA_DATA_DIR", ".flotilla")
    args.database_url = args.database_url or ""
    return True


def run(args: argparse.Namespace) -> int:
    """Run one admin command against the server; return the exit code."""
    try:
        args.server, token = client.connect(args)
        if args.command == "token":
            return _token(args, token)
        if args.command == "app":
            return _app(args, token)
        return _host(args, token)
    except api.UsageError as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return api.Exit.USAGE
    except api.Unreachable as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return api.Exit.UNREACHABLE


def _app(args: argparse.Namespace, token: str) -> int:
    path = f"/v1/apps/{args.name}" + ("?volumes=true" if args.volumes else "")
    status, answer = api.call(api.server_of(args), token, "DELETE", path)
    if status != 200:
        return api.report_problem(status, answer)
    if args.output == "json":
        output.emit_json(answer)
        return 0
    hosts = ", ".join(answer["removed_from"]) or "no host"
    print(f"Removed app {args.name!r} from {hosts}; its releases and history stay")
    volumes = answer.get("volumes")
    if volumes is not None:
        names = ", ".join(volumes["names"]) or "none named"
        where = ", ".join(volumes["hosts"]) or "no host"
        print(f"Its volumes ({names}) are removed on {where} once its containers are gone")
    return 0


def _token(args: argparse.Namespace, token: str) -> int:
    action = args.token_command
    if action == "create":
        body: dict[str, Any] = {"name": args.name, "scopes": args.scope}
        if args.app:
            body["apps"] = args.app
        if args.expires_in is not None:
            body["expires_in"] = args.expires_in
        status, answer = api.call(api.server_of(args), token, "POST", "/v1/tokens", body)
        if status != 201:
            return api.report_problem(status, answer)
        if args.output == "json":
            output.emit_json(answer)  # the token too: a script asked for it
            return 0
        apps = ", ".join(answer["apps"]) if answer["apps"] else "every app"
        expires = answer["expires_at"] or "never"
        print(
            f"Created token {args.name!r}: scopes {', '.join(answer['scopes'])}; {apps}; ", end=""
        )
        print(f"expires {expires}. The token (shown once):")
        print(answer["token"])
        return 0
    if action == "list":
        status, answer = api.call(api.server_of(args), token, "GET", "/v1/tokens")
        if status != 200:
            return api.report_problem(status, answer)
        if args.output == "json":
            output.emit_json(answer)
            return 0
        rows = [
            [
                t["name"],
                ",".join(t["scopes"]),
                ",".join(t["apps"]) if t["apps"] else "*",
                output.when(t["created_at"]),
                output.when(t["last_used_at"]),
                (t["expires_at"] or "never")[:19] + (" (expired)" if t["expired"] else ""),
            ]
            for t in answer["tokens"]
        ]
        output.table(["NAME", "SCOPES", "APPS", "CREATED", "LAST USED", "EXPIRES"], rows)
        return 0
    status, answer = api.call(api.server_of(args), token, "DELETE", f"/v1/tokens/{args.name}")
    if status != 204:
        return api.report_problem(status, answer)
    _done(args, {"revoked": args.name}, f"Revoked token {args.name!r}")
    return 0


def _host(args: argparse.Namespace, token: str) -> int:
    action = args.host_command
    if action == "add":
        labels = {}
        for item in args.label:
            key, sep, value = item.partition("=")
            if not sep or not key:
                print(f"flotilla host add: --label {item!r} must be KEY=VALUE", file=sys.stderr)
                return 2
            labels[key] = value
        body = {"name": args.name, "labels": labels}
        status, answer = api.call(api.server_of(args), token, "POST", "/v1/hosts", body)
        if status != 201:
            return api.report_problem(status, answer)
        if args.output == "json":
            output.emit_json(answer)
            return 0
        print(f"Registered host {args.name!r}. Its token (shown once):")
        print(answer["token"])
        return 0
    if action == "list":
        status, answer = api.call(api.server_of(args), token, "GET", "/v1/hosts")
        if status != 200:
            return api.report_problem(status, answer)
        if args.output == "json":
            output.emit_json(answer)
        else:
            show.print_hosts(answer["hosts"])
        return 0
    if action == "rotate-token":
        path = f"/v1/hosts/{args.name}/token"
        status, answer = api.call(api.server_of(args), token, "POST", path)
        if status != 201:
            return api.report_problem(status, answer)
        if args.output == "json":
            output.emit_json(answer)
            return 0
        print(f"New token for host {args.name!r}; its agent was disconnected. (shown once):")
        print(answer["token"])
        return 0
    if action in _LIFECYCLE:
        status, answer = api.call(
            api.server_of(args), token, "POST", f"/v1/hosts/{args.name}/{action}"
        )
        if status != 200:
            return api.report_problem(status, answer)
        if action == "drain":
            removed = ", ".join(answer["removed"]) or "no app"
            print(f"Drained host {args.name!r} (cordoned); removed {removed}")
        else:
            print(f"{action.capitalize()}ed host {args.name!r}")
        return 0
    path = f"/v1/hosts/{args.name}" + ("?force=true" if args.force else "")
    status, answer = api.call(api.server_of(args), token, "DELETE", path)
    if status != 204:
        return api.report_problem(status, answer)
    _done(args, {"removed": args.name}, f"Removed host {args.name!r}")
    return 0


def _done(args: argparse.Namespace, value: dict[str, Any], text: str) -> None:
    """Say what a command without an answer's body did: a line, or JSON for `-o json`."""
    if args.output == "json":
        output.emit_json(value)
    else:
        print(text)
