"""The authorization matrix (issue 17): every route of the running server, found in its
router (a route added later is covered, or this test fails until it is given a scope),
called with no token, a malformed one, an expired one, a revoked one, a host's token, each
scope, and a token confined to another app. Prints the counts; nothing is wrongly allowed,
and nothing the token may do is refused.

Calls with credentials the server does not know come from a new source address each
(127.1.x.y), so that the failed-login throttle (429, itself a refusal) does not stand in
for the checks under test."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass

import aiohttp

from tests.conftest import Flotilla
from tests.harness import unique

RANK = {"read": 0, "rollback": 1, "deploy": 2, "admin": 3}
PUBLIC = "public"
AGENT = "agent"


@dataclass(frozen=True)
class Rule:
    """What a route needs: a scope (or public, or a host's token), and whether it is about
    one app (then a token confined to another app is refused)."""

    needs: str
    app_scoped: bool = False


RULES = {
    "healthz": Rule(PUBLIC),
    "readyz": Rule(PUBLIC),
    "metrics": Rule(PUBLIC),
    "openapi": Rule(PUBLIC),
    "docs": Rule(PUBLIC),
    "docs.asset": Rule(PUBLIC),
    "app.list": Rule("read"),
    "app.get": Rule("read", True),
    "app.remove": Rule("admin", True),
    "release.list": Rule("read", True),
    "app.logs": Rule("read", True),
    "release.diff": Rule("read", True),
    "deployment.create": Rule("deploy", True),
    "secret.list": Rule("read", True),
    "policy.get": Rule("read", True),
    "policy.set": Rule("admin", True),
    "secret.set": Rule("deploy", True),
    "secret.remove": Rule("deploy", True),
    "deployment.list": Rule("read", True),  # called with ?app=web
    "deployment.get": Rule("read", True),
    "app.rollback": Rule("rollback", True),
    "deployment.pause": Rule("rollback", True),
    "deployment.resume": Rule("rollback", True),
    "deployment.cancel": Rule("rollback", True),
    "deployment.promote": Rule("deploy", True),
    "host.list": Rule("read"),
    "host.add": Rule("admin"),
    "host.rotate_token": Rule("admin"),
    "host.remove": Rule("admin"),
    "host.cordon": Rule("admin"),
    "host.uncordon": Rule("admin"),
    "host.drain": Rule("admin"),
    "event.list": Rule("read", True),  # called with ?app=web
    "event.stream": Rule("read", True),  # called with ?app=web
    "token.create": Rule("admin"),
    "token.list": Rule("admin"),
    "token.revoke": Rule("admin"),
    "audit.list": Rule("admin"),
    "registry.set": Rule("admin"),
    "registry.list": Rule("admin"),
    "registry.remove": Rule("admin"),
    "webhook.create": Rule("admin"),
    "webhook.list": Rule("admin"),
    "webhook.delete": Rule("admin"),
    "webhook.deliveries": Rule("admin"),
    "agent.connect": Rule(AGENT),
}
_addresses = (f"127.1.{a}.{b}" for a, b in itertools.product(range(256), range(1, 255)))


async def call(url: str, method: str, header: str | None, fresh_address: bool) -> int:
    connector = aiohttp.TCPConnector(local_addr=(next(_addresses), 0)) if fresh_address else None
    headers = {"Authorization": header} if header is not None else {}
    body = b"{}" if method == "POST" else None
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(
            method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
        ) as response,
    ):
        if response.content_type != "text/event-stream":  # a stream would never end
            await response.read()
        return response.status


async def test_every_route_against_every_kind_of_credential(flotilla: Flotilla) -> None:
    api = flotilla.api
    deployment = await api.deploy("web", {"image": "web:v1"})
    status, _ = await api.call(
        "POST",
        "/v1/webhooks",
        {"url": "http://127.0.0.1:9/hook", "secret": "s" * 16},
    )
    assert status == 201
    _, hook_list = await api.call("GET", "/v1/webhooks")
    hook_id = hook_list["webhooks"][0]["id"]
    host, host_token = await flotilla.add_host(unique("h"))

    async def token(name: str, **body: object) -> str:
        status, made = await api.call("POST", "/v1/tokens", {"name": name, **body})
        assert status == 201, made
        return str(made["token"])

    scoped = {s: await token(f"m-{s}", scopes=[s]) for s in RANK}
    confined = await token("m-confined", scopes=["deploy"], apps=["other"])
    revoked = await token("m-revoked", scopes=["admin"])
    assert (await api.call("DELETE", "/v1/tokens/m-revoked"))[0] == 204
    expired = await token("m-expired", scopes=["admin"], expires_in=1)
    await asyncio.sleep(1.2)

    # (kind, Authorization header, scope it holds or None, confined, from a fresh address)
    credentials: list[tuple[str, str | None, str | None, bool, bool]] = [
        ("none", None, None, False, False),
        ("malformed", "Bearer", None, False, True),
        ("malformed-basic", "Basic YWRtaW46YWRtaW4=", None, False, True),
        ("malformed-garbage", "Bearer flt_%%%not-a-token", None, False, True),
        ("expired", f"Bearer {expired}", None, False, True),
        ("revoked", f"Bearer {revoked}", None, False, True),
        ("host-token", f"Bearer {host_token}", None, False, True),
        *((s, f"Bearer {t}", s, False, False) for s, t in scoped.items()),
        ("confined-other-app", f"Bearer {confined}", "deploy", True, False),
    ]
    values = {
        "app": "web",
        "id": str(deployment["id"]),
        "name": "nobody",  # a token or host that does not exist: allowed calls get 404
        "n": "1",
        "registry": "registry.example",
        "file": "swagger-ui.css",
    }
    counts: Counter[str] = Counter()
    wrong: list[str] = []
    routes = list(flotilla.server.app.router.routes())
    seen_names = set()
    for route in routes:
        resource = route.resource
        assert resource is not None
        template = resource.canonical
        name = route.name
        if name is None and route.method == "HEAD":
            name = next(r.name for r in routes if r.resource is resource and r.method == "GET")
        assert name in RULES, f"route {route.method} {template} has no rule in RULES"
        seen_names.add(name)
        rule = RULES[name]
        path = template.format(
            **{**values, "id": str(hook_id) if "webhooks" in template else values["id"]}
        )
        if name in ("deployment.list", "event.list", "event.stream"):
            path += "?app=web"
        if name.startswith("host.") and name not in ("host.list", "host.add"):
            path = path.replace("nobody", "nohost")
        for kind, header, scope, is_confined, fresh in credentials:
            got = await call(flotilla.url + path, route.method, header, fresh)
            counts["calls"] += 1
            if rule.needs == PUBLIC:
                allowed = True
            elif rule.needs == AGENT:
                allowed = kind == "host-token"
            else:
                allowed = (
                    scope is not None
                    and RANK[scope] >= RANK[rule.needs]
                    and not (is_confined and rule.app_scoped)
                )
            refused = got in (401, 403, 429)
            assert got < 500, (route.method, path, kind, got)
            if allowed and refused:
                counts["wrongly refused"] += 1
                wrong.append(f"refused {route.method} {path} {kind} -> {got}")
            elif not allowed and not refused:
                counts["wrongly allowed"] += 1
                wrong.append(f"ALLOWED {route.method} {path} {kind} -> {got}")
            else:
                counts["refused" if refused else "allowed"] += 1
    assert seen_names == set(RULES), set(RULES) - seen_names
    print(
        f"\nauthorization matrix ({host=}): {len(routes)} routes x {len(credentials)} "
        f"credentials: {dict(counts)}"
    )
    assert counts["wrongly allowed"] == 0, wrong
    assert counts["wrongly refused"] == 0, wrong
    assert counts["refused"] > 0 and counts["allowed"] > 0
