"""The transport floor for the fan-out benchmark: a bare aiohttp WebSocket server.

No database and no Flotilla code runs but the collector settings (server/gc_tuning.py), which
the Flotilla server and the simulated agents use too. With CPython's defaults the collector made
the floor (10,000 sockets' objects in one heap) slower and noisier than what it is compared
with: eight pushes to 10,000 clients took 1.00-1.46 s (median 1.16), and 0.51-0.88 s (median
0.72) with these settings, one after the other on 2026-11-30.

The server's modules are loaded all the same (`server.app`): a process's heap is part of
what a push costs, and the floor stands on the server's. With only asyncio and aiohttp
loaded, each push's memory went back to the operating system once freed and was faulted in
again by the next (about 200 minor page faults per push to 100 clients, in the server and in
the clients' process alike; 2-5 with SQLAlchemy loaded too), and the push took 11.1 ms
against 8.2 (medians of six interleaved runs of 15 pushes each, 2026-12-07). The
Flotilla server, whose heap is large, does not pay for that, so neither does its floor.
(4fd1e55's floor loaded only the collector settings; since 776931a server/gc_tuning.py loads
SQLAlchemy and the database layer with them, by way of server/turns.py, server/loops.py and
server/db/store.py: 62 MiB of heap against 38. Now the floor loads all of the server's
modules, 82 MiB, on purpose: interleaved, three runs of each, 9.96 ms against 9.55 with
only those.)

The server holds N WebSockets, pushes one message of a given size to each (one `send_str`
after another, as Flotilla's hub does) and waits for one reply from each. Its clients run in
another process. What it costs to push to N sockets and hear back from them in Python with
aiohttp is the floor any Flotilla fan-out stands on.

    python -m bench.transport_floor serve --port P
    python -m bench.transport_floor clients --url http://127.0.0.1:P --count N

The server's control endpoints: GET /count (connected sockets), POST /push?size=S (push to
all, answer {"elapsed": seconds until the last reply, "replies": n}). With --status-interval,
each client also sends a status-sized message every that many seconds (the idle heartbeat
load of an agent), which the server parses as JSON and drops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

import server.app  # noqa: F401  (loaded, never run: the floor's heap is the server's)
from server.gc_tuning import tune_for_server


def padded(body: dict[str, Any], size: int) -> str:
    """JSON text of `body` padded with a "pad" field to `size` bytes (or a little more)."""
    body = {**body, "pad": ""}
    base = len(json.dumps(body, separators=(",", ":")))
    body["pad"] = "x" * max(0, size - base)
    return json.dumps(body, separators=(",", ":"))


# ---- server -------------------------------------------------------------------------------


class Floor:
    def __init__(self) -> None:
        self.sockets: set[web.WebSocketResponse] = set()
        self.push_id = 0
        self.replies = 0
        self.all_replied = asyncio.Event()
        self.statuses = 0

    async def ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, compress=False, max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                body = json.loads(msg.data)
                if body.get("type") == "reply" and body.get("id") == self.push_id:
                    self.replies += 1
                    if self.replies >= len(self.sockets):
                        self.all_replied.set()
                else:
                    self.statuses += 1
        finally:
            self.sockets.discard(ws)
        return ws

    async def count(self, _: web.Request) -> web.Response:
        return web.json_response({"connected": len(self.sockets), "statuses": self.statuses})

    async def push(self, request: web.Request) -> web.Response:
        size = int(request.query.get("size", "1000"))
        self.push_id += 1
        self.replies = 0
        self.all_replied.clear()
        text = padded({"type": "push", "id": self.push_id}, size)
        started = time.perf_counter()
        for ws in list(self.sockets):
            await ws.send_str(text)
        sent = time.perf_counter() - started
        try:
            await asyncio.wait_for(self.all_replied.wait(), 600)
        except TimeoutError:
            pass
        elapsed = time.perf_counter() - started
        return web.json_response(
            {"elapsed": elapsed, "sent": sent, "replies": self.replies, "size": len(text)}
        )


def serve(port: int) -> None:
    floor = Floor()
    app = web.Application()
    app.router.add_get("/ws", floor.ws)
    app.router.add_get("/count", floor.count)
    app.router.add_post("/push", floor.push)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ---- clients ------------------------------------------------------------------------------


async def client(
    session: aiohttp.ClientSession,
    url: str,
    reply_size: int,
    status_interval: float,
    connected: list[int],
) -> None:
    async with session.ws_connect(url + "/ws", heartbeat=15.0, compress=0) as ws:
        connected[0] += 1
        status = padded({"type": "status"}, reply_size)

        async def beat() -> None:
            while True:
                await asyncio.sleep(status_interval)
                await ws.send_str(status)

        beater = asyncio.create_task(beat()) if status_interval > 0 else None
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                body = json.loads(msg.data)
                await ws.send_str(padded({"type": "reply", "id": body["id"]}, reply_size))
        finally:
            if beater is not None:
                beater.cancel()


async def clients(args: argparse.Namespace) -> None:
    connected = [0]
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        started = time.monotonic()
        for i in range(args.count):
            tasks.append(
                asyncio.create_task(
                    client(session, args.url, args.reply_size, args.status_interval, connected)
                )
            )
            delay = started + (i + 1) / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        while connected[0] < args.count:
            failed = [t for t in tasks if t.done()]
            if failed:
                print(f"floor clients: {len(failed)} failed: {failed[0].exception()}", flush=True)
                break
            await asyncio.sleep(0.05)
        print(f"connected {connected[0]} in {time.monotonic() - started:.2f} s", flush=True)
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport_floor", description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("clients")
    c.add_argument("--url", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--reply-size", type=int, default=600)
    c.add_argument("--status-interval", type=float, default=0.0)
    c.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tune_for_server()
    if args.role == "serve":
        serve(args.port)
    else:
        asyncio.run(clients(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
