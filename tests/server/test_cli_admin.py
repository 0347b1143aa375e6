"""`flotilla token create|list|revoke` and `flotilla host add|list|rotate-token|rm`: the real
command line, as a subprocess, against a real `flotilla server` subprocess on SQLite."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, free_port
from tests.server.test_cli import Server, clean_env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A running server and its admin token; killed by its handle at the end."""
    s = Server(tmp_path / "data", free_port(), "server")
    try:
        s.wait_ready()
        yield s, (tmp_path / "data" / "admin.token").read_text().strip()
    finally:
        s.kill()


def cli(s: Server, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args],
        cwd=ROOT,
        env={
            **clean_env(),
            "FLOTILLA_SERVER": f"http://127.0.0.1:{s.port}",
            "FLOTILLA_TOKEN": token,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_tokens(server: tuple[Server, str]) -> None:
    s, admin = server
    made = cli(s, admin, "token", "create", "ci", "--scope", "deploy", "--app", "web",
               "--expires-in", "1h")  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("flt_")
    listed = cli(s, admin, "token", "list")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(lines) == {"admin", "ci"}
    assert "deploy" in lines["ci"] and "web" in lines["ci"]
    assert token not in listed.stdout and admin not in listed.stdout
    # the new token works, for its own scope
    assert cli(s, token, "hosts").returncode == 0
    assert cli(s, token, "token", "list").returncode == 5

    again = cli(s, admin, "token", "create", "ci", "--scope", "read")
    assert again.returncode == 1 and "name" in again.stderr and "flt_" not in again.stdout
    bad = cli(s, admin, "token", "create", "x", "--scope", "read", "--app", "Web!")
    assert bad.returncode == 2 and "apps.0" in bad.stderr
    assert cli(s, admin, "token", "create", "x", "--scope", "root").returncode == 2
    assert (
        cli(s, admin, "token", "create", "x", "--scope", "read", "--expires-in", "soon").returncode
        == 2
    )

    revoked = cli(s, admin, "token", "revoke", "ci")
    assert revoked.returncode == 0, revoked.stderr
    refused = cli(s, token, "hosts")
    assert refused.returncode == 5 and "not valid" in refused.stderr
    last = cli(s, admin, "token", "revoke", "admin")
    assert last.returncode == 1 and "last admin token" in last.stderr
    missing = cli(s, admin, "token", "revoke", "ci")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_hosts(server: tuple[Server, str]) -> None:
    s, admin = server
    added = cli(s, admin, "host", "add", "web-1", "--label", "role=web")
    assert added.returncode == 0, added.stderr
    first = added.stdout.strip().splitlines()[-1]
    assert first.startswith("flt_")
    listed = cli(s, admin, "host", "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith("web-1"))
    assert "role=web" in row and "disconnected" in row and first not in listed.stdout
    rotated = cli(s, admin, "host", "rotate-token", "web-1")
    assert rotated.returncode == 0, rotated.stderr
    second = rotated.stdout.strip().splitlines()[-1]
    assert second.startswith("flt_") and second != first
    duplicate = cli(s, admin, "host", "add", "web-1")
    assert duplicate.returncode == 1 and "already registered" in duplicate.stderr
    bad = cli(s, admin, "host", "add", "Web_1")
    assert bad.returncode == 2 and "name" in bad.stderr
    removed = cli(s, admin, "host", "rm", "web-1")
    assert removed.returncode == 0, removed.stderr
    assert "web-1" not in cli(s, admin, "host", "list").stdout
    gone = cli(s, admin, "host", "rm", "web-1")
    assert gone.returncode == 1 and "does not exist" in gone.stderr
    assert cli(s, admin, "host", "rotate-token", "web-1").returncode == 1


def test_host_cordon_uncordon_drain_and_rm(server: tuple[Server, str], tmp_path: Path) -> None:
    s, admin = server
    for name in ("web-1", "web-2"):
        assert cli(s, admin, "host", "add", name).returncode == 0
    cordoned = cli(s, admin, "host", "cordon", "web-1")
    assert cordoned.returncode == 0 and "Cordoned host 'web-1'" in cordoned.stdout
    rows = {line.split()[0]: line for line in cli(s, admin, "host", "list").stdout.splitlines()}
    assert "(cordoned)" in rows["web-1"] and "(cordoned)" not in rows["web-2"]
    assert cli(s, admin, "host", "uncordon", "web-1").returncode == 0
    assert "(cordoned)" not in cli(s, admin, "host", "list").stdout
    # web-2 was never connected: the deployment skips it, and it is assigned the release
    spec = tmp_path / "web.toml"
    spec.write_text(
        'app = "web"\nimage = "nginx:1"\n[hosts]\nnames = ["web-2"]\n'
        "[strategy]\nreconnect_grace = 0\n"
    )
    deployed = cli(s, admin, "deploy", "-f", str(spec), "--wait")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    refused = cli(s, admin, "host", "rm", "web-2")
    assert refused.returncode == 1 and "drain" in refused.stderr, refused.stderr
    forced = cli(s, admin, "host", "rm", "web-2", "--force")
    assert forced.returncode == 0, forced.stderr
    drained = cli(s, admin, "host", "drain", "web-1")
    assert drained.returncode == 0 and "removed no app" in drained.stdout, drained.stdout
    assert "(cordoned)" in cli(s, admin, "host", "list").stdout
    assert cli(s, admin, "host", "rm", "web-1").returncode == 0
    assert cli(s, admin, "host", "drain", "web-1").returncode == 1
