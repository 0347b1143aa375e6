"""The README's examples run: every shell example is executed against a live server.

The convention (README.md, "Contributing", says it briefly):

- Every ```sh block of README.md is executed, in README order, each by its own
  `bash -euo pipefail`, all in one working directory, against one live server (SQLite) with two
  connected agents on the real Docker Engine: hosts `web-1` and `web-2` (label `role=web`), and
  the app `web` deployed once already (deployment 1, release 1, with a health check),
  and the app `demo` (on every host, no health check).
  A block passes when it exits 0. Every block is run and every failure is reported.
- Placeholders are environment variables, set for every block: `FLOTILLA_SERVER` and
  `FLOTILLA_TOKEN` (the live server and its admin token: the CLI's own variables),
  `STAGING_SERVER` and `STAGING_TOKEN` (the same server again), `GIT_SHA` (a commit id) and
  `DB_PASSWORD` (a value). The images `registry:5000/web:v1` to `v4` are test images built
  locally and tagged so (no registry is reached). `flotilla` on the PATH is this checkout's.
- A command given `--follow` runs for a few seconds and is then interrupted (Ctrl-C, as a
  person ends it): it passes if it was still streaming then (exit 130), and fails if it ended
  by itself.
- Every `flotilla COMMAND` a block names must exist in this checkout's CLI (`flotilla --help`).
  A block naming one that does not is not run and fails the test, saying which command is
  missing: an example is never skipped.
- A block the test cannot run (installing, `make run`, a production server with its TLS files,
  commands on another machine) is marked by the line `<!-- not run: WHY -->` right above its
  fence. Other languages (`json`, `toml`, `yaml`) are not run. The `flotilla` command lines of
  not-run blocks and of `yaml` blocks (the CI jobs) are parsed by the CLI's own argument parser:
  their commands and flags must exist. The deployment bodies (`json` under "The API") and the
  spec file (`toml`) must pass the server's and `deploy -f`'s own checks. A shell block tagged
  anything but `sh` fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shlex
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.api.body import parse_body
from server.api.schemas.spec import DeploymentIn, DeploymentPatchIn
from server.cli.deploy import load_spec
from server.cli.main import build_parser
from tests.conftest import Flotilla, Images
from tests.harness import ROOT, Engine, agent

README = ROOT / "README.md"
NOT_RUN = re.compile(r"^<!-- not run: (?P<why>\S.*?) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
SHELLS = {"bash", "shell", "console", "shell-session", "zsh"}  # must be `sh` (run) instead
OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "<<", "(", ")"}
FOLLOW_SECONDS = 2
BLOCK_TIMEOUT = 120
# Probed inside the container: an HTTP probe of the agent goes to 127.0.0.1, and the ports
# are published on 127.0.0.2 (see the fixture)
HEALTH = {
    "type": "cmd",
    "command": ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/health"],
    "interval": 0.5,
    "retries": 3,
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int  # of its opening fence
    section: str
    lang: str
    text: str
    not_run: str | None  # why, if marked not run

    def where(self) -> str:
        return f"README.md:{self.line} ({self.section}, ```{self.lang})"


def blocks(text: str) -> list[Block]:
    """The README's fenced code blocks, in order, with the heading they are under."""
    found: list[Block] = []
    section, lines = "top", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        fence = FENCE.match(line)
        if fence:
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            mark = NOT_RUN.match(previous.strip())
            found.append(
                Block(
                    start + 1,
                    section,
                    fence["lang"],
                    "\n".join(body),
                    mark["why"] if mark else None,
                )
            )
        i += 1
    return found


def command_lines(text: str) -> list[list[str]]:
    """Each `flotilla ...` command of a block as its argument list (comments, continuation
    lines and shell operators handled; `[optional]` brackets of a synopsis dropped)."""
    joined = re.sub(r"\\\n", " ", text)
    commands = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: not a command line (YAML, prose)
            continue
        for k, token in enumerate(tokens):
            if token != "flotilla":
                continue
            argv = []
            for arg in tokens[k + 1 :]:
                if arg in OPERATORS:
                    break
                argv.append(arg.strip("[]"))
            commands.append([a for a in argv if a])
    return commands


