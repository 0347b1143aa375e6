"""No client command prints a traceback: each one, run as the real `flotilla` subprocess,
against an unreachable server, a server that is not Flotilla and an address that is not a
URL, answers one line and its exit code (5, 5, 2). The alert rules' runbook hints name
commands that exist."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.cli.main import build_parser
from tests.harness import Ran, finish, free_port, start_cli

# the smallest good arguments of every client command (server-side ones are left out)
ARGS: dict[str, list[str]] = {
    "deploy": ["web", "--image", "web:v1"],
    "rollback": ["web"],
    "diff": ["web"],
    "status": ["web"],
    "apps": [],
    "deployment": ["1"],
    "history": ["web"],
    "releases": ["web"],
    "hosts": [],
    "events": [],
    "logs": ["web", "--tail", "5"],
    "events --follow": ["--follow"],
    "pause": ["1"],
    "resume": ["1"],
    "promote": ["1"],
    "cancel": ["1"],
    "token create": ["ci", "--scope", "read"],
    "token list": [],
    "token revoke": ["ci"],
    "host add": ["web-9"],
    "host list": [],
    "host rotate-token": ["web-9"],
    "host rm": ["web-9"],
    "host cordon": ["web-9"],
    "host uncordon": ["web-9"],
    "host drain": ["web-9"],
    "app rm": ["web"],
    "secret set": ["web", "DB_PASSWORD"],
    "secret list": ["web"],
    "secret rm": ["web", "DB_PASSWORD"],
    "login": ["--token", "flt_x"],
}
SERVER_SIDE = {
    "server",
    "agent",
    "dev",
    "db upgrade",
    "secret rotate-key",
    "secret new-key",
    "logout",
}


def client_commands() -> set[str]:
    """Every command of the parser, with its action (`token create`), but the server-side."""
    found: set[str] = set()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[attr-defined]
        actions = [a for a in p._actions if getattr(a, "choices", None) and a.dest.endswith(
            "_command")]  # fmt: skip
        if actions:
            found |= {f"{name} {action}" for action in actions[0].choices}
        else:
            found.add(name)
    return found - SERVER_SIDE


def test_every_client_command_is_swept() -> None:
    assert client_commands() | {"events --follow"} == set(ARGS)


async def run(command: str, server: str) -> Ran:
    argv = [*command.split()[:2], *ARGS[command]] if " " in command else [command, *ARGS[command]]
    if command == "events --follow":
        argv = ["events", "--follow"]
    return await finish(await start_cli(*argv, "--server", server), 60)


@pytest.fixture
async def not_flotilla() -> str:
    """A web server that answers every request with an HTML page."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_no_command_prints_a_traceback(not_flotilla: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    limit = asyncio.Semaphore(4)
    cases = [(c, s, code) for c in ARGS for s, code in ((nowhere, 5), (not_flotilla, 5))]
    cases += [(c, "notaurl", 2) for c in ("status", "events --follow", "host list", "login")]
    # `secret set` reads its value first: with none on stdin it says so (exit 2)
    cases = [(c, s, 2 if c == "secret set" else code) for c, s, code in cases]

    async def one(command: str, server: str, code: int) -> str | None:
        async with limit:
            ran = await run(command, server)  # finish() asserts there is no traceback
        lines = ran.err.strip().splitlines()
        if ran.code != code or len(lines) != 1 or ran.out:
            return f"{command} --server {server}: {ran}"
        return None

    wrong = [w for w in await asyncio.gather(*(one(*c) for c in cases)) if w]
    assert not wrong, "\n".join(wrong)


def test_status_help_says_a_number_is_a_deployment() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "deployment id" in sub.choices["status"].format_help()  # type: ignore[attr-defined]
