"""Lean simulated hosts for the fan-out benchmark: the agent's messages without its work.

The fan-out's simulated agents (bench/sim_agents.py) run the real agent code, and all N of
them share one process on this two-core machine. A deploy costs each about 225 µs of CPU
(planning twice, the probe, three container lists, metrics, the status, the `websockets`
client), so at 10,000 hosts their summed work, 2.3-2.7 s, is one core's critical path from
the first push to the last ready status. On a real fleet every host does its share in
parallel, on its own CPU. That measurement says how fast one core can play 10,000 agents;
it cannot say what the server adds on top of the transport, which is what the fan-out is
compared with the floor for.

A lean host answers the way such an agent does, at the cost of the floor's own clients
(bench/transport_floor.py: the same aiohttp client, one task per host): it says hello,
takes each newer desired state, and sends at once the one status a real agent with the
fake driver ends its pass with (bench/fake_driver.py, agent/reconcile.py): the assigned
release running and ready, the release it replaced stopped, the two newest good releases
kept stopped, the images it holds with their digests. So the server does the same work
as with real agents (the same messages, of the same sizes), and the time is the server's
and the wire's.

A benchmark tool only, like the fake driver: it is never evidence that an agent works.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from agent.client import AGENT_VERSION
from agent.codec import encode
from agent.protocol import Hello
from agent.reconcile import DEFAULT_RETAIN, container_name
from bench.fake_driver import FAKE_DOCKER_VERSION, fake_digest

RECONNECT_SECONDS = 1.0


class LeanHost:
    """One simulated host (see the module docstring). Its timing fields are those of
    bench.sim_agents.SimAgent, so the benchmark asks both kinds the same questions."""

    _ids = 0  # container ids unique across the process's hosts

    def __init__(self, host: str, token: str, server_url: str, counters: Any) -> None:
        self.host = host
        self.token = token
        self.url = server_url.rstrip("/") + "/v1/agent/connect"
        self.counters = counters
        self.connected = asyncio.Event()
        self.generation = -1
        self.instances: list[dict[str, Any]] = []
        self.images: set[str] = set()
        # wall-clock times, as SimAgent notes them
        self.accepted_at = 0.0
        self.accepts: list[float] = []
        self.prepull_taken: dict[str, float] = {}
        self.assignment_taken: dict[str, float] = {}
        self.ran_at: dict[str, float] = {}
        self.pulled_sent: dict[str, float] = {}
        self.ready_sent: dict[str, float] = {}

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Stay connected (reconnecting after a second) until cancelled."""
        hello = encode(Hello(self.host, AGENT_VERSION, FAKE_DOCKER_VERSION))
        while True:
            try:
                async with session.ws_connect(
                    self.url,
                    headers={"Authorization": f"Bearer {self.token}"},
                    compress=0,
                    max_msg_size=64 * 1024 * 1024,
                ) as ws:
                    await ws.send_str(hello)
                    await self._report(ws)
                    self.connected.set()
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        body = orjson.loads(msg.data)
                        if body.get("type") == "desired" and body["generation"] > self.generation:
                            self.counters.desired_taken += 1
                            self.counters.desired_bytes += len(msg.data)
                            self.take(body)
                            await self._report(ws)
            except (aiohttp.ClientError, OSError):
                pass
            self.connected.clear()
            await asyncio.sleep(RECONNECT_SECONDS)

    def take(self, desired: dict[str, Any]) -> None:
        """Become what an agent with the fake driver is at the end of its pass."""
        now = time.time()
        self.generation = desired["generation"]
        self.accepted_at = now
        self.accepts.append(now)
        wanted_images = set()
        for p in desired.get("prepull", ()):
            self.prepull_taken.setdefault(p["image"], now)
            wanted_images.add(p["image"])
        wanted = {a["app"]: a for a in desired.get("assignments", ())}
        after: list[dict[str, Any]] = []
        for app in sorted({i["app"] for i in self.instances} | set(wanted)):
            mine = [i for i in self.instances if i["app"] == app]
            a = wanted.get(app)
            release = a["release"] if a is not None else None
            current = [i for i in mine if i["release"] == release]
            if a is not None:
                image = a["spec"]["image"]
                self.assignment_taken.setdefault(image, now)
                wanted_images.add(image)
                for replica in range(a["replicas"]):
                    if not any(i["replica"] == replica for i in current):
                        current.append(self._run(a, replica))
                        self.ran_at.setdefault(image, now)
            old = [i for i in mine if i["release"] != release]
            after += self._retained(old, a["keep"] if a is not None else ()) + current
        self.instances = after
        self.images = wanted_images | {i["image"] for i in after}

    def _retained(self, old: list[dict[str, Any]], good: Any) -> list[dict[str, Any]]:
        """The old instances an agent keeps, stopped: those of the newest DEFAULT_RETAIN
        good releases the server names, else of the newest (agent/reconcile.py _retire)."""
        releases = sorted({i["release"] for i in old}, reverse=True)
        named = [r for r in good if r in releases]
        kept = set(
            sorted(named, reverse=True)[:DEFAULT_RETAIN] if good else releases[:DEFAULT_RETAIN]
        )
        return [
            {**i, "state": "exited", "exit_code": 143, "ready": False}
            if i["state"] == "running"
            else i
            for i in old
            if i["release"] in kept
        ]

    def _run(self, a: dict[str, Any], replica: int) -> dict[str, Any]:
        LeanHost._ids += 1
        return {
            "container_id": f"lean{LeanHost._ids:012x}",
            "name": container_name(a["app"], a["release"], replica, self.host),
            "host": self.host,
            "app": a["app"],
            "release": a["release"],
            "replica": replica,
            "deployment": a["deployment"],
            "state": "running",
            "health": "none",
            "exit_code": None,
            "image": a["spec"]["image"],
            "ports": [
                {
                    "container": p["container"],
                    "host_ip": p.get("host_ip", "127.0.0.1"),
                    "host_port": p.get("host") or 20000 + LeanHost._ids % 40000,
                    "protocol": p.get("protocol", "tcp"),
                }
                for p in a["spec"].get("ports", ())
            ],
            "ready": True,  # its probe (the fake exec) passes at once
        }

    async def _report(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        status = {
            "host": self.host,
            "generation": max(self.generation, 0),
            "instances": self.instances,
            "digests": sorted((image, fake_digest(image)) for image in self.images),
            "problems": [],
            "type": "status",
        }
        text = orjson.dumps(status).decode()
        await ws.send_str(text)
        self.counters.status_sent += 1
        self.counters.status_bytes += len(text)
        now = time.time()
        for image in self.images:
            self.pulled_sent.setdefault(image, now)
        for i in self.instances:
            if i["ready"]:
                self.ready_sent.setdefault(i["image"], now)
