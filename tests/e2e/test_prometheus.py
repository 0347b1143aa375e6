"""A real Prometheus scrapes a real server and agent: every dashboard query returns data,
every alert rule parses, and the auto-rollback alert fires after a failing deploy.

Needs Debian's prometheus package (`prometheus`, `promtool`; `make test` installs it): without
it the test fails, it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.main import AgentSettings, running_agent
from tests.conftest import Flotilla, Images
from tests.e2e.fleet import simple
from tests.harness import ROOT, Engine, eventually, fetch_text, free_port, published_port

PROMETHEUS_SH = ROOT / "scripts" / "prometheus.sh"
DASHBOARD = ROOT / "deploy" / "grafana" / "flotilla.json"
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS_YML = ROOT / "deploy" / "prometheus" / "alerts.yml"
HTTP_HEALTH = {"type": "http", "port": 80, "path": "/health", "interval": 0.5, "retries": 2}
# Grafana's interval variables, as a short dashboard range would set them.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "5m"}

pytestmark = pytest.mark.timeout(300)


def require_tools() -> None:
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: install Debian's prometheus package "
            "(scripts/ensure-deps.sh prometheus; make test does)",
            pytrace=False,
        )


def promtool(*args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def dashboard_queries(app: str) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation, Grafana variables substituted."""
    board = json.loads(DASHBOARD.read_text())

    def substitute(expr: str) -> str:
        for name, value in GRAFANA_VARS.items():
            expr = expr.replace(name, value)
        return expr.replace("$app", app)

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    found = []
    for p in panels(board["panels"]):
        for t in p.get("targets", []):
            found.append((f"panel {p['title']!r} {t['refId']}", substitute(t["expr"])))
    for a in board["annotations"]["list"]:
        if "expr" in a:
            found.append((f"annotation {a['name']!r}", substitute(a["expr"])))
    leftover = [(w, e) for w, e in found if "$" in e]
    assert not leftover, f"unsubstituted variables: {leftover}"
    return found


