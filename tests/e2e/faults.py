"""A live fleet to inject faults into, and the invariants checked after each fault.

`Stack` runs `flotilla server` and three `flotilla agent`s as subprocesses (so any of them
can be killed with SIGKILL, frozen with SIGSTOP or stopped with SIGTERM, by its own pid) on
a Docker Engine and a database of the caller's choice. `verify` is the check that follows
every fault (issue 20):

- no acknowledged deployment lost: every 202 is in GET /v1/deployments;
- nothing stuck: every acknowledged deployment ends within ENDED_WITHIN seconds of the
  fault's end;
- converged within CONVERGED_WITHIN seconds: the newest acknowledged deployment of each app
  succeeded, it is the app's current release, every host is connected, and `docker ps` by
  the `flotilla.host` label shows on each host exactly one running instance per replica of
  that release and none of anything else (no duplicate, no orphan of a removed app);
- no release marked `bad` (GET /v1/apps/{app}/releases): no fault is a verdict;
- no traceback in the server's log.

Used by tests/e2e/test_faults.py (`make test`) and bench/soak.py (`make soak`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from agent.protocol import LABEL_APP, LABEL_RELEASE
from tests.harness import Api, Engine, Process, free_port

TERMINAL = frozenset({"succeeded", "failed", "rolled_back", "cancelled", "superseded"})
ENDED_WITHIN = 60.0  # seconds after a fault ends: every acknowledged deployment has ended
CONVERGED_WITHIN = 60.0  # seconds after a fault ends: the fleet runs the last accepted state
HEALTH = {"type": "http", "port": 80, "path": "/health", "interval": 0.5}


@dataclass(frozen=True)
class Figure:
    """What one fault cost: the row of the printed table."""

    scenario: str
    converge_s: float  # from the fault's end until every invariant held
    deployments: int  # acknowledged (202) deployments of the scenario so far
    outcome: str  # the deployments' final states, e.g. "succeeded 3, superseded 1"


FIGURES: list[Figure] = []  # every figure of this process, for the printed table


def table(figures: Iterable[Figure]) -> str:
    """The figures as a small text table."""
    rows = [("scenario", "converged in", "deployments", "outcome")]
    rows += [(f.scenario, f"{f.converge_s:.1f} s", str(f.deployments), f.outcome) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def body(image: str, **strategy: Any) -> dict[str, Any]:
    """A deploy of `image` with an HTTP health check, one host at a time unless told."""
    return {
        "image": image,
        "ports": [{"container": 80}],
        "health": HEALTH,
        "strategy": {"max_parallel": 1, **strategy},
    }


@dataclass
class Stack:
    """A server and three agents as subprocesses, on `docker_url` and `database_url`."""

    workdir: Path
    database_url: str
    docker_url: str
    size: int = 3
    port: int = field(default_factory=free_port)
    prefix: str = field(default_factory=lambda: f"ft{uuid.uuid4().hex[:6]}")
    server: Process | None = None
    agents: dict[str, Process] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    acked: dict[int, str] = field(default_factory=dict)  # deployment id -> app
    api: Api | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def hosts(self) -> list[str]:
        """The hosts' names, in rollout order."""
        return [f"{self.prefix}{chr(ord('a') + i)}" for i in range(self.size)]

    @property
    def engine(self) -> Engine:
        """The Docker Engine the agents manage."""
        return Engine(self.docker_url)

    def start_server(self) -> None:
        """Start `flotilla server` (its log is appended to workdir/server.log)."""
        args = ["server", "--data-dir", str(self.workdir), "--listen", f"127.0.0.1:{self.port}"]
        args += ["--database-url", self.database_url]
        self.server = Process(args, {}, self.workdir / "server.log")

    def start_agent(self, host: str) -> None:
        """Start the agent of `host`."""
        args = ["agent", "--server", self.url, "--name", host, "--metrics-listen", "off"]
        env = {"FLOTILLA_HOST_TOKEN": self.tokens[host], "DOCKER_HOST": self.docker_url}
        self.agents[host] = Process(args, env, self.workdir / f"agent-{host}.log")

    async def open(self) -> None:
        """Start the server, register the hosts, start their agents, wait until connected."""
        self.start_server()
        token = self.workdir / "admin.token"
        await until(lambda: _has_text(token), 30, "the server wrote no admin token")
        self.api = Api(self.url, token.read_text().strip())
        await self.ready()
        for host in self.hosts:
            status, answer = await self.call("POST", "/v1/hosts", {"name": host})
            assert status == 201, (status, answer)
            self.tokens[host] = answer["token"]
            self.start_agent(host)
        await until(self._all_connected, 30, "the agents did not connect")

    async def close(self) -> None:
        """Stop every process by its pid; remove the hosts' containers by their label."""
        for proc in self.agents.values():
            with contextlib.suppress(ProcessLookupError):
                proc.proc.send_signal(signal.SIGCONT)  # a frozen one can hear SIGTERM
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.agents.values()))
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        if self.api is not None:
            await self.api.close()
        engine = self.engine
        for host in self.hosts:
            with contextlib.suppress(Exception):  # a private engine may be gone already
                await asyncio.to_thread(engine.remove_host_containers, host)
        engine.client.close()

    async def ready(self) -> None:
        """Wait until the server answers /readyz."""

        async def answers() -> str | None:
            try:
                status, _ = await self._api.call("GET", "/readyz")
            except (aiohttp.ClientError, OSError):
                return "no answer"
            return None if status == 200 else f"readyz {status}"

        await until(answers, 30, "the server did not become ready")

    async def kill_server(self) -> None:
        """SIGKILL the server."""
        assert self.server is not None
        await asyncio.to_thread(self.server.kill)

    async def restart_server(self) -> None:
        """Start the server again and wait until it is ready."""
        self.start_server()
        await self.ready()

    @property
    def _api(self) -> Api:
        assert self.api is not None
        return self.api

    async def call(
        self, method: str, path: str, json: Any = None, within: float = 30
    ) -> tuple[int, Any]:
        """A REST call that rides out a server that is restarting (no answer, or 503):
        retried until `within` seconds passed. A POST carries one Idempotency-Key for all
        its tries, so a retry never makes a second deployment."""
        headers = {"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else None
        deadline = time.monotonic() + within
        while True:
            try:
                status, answer = await self._api.call(method, path, json, headers=headers)
                if status != 503 or time.monotonic() > deadline:
                    return status, answer
            except (aiohttp.ClientError, OSError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def deploy(self, app: str, spec: dict[str, Any]) -> int:
        """POST a deployment; remember it once answered 202."""
        status, answer = await self.call("POST", f"/v1/apps/{app}/deployments", spec)
        assert status == 202, (status, answer)
        self.acked[answer["id"]] = app
        return int(answer["id"])

    async def rollback(self, app: str) -> int | None:
        """POST a rollback; remember it once answered 202 (a 409 is a refusal, not a loss)."""
        status, answer = await self.call("POST", f"/v1/apps/{app}/rollback", {})
        assert status in (202, 409), (status, answer)
        if status != 202:
            return None
        self.acked[answer["id"]] = app
        return int(answer["id"])

    async def deployment(self, deployment_id: int) -> dict[str, Any]:
        """GET /v1/deployments/{id}."""
        status, answer = await self.call("GET", f"/v1/deployments/{deployment_id}")
        assert status == 200, (status, answer)
        return dict(answer)

    async def settled(self, app: str, spec: dict[str, Any]) -> int:
        """Deploy and wait until it succeeded (the state a fault starts from)."""
        deployment_id = await self.deploy(app, spec)

        async def ended() -> str | None:
            d = await self.deployment(deployment_id)
            return None if d["status"] in TERMINAL else d["status"]

        await until(ended, ENDED_WITHIN, f"deployment {deployment_id} did not end")
        d = await self.deployment(deployment_id)
        assert d["status"] == "succeeded", (d, self.tail())
        return deployment_id

    async def when_hosts(
        self, deployment_id: int, wanted: Callable[[list[str]], bool], within: float = 30
    ) -> None:
        """Wait until the deployment's host states satisfy `wanted` (polled every 50 ms)."""

        async def check() -> str | None:
            d = await self.deployment(deployment_id)
            states = [h["state"] for h in d["hosts"]]
            return None if wanted(states) else f"{d['status']} {states}"

        await until(check, within, f"deployment {deployment_id}", interval=0.05)

    async def _all_connected(self) -> str | None:
        status, answer = await self.call("GET", "/v1/hosts")
        states = {h["name"]: h["status"] for h in answer["hosts"]} if status == 200 else {}
        return None if all(states.get(h) == "connected" for h in self.hosts) else str(states)

    def pushes(self) -> int:
        """How many desired states the agents have logged taking (for telling whether a
        kill came before the first push of a deployment)."""
        logs = [self.workdir / f"agent-{host}.log" for host in self.hosts]
        return sum(p.read_text(errors="replace").count("desired state host=") for p in logs)

    def tail(self, lines: int = 30) -> str:
        """The end of the server's log, for a failure's message."""
        path = self.workdir / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def until(
    check: Callable[[], Awaitable[str | None]],
    within: float,
    what: str,
    interval: float = 0.2,
) -> float:
    """Poll `check` (None: done, else what is still wrong) until done; the seconds it took.
    Fails with the last thing wrong after `within` seconds."""
    began = time.monotonic()
    while True:
        wrong = await check()
        if wrong is None:
            return time.monotonic() - began
        if time.monotonic() - began > within:
            raise AssertionError(f"{what} within {within:.0f} s: {wrong}")
        await asyncio.sleep(interval)


async def _has_text(path: Path) -> str | None:
    def check() -> bool:
        return path.exists() and bool(path.read_text().strip())

    return None if await asyncio.to_thread(check) else "missing"


async def verify(
    stack: Stack,
    scenario: str,
    since: float,
    apps: list[str],
    gone: Iterable[str] = (),
    note: str = "",
) -> Figure:
    """The invariants after a fault that ended at `since` (time.monotonic()); `apps` must be
    converged, `gone` removed. Records and returns the figure (`note` ends its outcome)."""
    listed: dict[int, dict[str, Any]] = {}

    async def read() -> None:
        listed.clear()
        for app in {*apps, *gone}:
            status, answer = await stack.call("GET", f"/v1/deployments?app={app}&limit=1000")
            assert status == 200, (status, answer)
            listed.update({d["id"]: d for d in answer["deployments"]})

    await read()
    lost = sorted(set(stack.acked) - set(listed))
    assert not lost, f"{scenario}: acknowledged deployments lost: {lost}"

    async def ended() -> str | None:
        await read()
        stuck = {i: listed[i]["status"] for i in stack.acked if listed[i]["status"] not in TERMINAL}
        return str(stuck) if stuck else None

    await until(ended, ENDED_WITHIN - (time.monotonic() - since), f"{scenario}: stuck")

    async def converged() -> str | None:
        return await _converged(stack, apps, listed)

    await until(converged, CONVERGED_WITHIN - (time.monotonic() - since), f"{scenario}: diverged")
    took = time.monotonic() - since
    for app in apps:
        status, answer = await stack.call("GET", f"/v1/apps/{app}/releases")
        assert status == 200, (status, answer)
        bad = [r["number"] for r in answer["releases"] if r.get("outcome") == "bad"]
        assert not bad, f"{scenario}: {app} releases marked bad for a fault: {bad}"
    log = (stack.workdir / "server.log").read_text(errors="replace")
    assert "Traceback" not in log, f"{scenario}: a traceback in the server's log:\n{log[-3000:]}"
    await read()
    counts = collections.Counter(listed[i]["status"] for i in stack.acked)
    parts = [f"{s} {n}" for s, n in sorted(counts.items())]
    outcome = ", ".join([*parts, note] if note else parts)
    figure = Figure(scenario, took, len(stack.acked), outcome)
    FIGURES.append(figure)
    return figure


async def _converged(
    stack: Stack, apps: list[str], listed: dict[int, dict[str, Any]]
) -> str | None:
    """What still differs from the last accepted desired state; None once nothing does."""
    expected: dict[tuple[str, str], int] = {}
    for app in apps:
        newest = max(i for i, a in stack.acked.items() if a == app)
        d = listed[newest]
        assert d["status"] == "succeeded", (
            f"the newest deployment of {app} ended {d['status']}: {d.get('error')}",
            stack.tail(),
        )
        status, body = await stack.call("GET", f"/v1/apps/{app}")
        assert status == 200, (status, body)
        if body.get("current_release") != d["release"]:
            return f"{app}: current release {body.get('current_release')}, not {d['release']}"
        expected[(app, str(d["release"]))] = int((body.get("spec") or {}).get("replicas", 1))
    wrong = await stack._all_connected()
    if wrong:
        return f"hosts not connected: {wrong}"
    engine = stack.engine
    try:
        for host in stack.hosts:
            running = await asyncio.to_thread(engine.containers, host, None, False)
            seen = collections.Counter(
                (c.labels[LABEL_APP], c.labels[LABEL_RELEASE]) for c in running
            )
            if seen != collections.Counter(expected):
                return f"{host} runs {dict(seen)}, expected {expected}"
    finally:
        engine.client.close()
    return None
