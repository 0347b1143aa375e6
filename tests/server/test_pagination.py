"""Every list of the API pages with a cursor (`?limit=&cursor=`, answered with
`next_cursor`): walking the pages gives exactly the whole list, in order, with no row twice;
the parameters lists took before still work; a bad cursor or limit is a 422 naming it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Flotilla
from tests.harness import eventually


async def walk(f: Flotilla, path: str, key: str, limit: int = 2) -> list[Any]:
    """Every row of a list, a page of `limit` at a time."""
    sep = "&" if "?" in path else "?"
    rows: list[Any] = []
    cursor: str | None = None
    for _ in range(100):
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, body = await f.api.call("GET", url)
        assert status == 200, body
        assert len(body[key]) <= limit
        rows += body[key]
        cursor = body["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError(f"{path}: no last page")


async def test_every_list_pages_with_a_cursor(flotilla: Flotilla) -> None:
    f = flotilla
    status, hook = await f.api.call(
        "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "secret": "s" * 16}
    )
    assert status == 201, hook
    for i in range(5):
        await f.add_host(f"p{i}")
        await f.api.deploy("web", {"image": f"web:v{i}"})
        await f.api.call("POST", "/v1/tokens", {"name": f"t{i}", "scopes": ["read"]})

    async def deliveries() -> bool:
        # the controller's events of the deploys (started, superseded), each delivered
        _, body = await f.api.call("GET", f"/v1/webhooks/{hook['id']}/deliveries?limit=1000")
        return len(body["deliveries"]) >= 5

    await eventually(deliveries, timeout=20)
    lists = [
        ("/v1/deployments?app=web", "deployments", "id"),
        ("/v1/deployments", "deployments", "id"),
        ("/v1/events?app=web", "events", "id"),
        ("/v1/events", "events", "id"),
        ("/v1/apps/web/releases", "releases", "number"),
        ("/v1/hosts", "hosts", "name"),
        ("/v1/tokens", "tokens", "name"),
        ("/v1/audit?action=token.create", "audit", "id"),
        (f"/v1/webhooks/{hook['id']}/deliveries", "deliveries", "id"),
    ]
    for path, key, field in lists:
        status, whole = await f.api.call("GET", path + ("&" if "?" in path else "?") + "limit=1000")
        assert status == 200 and whole["next_cursor"] is None, (path, whole)
        assert len(whole[key]) >= 5, (path, whole)
        paged = [r[field] for r in await walk(f, path, key)]
        if key in ("events", "deliveries"):
            # the controller goes on writing events (a deployment superseded by the next one),
            # each with its delivery, while the pages are read: newer rows may open the first page
            paged = [i for i in paged if i <= whole[key][0][field]]
        assert paged == [r[field] for r in whole[key]], path

    # without a limit, the lists that answered everything still do
    for path, key in (("/v1/hosts", "hosts"), ("/v1/tokens", "tokens")):
        _, body = await f.api.call("GET", path)
        assert len(body[key]) >= 5 and body["next_cursor"] is None
    _, body = await f.api.call("GET", "/v1/apps/web/releases")
    assert [r["number"] for r in body["releases"]] == [5, 4, 3, 2, 1]
    _, body = await f.api.call("GET", "/v1/deployments?app=web&limit=1")
    assert len(body["deployments"]) == 1 and body["next_cursor"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=nope", "cursor"),
        ("cursor=eyJrIjoiYSJ9", "cursor"),  # {"k":"a"}: a name where an id belongs
        ("cursor=eyJrIjotMX0", "cursor"),  # {"k":-1}
        ("cursor=W10", "cursor"),  # []
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
    ],
)
async def test_a_bad_cursor_or_limit_is_refused(
    flotilla_sqlite: Flotilla, query: str, field: str
) -> None:
    f = flotilla_sqlite
    await f.api.deploy("web", {"image": "web:v1"})
    for path in ("/v1/deployments", "/v1/events", "/v1/apps/web/releases", "/v1/audit"):
        status, body = await f.api.call("GET", f"{path}?{query}")
        assert status == 422, (path, body)
        assert [e["field"] for e in body["errors"]] == [field], (path, body)
    status, body = await f.api.call("GET", "/v1/hosts?cursor=eyJrIjoxfQ")  # {"k":1}
    assert status == 422 and body["errors"][0]["field"] == "cursor"
