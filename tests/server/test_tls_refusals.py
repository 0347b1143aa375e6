"""What TLS refuses before anything listens or dials: plain HTTP on an address other machines
reach (the server, `flotilla dev`), a plain ws:// or http:// agent to such a server, and TLS
files or flags that cannot work. Each is one line and exit code 2, never a traceback; plain
HTTP on loopback stays allowed (the whole suite runs on it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT, free_port
from tests.tls import Authority


def flotilla(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**clean, **(env or {})},
    )


def refused(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one line a refused start printed (the rest may be INFO log lines)."""
    assert result.returncode == code, result
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("flotilla")]
    assert len(said) == 1, result.stderr
    return said[0]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("command", ["server", "dev"])
def test_plain_http_on_a_non_loopback_address_is_refused(command: str, tmp_path: Path) -> None:
    port = free_port()
    result = flotilla(command, "--listen", f"0.0.0.0:{port}", "--data-dir", str(tmp_path / "d"))
    line = refused(result)
    assert f"refusing to serve plain HTTP on 0.0.0.0:{port}" in line
    assert "--tls-cert" in line and "--insecure" in line
    assert not listening(port)
    assert not (tmp_path / "d").exists()  # refused before anything was made


def test_insecure_serves_plain_http_elsewhere_with_a_warning(tmp_path: Path) -> None:
    """--insecure lets it through, with a warning line at start. So that nothing is exposed
    by the test, the database is unreachable: the server stops on it before it listens."""
    port, dead = free_port(), free_port()
    url = f"postgresql+asyncpg://flotilla@127.0.0.1:{dead}/flotilla"
    result = flotilla(
        "server", "--listen", f"0.0.0.0:{port}", "--insecure", "--database-url", url,
        env={"FLOTILLA_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    line = refused(result, code=1)
    assert "cannot reach the database" in line
    assert f"serving plain HTTP on 0.0.0.0:{port}, which is not a loopback address" in (
        result.stderr
    )
    assert not listening(port)
    same = flotilla(
        "server", "--listen", f"0.0.0.0:{port}", "--database-url", url,
        env={"FLOTILLA_INSECURE": "1"},
    )  # fmt: skip
    assert "which is not a loopback address (--insecure)" in same.stderr, same.stderr


@pytest.mark.parametrize(
    "server", ["http://192.0.2.10:8700", "ws://192.0.2.10:8700", "http://control.example:8700"]
)
def test_the_agent_refuses_a_plain_url_to_another_machine(server: str) -> None:
    result = flotilla("agent", "--server", server, "--name", "web-1", "--token", "t")
    line = refused(result)
    assert line.startswith("flotilla agent: refusing plain ") and server in line, line
    assert "https://" in line and "--insecure" in line


def test_the_agent_flags_that_cannot_work(pki: Authority, tmp_path: Path) -> None:
    cert, _ = pki.client("web-1")
    base = ("agent", "--name", "web-1", "--token", "t", "--metrics-listen", "off")
    line = refused(flotilla(*base, "--server", "http://127.0.0.1:1", "--ca", str(pki.ca)))
    assert "--ca, --cert and --key need an https:// server" in line
    line = refused(flotilla(*base, "--server", "https://127.0.0.1:1", "--cert", str(cert)))
    assert "--cert and --key go together" in line
    missing = tmp_path / "nope.pem"
    line = refused(flotilla(*base, "--server", "https://127.0.0.1:1", "--ca", str(missing)))
    assert f"--ca {missing}" in line
    line = refused(
        flotilla(*base, "--server", "https://127.0.0.1:1", "--cert", str(cert), "--key", str(cert))
    )
    assert "--cert" in line and "matching private key" in line
    line = refused(flotilla(*base, "--server", "ftp://127.0.0.1:1"))
    assert "not an http(s):// or ws(s):// URL" in line


def test_the_server_flags_that_cannot_work(pki: Authority, tmp_path: Path) -> None:
    cert, key = pki.server()
    port = free_port()
    base = ("server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path))
    line = refused(flotilla(*base, "--tls-cert", str(cert)))
    assert "--tls-cert / FLOTILLA_TLS_CERT and --tls-key / FLOTILLA_TLS_KEY go together" in line
    line = refused(flotilla(*base, "--agent-ca", str(pki.ca)))
    assert "--agent-ca / FLOTILLA_AGENT_CA needs --tls-cert and --tls-key" in line
    line = refused(flotilla(*base, "--tls-cert", str(tmp_path / "x.pem"), "--tls-key", str(key)))
    assert f"--tls-cert {tmp_path / 'x.pem'}: no such file" in line
    line = refused(flotilla(*base, "--tls-cert", str(key), "--tls-key", str(key)))
    assert "not a PEM certificate and its matching private key" in line
    line = refused(
        flotilla(*base, "--tls-cert", str(cert), "--tls-key", str(key), "--agent-ca", str(key))
    )
    assert f"--agent-ca {key}: not a readable PEM CA certificate" in line
    assert not listening(port)


def test_the_cli_refuses_a_ca_file_it_cannot_use(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = flotilla(
        "hosts", "--server", "https://127.0.0.1:1", "--token", "t", "--ca", str(missing)
    )
    line = refused(result)
    assert f"--ca {missing}: not a readable PEM CA certificate" in line
