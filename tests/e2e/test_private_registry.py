"""A private registry (issue 18 item 2), against Debian's docker-registry with htpasswd on
127.0.0.1 (the Engine trusts loopback registries without TLS) and the real Engine: a deploy
without credentials fails with a clear pull error; an admin stores them (POST
/v1/registries, never shown again) and the next deploy pulls with them."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.db import tokens
from server.keys import SESSIONS
from tests.conftest import Flotilla, Images
from tests.e2e.registry import push, serving
from tests.harness import Engine, agent, eventually

USER, PASSWORD = "ci-bot", "s3cret-registry-pw"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """docker-registry with basic auth on 127.0.0.1:PORT, stopped by its pid."""
    htpasswd = shutil.which("htpasswd")
    assert htpasswd, "make test installs apache2-utils"
    line = subprocess.run(
        [htpasswd, "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout
    (tmp_path / "htpasswd").write_text(line)
    auth = {"htpasswd": {"realm": "flotilla-test", "path": str(tmp_path / "htpasswd")}}
    with serving(tmp_path, auth) as address:
        yield address


def _push(engine: Engine, source: str, registry: str) -> str:
    """Push `source` to the registry as private/web:v1; drop the local tag (agents pull)."""
    target = f"{registry}/private/web"
    push(engine, source, target, "v1", {"username": USER, "password": PASSWORD})
    api = engine.client.api
    api.remove_image(f"{target}:v1")
    return f"{target}:v1"


async def test_deploy_from_a_private_registry(
    flotilla: Flotilla, images: Images, engine: Engine, docker_url: str, registry: str
) -> None:
    api = flotilla.api
    image = await asyncio.to_thread(_push, engine, images.v1, registry)
    host, token = await flotilla.add_host()
    async with agent(flotilla.url, host, token, docker_url):
        d = await api.deploy("priv", {"image": image})
        failed = await api.wait(d["id"], timeout=60)
        assert failed["status"] == "failed", failed
        assert "no credentials for registry" in failed["error"], failed["error"]
        assert registry in failed["error"]

        async with flotilla.server.app[SESSIONS].begin() as session:
            deployer = await tokens.create_token(session, "ci", ["deploy"])
        body = {"registry": registry, "username": USER, "password": PASSWORD}
        status, _ = await api.call("POST", "/v1/registries", body, token=deployer)
        assert status == 403
        status, bad = await api.call("POST", "/v1/registries", {**body, "registry": "a b"})
        assert status == 422 and bad["errors"][0]["field"] == "registry"
        status, made = await api.call("POST", "/v1/registries", body)
        assert status == 201 and made == {"registry": registry, "username": USER}
        status, listed = await api.call("GET", "/v1/registries")
        assert status == 200 and [r["username"] for r in listed["registries"]] == [USER]

        d = await api.deploy("priv", {"image": image})
        done = await api.wait(d["id"], timeout=90)
        assert done["status"] == "succeeded", done

        seen = []  # the password is nowhere a caller can look
        for path in ("/v1/registries", "/v1/apps/priv", "/v1/events?limit=1000", "/v1/audit"):
            status, answer = await api.call("GET", path)
            seen.append(json.dumps(answer))
        assert all(PASSWORD not in text for text in seen)

        status, _ = await api.call("DELETE", f"/v1/registries/{registry}")
        assert status == 204
        status, listed = await api.call("GET", "/v1/registries")
        assert listed["registries"] == []

        async def running() -> bool:
            return len(engine.containers(host, "priv", all=False)) == 1

        assert await eventually(running, timeout=30)