def write_config(path: Path, server_port: int, agent_port: int, host: str) -> None:
    """The test's prometheus.yml (JSON is YAML): scrape both every second, evaluate alerts.yml."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS_YML)],
        "scrape_configs": [
            {
                "job_name": "flotilla-server",
                "static_configs": [{"targets": [f"127.0.0.1:{server_port}"]}],
            },
            {
                "job_name": "flotilla-agent",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{agent_port}"], "labels": {"host": host}}
                ],
            },
        ],
    }
    path.write_text(json.dumps(config, indent=2))


@contextlib.asynccontextmanager
async def prometheus(workdir: Path, config: Path) -> AsyncIterator[str]:
    """scripts/prometheus.sh start ... stop: the url of a ready Prometheus."""
    port = free_port()
    started = await asyncio.to_thread(
        subprocess.run,
        [str(PROMETHEUS_SH), "start", str(workdir), str(port), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, f"prometheus.sh start failed:\n{started.stderr}"
    try:
        yield started.stdout.strip()
    finally:
        await asyncio.to_thread(
            subprocess.run, [str(PROMETHEUS_SH), "stop", str(workdir)], check=True, timeout=60
        )


class Prom:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        async with self.session.get(self.url + path, params=params) as resp:
            body = dict(await resp.json())
        return body

    async def query(self, expr: str) -> dict[str, Any]:
        return await self.get("/api/v1/query", query=expr)


async def text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, (url, resp.status)
        return await resp.text()


async def test_dashboard_queries_return_data_and_alerts_fire(
    flotilla_sqlite: Flotilla, images: Images, engine: Engine, docker_url: str, tmp_path: Path
) -> None:
    require_tools()
    await asyncio.to_thread(promtool, "check", "config", str(PROMETHEUS_YML))
    await asyncio.to_thread(promtool, "check", "rules", str(ALERTS_YML))

    f = flotilla_sqlite
    host, token = await f.add_host()
    agent_port = free_port()
    settings = AgentSettings(
        server=f.url, name=host, token=token, docker_host=docker_url,
        metrics_listen=f"127.0.0.1:{agent_port}", poll_interval=2.0, prune_images=False,
    )  # fmt: skip
    config = tmp_path / "prometheus.yml"
    write_config(config, f.server.port, agent_port, host)
    async with (
        running_agent(settings),
        prometheus(tmp_path / "prometheus", config) as prom_url,
        aiohttp.ClientSession() as session,
    ):
        prom = Prom(prom_url, session)

        async def both_up() -> bool:
            got = await prom.query("up == 1")
            return {r["metric"]["job"] for r in got["data"]["result"]} == {
                "flotilla-server",
                "flotilla-agent",
            }

        await eventually(both_up, timeout=30)

        # 1. a deploy that succeeds (with an HTTP health check: probes are counted)
        d1 = await f.api.deploy("web", simple(images.v1, health=HTTP_HEALTH))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"

        # 2. drift: the instance removed by hand is healed and counted
        (container,) = engine.containers(host, "web", all=False)
        await asyncio.to_thread(container.remove, force=True)

        async def healed() -> bool:
            metrics = await text(f"{f.url}/metrics")
            return 'flotilla_drift_heals_total{app="web"}' in metrics

        await eventually(healed, timeout=30)

        # 3. a deploy whose health check fails: auto rolled back to release 1
        bad = await f.api.deploy(
            "web", simple(images.nohealth, health=HTTP_HEALTH, strategy={"healthy_deadline": 5})
        )
        assert (await f.api.wait(bad["id"]))["status"] == "rolled_back"
        _, listing = await f.api.call("GET", "/v1/deployments?app=web")
        (auto,) = [d for d in listing["deployments"] if d["rollback_of"] == bad["id"]]
        assert (await f.api.wait(auto["id"]))["status"] == "succeeded"

        # 4. a good release, then a manual rollback to the one before it
        d3 = await f.api.deploy("web", simple(images.v2, health=HTTP_HEALTH))
        assert (await f.api.wait(d3["id"]))["status"] == "succeeded"
        status, rb = await f.api.call("POST", "/v1/apps/web/rollback", {"reason": "metrics test"})
        assert status == 202, rb
        assert (await f.api.wait(rb["id"]))["status"] == "succeeded"

        async def serving_v1() -> bool:
            port = published_port(await f.api.app("web"), host, 1)
            return port is not None and await fetch_text(port) == "v1"

        await eventually(serving_v1, timeout=30)
        # a 4xx for the error-rate panel
        status, _ = await f.api.call("GET", "/v1/apps/no-such-app")
        assert status == 404

        # promtool lints both exposition texts
        for url in (f"{f.url}/metrics", f"http://127.0.0.1:{agent_port}/metrics"):
            exposition = await text(url)
            await asyncio.to_thread(promtool, "check", "metrics", stdin=exposition)

        # every alert rule, as loaded by Prometheus, parses as a query
        rules = await prom.get("/api/v1/rules")
        loaded = {
            r["name"]: r["query"]
            for g in rules["data"]["groups"]
            for r in g["rules"]
            if r["type"] == "alerting"
        }
        assert set(loaded) >= {
            "FlotillaDeploymentFailed",
            "FlotillaAutoRollback",
            "FlotillaHostDisconnected",
            "FlotillaHostEngineUnavailable",
            "FlotillaHostReleaseDrift",
            "FlotillaDeploymentStuck",
        }, loaded
        for name, expr in loaded.items():
            got = await prom.query(expr)
            assert got["status"] == "success", (name, expr, got)

        # every dashboard query parses and, once scrapes have caught up, returns data
        queries = dashboard_queries("web")
        empty: list[tuple[str, str]] = []
        deadline = time.monotonic() + 30
        while True:
            empty = []
            for where, expr in queries:
                got = await prom.query(expr)
                assert got["status"] == "success", (where, expr, got)
                if not got["data"]["result"]:
                    empty.append((where, expr))
            if not empty or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert not empty, "dashboard queries with no data:\n" + "\n".join(
            f"  {where}: {expr}  (metrics: {', '.join(_metric_names(expr))})"
            for where, expr in empty
        )

        # the failed deploy and its auto rollback fire their alerts
        async def firing() -> set[str]:
            got = await prom.get("/api/v1/alerts")
            names = {
                a["labels"]["alertname"]
                for a in got["data"]["alerts"]
                if a["state"] == "firing" and a["labels"].get("app") == "web"
            }
            wanted = {"FlotillaAutoRollback", "FlotillaDeploymentFailed"}
            return names if wanted <= names else set()

        await eventually(firing, timeout=30)


def _metric_names(expr: str) -> list[str]:
    return sorted(set(re.findall(r"\bflotilla_[a-z_]+", expr)))
