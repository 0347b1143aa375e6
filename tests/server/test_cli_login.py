"""`flotilla login`: named contexts (server URL and token) in a 0600 config file, chosen with
`--context` or FLOTILLA_CONTEXT; flags and env vars still win; the token is never printed.
The real command line as a subprocess against a live server."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import tomllib
from pathlib import Path

from tests.conftest import Flotilla
from tests.harness import ROOT, Ran, free_port


def _contexts(config: Path) -> dict[str, object]:
    """The contexts the config file holds, by name."""
    contexts: dict[str, object] = tomllib.loads(config.read_text()).get("contexts", {})
    return contexts


async def flotilla(config: Path, *args: str, stdin: str = "", **env: str) -> Ran:
    """`flotilla ARGS` with this config file and no other FLOTILLA_* setting but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli.main", *args,
        cwd=ROOT, env={**clean, "FLOTILLA_CONFIG": str(config), **env},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    ran = Ran(proc.returncode or 0, out.decode(), err.decode())
    assert "Traceback" not in ran.out + ran.err, ran
    return ran


async def test_login_saves_contexts_and_commands_use_them(
    flotilla_sqlite: Flotilla, tmp_path: Path
) -> None:
    f = flotilla_sqlite
    admin = f.api.token
    _, made = await f.api.call("POST", "/v1/tokens", {"name": "viewer", "scopes": ["read"]})
    viewer = made["token"]
    config = tmp_path / "conf" / "flotilla" / "config.toml"

    # the token from stdin; checked, saved 0600, never printed
    ran = await flotilla(config, "login", "--context", "ops", "--server", f.url, stdin=admin + "\n")
    assert ran.code == 0, ran
    assert admin not in ran.out + ran.err and "ops" in ran.out
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    ran = await flotilla(config, "login", "--context", "ro", "--server", f.url, "--token", viewer)
    assert ran.code == 0 and viewer not in ran.out + ran.err, ran

    # the current context is the last one logged in to: the read-only token
    ran = await flotilla(config, "token", "list")
    assert ran.code == 5 and "lacks the 'admin' scope" in ran.err, ran
    assert (await flotilla(config, "hosts")).code == 0
    # --context, then FLOTILLA_CONTEXT, choose another
    ran = await flotilla(config, "token", "list", "--context", "ops", "-o", "json")
    assert ran.code == 0, ran
    assert {t["name"] for t in json.loads(ran.out)["tokens"]} == {"admin", "viewer"}
    assert (await flotilla(config, "token", "list", FLOTILLA_CONTEXT="ops")).code == 0
    # flags and env vars win over the context
    assert (await flotilla(config, "token", "list", "--token", admin)).code == 0
    assert (await flotilla(config, "token", "list", FLOTILLA_TOKEN=admin)).code == 0
    nowhere = f"http://127.0.0.1:{free_port()}"
    ran = await flotilla(config, "apps", "--context", "ops", FLOTILLA_SERVER=nowhere)
    assert ran.code == 5 and "cannot reach" in ran.err, ran

    # an unknown context is a usage error that names the known ones
    ran = await flotilla(config, "apps", "--context", "prod")
    assert ran.code == 2 and "no context 'prod'" in ran.err and "ops, ro" in ran.err, ran

    # a refused token is not saved
    ran = await flotilla(config, "login", "--context", "bad", "--server", f.url, stdin="flt_x\n")
    assert ran.code == 5 and "login refused" in ran.err, ran
    assert "bad" not in _contexts(config) and "flt_x" not in ran.err

    ran = await flotilla(config, "logout", "--context", "ro")
    assert ran.code == 0, ran
    assert set(_contexts(config)) == {"ops"}
    assert tomllib.loads(config.read_text()).get("current") != "ro"
    ran = await flotilla(config, "apps")  # no current context now: the default server
    assert ran.code in (2, 5), ran


async def test_a_broken_config_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("contexts = [")
    ran = await flotilla(config, "apps")
    assert ran.code == 2 and "not valid TOML" in ran.err, ran
    config.write_text("current = 3\n")
    ran = await flotilla(config, "hosts")
    assert ran.code == 2 and "current" in ran.err, ran
    config.write_text("[contexts.a]\nserver = 5\n")
    ran = await flotilla(config, "hosts", "--context", "a")
    assert ran.code == 2 and "strings" in ran.err, ran
    ran = await flotilla(config, "login", "--context", "no/slash", "--token", "x")
    assert ran.code == 2 and "context name" in ran.err, ran
