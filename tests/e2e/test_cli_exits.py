"""The `flotilla` command line against a live server, a real agent and the real Docker Engine:
a deploy changes only what its flags name, and `--wait`'s exit code says how it ended
(0 succeeded, 1 failed or rolled back, 2 usage, 3 timed out, 4 cancelled or superseded,
5 unreachable or credentials refused), with no traceback anywhere."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Flotilla, Images
from tests.harness import Ran, agent, eventually, finish, free_port, published_port, start_cli

HEALTH = {"type": "http", "port": 80, "path": "/health", "interval": 0.5, "retries": 2}


async def start(f: Flotilla, *args: str, token: str | None = None) -> asyncio.subprocess.Process:
    """`flotilla COMMAND --server URL --token T ARGS...` against the test's server."""
    command, rest = args[0], args[1:]
    token = token if token is not None else f.api.token
    return await start_cli(command, "--server", f.url, "--token", token, *rest)


async def cli(f: Flotilla, *args: str, token: str | None = None) -> Ran:
    """Run one `flotilla` command against the test's server to its end."""
    return await finish(await start(f, *args, token=token))


@pytest.fixture
async def web(flotilla_sqlite: Flotilla, docker_url: str) -> AsyncIterator[tuple[Flotilla, str]]:
    """A server with one connected host."""
    host, token = await flotilla_sqlite.add_host(role="web")
    async with agent(flotilla_sqlite.url, host, token, docker_url):
        yield flotilla_sqlite, host


async def test_deploy_image_keeps_env_health_and_strategy(
    web: tuple[Flotilla, str], images: Images
) -> None:
    f, host = web
    d1 = await f.api.deploy(
        "web",
        {
            "image": images.v1,
            "env": {"MODE": "prod"},
            "ports": [{"container": 80}],
            "health": HEALTH,
            "strategy": {"max_parallel": 2, "healthy_deadline": 30},
            "hosts": {"labels": {"role": "web"}},
        },
    )
    assert (await f.api.wait(d1["id"]))["status"] == "succeeded"

    ran = await cli(f, "deploy", "web", "--image", images.v2, "--wait", "--message", "v2")
    assert ran.code == 0, ran
    assert "deployment" in ran.out and "succeeded" in ran.out
    app = await f.api.app("web")
    assert app["current_release"] == 2
    assert app["spec"]["image"] == images.v2
    assert app["spec"]["env"] == {"MODE": "prod"}
    assert app["spec"]["health"]["path"] == "/health"
    assert app["spec"]["ports"][0]["container"] == 80
    _, listed = await f.api.call("GET", "/v1/deployments?app=web&limit=1")
    (d2,) = listed["deployments"]
    assert d2["strategy"]["max_parallel"] == 2 and d2["strategy"]["healthy_deadline"] == 30

    # the positional form keeps config too; --env adds, --unset-env removes
    ran = await cli(f, "deploy", "web", images.v3, "--env", "LEVEL=3", "--wait")
    assert ran.code == 0, ran
    ran = await cli(f, "deploy", "web", "--unset-env", "MODE", "--wait", "-o", "json")
    assert ran.code == 0, ran
    ended = json.loads(ran.out)  # one object for scripts
    assert ended["exit_code"] == 0 and ended["deployment"]["status"] == "succeeded"
    assert ended["deployment"]["release"] == 4
    app = await f.api.app("web")
    assert app["spec"]["image"] == images.v3 and app["spec"]["env"] == {"LEVEL": "3"}
    assert app["spec"]["health"]["path"] == "/health"

    ran = await cli(f, "history", "web", "--limit", "2", "-o", "json")
    assert ran.code == 0 and len(json.loads(ran.out)["deployments"]) == 2, ran
    ran = await cli(f, "diff", "web", "2", "4")
    assert ran.code == 0, ran
    assert f'~ /image: "{images.v2}" -> "{images.v3}"' in ran.out
    assert "+ /env/LEVEL" in ran.out and "- /env/MODE" in ran.out

    ran = await cli(f, "deploy", "web", "--image", images.v1, "--dry-run")
    assert ran.code == 0, ran
    assert f'~ /image: "{images.v3}" -> "{images.v1}"' in ran.out
    assert f"target hosts (1): {host}" in ran.out and "nothing was created" in ran.out
    assert (await f.api.app("web"))["current_release"] == 4


