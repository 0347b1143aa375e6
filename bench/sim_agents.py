"""Simulated hosts for the fan-out benchmark: N real agents with a fake driver, one process.

    python -m bench.sim_agents --server http://127.0.0.1:PORT --tokens FILE --count N

Each simulated host is a real `agent.runner.Agent` with a real `agent.client.Connection` (a
real WebSocket client speaking the real protocol: hello, status as the agent acts, the full
status every 5 minutes, reconnect with backoff), but its Docker driver is
`bench.fake_driver.FakeDriver`, an in-memory simulation that answers at once. This is a
benchmark tool only: it is never evidence that a feature works. With --lean the hosts are
`bench.lean_hosts.LeanHost`s instead: the messages such an agent sends, without its work
(see that module for why).

TOKENS FILE: one "NAME TOKEN" per line. Connects are staggered (--rate per second). Prints
"connected N in S s" on stdout when every agent is connected. Then reads commands on stdin,
one per line, and answers one JSON line on stdout each:

    stats IMAGE   when each agent accepted its last desired state and created a container
                  of IMAGE (wall-clock times), and how many status messages were sent
    quit          stop

By default the fake driver's calls run inline instead of through asyncio.to_thread (the
driver answers at once, and 10,000 agents sharing one default thread pool would measure the
pool, not the server); --threads keeps the real thread hop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp

from agent.client import Connection
from agent.health import HealthTracker
from agent.protocol import DesiredState, Message, Status
from agent.runner import Agent
from bench.fake_driver import FakeDriver
from bench.lean_hosts import LeanHost
from server.gc_tuning import tune_for_server

T = TypeVar("T")


class Counters:
    def __init__(self) -> None:
        self.status_sent = 0
        self.other_sent = 0
        # lean hosts only (they hold the text): what the fan-out's floor is sized by
        self.status_bytes = 0  # of the statuses sent
        self.desired_taken = 0  # newer desired states taken
        self.desired_bytes = 0  # of those
        self.started = time.monotonic()


class SimAgent(Agent):
    """A real Agent that also notes when it took a desired state and ran each image."""

    def __init__(self, host: str, driver: FakeDriver, counters: Counters, **kw: Any) -> None:
        super().__init__(host, driver, **kw)
        self.counters = counters
        self.accepted_at = 0.0
        self.accepts: list[float] = []  # wall-clock time of every desired state taken
        self.prepull_taken: dict[str, float] = {}  # image -> first desired state listing it
        self.assignment_taken: dict[str, float] = {}  # image -> first one assigning it
        self.ran_at: dict[str, float] = {}
        self.pulled_sent: dict[str, float] = {}  # image -> first status that listed it
        self.ready_sent: dict[str, float] = {}  # image -> first status with it ready
        driver.on_run = self._note_run

    def _note_run(self, image: str) -> None:
        self.ran_at.setdefault(image, time.time())

    def accept(self, desired: DesiredState) -> bool:
        took = super().accept(desired)
        if took:
            self.accepted_at = now = time.time()
            self.accepts.append(now)
            for p in desired.prepull:
                self.prepull_taken.setdefault(p.image, now)
            for a in desired.assignments:
                self.assignment_taken.setdefault(a.spec.image, now)
        return took

    def attach(self, send: Callable[[Message], Any] | None) -> None:
        if send is None:
            super().attach(None)
            return
        counters = self.counters

        async def counted(message: Message) -> None:
            await send(message)
            if isinstance(message, Status):
                counters.status_sent += 1
                now = time.time()
                for image, _ in message.digests:
                    self.pulled_sent.setdefault(image, now)
                for inst in message.instances:
                    if inst.ready and inst.image:
                        self.ready_sent.setdefault(inst.image, now)
            else:
                counters.other_sent += 1

        super().attach(counted)


def probes_of(driver: FakeDriver) -> HealthTracker:
    """Command health checks through the fake driver's exec (which always succeeds)."""

    async def command_probe(container_id: str, command: tuple[str, ...], limit: float) -> bool:
        return await asyncio.to_thread(driver.exec_ok, container_id, command)

    return HealthTracker(command_probe=command_probe)