def subcommands() -> set[str]:
    """The commands `flotilla --help` lists, from the CLI's own parser."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


def parse_problem(argv: list[str]) -> str | None:
    """Why the CLI's parser refuses `flotilla ARGV`, or None if it takes it."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            return err.getvalue().strip().splitlines()[-1] if err.getvalue() else str(exc)
    return None


def missing_commands(block: Block, known: set[str]) -> list[str]:
    """The `flotilla COMMAND`s a block names that this checkout's CLI does not have."""
    named = {argv[0] for argv in command_lines(block.text) if argv and argv[0][0].isalpha()}
    return sorted(named - known)


WRAPPER = """#!/bin/bash
# the checkout's CLI; a command given --follow is interrupted (SIGINT) after a few seconds
follow=
for arg in "$@"; do [ "$arg" = --follow ] && follow=1; done
[ -z "$follow" ] && exec {python} -m server.cli.main "$@"
timeout --preserve-status -s INT -k 10 {seconds} {python} -m server.cli.main "$@"
rc=$?
[ "$rc" -eq 130 ] && exit 0
echo "README runner: 'flotilla $*' ended by itself (exit $rc) instead of following" >&2
exit $(( rc == 0 ? 1 : rc ))
"""


@pytest.fixture
async def live(
    flotilla_sqlite: Flotilla, docker_url: str, engine: Engine, images: Images, tmp_path: Path
) -> AsyncIterator[tuple[Flotilla, dict[str, str], Path]]:
    """The live server with web-1 and web-2 connected, `web` deployed, the README's images
    tagged, and the environment and working directory the blocks run in."""
    f = flotilla_sqlite
    for tag, image in (("v1", images.v1), ("v2", images.v2), ("v3", images.v3), ("v4", images.v1)):
        await asyncio.to_thread(lambda i=image, t=tag: engine.client.images.get(i).tag(
            "registry:5000/web", t))  # fmt: skip
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    wrapper = bin_dir / "flotilla"
    wrapper.write_text(WRAPPER.format(python=sys.executable, seconds=FOLLOW_SECONDS))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    env.update(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        PYTHONPATH=str(ROOT),
        HOME=str(work),
        XDG_CONFIG_HOME=str(work / ".config"),
        FLOTILLA_SERVER=f.url,
        FLOTILLA_TOKEN=f.api.token,
        STAGING_SERVER=f.url,
        STAGING_TOKEN=f.api.token,
        GIT_SHA="3f2a1c9d0b7e4f5a6c8d9e0f1a2b3c4d5e6f7a8b",
        DB_PASSWORD="correct horse battery staple",
    )
    async with contextlib.AsyncExitStack() as stack:
        for name in ("web-1", "web-2"):
            _, token = await f.add_host(name, role="web")
            await stack.enter_async_context(agent(f.url, name, token, docker_url))
        first = await f.api.deploy(
            "web",
            {
                "image": "registry:5000/web:v1",
                # 127.0.0.2: the Engine's ephemeral host ports then never collide with the
                # local ends of this busy machine's connections on 127.0.0.1 (EADDRINUSE,
                # TIME_WAIT included)
                "ports": [{"container": 80, "host_ip": "127.0.0.2"}],
                "health": HEALTH,
                "strategy": {"max_parallel": 2},
                "hosts": {"labels": {"role": "web"}},
                "message": "the README's starting point",
            },
        )
        demo = await f.api.deploy("demo", {"image": "registry:5000/web:v1"})  # `app rm demo`
        assert first["id"] == 1, first
        for d in (first, demo):
            ended = await f.api.wait(d["id"])
            assert ended["status"] == "succeeded", json.dumps(ended)
        yield f, env, work


async def run_block(block: Block, env: dict[str, str], work: Path) -> str | None:
    """Run one block; None if it exited 0, else what went wrong and its output."""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", block.text,
        cwd=work, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), BLOCK_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own process group: bash and its commands
        await proc.wait()
        return f"still running after {BLOCK_TIMEOUT} s"
    text = out.decode(errors="replace")
    print(f"--- {block.where()}\n{text}")  # shown when the test fails (or with -s)
    if "Traceback" in text:
        return f"printed a traceback:\n{text[-3000:]}"
    if proc.returncode != 0:
        return f"exited {proc.returncode}:\n{text[-3000:]}"
    return None


