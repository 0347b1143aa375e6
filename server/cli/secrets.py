"""`flotilla secret set|list|rm` (through the REST API) and `flotilla secret rotate-key`
and `new-key` (server side: against the database and the data dir, like `flotilla db`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.parse
from collections.abc import Callable
from typing import Any

from server.cli import api, client, config, output
from server.config import Settings

ServerFlags = Callable[..., None]

ACTIONS = {
    "set": "set an app's secret to the value read from stdin (a new version)",
    "list": "list an app's secrets: names and versions, never values",
    "rm": "remove an app's secret (releases that use it keep their version)",
    "rotate-key": "re-encrypt every secret with a new key (run where the server's data is)",
    "new-key": "print a fresh key for FLOTILLA_SECRET_KEY",
}


def add_commands(sub: Any, server_flags: ServerFlags) -> None:
    """Add `flotilla secret ACTION` to `sub`; `server_flags` adds --data-dir/--database-url."""
    p = sub.add_parser("secret", help="manage apps' secrets")
    actions = p.add_subparsers(dest="secret_command", required=True, metavar="ACTION")
    for name, help_text in ACTIONS.items():
        a = actions.add_parser(name, help=help_text)
        if name in ("set", "list", "rm"):
            config.add_flags(a)
            a.add_argument("app", type=api.app_name)
        if name in ("set", "rm"):
            a.add_argument("name", help="the secret's name: an environment variable name")
        if name == "rotate-key":
            server_flags(a, listen=False)


def run(args: argparse.Namespace, settings_from: Callable[[argparse.Namespace], Settings]) -> int:
    """Run one `flotilla secret` action; return the exit code."""
    if args.secret_command == "new-key":
        from server.secret_box import new_key

        print(new_key())
        return 0
    if args.secret_command == "rotate-key":
        return _rotate_key(settings_from(args))
    app = urllib.parse.quote(args.app, safe="")
    try:
        args.server, token = client.connect(args)
        if args.secret_command == "list":
            status, answer = api.call(api.server_of(args), token, "GET", f"/v1/apps/{app}/secrets")
            if status >= 400:
                return api.report_problem(status, answer)
            if args.output == "json":
                output.emit_json(answer)
                return 0
            rows = [
                [x["name"], x["version"], output.when(x.get("updated_at")), x.get("updated_by")]
                for x in answer["secrets"]
            ]
            output.table(["NAME", "VERSION", "UPDATED", "BY"], rows, f"{args.app} has no secrets")
            return 0
        path = f"/v1/apps/{app}/secrets/{urllib.parse.quote(args.name, safe='')}"
        if args.secret_command == "rm":
            status, answer = api.call(api.server_of(args), token, "DELETE", path)
            if status >= 400:
                return api.report_problem(status, answer)
            if args.output == "json":
                output.emit_json({"app": args.app, "name": args.name, "removed": True})
                return 0
            print(f"secret {args.name} of {args.app} removed")
            return 0
        value = _read_value()
        if not value:
            print("flotilla secret set: no value on stdin", file=sys.stderr)
            return 2
        status, answer = api.call(api.server_of(args), token, "PUT", path, {"value": value})
        if status >= 400:
            return api.report_problem(status, answer)
        if args.output == "json":
            output.emit_json(answer)
            return 0
        print(f"secret {args.name} of {args.app} set (version {answer['version']})")
        return 0
    except api.UsageError as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return api.Exit.USAGE
    except api.Unreachable as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return api.Exit.UNREACHABLE


def _read_value() -> str:
    """The value from stdin, without the one line end `echo` or a file adds."""
    if sys.stdin.isatty():
        print("enter the value, then Ctrl-D:", file=sys.stderr)
    value = sys.stdin.read()
    if value.endswith("\r\n"):
        return value[:-2]
    return value.removesuffix("\n")


def _rotate_key(settings: Settings) -> int:
    from server.db import migrate
    from server.secret_box import SecretKeyError

    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade_or_explain(settings.effective_database_url)
    try:
        count = asyncio.run(rotate_key(settings))
    except SecretKeyError as exc:
        print(f"flotilla secret rotate-key: {exc}", file=sys.stderr)
        return 1
    where = "FLOTILLA_SECRET_KEY's first key" if settings.secret_key else "the new key"
    print(f"re-encrypted {count} secret version(s) with {where}")
    return 0


async def rotate_key(settings: Settings) -> int:
    """Re-encrypt every stored secret version with a new key; the number re-encrypted.

    With the key file: the new key goes to secret.key.next first (a rotation stopped before
    resumes with it), every version is re-encrypted, then it replaces secret.key. With
    FLOTILLA_SECRET_KEY: re-encrypted with its first key."""
    from server.db import secrets as rows
    from server.db.session import create_engine, create_sessions
    from server.secret_box import KEY_FILE, NEXT_KEY_FILE, SecretBox, new_key, write_key_file

    box = SecretBox(settings.data_dir, settings.secret_key)
    nxt = settings.data_dir / NEXT_KEY_FILE
    if not box.from_env and not nxt.exists():  # else: resume the rotation that stopped
        box.load(create=False)  # there must be a key to rotate from
        write_key_file(nxt, new_key())
    box.load(create=False)
    engine = create_engine(settings.effective_database_url)
    done = 0
    try:
        sessions = create_sessions(engine)
        for _ in range(5):  # again, for versions a running server added meanwhile
            changed = 0
            async with sessions.begin() as session:
                for row_id, token in await rows.all_versions(session):
                    if not box.opens_with_first(token):
                        await rows.set_ciphertext(session, row_id, box.rotate(token))
                        changed += 1
            done += changed
            if not changed:
                break
    finally:
        await engine.dispose()
    if not box.from_env:
        nxt.replace(settings.data_dir / KEY_FILE)
    return done
