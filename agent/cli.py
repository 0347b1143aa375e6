"""The agent's command line: the flags of `flotilla agent`, and the entry that runs an agent.

Everything about starting an agent lives in agent/: these flags (each from a flag, an env var
or a default), the check of what is missing, running until SIGINT or SIGTERM, and the agent
that `flotilla dev` runs inside the server's process. The `flotilla` command
(server/cli/main.py) only adds these flags to its `agent` subcommand and calls `run` or
`embedded`; this module never imports the server. Logging is configured by that entry point.

The heavy imports (Docker SDK, WebSocket client) wait until an agent starts, so that every
other `flotilla` command builds its parser without them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from agent.tls import TlsError, client_context, plain_to_elsewhere

DEFAULT_METRICS_LISTEN = "127.0.0.1:8701"
REQUIRED = ("server", "name", "token")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the agent's flags to `parser`; their defaults come from the environment."""
    env = os.environ.get
    parser.add_argument(
        "--server", default=env("FLOTILLA_SERVER"), help="server URL (env FLOTILLA_SERVER)"
    )
    parser.add_argument(
        "--name", default=env("FLOTILLA_HOST_NAME"), help="host name (env FLOTILLA_HOST_NAME)"
    )
    parser.add_argument(
        "--token", default=env("FLOTILLA_HOST_TOKEN"), help="host token (env FLOTILLA_HOST_TOKEN)"
    )
    parser.add_argument(
        "--docker-host",
        default=env("DOCKER_HOST"),
        help="Docker Engine URL (env DOCKER_HOST; default the local socket)",
    )
    parser.add_argument(
        "--metrics-listen",
        type=_listen,
        default=env("FLOTILLA_METRICS_LISTEN", DEFAULT_METRICS_LISTEN),
        help="HOST:PORT for the agent's /metrics and /healthz; 'off' to disable "
        "(env FLOTILLA_METRICS_LISTEN; default %(default)s)",
    )
    parser.add_argument(
        "--ca",
        default=env("FLOTILLA_CA"),
        metavar="FILE",
        help="PEM CA certificate that signed the server's certificate (an https:// server; "
        "env FLOTILLA_CA; default: the system's CAs)",
    )
    parser.add_argument(
        "--cert",
        default=env("FLOTILLA_AGENT_CERT"),
        metavar="FILE",
        help="PEM client certificate naming this host, for a server run with --agent-ca "
        "(env FLOTILLA_AGENT_CERT)",
    )
    parser.add_argument(
        "--key",
        default=env("FLOTILLA_AGENT_KEY"),
        metavar="FILE",
        help="the client certificate's PEM private key (env FLOTILLA_AGENT_KEY)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=env("FLOTILLA_INSECURE", "") not in ("", "0", "false"),
        help="allow a plain http:// or ws:// server that is not on a loopback address "
        "(env FLOTILLA_INSECURE=1; default: refused)",
    )
    parser.add_argument(
        "--secrets-dir",
        default=env("FLOTILLA_SECRETS_DIR", "/dev/shm/flotilla-secrets"),
        help="folder on a tmpfs for secrets deployed as files, bind-mounted read-only into "
        "their containers; the Docker Engine must see the same path "
        "(env FLOTILLA_SECRETS_DIR; default %(default)s)",
    )
    parser.add_argument(
        "--pull-timeout",
        type=_seconds,
        default=env("FLOTILLA_PULL_TIMEOUT", "300"),
        help="seconds an image pull may take before it fails (and is retried with a "
        "backoff); a pull never holds up the agent's other apps "
        "(env FLOTILLA_PULL_TIMEOUT; default %(default)s)",
    )


def _listen(value: str) -> str:
    """'off', or [HOST:]PORT with a port from 0 to 65535."""
    if value == "off":
        return value
    _, _, port = value.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT (a port 0-65535) or off")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{value!r}: must be more than 0 and at most 86400")
    return seconds


def run(args: argparse.Namespace) -> int:
    """Run one agent from parsed flags until SIGINT or SIGTERM; the process's exit code."""
    missing = [f"--{n}" for n in REQUIRED if not getattr(args, n)]
    if missing:
        print(f"flotilla agent: missing {', '.join(missing)} (or their env vars)", file=sys.stderr)
        return 2
    try:
        context = _tls(args)
    except TlsError as exc:
        print(f"flotilla agent: {exc}", file=sys.stderr)
        return 2
    from agent.endpoint import ListenError
    from agent.main import AgentSettings, running_agent

    settings = AgentSettings(
        server=args.server,
        name=args.name,
        token=args.token,
        docker_host=args.docker_host,
        metrics_listen=None if args.metrics_listen == "off" else args.metrics_listen,
        secrets_dir=args.secrets_dir,
        tls=context,
        pull_timeout=args.pull_timeout,
    )

    async def forever() -> None:
        async with running_agent(settings):
            await asyncio.Event().wait()

    try:
        return _run_until_signal(forever)
    except ListenError as exc:  # its port is taken: raised before anything else starts
        print(f"flotilla agent: {exc}", file=sys.stderr)
        return 1


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context for an https:// (wss://) server, None for a plain one; a plain one
    elsewhere than on a loopback address only with --insecure."""
    server = args.server
    if not server.startswith(("http://", "https://", "ws://", "wss://")):
        raise TlsError(f"--server {server!r} is not an http(s):// or ws(s):// URL")
    if not server.startswith(("https://", "wss://")):
        if args.ca or args.cert or args.key:
            raise TlsError(f"--ca, --cert and --key need an https:// server, not {server}")
        if plain_to_elsewhere(server) and not args.insecure:
            raise TlsError(
                f"refusing plain {server.split(':')[0]}:// to {server}, which is not a loopback "
                "address: the host token would cross the network readable. Use https:// "
                "(with --ca), or --insecure"
            )
        return None
    return client_context(args.ca, args.cert, args.key)


@contextlib.asynccontextmanager
async def embedded(
    server: str, name: str, token: str, docker_host: str | None
) -> AsyncIterator[None]:
    """An agent inside another process (`flotilla dev`): it serves no /metrics of its own."""
    from agent.main import AgentSettings, running_agent

    settings = AgentSettings(
        server=server, name=name, token=token, docker_host=docker_host, metrics_listen=None
    )
    async with running_agent(settings):
        yield


def _run_until_signal(factory: Callable[[], Awaitable[None]]) -> int:
    """Run a coroutine until SIGINT or SIGTERM, then cancel it cleanly and exit 0."""

    async def runner() -> None:
        task = asyncio.ensure_future(factory())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(runner())
    return 0
