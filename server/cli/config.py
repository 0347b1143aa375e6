"""Where the client commands connect: flags, env vars, the config file's contexts, defaults.

`flotilla login` saves a server URL and a token as a named context in the config file
(`$FLOTILLA_CONFIG`, else `$XDG_CONFIG_HOME/flotilla/config.toml`, else
`~/.config/flotilla/config.toml`; written 0600, in a 0700 folder it creates) and makes it the
current one. Each value is taken from the first that gives it:

- server: `--server`, `FLOTILLA_SERVER`, the context's `server`, `http://127.0.0.1:8700`;
- token: `--token`, `FLOTILLA_TOKEN`, the context's `token`, `.flotilla/admin.token`
  (in `$FLOTILLA_DATA_DIR`, what `flotilla dev` writes);
- the context: `--context`, `FLOTILLA_CONTEXT`, the file's `current`.

A token is never printed: not by `login`, not in an error.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from server.cli.api import UsageError

DEFAULT_SERVER = "http://127.0.0.1:8700"


def add_flags(p: argparse.ArgumentParser) -> None:
    """The connection flags every client command takes, and `-o`."""
    p.add_argument(
        "--server",
        default=None,
        help=f"server URL (env FLOTILLA_SERVER; else the context's; default {DEFAULT_SERVER})",
    )
    p.add_argument(
        "--token",
        default=None,
        help="API token (env FLOTILLA_TOKEN; else the context's; default: "
        ".flotilla/admin.token if readable)",
    )
    p.add_argument(
        "--ca",
        default=None,
        metavar="FILE",
        help="PEM CA certificate that signed an https:// server's certificate (env FLOTILLA_CA; "
        "else the context's; default: the system's CAs)",
    )
    p.add_argument(
        "--context",
        default=None,
        help="a context saved by `flotilla login` (env FLOTILLA_CONTEXT; default: the current one)",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people, json for scripts (default %(default)s)",
    )


def config_path() -> Path:
    """The config file: $FLOTILLA_CONFIG, else under $XDG_CONFIG_HOME or ~/.config."""
    explicit = os.environ.get("FLOTILLA_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "flotilla" / "config.toml"


def load(path: Path) -> dict[str, Any]:
    """The config file's content ({} if there is none); UsageError if it cannot be used."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"the config file {path} is not valid TOML: {exc}") from None
    contexts = data.get("contexts", {})
    if not isinstance(contexts, dict) or not all(
        isinstance(c, dict) and all(isinstance(v, str) for v in c.values())
        for c in contexts.values()
    ):
        raise UsageError(f"the config file {path}: [contexts.NAME] must hold strings")
    if not isinstance(data.get("current", ""), str):
        raise UsageError(f"the config file {path}: `current` must be a context's name")
    return data


def save(path: Path, data: dict[str, Any]) -> None:
    """Write the config file, 0600 from its first byte (its folder 0700 if made here)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        tomli_w.dump(data, out)
    os.chmod(temp, 0o600)  # an older file of that name kept its mode
    temp.replace(path)


@dataclass(frozen=True)
class Connection:
    """Where a client command sends its calls, and with which token."""

    server: str
    token: str | None
    context: str | None
    ca: str | None = None  # the CA file of an https:// server


def resolve(args: argparse.Namespace) -> Connection:
    """The server, token and context of a command (see the module's docstring)."""
    name = args.context or os.environ.get("FLOTILLA_CONTEXT") or None
    context: dict[str, str] = {}
    path = config_path()
    data = load(path)
    name = name or data.get("current") or None
    if name is not None:
        contexts = data.get("contexts", {})
        if name not in contexts:
            known = ", ".join(sorted(contexts)) or "none"
            raise UsageError(
                f"no context {name!r} in {path} (known: {known}); `flotilla login --context "
                f"{name} --server URL` saves one"
            )
        context = contexts[name]
    server = args.server or os.environ.get("FLOTILLA_SERVER") or context.get("server")
    token = args.token or os.environ.get("FLOTILLA_TOKEN") or context.get("token")
    ca = args.ca or os.environ.get("FLOTILLA_CA") or context.get("ca")
    return Connection(server or DEFAULT_SERVER, token or default_token(), name, ca)


def default_token() -> str | None:
    """The admin token `flotilla dev`/`server` wrote into the data dir, if readable here."""
    path = Path(os.environ.get("FLOTILLA_DATA_DIR", ".flotilla")) / "admin.token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
