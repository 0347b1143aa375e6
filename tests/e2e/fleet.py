"""A fleet of in-process agents (distinct host names) on the test's Docker Engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tests.conftest import Flotilla
from tests.harness import agent, eventually, fetch_text, published_port


@dataclass
class Fleet:
    f: Flotilla
    hosts: list[str]

    async def serving(self, app: str, text: str, hosts: list[str] | None = None) -> None:
        """Wait until every host's instance of `app` answers `text` on its published port."""
        for host in hosts or self.hosts:

            async def answers(host: str = host) -> str | None:
                port = published_port(await self.f.api.app(app), host)
                got = await fetch_text(port) if port else None
                return got if got == text else None

            await eventually(answers, timeout=30)

    async def releases_running(self, app: str) -> dict[str, Any]:
        body = await self.f.api.app(app)
        return {h["name"]: h["release"] for h in body["hosts"]}


@contextlib.asynccontextmanager
async def fleet(f: Flotilla, docker_url: str, size: int = 3, **labels: str) -> AsyncIterator[Fleet]:
    """`size` hosts with agents, named in order (a, b, c, ... suffixes keep rollout order)."""
    async with contextlib.AsyncExitStack() as stack:
        names = []
        for i in range(size):
            name, token = await f.add_host(f"{f.hosts_prefix}{chr(ord('a') + i)}", **labels)
            await stack.enter_async_context(agent(f.url, name, token, docker_url))
            names.append(name)
        yield Fleet(f, names)


def simple(image: str, **extra: Any) -> dict[str, Any]:
    return {"image": image, "ports": [{"container": 80}], **extra}
