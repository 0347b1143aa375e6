"""The agent's local endpoint (`agent.endpoint`): /metrics, /healthz and nothing else."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any
from wsgiref.util import setup_testing_defaults

from agent import endpoint
from tests.harness import free_port


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_serves_metrics_and_health_while_the_loop_runs() -> None:
    port = free_port()
    local = endpoint.serve(f"127.0.0.1:{port}", asyncio.get_running_loop())
    try:
        status, ctype, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert ctype.startswith("text/plain")
        assert "flotilla_agent_reconcile_duration_seconds_count" in body

        status, ctype, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")
        assert (status, ctype, json.loads(body)) == (200, "application/json", {"status": "ok"})

        status, _, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/other")
        assert status == 404
    finally:
        await asyncio.to_thread(local.close)


def test_health_fails_when_the_loop_cannot_answer() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    app = endpoint.create_app(loop)
    environ: dict[str, Any] = {"PATH_INFO": "/healthz"}
    setup_testing_defaults(environ)
    answers: list[str] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: answers.append(status)))
    assert answers == ["503 Service Unavailable"]
    assert json.loads(body) == {"status": "event loop blocked"}
