"""The `flotilla` command: builds one frozen Settings per process from flags, env and defaults.

This is the one place that imports both the server and the agent. Everything about running an
agent (its flags, their env vars and defaults, the run entry, the agent of `flotilla dev`)
lives in agent/cli.py, the only agent module imported here; the agent package never imports
the server.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import cli as agent_cli
from server.cli import flags
from server.cli.logs import configure_logging
from server.config import DEFAULT_LISTEN, Settings
from server.errors import DatabaseProblem, SettingsError

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("flotilla")

# why an address cannot be listened on: taken, not this machine's, a port below 1024 unprivileged
LISTEN_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
DEV_HOST = "local"
DEV_TOKEN_FILE = "dev-host.token"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flotilla")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _base_parser() -> tuple[argparse.ArgumentParser, Any]:
    """`flotilla` and its global flags, and the action its subcommands are added to."""
    parser = argparse.ArgumentParser(
        prog="flotilla", description="Deployment control plane for Docker hosts."
    )
    parser.add_argument("--version", action="version", version=f"flotilla {_version()}")
    parser.add_argument(
        "--log-level",
        default=flags.env("FLOTILLA_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (env FLOTILLA_LOG_LEVEL; default %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=flags.env("FLOTILLA_LOG_FORMAT", "text"),
        help="text, or json: one object per line with level, message and the ids involved "
        "(env FLOTILLA_LOG_FORMAT; default %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return parser, sub


def _agent_parser() -> argparse.ArgumentParser:
    """`flotilla agent` alone: an agent runs for months on every host, and the client
    commands' modules (tables, TOML, the API client) were a megabyte of its memory."""
    parser, sub = _base_parser()
    agent_cli.add_arguments(sub.add_parser("agent", help="run the agent of one host"))
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv`, past the global flags (None: none is)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--log-level", "--log-format"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and flag of `flotilla`, each flag with its env var and default."""
    from server.cli import admin, client, login
    from server.cli import secrets as secrets_cli

    parser, sub = _base_parser()
    p = sub.add_parser("server", help="run the control plane (REST API, agent hub, rollouts)")
    flags.server_flags(p)
    flags.tls_flags(p)

    p = sub.add_parser("agent", help="run the agent of one host")
    agent_cli.add_arguments(p)

    p = sub.add_parser("dev", help="server and one local agent in one process (SQLite)")
    flags.server_flags(p)
    p.add_argument(
        "--docker-host",
        default=flags.env("DOCKER_HOST"),
        help="Docker Engine URL (env DOCKER_HOST)",
    )
    p.add_argument(
        "--host-name", default=DEV_HOST, help="the local host's name (default %(default)s)"
    )

    admin.add_commands(sub)  # token, host

    p = sub.add_parser("db", help="database maintenance")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="run the Alembic migrations to the newest revision")
    flags.server_flags(up, listen=False)

    client.add_commands(sub)
    login.add_commands(sub)
    secrets_cli.add_commands(sub, flags.server_flags)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """The process's one frozen Settings, from parsed flags; raise SettingsError if invalid."""
    return Settings(
        listen=getattr(args, "listen", DEFAULT_LISTEN),
        data_dir=Path(args.data_dir),
        database_url=args.database_url or "",
        allow_internal_webhooks=bool(getattr(args, "allow_internal_webhooks", False)),
        secret_key=os.environ.get("FLOTILLA_SECRET_KEY", ""),  # env only: a flag shows in ps
        default_memory=getattr(args, "default_memory", "300m"),
        default_pids_limit=getattr(args, "default_pids_limit", 4096),
        allowed_registries=tuple(
            r.strip() for r in getattr(args, "allowed_registries", "").split(",") if r.strip()
        ),
        tls_cert=getattr(args, "tls_cert", ""),
        tls_key=getattr(args, "tls_key", ""),
        agent_ca=getattr(args, "agent_ca", ""),
        insecure=bool(getattr(args, "insecure", False)),
    ).validate()


def main(argv: Sequence[str] | None = None) -> int:
    """The `flotilla` entry point: run one command; return its exit code."""
    given = sys.argv[1:] if argv is None else list(argv)
    if _command(given) == "agent":
        args = _agent_parser().parse_args(given)
        configure_logging(args.log_level, args.log_format)
        return agent_cli.run(args)
    from server.cli import admin, client, login
    from server.cli import secrets as secrets_cli

    args = build_parser().parse_args(given)
    configure_logging(args.log_level, args.log_format)
    try:
        if args.command == "server":
            return _server(settings_from(args))
        if args.command == "dev":
            return _dev(settings_from(args), args)
        if args.command == "host" and admin.local(args):
            return _host_add(settings_from(args), args)
        if args.command in admin.COMMANDS:
            return admin.run(args)
        if args.command == "db":
            settings = settings_from(args)
            _migrate(settings)
            print("database is at the newest revision")
            return 0
        if args.command in ("login", "logout"):
            return login.run(args)
        if args.command == "secret":
            return secrets_cli.run(args, settings_from)
        return client.run(args)
    except SettingsError as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return 2
    except DatabaseProblem as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return 1


def _migrate(settings: Settings) -> None:
    from server.db import migrate

    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade_or_explain(settings.effective_database_url)


def _server(settings: Settings) -> int:
    from server.app import create_app
    from server.gc_tuning import between_rollouts, tune_for_server

    context = _tls_context(settings)
    _warn_insecure(settings)
    _migrate(settings)
    app = create_app(settings)
    app.cleanup_ctx.append(between_rollouts)
    tune_for_server()
    scheme = "https" if context is not None else "http"
    mutual = " (agents need a client certificate)" if settings.agent_ca else ""
    return _run_app(app, settings, context, f"serving on {scheme}://{settings.listen}{mutual}")


def _run_app(
    app: web.Application, settings: Settings, context: ssl.SSLContext | None, serving: str
) -> int:
    """Serve `app` on `--listen` until SIGINT or SIGTERM, logging `serving` once it listens;
    exit 0. An address that cannot be listened on (taken, not this machine's, not allowed) is
    one line and exit 1, as the other start errors (the app's startup has been undone then)."""
    from aiohttp import web

    try:
        web.run_app(
            app,
            host=settings.listen_host,
            port=settings.listen_port,
            ssl_context=context,
            print=lambda _: log.info("%s", serving),  # aiohttp's "Running on", once bound
            access_log=None,
            shutdown_timeout=10,
        )
    except OSError as exc:
        if not isinstance(exc, socket.gaierror) and exc.errno not in LISTEN_ERRORS:
            raise
        taken = exc.errno == errno.EADDRINUSE
        why = str(exc).rpartition(": ")[2] if exc.errno in LISTEN_ERRORS else exc.strerror
        print(
            f"flotilla: cannot listen on {settings.listen}: {why}; "
            + ("stop what uses it, or pick " if taken else "pick ")
            + "another address with --listen (env FLOTILLA_LISTEN)",
            file=sys.stderr,
        )
        return 1
    return 0


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context from its files, or None for plain HTTP; a file that cannot
    be used is a SettingsError (one line, exit 2), found before anything listens."""
    if not settings.tls:
        return None
    from agent.tls import TlsError, server_context

    try:
        return server_context(settings.tls_cert, settings.tls_key, settings.agent_ca or None)
    except TlsError as exc:
        raise SettingsError(str(exc)) from None


def _warn_insecure(settings: Settings) -> None:
    if settings.plain_elsewhere:  # validate() let it through: --insecure was given
        log.warning(
            "serving plain HTTP on %s, which is not a loopback address (--insecure): tokens "
            "and secrets cross the network readable unless a TLS proxy is in front",
            settings.listen,
        )


def _dev(settings: Settings, args: argparse.Namespace) -> int:
    from server.app import create_app

    _warn_insecure(settings)
    _migrate(settings)
    token = asyncio.run(_dev_host_token(settings, args.host_name))
    app = create_app(settings)

    async def agent_ctx(_: web.Application) -> AsyncIterator[None]:
        server = f"http://{settings.listen}"
        async with agent_cli.embedded(server, args.host_name, token, args.docker_host):
            yield

    app.cleanup_ctx.append(agent_ctx)
    serving = f"dev mode: server on http://{settings.listen} with local host {args.host_name!r}"
    return _run_app(app, settings, None, serving)


async def _dev_host_token(settings: Settings, name: str) -> str:
    """Register the local host once; keep its token in the data dir for the next start."""
    from server.db import store
    from server.db.session import create_engine, create_sessions

    path = settings.data_dir / DEV_TOKEN_FILE
    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessions(engine).begin() as session:
            token = path.read_text().strip() if path.exists() else ""
            known = await store.host_by_token(session, token) if token else None
            if known is not None and known.name == name:
                return token
            token = await store.set_host_token(session, name, {"role": "dev"})
    finally:
        await engine.dispose()
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def _host_add(settings: Settings, args: argparse.Namespace) -> int:
    import re

    from server.api.schemas.fields import DNS_LABEL

    if not re.fullmatch(DNS_LABEL, args.name):
        print(f"flotilla host add: {args.name!r} is not a lowercase DNS label", file=sys.stderr)
        return 2
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"flotilla host add: --label {item!r} must be KEY=VALUE", file=sys.stderr)
            return 2
        labels[key] = value
    _migrate(settings)
    from server.errors import DomainError

    try:
        token = asyncio.run(_add_host(settings, args.name, labels))
    except DomainError as exc:
        print(f"flotilla host add: {exc.message}", file=sys.stderr)
        return 1
    print(f"Registered host {args.name!r}. Its token (shown once):")
    print(token)
    return 0


async def _add_host(settings: Settings, name: str, labels: dict[str, str]) -> str:
    from server.db import store
    from server.db.session import create_engine, create_sessions

    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessions(engine).begin() as session:
            return await store.add_host(session, name, labels)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