async def test_exit_codes_of_deploy_and_rollback_wait(
    web: tuple[Flotilla, str], images: Images
) -> None:
    f, host = web
    ran = await cli(f, "deploy", "web", "--image", images.v1, "--port", "80",
                    "--health-http", "80/health", "--wait")  # fmt: skip
    assert ran.code == 0, ran
    await f.api.deploy("web", {"base": "current", "strategy": {"healthy_deadline": 5}})
    await eventually(lambda: _current(f, 2))

    # a health check that fails: rolled back to release 2, and --wait follows it to its end
    ran = await cli(f, "deploy", "web", "--image", images.nohealth, "--wait")
    assert ran.code == 1, ran
    assert "rolled_back" in ran.out
    assert "rolled back to release 2: serving on 1/1 hosts" in ran.out, ran
    assert f"host {host}" in ran.err and "health" in ran.err, ran

    # timed out: exit 3, and the deployment goes on
    ran = await cli(f, "deploy", "web", "--image", images.v2, "--wait", "--timeout", "0")
    assert ran.code == 3, ran
    assert "timed out" in ran.out and "goes on" in ran.out
    await eventually(lambda: _current(f, 4))

    # a rollback (with an Idempotency-Key the server honours) goes back to release 2
    ran = await cli(f, "rollback", "web", "--wait", "--idempotency-key", "undo-1")
    assert ran.code == 0, ran
    again = await cli(f, "rollback", "web", "--idempotency-key", "undo-1", "-o", "json")
    assert again.code == 0 and '"release": 2' in again.out, again
    _, listed = await f.api.call("GET", "/v1/deployments?app=web")
    assert [d["kind"] for d in listed["deployments"]].count("rollback") == 2  # auto + one

    # a release that crashes: rolled back too, and the evidence is its exit code and its log
    ran = await cli(f, "deploy", "web", "--image", images.crash, "--wait")
    assert ran.code == 1, ran
    assert re.search(r"rolled back to release \d+: serving on 1/1 hosts", ran.out), ran
    assert f"host {host}" in ran.err and "(exit code" in ran.err, ran
    assert "log lines:" in ran.err and "crashing" in ran.err, ran

    # usage, bad token, unreachable, not a Flotilla server
    ran = await cli(f, "deploy", "web", "--port", "abc")
    assert ran.code == 2 and "--port" in ran.err, ran
    ran = await cli(f, "deploy", "web", "--image", images.v2, token="flt_wrong")
    assert ran.code == 5 and "refused the token" in ran.err, ran
    unused = f"http://127.0.0.1:{free_port()}"
    ran = await finish(await start_cli("deploy", "web", "--image", images.v2, "--server", unused))
    assert ran.code == 5 and "cannot reach" in ran.err, ran
    port = published_port(await f.api.app("web"), host)
    assert port is not None
    other = f"http://127.0.0.1:{port}"
    ran = await finish(await start_cli("deploy", "web", "--image", images.v2, "--server", other))
    assert ran.code == 5 and "not a Flotilla server" in ran.err, ran


async def test_superseded_and_interrupted_waits(flotilla_sqlite: Flotilla, images: Images) -> None:
    """A host that never connects keeps each deployment running: what ends it is a newer
    deploy, or the wait is ended by Ctrl-C (and the deployment goes on)."""
    f = flotilla_sqlite
    await f.add_host()
    waiting = await start(f, "deploy", "web", "--image", images.v1, "--wait")
    first = await eventually(lambda: _newest(f))
    await f.api.deploy("web", {"image": images.v2})
    ran = await finish(waiting)
    assert ran.code == 4 and f"deployment {first['id']}: superseded" in ran.out, ran

    waiting = await start(f, "deploy", "web", "--image", images.v3, "--wait")
    second = await eventually(lambda: _newest(f, after=int(str(first["id"])) + 2))
    waiting.send_signal(signal.SIGINT)
    ran = await finish(waiting)
    assert ran.code == 130 and "interrupted" in ran.err, ran
    assert (await f.api.deployment(int(str(second["id"]))))["status"] in ("pending", "running")


async def test_a_cancelled_wait_exits_4(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
) -> None:
    """Cancelled while its canary waits to be promoted: the rollout ends, exit 4."""
    f = flotilla_sqlite
    (one, t1), (two, t2) = await f.add_host(), await f.add_host()
    async with agent(f.url, one, t1, docker_url), agent(f.url, two, t2, docker_url):
        waiting = await start(f, "deploy", "web", "--image", images.v1, "--canary", "1", "--wait")

        async def canary_healthy() -> int | None:
            d = await _newest(f)
            hosts = d["hosts"] if d else []
            healthy = isinstance(hosts, list) and any(h["state"] == "healthy" for h in hosts)
            return int(str(d["id"])) if d and healthy else None

        deployment_id = await eventually(canary_healthy, timeout=60)
        status, body = await f.api.call("POST", f"/v1/deployments/{deployment_id}/cancel")
        assert status == 200, body
        ran = await finish(waiting)
    assert ran.code == 4 and f"deployment {deployment_id}: cancelled" in ran.out, ran


async def _current(f: Flotilla, release: int) -> bool:
    return (await f.api.app("web"))["current_release"] == release


async def _newest(f: Flotilla, after: int = 0) -> dict[str, object] | None:
    status, body = await f.api.call("GET", "/v1/deployments?app=web&limit=1")
    if status != 200 or not body["deployments"] or body["deployments"][0]["id"] < after:
        return None
    return dict(body["deployments"][0])
