"""The real `flotilla` command line, run as a subprocess on SQLite in a temporary folder."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def clean_env() -> dict[str, str]:
    """The test's environment without FLOTILLA_* settings that would override the flags."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}


def flotilla(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


class Server:
    """`flotilla server` as a subprocess; stdout and stderr go to files in the data dir."""

    def __init__(self, data_dir: Path, port: int, name: str) -> None:
        self.port = port
        self.stdout_path = data_dir.parent / f"{name}.out"
        self.stderr_path = data_dir.parent / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "server.cli.main",
                    "server",
                    "--data-dir",
                    str(data_dir),
                    "--listen",
                    f"127.0.0.1:{port}",
                ],
                cwd=ROOT,
                env=clean_env(),
                stdout=out,
                stderr=err,
            )

    def get(self, path: str) -> tuple[int, object]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the server did not answer within {START_TIMEOUT}s:\n{self.output()}")

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; return the exit code and how long the server took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(STOP_TIMEOUT)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr_path.read_text(errors="replace")


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Every server a test starts; any still running at the end is killed by its handle."""
    started: list[Server] = []
    yield started
    for s in started:
        s.kill()


def test_db_upgrade_creates_the_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = flotilla("db", "upgrade", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert (data / "flotilla.db").is_file()
    assert "newest revision" in result.stdout
    again = flotilla("db", "upgrade", "--data-dir", str(data))
    assert again.returncode == 0, again.stderr


def test_host_add(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = flotilla("host", "add", "web-1", "--label", "role=web", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("flt_") and token == token.strip() and " " not in token
    assert len(token) > 20
    assert token not in result.stderr  # the secret is shown once, on stdout

    again = flotilla("host", "add", "web-1", "--data-dir", str(data))
    assert again.returncode != 0
    assert "web-1" in again.stderr and "already registered" in again.stderr, again.stderr
    assert "flt_" not in again.stdout + again.stderr
    assert "Traceback" not in again.stderr

    other = flotilla("host", "add", "web-2", "--data-dir", str(data))
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip().splitlines()[-1] != token


@pytest.mark.parametrize("name", ["Bad_Name", "-web", "web-", "a" * 64])
def test_host_add_rejects_bad_names(tmp_path: Path, name: str) -> None:
    # "--" so that "-web" reaches the name check instead of being read as an option.
    result = flotilla("host", "add", "--data-dir", str(tmp_path / "data"), "--", name)
    assert result.returncode == 2, result
    assert "DNS label" in result.stderr
    assert "flt_" not in result.stdout
    assert "Traceback" not in result.stderr


def test_host_add_rejects_bad_label(tmp_path: Path) -> None:
    result = flotilla("host", "add", "web", "--label", "role", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "KEY=VALUE" in result.stderr


def test_server_first_and_second_start(tmp_path: Path, servers: list[Server]) -> None:
    data = tmp_path / "data"
    first = Server(data, free_port(), "first")
    servers.append(first)
    first.wait_ready()

    token_file = data / "admin.token"
    assert (data / "flotilla.db").is_file()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    content = token_file.read_text()
    token = content.strip()
    assert content == token + "\n"
    assert token.startswith("flt_")
    assert first.get("/healthz") == (200, {"status": "ok"})
    assert first.get("/readyz") == (200, {"status": "ready"})

    code, took = first.terminate()
    assert code == 0, first.output()
    assert took < STOP_TIMEOUT
    printed = first.stdout()
    assert token not in printed  # its path, never the token: output ends up in logs
    assert str(token_file) in printed, printed
    assert token not in first.stderr_path.read_text()  # never logged

    second = Server(data, free_port(), "second")
    servers.append(second)
    second.wait_ready()
    assert second.get("/readyz") == (200, {"status": "ready"})
    code, _ = second.terminate()
    assert code == 0, second.output()
    assert "flt_" not in second.output()
    assert token_file.read_text() == content
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_sigterm_answers_a_waiting_client_at_once(tmp_path: Path, servers: list[Server]) -> None:
    """`flotilla deploy --wait` is a long poll: SIGTERM answers it with the deployment's state
    now (not an empty reply after the shutdown timeout), and the server exits within 5 s."""
    data = tmp_path / "data"
    server = Server(data, free_port(), "waiting")
    servers.append(server)
    server.wait_ready()
    assert flotilla("host", "add", "web-1", "--data-dir", str(data)).returncode == 0
    token = (data / "admin.token").read_text().strip()
    base = f"http://127.0.0.1:{server.port}"

    def call(method: str, path: str, body: object = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            base + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, deployment = call("POST", "/v1/apps/web/deployments", {"image": "web:v1"})
    assert status == 202  # web-1 never connects: the rollout waits for it
    answers: list[tuple[int, Any, float]] = []

    def wait() -> None:
        started = time.monotonic()
        code, body = call("GET", f"/v1/deployments/{deployment['id']}?wait=60")
        answers.append((code, body, time.monotonic() - started))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)  # the long poll is waiting
    code, took = server.terminate()
    waiter.join(10)
    assert code == 0, server.output()
    assert took < 5.0
    assert len(answers) == 1
    status, body, waited = answers[0]
    assert status == 200 and body["status"] in ("pending", "running"), body
    assert waited < 5.0


def test_deploy_wait_rides_out_a_server_restart(tmp_path: Path, servers: list[Server]) -> None:
    """`deploy --wait` while the server restarts: no traceback; it waits for the server to
    come back and goes on waiting (here until its timeout: the host never connects)."""
    data = tmp_path / "data"
    port = free_port()
    server = Server(data, port, "before")
    servers.append(server)
    server.wait_ready()
    assert flotilla("host", "add", "web-1", "--data-dir", str(data)).returncode == 0
    token = (data / "admin.token").read_text().strip()
    base = f"http://127.0.0.1:{port}"
    waiting = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "deploy", "web", "--image", "web:v1",
         "--wait", "--timeout", "12", "--server", base, "--token", token],
        cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while server.get("/v1/apps")[0] != 401 and time.monotonic() < deadline:
            time.sleep(0.1)  # (unauthenticated: 401 once the server answers at all)
        time.sleep(1.5)  # the deploy is made and its long poll waits
        code, _ = server.terminate()
        assert code == 0, server.output()
        again = Server(data, port, "after")
        servers.append(again)
        again.wait_ready()
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(10)
    assert "Traceback" not in out + err, (out, err)
    assert waiting.returncode == 3, (out, err)
    assert "deployment 1: deploy of web to release 1 pending" in out
    assert "timed out" in out and "goes on" in out, out
    assert "waiting for the server" in err, err  # it noticed, and waited