async def test_every_shell_example_of_the_readme_runs(
    live: tuple[Flotilla, dict[str, str], Path],
) -> None:
    _, env, work = live
    every = blocks(README.read_text())
    wrong = [f"{b.where()}: a shell block is ```sh (run) or marked not run" for b in every
             if b.lang in SHELLS]  # fmt: skip
    known = subcommands()
    ran = 0
    for block in every:
        if block.lang != "sh" or block.not_run:
            continue
        missing = missing_commands(block, known)
        if missing:
            names = ", ".join(f"`flotilla {m}`" for m in missing)
            wrong.append(
                f"{block.where()}: not runnable yet: this checkout's CLI has no {names} "
                f"(`flotilla --help` does not list it)"
            )
            continue
        began = time.monotonic()
        problem = await run_block(block, env, work)
        print(f"{block.where()}: {time.monotonic() - began:.1f} s")  # shown when it fails
        ran += 1
        if problem:
            wrong.append(f"{block.where()}:\n{block.text}\n-> {problem}")
    assert not wrong, "\n\n".join(wrong)
    assert ran >= 10, f"only {ran} README blocks ran: did the convention change?"


def test_commands_of_not_run_examples_and_ci_jobs_exist() -> None:
    every = blocks(README.read_text())
    wrong = []
    checked = 0
    for block in every:
        if not (block.lang == "yaml" or (block.lang == "sh" and block.not_run)):
            continue
        for argv in command_lines(block.text):
            checked += 1
            problem = parse_problem(argv)
            if problem:
                wrong.append(f"{block.where()}: `flotilla {shlex.join(argv)}`: {problem}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 5, f"only {checked} commands found in not-run and yaml blocks"
    yaml_jobs = [b for b in every if b.lang == "yaml"]
    assert any("--wait" in b.text for b in yaml_jobs), "the CI jobs deploy with --wait"


def test_not_run_marks_say_why_and_precede_a_block() -> None:
    lines = README.read_text().splitlines()
    for n, line in enumerate(lines):
        if "not run" in line and line.startswith("<!--"):
            assert NOT_RUN.match(line.strip()), f"README.md:{n + 1}: write <!-- not run: WHY -->"
            after = next(x for x in lines[n + 1 :] if x.strip())
            assert FENCE.match(after), f"README.md:{n + 1}: the mark goes right above a fence"


SAMPLE = """# Title
## Deploying
<!-- not run: another machine -->
```sh
flotilla server --listen 0.0.0.0:8700 \\
    --tls-cert a.pem --tls-key a.key   # see TLS
```

```sh
id=$(flotilla history web --limit 1 -o json | jq .id)
flotilla logz web && flotilla status web   # flotilla nosuch in a comment is no command
```

```yaml
run: flotilla deploy web --image x:1 --wait --timeout 900
```
"""


def test_the_runner_reads_blocks_marks_and_commands() -> None:
    first, second, third = blocks(SAMPLE)
    assert (first.line, first.section, first.not_run) == (4, "Deploying", "another machine")
    assert second.not_run is None and third.lang == "yaml"
    assert command_lines(first.text) == [
        ["server", "--listen", "0.0.0.0:8700", "--tls-cert", "a.pem", "--tls-key", "a.key"]
    ]
    assert [argv[0] for argv in command_lines(second.text)] == ["history", "logz", "status"]
    assert missing_commands(second, subcommands()) == ["logz"]
    assert parse_problem(command_lines(third.text)[0]) is None
    assert "--wiat" in (parse_problem(["deploy", "web", "--wiat"]) or "")


def test_the_readmes_deployment_bodies_and_spec_file_are_valid(tmp_path: Path) -> None:
    """Not run, but true: the API section's JSON bodies pass the server's own body check, and
    the spec file passes `flotilla deploy -f`'s."""
    every = blocks(README.read_text())
    bodies = [b for b in every if b.lang == "json" and b.section == "The API"]
    assert len(bodies) >= 2, "the deployment body and the patch"
    for b in bodies:
        schema = DeploymentPatchIn if '"base"' in b.text else DeploymentIn
        parse_body(b.text.encode(), schema)  # raises (400/422) if the README's body is wrong
    (spec,) = [b for b in every if b.lang == "toml"]
    path = tmp_path / "flotilla.toml"
    path.write_text(spec.text)
    app, doc = load_spec(path)
    assert app == "web" and doc["image"], doc
