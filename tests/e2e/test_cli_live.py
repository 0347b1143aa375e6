"""What `flotilla deploy --wait` shows while a deployment runs, through the real command
against a live server, real agents and the real Docker Engine: in a pipe one plain line per
change of a host's state or of the deployment's status (never an escape), also while it
follows an automatic rollback; on a terminal (a pty) a view redrawn in place, and plain
lines again with NO_COLOR or TERM=dumb."""

from __future__ import annotations

import asyncio
import itertools
import os
import pty
import re
import sys
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Flotilla, Images
from tests.e2e.test_cli_exits import cli
from tests.harness import ROOT, agent

ESCAPE = "\x1b"


@pytest.fixture
async def fleet(
    flotilla_sqlite: Flotilla, docker_url: str
) -> AsyncIterator[tuple[Flotilla, list[str]]]:
    """A server with two connected hosts."""
    f = flotilla_sqlite
    (one, t1), (two, t2) = await f.add_host(role="web"), await f.add_host(role="web")
    async with agent(f.url, one, t1, docker_url), agent(f.url, two, t2, docker_url):
        yield f, sorted([one, two])


def host_lines(out: str, host: str) -> list[str]:
    """The lines about one host, in order."""
    return [line for line in out.splitlines() if line.startswith(f"host {host}: ")]


async def test_a_pipe_gets_one_plain_line_per_change(
    fleet: tuple[Flotilla, list[str]], images: Images
) -> None:
    f, hosts = fleet
    ran = await cli(f, "deploy", "web", "--image", images.v1, "--max-parallel", "1", "--wait")
    assert ran.code == 0, ran
    assert ESCAPE not in ran.out + ran.err, ran
    lines = ran.out.splitlines()
    first = re.fullmatch(r"deployment (\d+): deploy of web to release 1 pending", lines[0])
    assert first, ran.out
    deployment = first.group(1)
    assert f"deployment {deployment}: running: 2 host(s), batch " in ran.out, ran.out
    assert lines[-1] == f"deployment {deployment}: succeeded", ran.out
    for host in hosts:
        said = host_lines(ran.out, host)
        # a change is one line: never the same state twice in a row; healthy last
        assert said and said[-1] == f"host {host}: healthy on release 1", ran.out
        assert all(a != b for a, b in itertools.pairwise(said)), ran.out
        assert set(said) <= {f"host {host}: updating to release 1", said[-1]}, ran.out

    # a release whose health check fails: the failure, then the automatic rollback's lines
    ran = await cli(f, "deploy", "web", "--image", images.nohealth, "--port", "80",
                    "--health-http", "80/health", "--wait")  # fmt: skip
    assert ran.code == 1, ran
    assert ESCAPE not in ran.out + ran.err, ran
    failed = re.findall(r"^host (\S+): failed: health check failing", ran.out, re.M)
    assert failed, ran.out
    rollback = re.search(r"^deployment (\d+): automatic rollback to release 1$", ran.out, re.M)
    assert rollback, ran.out
    before, after = ran.out[: rollback.start()], ran.out[rollback.end() :]
    assert "rolled_back" in before, ran.out
    for host in failed:  # the hosts it touched go back, each said in its own line
        assert f"host {host}: healthy on release 1" in after, ran.out
    touched = len(set(failed))
    assert f"rolled back to release 1: serving on {touched}/{touched} hosts" in after, ran.out


async def on_a_terminal(
    f: Flotilla, *args: str, env: dict[str, str], stderr_too: bool = False
) -> tuple[int, str]:
    """Run `flotilla ARGS` with its stdout (and with `stderr_too` its stderr) a pty (80x24);
    its exit code and what it wrote there."""
    controller, terminal = pty.openpty()
    given = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    given.pop("NO_COLOR", None)
    command, rest = args[0], args[1:]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli.main", command, "--server", f.url,
        "--token", f.api.token, *rest,
        cwd=ROOT, env={**given, "COLUMNS": "80", "LINES": "24", **env}, stdout=terminal,
        stderr=terminal if stderr_too else asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(terminal)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the other end is closed (the command ended)
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    try:
        written, (_, err) = await asyncio.wait_for(
            asyncio.gather(asyncio.to_thread(read_all), proc.communicate()), 120
        )
    finally:
        os.close(controller)
    out = written.decode(errors="replace").replace("\r\n", "\n")
    said = out + (err or b"").decode()
    assert "Traceback" not in said, said
    return proc.returncode or 0, out


async def test_a_terminal_gets_a_live_view(
    fleet: tuple[Flotilla, list[str]], images: Images
) -> None:
    f, hosts = fleet
    code, out = await on_a_terminal(
        f, "deploy", "web", "--image", images.v1, "--max-parallel", "1", "--wait",
        env={"TERM": "xterm"},
    )  # fmt: skip
    assert code == 0, out
    assert "\x1b[K" in out and re.search(r"\x1b\[\d+F", out), out  # redrawn in place
    deployment = re.search(r"deployment (\d+)  deploy of web to release 1  ", out)
    assert deployment, out
    assert re.search(r"HOST\s+STATE\s+RELEASE\s+DETAIL", out), out
    for host in hosts:  # its row, healthy (in green) on release 1
        assert re.search(rf"{host}  \x1b\[32mhealthy\x1b\[0m\s+1", out), out
    assert re.search(r"batch [12]/2  \d+:\d\d", out), out
    assert out.rstrip().endswith(f"deployment {deployment.group(1)}: succeeded"), out

    for env in ({"TERM": "xterm", "NO_COLOR": "1"}, {"TERM": "dumb"}):
        code, out = await on_a_terminal(f, "deploy", "web", "--image", images.v2, "--wait", env=env)
        assert code == 0, out
        assert ESCAPE not in out, (env, out)
        for host in hosts:
            assert f"host {host}: healthy on release " in out, (env, out)

    # -o json: one object on stdout; the lines on stderr stay plain, a terminal or not
    code, out = await on_a_terminal(
        f, "deploy", "web", "--image", images.v3, "--wait", "-o", "json",
        env={"TERM": "xterm"}, stderr_too=True,
    )  # fmt: skip
    assert code == 0, out
    assert ESCAPE not in out and '"exit_code": 0' in out, out
    for host in hosts:
        assert f"host {host}: healthy on release 4" in out, out  # v1, v2 twice, v3
