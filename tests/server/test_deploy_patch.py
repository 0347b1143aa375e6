"""Deploys that change only what they name: `"base"` and a merge patch, `?dry_run=true`, and
the diff of two releases, through the REST API on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.conftest import Flotilla

FULL: dict[str, Any] = {
    "image": "web:v1",
    "env": {"MODE": "prod", "LEVEL": "3"},
    "ports": [{"container": 80}],
    "health": {"type": "http", "port": 80, "path": "/health", "retries": 5},
    "strategy": {"max_parallel": 3, "canary": 1},
    "hosts": {"labels": {"role": "web"}},
    "message": "first",
}


async def releases(f: Flotilla, app: str) -> list[int]:
    status, body = await f.api.call("GET", f"/v1/apps/{app}/releases")
    assert status == 200, body
    return [r["number"] for r in body["releases"]]


async def test_a_patch_changes_only_what_it_names(flotilla: Flotilla) -> None:
    f = flotilla
    await f.api.deploy("web", FULL)
    patch = {"base": 1, "image": "web:v2", "env": {"MODE": None, "NEW": "x"}, "message": "m2"}
    d2 = await f.api.deploy("web", patch)
    assert d2["release"] == 2
    assert d2["strategy"]["max_parallel"] == 3 and d2["strategy"]["canary"] == 1

    status, diff = await f.api.call("GET", "/v1/apps/web/releases/2/diff")
    assert status == 200, diff
    assert diff["release"] == 2 and diff["against"] == 1
    assert diff["changes"] == [
        {"path": "/env/MODE", "op": "remove", "old": "prod", "new": None},
        {"path": "/env/NEW", "op": "add", "old": None, "new": "x"},
        {"path": "/image", "op": "change", "old": "web:v1", "new": "web:v2"},
    ]
    spec = (await f.api.app("web"))["spec"]
    assert spec["env"] == {"LEVEL": "3", "NEW": "x"}
    assert spec["health"]["path"] == "/health" and spec["health"]["retries"] == 5
    assert spec["ports"][0]["container"] == 80

    # null removes a whole key: no health check, the default strategy, every host
    d3 = await f.api.deploy("web", {"base": 2, "health": None, "strategy": None, "hosts": None})
    assert d3["strategy"]["max_parallel"] == 1
    status, diff = await f.api.call("GET", "/v1/apps/web/releases/3/diff")
    paths = [(c["path"], c["op"]) for c in diff["changes"]]
    assert ("/health", "remove") in paths and ("/hosts", "remove") in paths
    assert ("/strategy/max_parallel", "change") in paths
    assert "/image" not in [p for p, _ in paths]

    # release 1 is against nothing; ?against= picks another release
    status, diff = await f.api.call("GET", "/v1/apps/web/releases/1/diff")
    assert status == 200 and diff["against"] is None
    assert {"path": "/image", "op": "add", "old": None, "new": "web:v1"} in diff["changes"]
    status, diff = await f.api.call("GET", "/v1/apps/web/releases/3/diff?against=1")
    assert status == 200 and diff["against"] == 1
    assert {"path": "/image", "op": "change", "old": "web:v1", "new": "web:v2"} in diff["changes"]


async def test_bad_patches_are_refused_naming_the_field(flotilla: Flotilla) -> None:
    f = flotilla
    status, body = await f.api.call(
        "POST", "/v1/apps/web/deployments", {"base": "current", "image": "web:v2"}
    )
    assert status == 409 and body["code"] == "no_base_release", body
    assert body["errors"][0]["field"] == "base" and "does not exist" in body["detail"]
    await f.api.deploy("web", FULL)
    # release 1 never succeeded: the app has no current release to change
    status, body = await f.api.call(
        "POST", "/v1/apps/web/deployments", {"base": "current", "image": "web:v2"}
    )
    assert status == 409 and body["code"] == "no_base_release", body
    assert "no current release" in body["detail"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"base": 9, "image": "web:v2"}, "base"),
        ({"base": 0}, "base"),
        ({"base": "latest"}, "base"),
        ({"base": 1, "imgae": "web:v2"}, "imgae"),
        ({"base": 1, "replicas": 0}, "replicas"),
        ({"base": 1, "image": None}, "image"),
        ({"base": 1, "env": {"bad-name": "x"}}, "env"),
        ({"base": 1, "strategy": {"max_parallel": "2"}}, "strategy.max_parallel"),
    ]
    for patch, field in cases:
        status, body = await f.api.call("POST", "/v1/apps/web/deployments", patch)
        assert status == 422, (patch, status, body)
        assert body["code"] == "invalid_request"
        assert field in [e["field"] for e in body["errors"]], (patch, body)
    status, body = await f.api.call("POST", "/v1/apps/web/deployments?dry_run=maybe", FULL)
    assert status == 422 and body["errors"][0]["field"] == "dry_run"
    for path, field in [
        ("/v1/apps/web/releases/x/diff", "n"),
        ("/v1/apps/web/releases/0/diff", "n"),
        ("/v1/apps/web/releases/1/diff?against=y", "against"),
    ]:
        status, body = await f.api.call("GET", path)
        assert status == 422 and body["errors"][0]["field"] == field, (path, body)
    for path, field in [
        ("/v1/apps/web/releases/5/diff", "n"),
        ("/v1/apps/web/releases/1/diff?against=4", "against"),
    ]:
        status, body = await f.api.call("GET", path)
        assert status == 404 and body["errors"][0]["field"] == field, (path, body)
    assert await releases(f, "web") == [1]  # nothing refused was created


async def test_a_dry_run_answers_the_diff_and_targets_and_creates_nothing(
    flotilla: Flotilla,
) -> None:
    f = flotilla
    web, _ = await f.add_host(role="web")
    await f.add_host(role="db")
    status, body = await f.api.call("POST", "/v1/apps/web/deployments?dry_run=true", FULL)
    assert status == 200, body
    assert body["dry_run"] is True and body["current_release"] is None and body["base"] is None
    assert body["hosts"] == [web]
    assert {"path": "/image", "op": "add", "old": None, "new": "web:v1"} in body["changes"]
    assert body["spec"]["env"] == FULL["env"]
    status, body = await f.api.call("GET", "/v1/apps/web")
    assert status == 404  # the app was not even created

    await f.api.deploy("web", FULL)
    status, body = await f.api.call(
        "POST",
        "/v1/apps/web/deployments?dry_run=true",
        {"base": 1, "image": "web:v2", "hosts": None},
        headers={"Idempotency-Key": "dry"},
    )
    assert status == 200, body
    assert body["base"] == 1 and body["hosts"] == sorted(f.hosts)
    assert {"path": "/image", "op": "add", "old": None, "new": "web:v2"} in body["changes"]
    assert await releases(f, "web") == [1]
    status, body = await f.api.call("GET", "/v1/deployments?app=web")
    assert len(body["deployments"]) == 1


async def test_a_retried_patch_answers_the_same_deployment(flotilla: Flotilla) -> None:
    f = flotilla
    await f.api.deploy("web", FULL)
    patch = {"base": 1, "image": "web:v2"}
    first = await f.api.deploy("web", patch, headers={"Idempotency-Key": "k1"})
    again = await f.api.deploy("web", patch, headers={"Idempotency-Key": "k1"})
    assert again["id"] == first["id"] and again["release"] == 2
    status, body = await f.api.call(
        "POST",
        "/v1/apps/web/deployments",
        {"base": 1, "image": "web:v3"},
        headers={"Idempotency-Key": "k1"},
    )
    assert status == 409 and body["code"] == "idempotency_key_reused"
    assert await releases(f, "web") == [2, 1]
