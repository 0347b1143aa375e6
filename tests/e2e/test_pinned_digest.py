"""Pinned digests (issue 18 item 3), against Debian's docker-registry on 127.0.0.1 and the
real Engine: a release runs the digest its first host resolved, though its tag moves between
two batches and again before a rollback; GET /v1/apps/{app}/releases shows it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Flotilla, Images
from tests.e2e.fleet import Fleet, fleet, simple
from tests.e2e.registry import push, serving
from tests.harness import Engine, eventually


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """docker-registry on 127.0.0.1:PORT (no auth), stopped by its pid."""
    with serving(tmp_path) as address:
        yield address


def _push(engine: Engine, source: str, repo: str, tag: str) -> str:
    """Tag `source` as repo:tag and push it (the tag moves if it was elsewhere); its digest.
    The engine's local repo:tag is then that image, as on a host that pulled the moved tag."""
    push(engine, source, repo, tag)
    api = engine.client.api
    digests = api.inspect_image(f"{repo}:{tag}")["RepoDigests"]
    return next(d.split("@")[1] for d in digests if d.startswith(f"{repo}@"))


async def _runs(engine: Engine, fl: Fleet, app: str, image_id: str) -> bool:
    """Does every host run exactly one container of `app`, of the image `image_id`?"""
    for host in fl.hosts:
        running = engine.containers(host, app, all=False)
        if len(running) != 1 or running[0].attrs["Image"] != image_id:
            return False
    return True


async def _digests(f: Flotilla, app: str) -> dict[int, Any]:
    status, body = await f.api.call("GET", f"/v1/apps/{app}/releases")
    assert status == 200, body
    return {r["number"]: r["digest"] for r in body["releases"]}


async def test_a_release_keeps_its_digest_across_batches_and_a_rollback(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine, registry: str
):
    f = flotilla_sqlite
    repo = f"{registry}/pin/web"
    first = await asyncio.to_thread(_push, engine, images.v1, repo, "v1")
    await asyncio.to_thread(engine.client.api.remove_image, f"{repo}:v1")  # hosts pull it
    v1_id = engine.client.images.get(images.v1).id
    async with fleet(f, docker_url, size=2) as fl:
        d1 = await f.api.deploy(
            "web", simple(f"{repo}:v1", strategy={"canary": 1, "max_parallel": 1})
        )

        async def paused() -> bool:
            return (await f.api.deployment(d1["id"]))["status"] == "paused"

        assert await eventually(paused, timeout=60)

        async def pinned() -> bool:
            return (await _digests(f, "web")).get(1) == first

        assert await eventually(pinned, timeout=30)  # by the canary's pull

        # the tag moves between the batches: the registry's and this engine's local tag
        moved = await asyncio.to_thread(_push, engine, images.v2, repo, "v1")
        assert moved != first
        status, body = await f.api.call("POST", f"/v1/deployments/{d1['id']}/promote")
        assert status == 200, body
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")  # the second host too runs the pinned image, not v2
        assert await _runs(engine, fl, "web", v1_id)
        (later,) = engine.containers(fl.hosts[1], "web")
        assert later.attrs["Config"]["Image"] == f"{repo}@{first}"  # made from the pin
        (canary,) = engine.containers(fl.hosts[0], "web")  # not made again for its pin
        assert canary.attrs["Config"]["Image"] == f"{repo}:v1"

        second = await asyncio.to_thread(_push, engine, images.v3, repo, "v3")
        d2 = await f.api.deploy("web", simple(f"{repo}:v3", strategy={"max_parallel": 2}))
        assert (await f.api.wait(d2["id"]))["status"] == "succeeded"
        await fl.serving("web", "v3")

        # the tag moves again before the rollback: release 1 still runs its digest
        again = await asyncio.to_thread(_push, engine, images.v3, repo, "v1")
        assert again == second != first  # v3's image, as pushed for release 2
        # and no host holds the tag any more: the pinned image is what counts as pulled
        await asyncio.to_thread(engine.client.api.remove_image, f"{repo}:v1")
        status, rollback = await f.api.call("POST", "/v1/apps/web/rollback", {})
        assert status == 202, rollback
        assert (await f.api.wait(rollback["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")
        assert await _runs(engine, fl, "web", v1_id)
        assert await _digests(f, "web") == {1: first, 2: second}


async def test_a_digest_in_the_reference_pins_the_release_at_once(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine, registry: str
):
    f = flotilla_sqlite
    repo = f"{registry}/pin/given"
    digest = await asyncio.to_thread(_push, engine, images.v2, repo, "v1")
    await asyncio.to_thread(_push, engine, images.v3, repo, "v1")  # the tag is elsewhere now
    async with fleet(f, docker_url, size=1) as fl:
        d = await f.api.deploy("given", simple(f"{repo}:v1@{digest}"))
        assert (await _digests(f, "given")) == {1: digest}  # before any host pulled it
        assert (await f.api.wait(d["id"]))["status"] == "succeeded"
        await fl.serving("given", "v2")
