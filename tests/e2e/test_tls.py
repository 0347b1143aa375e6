"""TLS end to end, with a throwaway CA (tests/tls.py): `flotilla server --tls-cert --tls-key
--agent-ca` serves HTTPS and WSS; the CLI verifies it with `--ca` (or FLOTILLA_CA) and
refuses it without; an agent with `--ca` and a client certificate naming its host deploys a
container on the real Docker Engine; an agent whose certificate names another host, or that
has none, is refused (403, audited, counted) and says why. No traceback anywhere."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Images
from tests.harness import (
    Api,
    Engine,
    Process,
    Ran,
    eventually,
    fetch_text,
    finish,
    free_port,
    published_port,
    start_cli,
    unique,
)
from tests.tls import Authority


@dataclass
class TlsServer:
    """`flotilla server` over TLS with mutual TLS for agents, and its admin API client."""

    url: str
    pki: Authority
    folder: Path
    api: Api
    docker_url: str
    agents: list[Process] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    async def cli(self, *args: str, ca: bool = True, env: dict[str, str] | None = None) -> Ran:
        """`flotilla COMMAND --server URL --token T [--ca CA] ARGS...`."""
        command, rest = args[0].split(), args[1:]
        flags = ["--server", self.url, "--token", self.api.token]
        flags += ["--ca", str(self.pki.ca)] if ca else []
        return await finish(await start_cli(*command, *flags, *rest, env=env))

    async def add_host(self) -> tuple[str, str]:
        name = unique("tls")
        ran = await self.cli("host add", name)
        assert ran.code == 0, ran
        self.hosts.append(name)
        return name, ran.out.strip().splitlines()[-1]

    def start_agent(self, name: str, token: str, *flags: str) -> Process:
        args = ["agent", "--server", self.url, "--name", name, "--metrics-listen", "off"]
        env = {"FLOTILLA_HOST_TOKEN": token, "DOCKER_HOST": self.docker_url}
        agent = Process([*args, *flags], env, self.folder / f"agent-{len(self.agents)}.log")
        self.agents.append(agent)
        return agent

    async def host(self, name: str) -> dict[str, object]:
        status, body = await self.api.call("GET", "/v1/hosts")
        assert status == 200, body
        return next(h for h in body["hosts"] if h["name"] == name)


@pytest.fixture
async def tls(tmp_path: Path, engine: Engine, docker_url: str) -> AsyncIterator[TlsServer]:
    pki = Authority(tmp_path / "pki")
    cert, key = pki.server()
    data, port = tmp_path / "data", free_port()
    args = ["server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)]
    args += ["--tls-cert", str(cert), "--tls-key", str(key), "--agent-ca", str(pki.ca)]
    server = Process(args, {}, tmp_path / "server.log")
    url = f"https://127.0.0.1:{port}"
    api: Api | None = None
    s: TlsServer | None = None
    try:
        token_file = data / "admin.token"
        await eventually(lambda: _read(token_file), timeout=30)
        api = Api(url, token_file.read_text().strip(), ssl.create_default_context(cafile=pki.ca))
        await eventually(lambda: _ready(api), timeout=30)
        s = TlsServer(url, pki, tmp_path, api, docker_url)
        yield s
    finally:
        for agent in s.agents if s else []:
            agent.stop()
        server.stop()
        if api is not None:  # closed before any check below can fail: nothing leaks
            await api.close()
        for host in s.hosts if s else []:
            await asyncio.to_thread(engine.remove_host_containers, host)
        for agent in s.agents if s else []:
            assert "Traceback" not in agent.output(), agent.output()
        assert "Traceback" not in server.output(), server.output()


async def _read(path: Path) -> bool:
    return await asyncio.to_thread(lambda: path.exists() and bool(path.read_text().strip()))


async def _ready(api: Api) -> bool:
    try:
        return (await api.call("GET", "/readyz"))[0] == 200
    except (aiohttp.ClientError, OSError):
        return False


async def test_rest_and_the_cli_over_tls(tls: TlsServer) -> None:
    ran = await tls.cli("hosts -o json")
    assert ran.code == 0, ran
    assert json.loads(ran.out)["hosts"] == []
    ran = await tls.cli("token list", ca=False, env={"FLOTILLA_CA": str(tls.pki.ca)})
    assert ran.code == 0, ran
    assert ran.out.splitlines()[1].split()[:2] == ["admin", "admin"], ran.out
    # mutual TLS is for agents: REST callers need no client certificate (above), and an
    # https:// server whose CA the CLI was not given is refused, with what to do
    ran = await tls.cli("hosts", ca=False)
    assert ran.code == 5, ran
    assert ran.err.count("\n") == 1, ran.err
    assert "certificate" in ran.err and "--ca FILE" in ran.err, ran.err
    # the server speaks nothing but TLS
    plain = Api(tls.url.replace("https", "http"), "x")
    try:
        with pytest.raises(aiohttp.ClientError):
            await plain.call("GET", "/readyz")
    finally:
        await plain.close()


async def test_an_agent_over_wss_deploys(tls: TlsServer, images: Images, engine: Engine) -> None:
    host, token = await tls.add_host()
    cert, key = tls.pki.client(host)
    agent = tls.start_agent(
        host, token, "--ca", str(tls.pki.ca), "--cert", str(cert), "--key", str(key)
    )

    async def connected() -> bool:
        return (await tls.host(host))["status"] == "connected"

    await eventually(connected, timeout=30)
    ran = await tls.cli("deploy", "web", images.v1, "--port", "80", "--wait", "--timeout", "90")
    assert ran.code == 0, (ran, agent.output())
    app = await tls.api.app("web")
    port = published_port(app, host, 1)
    assert port is not None, app
    assert await eventually(lambda: fetch_text(port), timeout=20) == "v1"
    assert [c.labels["flotilla.release"] for c in engine.containers(host, "web")] == ["1"]
    assert "connected host=" in agent.output() and "wss://127.0.0.1" in agent.output()


async def test_mutual_tls_refuses_another_hosts_certificate(tls: TlsServer) -> None:
    host, token = await tls.add_host()
    other_cert, other_key = tls.pki.client("someone-else")
    wrong = tls.start_agent(
        host, token, "--ca", str(tls.pki.ca), "--cert", str(other_cert), "--key", str(other_key)
    )
    why = f"the client certificate is for someone-else, not host {host}"

    await eventually(lambda: _has(wrong, f"server refused host={host} (HTTP 403): {why}"))
    wrong.stop()
    bare = tls.start_agent(host, token, "--ca", str(tls.pki.ca))  # no client certificate
    needs = f"host {host} must present a client certificate signed by the agents' CA"
    await eventually(lambda: _has(bare, f"server refused host={host} (HTTP 403): {needs}"))
    bare.stop()
    assert (await tls.host(host))["status"] == "disconnected"

    status, body = await tls.api.call("GET", "/v1/audit?action=agent.connect")
    assert status == 200, body
    details = {(e["outcome"], e["detail"]) for e in body["audit"]}
    assert {(403, why), (403, needs)} <= details, details
    status, metrics = await tls.api.call("GET", "/metrics")
    assert 'flotilla_agent_reports_refused_total{reason="certificate"} 2.0' in metrics

    # the right certificate for the same host and token is accepted
    cert, key = tls.pki.client(host)
    tls.start_agent(host, token, "--ca", str(tls.pki.ca), "--cert", str(cert), "--key", str(key))

    async def connected() -> bool:
        return (await tls.host(host))["status"] == "connected"

    await eventually(connected, timeout=30)


async def test_a_certificate_from_another_ca_fails_the_handshake(tls: TlsServer) -> None:
    host, token = await tls.add_host()
    stranger = Authority(tls.folder / "stranger", "another CA")
    cert, key = stranger.client(host)
    agent = tls.start_agent(
        host, token, "--ca", str(tls.pki.ca), "--cert", str(cert), "--key", str(key)
    )

    # over TLS 1.3 the server refuses it after the handshake, by closing the connection
    await eventually(lambda: _has(agent, "if it runs with --agent-ca, is --cert signed by"))
    assert "connected host=" not in agent.output()
    assert (await tls.host(host))["status"] == "disconnected"
    agent.stop()
    # and an agent that does not trust the server's CA says why
    plain = tls.start_agent(host, token)
    failed = f"TLS with wss://{tls.url[8:]}/v1/agent/connect failed host={host}"
    await eventually(lambda: _has(plain, f"{failed}: CERTIFICATE_VERIFY_FAILED"))
    assert "check --ca, --cert and --key" in plain.output()


async def _has(agent: Process, text: str) -> bool:
    return text in agent.output()
