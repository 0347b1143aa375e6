"""`flotilla deploy`'s flags and `-f flotilla.toml` (the whole spec from a file): bad input is
refused before anything is sent, naming the flag, or the file and the key (exit 2); good input
makes the request shown by a dry run against a live server, and deploys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Flotilla
from tests.harness import finish, free_port, start_cli

GOOD = """
app = "web"
image = "registry:5000/web:v2"
replicas = 1

[env]
MODE = "prod"

[[ports]]
container = 80
host = 8080

[health]
type = "http"
port = 80
path = "/health"

[strategy]
max_parallel = 2
order = "stop-first"

[hosts]
labels = { role = "web" }
"""


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('app = "web"\nimage = ', "not valid TOML"),
        ('app = "web"\nimgae = "web:v1"', "unknown key 'imgae'"),
        ('app = "web"\nimage = "web:v1"\nreplicas = "two"', "replicas:"),
        ('app = "web"\nimage = "web:v1"\n[health]\ntype = "smoke"', "health.type:"),
        ('app = "web"\nimage = "web:v1"\n[env]\n"bad-name" = "x"', "env:"),
        ('app = "web"\n[env]\nMODE = "prod"', "image: Field required"),
        ('image = "web:v1"', "no `app`"),
        ("app = 3", "app: 3 is not an app name"),
        ('app = "Web/x"', "is not an app name"),
    ],
)
async def test_a_bad_spec_file_is_refused_naming_the_key(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "flotilla.toml"
    path.write_text(text)
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing is sent: nothing need answer
    ran = await finish(await start_cli("deploy", "-f", str(path), "--server", nowhere))
    assert ran.code == 2, ran
    assert str(path) in ran.err and said in ran.err, ran


async def test_a_missing_spec_file(tmp_path: Path) -> None:
    ran = await finish(await start_cli("deploy", "-f", str(tmp_path / "none.toml")))
    assert ran.code == 2 and "cannot read" in ran.err, ran


async def test_a_spec_file_is_the_whole_spec(flotilla_sqlite: Flotilla, tmp_path: Path) -> None:
    f = flotilla_sqlite
    path = tmp_path / "flotilla.toml"
    path.write_text(GOOD)
    web, _ = await f.add_host(role="web")
    auth = ("--server", f.url, "--token", f.api.token)
    ran = await finish(await start_cli("deploy", "-f", str(path), "--dry-run", *auth))
    assert ran.code == 0, ran
    assert f"target hosts (1): {web}" in ran.out and "nothing was created" in ran.out
    assert '+ /env: {"MODE": "prod"}' in ran.out  # against nothing: whole values added

    ran = await finish(
        await start_cli("deploy", "-f", str(path), "--message", "from the file", *auth)
    )
    assert ran.code == 0, ran
    assert "deployment 1: deploy of web to release 1 pending" in ran.out
    _, body = await f.api.call("GET", "/v1/deployments/1")
    assert body["strategy"]["max_parallel"] == 2 and body["strategy"]["order"] == "stop-first"
    spec = (await f.api.app("web"))["spec"]
    assert spec["env"] == {"MODE": "prod"} and spec["health"]["path"] == "/health"
    assert spec["ports"] == [
        {"container": 80, "host": 8080, "host_ip": "127.0.0.1", "protocol": "tcp"}
    ]

    # the server's own checks name the file too (a fixed host port needs stop-first)
    path.write_text(GOOD.replace('"stop-first"', '"start-first"'))
    ran = await finish(await start_cli("deploy", "-f", str(path), *auth))
    assert ran.code == 2 and str(path) in ran.err and "start-first" in ran.err, ran


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--port", "abc"], "argument --port"),
        (["--port", "1:2:3:4"], "argument --port"),
        (["--port", "70000"], "argument --port"),
        (["--port", "8080:80/sctp"], "tcp or udp"),
        (["--port", "nothere:8080:80"], "not an IP address"),
        (["--env", "NOEQUALS"], "argument --env"),
        (["--env", "1A=x"], "argument --env"),
        (["--unset-env", "A-B"], "argument --unset-env"),
        (["--health-http", "x/health"], "argument --health-http"),
        (["--max-parallel", "0"], "argument --max-parallel"),
        (["--canary", "-1"], "argument --canary"),
        (["--hosts", ","], "argument --hosts"),
        (["web:v2", "--image", "web:v3"], "give the image once"),
        (["--health-http", "80/h", "--no-health"], "contradict"),
    ],
)
async def test_bad_flags_are_refused_naming_the_flag(flags: list[str], said: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    ran = await finish(await start_cli("deploy", "web", *flags, "--server", nowhere))
    assert ran.code == 2, ran
    assert said in ran.err, ran


async def test_flags_make_the_spec(flotilla_sqlite: Flotilla) -> None:
    f = flotilla_sqlite
    web, _ = await f.add_host(role="web")
    await f.add_host(role="db")
    flags = [
        "--port", "127.0.0.1:8080:80/tcp", "--port", "53:53/udp", "--port", "9000",
        "--port", "[::1]:8081:81", "--env", "A=1", "--env", "B=", "--health-http", "80/health",
        "--max-parallel", "2", "--canary", "1", "--hosts", "role=web",
    ]  # fmt: skip
    auth = ["--server", f.url, "--token", f.api.token]
    dry = ["--dry-run", "-o", "json"]
    ran = await finish(await start_cli("deploy", "web", "web:v1", *flags, *dry, *auth))
    assert ran.code == 0, ran
    answer = json.loads(ran.out)
    spec = answer["spec"]
    assert spec["image"] == "web:v1" and spec["env"] == {"A": "1", "B": ""}
    assert spec["ports"] == [
        {"container": 80, "host": 8080, "host_ip": "127.0.0.1", "protocol": "tcp"},
        {"container": 53, "host": 53, "host_ip": "127.0.0.1", "protocol": "udp"},
        {"container": 9000, "host": 0, "host_ip": "127.0.0.1", "protocol": "tcp"},
        {"container": 81, "host": 8081, "host_ip": "::1", "protocol": "tcp"},
    ]
    assert spec["health"]["type"] == "http" and spec["health"]["path"] == "/health"
    assert spec["strategy"]["max_parallel"] == 2 and spec["strategy"]["canary"] == 1
    assert spec["hosts"] == {"labels": {"role": "web"}}
    assert answer["hosts"] == [web]
    # a new app has no release to patch: the flags are its whole spec, and stderr says so
    assert "web has no current release: the new release is what the flags say" in ran.err
    _, body = await f.api.call("GET", "/v1/apps")
    assert body["apps"] == []  # a dry run creates nothing


@pytest.mark.parametrize(
    "argv",
    [
        ["deploy", "Web", "web:v1"],
        ["rollback", "a/b"],
        ["history", "web?x=1"],
        ["diff", "web", "x"],
        ["events", "--app", "-x-"],
        ["status", "Abc"],
        ["status", "0"],
        ["deployment", "abc"],
        ["history", "web", "--limit", "0"],
        ["events", "--limit", "x"],
    ],
)
async def test_bad_arguments_of_other_commands_are_usage_errors(argv: list[str]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    ran = await finish(await start_cli(*argv, "--server", nowhere))
    assert ran.code == 2, ran
    assert "error: argument" in ran.err, ran


async def test_a_server_that_is_not_a_url() -> None:
    ran = await finish(await start_cli("deploy", "web", "web:v1", "--server", "notaurl"))
    assert ran.code == 2 and "not an http:// or https:// URL" in ran.err, ran


async def test_version() -> None:
    ran = await finish(await start_cli("--version"))
    assert ran.code == 0 and ran.out.startswith("flotilla "), ran
