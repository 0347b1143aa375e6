"""The Docker Engine is a dependency that can fail (issue 20 item 4), against a real one.

An agent starts before its host's Engine does (a dockerd that boots late): it keeps running,
the server shows the host `engine_unavailable` with the reason and records an event, a
rollout to it waits past its healthy_deadline instead of failing the release, and once the
Engine is up the rollout succeeds. The Engine is a private one this test starts and stops by
its own directory (scripts/docker-engine.sh), so the suite's shared Engine is never touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import Flotilla, Images
from tests.e2e.fleet import simple
from tests.harness import ROOT, agent, eventually

SCRIPT = ROOT / "scripts" / "docker-engine.sh"


def _engine(command: str, where: Path) -> str:
    done = subprocess.run(
        [str(SCRIPT), command, str(where)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _build(url: str, tag: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh"), tag, "--no-check", "--text", "late"],
        check=True,
        capture_output=True,
        env={**os.environ, "DOCKER_HOST": url},
        timeout=120,
    )


async def test_an_agent_rides_out_an_engine_that_is_down(flotilla_sqlite: Flotilla, images: Images):
    f = flotilla_sqlite
    where = Path(tempfile.mkdtemp(prefix="flt-eo.", dir="/tmp"))
    url = f"unix://{where}/docker.sock"  # nothing answers there yet
    name, token = await f.add_host()
    try:
        # the image is in the Engine before it goes down (no registry is reachable here)
        assert await asyncio.to_thread(_engine, "start", where) == url
        await asyncio.to_thread(_build, url, images.v1)
        await asyncio.to_thread(_engine, "stop", where)
        async with agent(f.url, name, token, url):

            async def engine_unavailable() -> dict | None:
                _, body = await f.api.call("GET", "/v1/hosts")
                (host,) = body["hosts"]
                return host if host["status"] == "engine_unavailable" else None

            host = await eventually(engine_unavailable, timeout=30)
            assert "Docker Engine unavailable" in host["engine_error"]

            strategy = {"healthy_deadline": 2, "progress_deadline": 600}
            d = await f.api.deploy("late", simple(images.v1, strategy=strategy))
            await asyncio.sleep(5)  # past the healthy deadline: a fault is no verdict
            assert (await f.api.deployment(d["id"]))["status"] in ("pending", "running")

            assert await asyncio.to_thread(_engine, "start", where) == url
            done = await f.api.wait(d["id"], timeout=90)
            assert done["status"] == "succeeded", (done.get("error"), done.get("hosts"))

            async def connected() -> bool:
                _, body = await f.api.call("GET", "/v1/hosts")
                return body["hosts"][0]["status"] == "connected"

            assert await eventually(connected, timeout=30)

            async def both_events() -> bool:  # agents' events are written in batches
                _, events = await f.api.call("GET", "/v1/events?limit=1000")
                kinds = {e["kind"] for e in events["events"] if e.get("host") == name}
                return {"host_engine_unavailable", "host_engine_available"} <= kinds

            assert await eventually(both_events, timeout=10)
            _, releases = await f.api.call("GET", "/v1/apps/late/releases")
            assert all(r.get("outcome") != "bad" for r in releases["releases"])
    finally:
        await asyncio.to_thread(subprocess.run, [str(SCRIPT), "stop", str(where)], timeout=120)
        shutil.rmtree(where, ignore_errors=True)