async def _inline(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return func(*args, **kwargs)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def read_tokens(path: str, count: int) -> list[tuple[str, str]]:
    pairs = []
    with open(path) as f:
        for line in f:
            name, _, token = line.strip().partition(" ")
            if name and token:
                pairs.append((name, token))
    if len(pairs) < count:
        raise SystemExit(f"sim_agents: {path} has {len(pairs)} tokens, {count} wanted")
    return pairs[:count]


async def main_async(args: argparse.Namespace) -> None:
    counters = Counters()
    pairs = read_tokens(args.tokens, args.count)
    agents: list[SimAgent | LeanHost] = []
    conns: list[Connection | LeanHost] = []
    tasks: list[asyncio.Task[None]] = []
    session = None
    if args.lean:  # one client session for all, as the floor's clients have
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    started = time.monotonic()
    for i, (name, token) in enumerate(pairs):
        if session is not None:
            lean = LeanHost(name, token, args.server, counters)
            agents.append(lean)
            conns.append(lean)
            tasks.append(asyncio.create_task(lean.run(session)))
        else:
            driver = FakeDriver(name)
            agent = SimAgent(
                name, driver, counters, poll_interval=args.poll_interval, health=probes_of(driver)
            )
            conn = Connection(agent, args.server, token, driver.version())
            agents.append(agent)
            conns.append(conn)
            tasks.append(asyncio.create_task(agent.run()))
            tasks.append(asyncio.create_task(conn.run()))
        # stagger: at most `rate` new connects per second
        due = started + (i + 1) / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    last = 0.0
    while True:
        up = sum(c.connected.is_set() for c in conns)
        if up == len(conns):
            break
        now = time.monotonic()
        if now - last > 5:
            print(f"sim_agents: {up}/{len(conns)} connected", file=sys.stderr, flush=True)
            last = now
        if now - started > args.connect_timeout:
            print(
                f"sim_agents: only {up}/{len(conns)} connected after {args.connect_timeout}s",
                file=sys.stderr,
                flush=True,
            )
            break
        await asyncio.sleep(0.1)
    up = sum(c.connected.is_set() for c in conns)
    # 10,000 agents in one heap make CPython's full collections slow (each real agent has a
    # small heap of its own): the same settings as the server's, so that the simulation
    # measures the agents' work, not the collector's
    tune_for_server()
    print(f"connected {up} in {time.monotonic() - started:.2f} s", flush=True)
    await serve_commands(agents, conns, counters)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if session is not None:
        await session.close()


async def serve_commands(
    agents: list[SimAgent | LeanHost], conns: list[Connection | LeanHost], counters: Counters
) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            return
        cmd, _, arg = line.partition(" ")
        if cmd == "stats":
            ran = [a.ran_at[arg] for a in agents if arg in a.ran_at]
            answer = {
                "agents": len(agents),
                "connected": sum(c.connected.is_set() for c in conns),
                "ran": ran,
                "accepted": [a.accepted_at for a in agents],
                "accepts": [a.accepts[-3:] for a in agents],
                "prepull_taken": [a.prepull_taken[arg] for a in agents if arg in a.prepull_taken],
                "assignment_taken": [
                    a.assignment_taken[arg] for a in agents if arg in a.assignment_taken
                ],
                "pulled_sent": [a.pulled_sent[arg] for a in agents if arg in a.pulled_sent],
                "ready_sent": [a.ready_sent[arg] for a in agents if arg in a.ready_sent],
                "status_sent": counters.status_sent,
                "other_sent": counters.other_sent,
                "status_bytes": counters.status_bytes,
                "desired_taken": counters.desired_taken,
                "desired_bytes": counters.desired_bytes,
                "seconds": time.monotonic() - counters.started,
                "now": time.time(),
            }
        else:
            answer = {"error": f"unknown command {cmd!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sim_agents", description=__doc__)
    parser.add_argument("--server", required=True, help="server URL, http://127.0.0.1:PORT")
    parser.add_argument("--tokens", required=True, help='file of "NAME TOKEN" lines')
    parser.add_argument("--count", type=int, required=True, help="how many agents")
    parser.add_argument("--rate", type=float, default=500.0, help="connects per second")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="agent poll (s)")
    parser.add_argument("--connect-timeout", type=float, default=600.0)
    parser.add_argument("--threads", action="store_true", help="keep asyncio.to_thread hops")
    parser.add_argument(
        "--lean",
        action="store_true",
        help="lean hosts (bench/lean_hosts.py): the agent's messages without its work",
    )
    parser.add_argument("--log-level", default="ERROR")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    limit = raise_fd_limit()
    if limit < args.count + 100:
        print(f"sim_agents: fd limit {limit} is too low for {args.count}", file=sys.stderr)
        return 2
    if not args.threads:
        asyncio.to_thread = _inline  # this process only
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
