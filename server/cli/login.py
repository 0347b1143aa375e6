"""`flotilla login` and `flotilla logout`: named contexts (a server URL and a token) in the
config file (server/cli/config.py owns the file and how a command picks its context).

`login` checks the token against the server before it saves anything (a token the server
refuses is not saved), writes the context, and makes it the current one. The token comes
from `--token`, `FLOTILLA_TOKEN`, or stdin (a prompt that does not echo on a terminal):
never from the command line when it can be avoided, since a flag shows in `ps`. No command
prints it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from typing import Any

from server.cli import api, config, output

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _context_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a context name: 1-63 characters of A-Z, a-z, 0-9, '.', '_', '-'"
        )
    return value


def add_commands(sub: Any) -> None:
    """Add `login` and `logout` to `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "login",
        help="save a server URL and token as a named context (the config file, 0600)",
        description="Save a server URL and a token as a context in the config file "
        "($FLOTILLA_CONFIG, default ~/.config/flotilla/config.toml) and make it the current "
        "one. The token is read from --token, FLOTILLA_TOKEN or stdin, and checked first.",
    )
    p.add_argument(
        "--context",
        type=_context_name,
        default="default",
        help="the context's name (default %(default)s)",
    )
    p.add_argument(
        "--server",
        default=None,
        help=f"server URL (env FLOTILLA_SERVER; default {config.DEFAULT_SERVER})",
    )
    p.add_argument(
        "--token", default=None, help="the token (env FLOTILLA_TOKEN; default: read from stdin)"
    )
    p.add_argument(
        "--ca",
        default=None,
        metavar="FILE",
        help="PEM CA certificate of an https:// server, saved with the context (env FLOTILLA_CA)",
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p = sub.add_parser("logout", help="remove a context (default: the current one)")
    p.add_argument("--context", type=_context_name, default=None)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    """Run `login` or `logout`; its exit code."""
    try:
        if args.command == "login":
            return _login(args)
        return _logout(args)
    except api.UsageError as exc:
        print(f"flotilla {args.command}: {exc}", file=sys.stderr)
        return api.Exit.USAGE
    except api.Unreachable as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return api.Exit.UNREACHABLE
    except (KeyboardInterrupt, EOFError):
        print(f"flotilla {args.command}: interrupted", file=sys.stderr)
        return api.Exit.INTERRUPTED


def _login(args: argparse.Namespace) -> int:
    path = config.config_path()
    data = config.load(path)  # a broken file is said before a token is asked for
    server = args.server or os.environ.get("FLOTILLA_SERVER") or config.DEFAULT_SERVER
    token = args.token or os.environ.get("FLOTILLA_TOKEN") or _read_token()
    if not token:
        raise api.UsageError("no token given (--token, FLOTILLA_TOKEN or stdin)")
    ca = args.ca or os.environ.get("FLOTILLA_CA")
    status, answer = api.call(api.Server(server, ca), token, "GET", "/v1/apps")
    if status != 200:
        return api.report_problem(status, answer, "login refused: ")
    saved = {"server": server, "token": token} | ({"ca": ca} if ca else {})
    data.setdefault("contexts", {})[args.context] = saved
    data["current"] = args.context
    try:
        config.save(path, data)
    except OSError as exc:
        raise api.UsageError(f"cannot write the config file {path}: {exc.strerror}") from None
    if args.output == "json":
        output.emit_json({"context": args.context, "server": server, "config": str(path)})
    else:
        print(f"Logged in to {server} as context {args.context!r} (saved in {path})")
    return 0


def _read_token() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("token: ").strip()
    return sys.stdin.readline().strip()


def _logout(args: argparse.Namespace) -> int:
    path = config.config_path()
    data = config.load(path)
    name = args.context or os.environ.get("FLOTILLA_CONTEXT") or data.get("current")
    contexts = data.get("contexts", {})
    if not name or name not in contexts:
        raise api.UsageError(f"no context {name!r} in {path}" if name else "no current context")
    del contexts[name]
    if data.get("current") == name:
        data.pop("current")
    config.save(path, data)
    if args.output == "json":
        output.emit_json({"context": name, "removed": True})
    else:
        print(f"Removed context {name!r} from {path}")
    return 0
