"""API tokens (issue 17 item 1), through the REST API of a real server: created with scopes,
apps and an expiry, shown once, listed without the secret, revoked and refused within a
second, confined to their apps; bad requests name the field and change nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import Flotilla

VALID = {"image": "web:v1", "command": ["/bin/sh", "-c", "sleep 3600"]}


async def create(flotilla: Flotilla, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await flotilla.api.call("POST", "/v1/tokens", body)
    assert status == 201, (status, answer)
    return dict(answer)


async def test_a_token_is_shown_once_and_listed_without_its_secret(flotilla: Flotilla) -> None:
    made = await create(flotilla, {"name": "ci-web", "scopes": ["deploy"], "apps": ["web"]})
    assert made["token"].startswith("flt_")
    assert made["scopes"] == ["deploy"] and made["apps"] == ["web"]
    assert made["expires_at"] is None and made["last_used_at"] is None
    status, listed = await flotilla.api.call("GET", "/v1/tokens")
    assert status == 200
    by_name = {t["name"]: t for t in listed["tokens"]}
    assert set(by_name) == {"admin", "ci-web"}
    assert by_name["ci-web"]["apps"] == ["web"]
    text = repr(listed)
    assert made["token"] not in text and "hash" not in text and "token_hash" not in text
    # it works, and its use is recorded (at most once a minute)
    status, _ = await flotilla.api.call("GET", "/v1/apps", token=made["token"])
    assert status == 200
    for _ in range(50):
        _, listed = await flotilla.api.call("GET", "/v1/tokens")
        used = {t["name"]: t["last_used_at"] for t in listed["tokens"]}
        if used["ci-web"]:
            break
        await asyncio.sleep(0.1)
    assert used["ci-web"] is not None


async def test_a_revoked_token_is_refused_within_a_second(flotilla: Flotilla) -> None:
    made = await create(flotilla, {"name": "soon-gone", "scopes": ["read"]})
    token = made["token"]
    assert (await flotilla.api.call("GET", "/v1/apps", token=token))[0] == 200  # cached now
    status, _ = await flotilla.api.call("DELETE", "/v1/tokens/soon-gone")
    assert status == 204
    revoked = time.monotonic()
    paths = ["/v1/apps", "/v1/deployments", "/v1/hosts", "/v1/events", "/v1/apps/web"]
    while True:
        answers = [(await flotilla.api.call("GET", p, token=token))[0] for p in paths]
        if set(answers) == {401}:
            break
        assert time.monotonic() - revoked < 1.0, answers
    status, listed = await flotilla.api.call("GET", "/v1/tokens")
    assert "soon-gone" not in {t["name"] for t in listed["tokens"]}
    status, problem = await flotilla.api.call("DELETE", "/v1/tokens/soon-gone")
    assert status == 404 and problem["errors"][0]["field"] == "name"


async def test_an_expired_token_is_refused(flotilla: Flotilla) -> None:
    made = await create(flotilla, {"name": "brief", "scopes": ["read"], "expires_in": 1})
    assert made["expires_at"] is not None
    assert (await flotilla.api.call("GET", "/v1/apps", token=made["token"]))[0] == 200
    await asyncio.sleep(1.1)
    status, problem = await flotilla.api.call("GET", "/v1/apps", token=made["token"])
    assert status == 401 and "expired" in problem["detail"]
    _, listed = await flotilla.api.call("GET", "/v1/tokens")
    assert {t["name"]: t["expired"] for t in listed["tokens"]}["brief"] is True


async def test_scopes(flotilla: Flotilla) -> None:
    tokens = {
        s: (await create(flotilla, {"name": f"t-{s}", "scopes": [s]}))["token"]
        for s in ("read", "rollback", "deploy")
    }
    deployment = await flotilla.api.deploy("web", VALID)
    path = f"/v1/deployments/{deployment['id']}"
    expect = [
        # (method, path, body, {scope: allowed?})
        ("GET", "/v1/apps", None, {"read": True, "rollback": True, "deploy": True}),
        ("POST", f"{path}/pause", None, {"read": False, "rollback": True, "deploy": True}),
        ("POST", f"{path}/promote", None, {"read": False, "rollback": False, "deploy": True}),
        ("POST", "/v1/apps/web/deployments", VALID, {"read": 0, "rollback": 0, "deploy": 1}),
        ("GET", "/v1/tokens", None, {"read": False, "rollback": False, "deploy": False}),
    ]
    for method, url, body, allowed in expect:
        for scope, ok in allowed.items():
            status, answer = await flotilla.api.call(method, url, body, token=tokens[scope])
            assert (status != 403) == ok, (method, url, scope, status, answer)
            assert status not in (401, 500), (method, url, scope, status, answer)


async def test_a_token_confined_to_an_app_cannot_touch_another(flotilla: Flotilla) -> None:
    web = await flotilla.api.deploy("web", VALID)
    other = await flotilla.api.deploy("billing", VALID)
    token = (await create(flotilla, {"name": "ci", "scopes": ["deploy"], "apps": ["web"]}))["token"]
    refused = [
        ("POST", "/v1/apps/billing/deployments", VALID),
        ("GET", "/v1/apps/billing", None),
        ("GET", "/v1/apps/billing/releases", None),
        ("POST", "/v1/apps/billing/rollback", {}),
        ("GET", f"/v1/deployments/{other['id']}", None),
        ("POST", f"/v1/deployments/{other['id']}/pause", None),
        ("POST", f"/v1/deployments/{other['id']}/cancel", None),
        ("GET", "/v1/deployments?app=billing", None),
        ("GET", "/v1/events?app=billing", None),
        ("POST", "/v1/apps/newapp/deployments", VALID),
    ]
    for method, url, body in refused:
        status, answer = await flotilla.api.call(method, url, body, token=token)
        assert status == 403, (method, url, status, answer)
    after = await flotilla.api.deployment(other["id"])
    assert after["status"] not in ("paused", "cancelled")
    # lists are filtered to its apps
    _, apps = await flotilla.api.call("GET", "/v1/apps", token=token)
    assert [a["name"] for a in apps["apps"]] == ["web"]
    _, deployments = await flotilla.api.call("GET", "/v1/deployments", token=token)
    assert {d["app"] for d in deployments["deployments"]} == {"web"}
    _, events = await flotilla.api.call("GET", "/v1/events", token=token)
    assert {e["app"] for e in events["events"]} == {"web"}
    # and its own app works
    status, _ = await flotilla.api.call("GET", f"/v1/deployments/{web['id']}", token=token)
    assert status == 200
    status, _ = await flotilla.api.call("POST", "/v1/apps/web/deployments", VALID, token=token)
    assert status == 202


BAD_TOKEN_REQUESTS: list[tuple[dict[str, Any], str, int]] = [
    ({"name": "x", "scopes": ["root"]}, "scopes.0", 422),
    ({"name": "x", "scopes": []}, "scopes", 422),
    ({"name": "x"}, "scopes", 422),
    ({"name": "bad name", "scopes": ["read"]}, "name", 422),
    ({"name": "x\n", "scopes": ["read"]}, "name", 422),
    ({"name": "", "scopes": ["read"]}, "name", 422),
    ({"name": "x", "scopes": ["read"], "expires_in": 0}, "expires_in", 422),
    ({"name": "x", "scopes": ["read"], "expires_in": "1d"}, "expires_in", 422),
    ({"name": "x", "scopes": ["read"], "expires_in": 2**70}, "expires_in", 422),
    ({"name": "x", "scopes": ["read"], "apps": ["Web!"]}, "apps.0", 422),
    ({"name": "x", "scopes": ["read"], "apps": []}, "apps", 422),
    ({"name": "x", "scopes": ["admin"], "apps": ["web"]}, "apps", 422),
    ({"name": "x", "scopes": ["read"], "owner": "me"}, "owner", 422),
    ({"name": "admin", "scopes": ["read"]}, "name", 409),
]


async def test_bad_token_requests_name_the_field_and_change_nothing(flotilla: Flotilla) -> None:
    """Every bad request through one server per database (a server per case was most of
    this test's time)."""

    async def tokens() -> list[dict[str, Any]]:
        # but when the admin token was last used: these very calls use it
        _, body = await flotilla.api.call("GET", "/v1/tokens")
        return [{k: v for k, v in t.items() if k != "last_used_at"} for t in body["tokens"]]

    for body, field, status in BAD_TOKEN_REQUESTS:
        before = await tokens()
        got, problem = await flotilla.api.call("POST", "/v1/tokens", body)
        assert got == status, (body, problem)
        assert field in [e["field"] for e in problem["errors"]], (body, problem)
        assert await tokens() == before, body


async def test_the_last_admin_token_cannot_be_revoked(flotilla: Flotilla) -> None:
    status, problem = await flotilla.api.call("DELETE", "/v1/tokens/admin")
    assert status == 409 and problem["code"] == "last_admin_token"
    second = await create(flotilla, {"name": "admin-2", "scopes": ["admin"]})
    status, _ = await flotilla.api.call("DELETE", "/v1/tokens/admin")
    assert status == 204
    status, problem = await flotilla.api.call("DELETE", "/v1/tokens/admin-2", token=second["token"])
    assert status == 409 and problem["code"] == "last_admin_token"
