"""The server's command-line flags (`flotilla server`, `dev`, `db upgrade`, `secret`), each with
its environment variable and default, read where the flags are defined."""

from __future__ import annotations

import argparse
import os

from server.config import DEFAULT_DATA_DIR, DEFAULT_LISTEN


def env(name: str, default: str | None = None) -> str | None:
    """The environment variable `name`, or `default`."""
    return os.environ.get(name, default)


def flag_env(name: str) -> bool:
    """Is the environment variable `name` set to a true value (not empty, 0 or false)?"""
    return env(name, "") not in ("", "0", "false")


def tls_flags(parser: argparse.ArgumentParser) -> None:
    """The server's TLS flags."""
    parser.add_argument(
        "--tls-cert",
        default=env("FLOTILLA_TLS_CERT", ""),
        metavar="FILE",
        help="serve HTTPS (and WSS to agents) with this PEM certificate (chain) "
        "(env FLOTILLA_TLS_CERT; default: plain HTTP)",
    )
    parser.add_argument(
        "--tls-key",
        default=env("FLOTILLA_TLS_KEY", ""),
        metavar="FILE",
        help="the certificate's PEM private key (env FLOTILLA_TLS_KEY)",
    )
    parser.add_argument(
        "--agent-ca",
        default=env("FLOTILLA_AGENT_CA", ""),
        metavar="FILE",
        help="mutual TLS for agents: their socket needs a client certificate signed by this "
        "PEM CA and naming their host (CN or DNS name); REST callers need none "
        "(env FLOTILLA_AGENT_CA; default: off)",
    )


def server_flags(parser: argparse.ArgumentParser, listen: bool = True) -> None:
    """The flags of a command that opens the database (and, with `listen`, serves)."""
    if listen:
        parser.add_argument(
            "--listen",
            default=env("FLOTILLA_LISTEN", DEFAULT_LISTEN),
            help="address to serve on, HOST:PORT (env FLOTILLA_LISTEN; default %(default)s)",
        )
    parser.add_argument(
        "--data-dir",
        default=env("FLOTILLA_DATA_DIR", DEFAULT_DATA_DIR),
        help="folder for the SQLite file and admin.token (env FLOTILLA_DATA_DIR; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        default=env("FLOTILLA_DATABASE_URL", ""),
        help="sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DB "
        "(env FLOTILLA_DATABASE_URL; default: SQLite in the data dir)",
    )
    if listen:
        parser.add_argument(
            "--allow-internal-webhooks",
            action="store_true",
            default=flag_env("FLOTILLA_ALLOW_INTERNAL_WEBHOOKS"),
            help="accept webhook URLs that point at link-local or cloud metadata addresses "
            "(env FLOTILLA_ALLOW_INTERNAL_WEBHOOKS=1; default: refused)",
        )
        parser.add_argument(
            "--default-memory",
            default=env("FLOTILLA_DEFAULT_MEMORY", "300m"),
            help="memory limit of a container whose deployment sets none "
            "(env FLOTILLA_DEFAULT_MEMORY; default %(default)s)",
        )
        parser.add_argument(
            "--default-pids-limit",
            type=int,
            default=env("FLOTILLA_DEFAULT_PIDS_LIMIT", "4096"),  # argparse applies type=int
            help="process limit of a container whose deployment sets none "
            "(env FLOTILLA_DEFAULT_PIDS_LIMIT; default %(default)s)",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            default=flag_env("FLOTILLA_INSECURE"),
            help="serve plain HTTP on an address that is not loopback (behind a TLS-terminating "
            "proxy; env FLOTILLA_INSECURE=1; default: refused)",
        )
        parser.add_argument(
            "--allowed-registries",
            default=env("FLOTILLA_ALLOWED_REGISTRIES", ""),
            help="registries deployments may use, separated by commas (docker.io for images "
            "without one; env FLOTILLA_ALLOWED_REGISTRIES; default: any)",
        )
