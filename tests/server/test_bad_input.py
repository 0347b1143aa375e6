"""Malformed requests get a precise 4xx problem+json and leave the database untouched."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select

from server.db.models import Base
from server.keys import SESSIONS
from tests.conftest import Flotilla

PROBLEM_JSON = "application/problem+json"
VALID: dict[str, Any] = {"image": "nginx:1.27"}
DEPLOY = "/v1/apps/web/deployments"
WRONG_TOKEN = "flt_" + "x" * 43


@dataclass(frozen=True)
class Case:
    """One bad request and the problem it must earn."""

    id: str
    status: int
    code: str
    method: str = "POST"
    path: str = DEPLOY
    body: Any = None  # serialised as JSON unless `raw` is given
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None  # None: the admin token; "": no Authorization header
    fields: tuple[str, ...] = ()  # each must appear in errors[*].field
    mentions: str | None = None  # text the problem must contain
    xfail: str | None = None  # a known server bug: the reason
    xfail_on: tuple[str, ...] = ("sqlite", "postgresql")  # the databases it shows on


def bad(id: str, body: Any, *fields: str, **kw: Any) -> Case:
    """A deploy whose body breaks the schema: 422 naming `fields`."""
    return Case(id, 422, "invalid_request", body=body, fields=fields, **kw)


def port(**kw: Any) -> dict[str, Any]:
    return {**VALID, "ports": [{"container": 80, **kw}]}


CASES = [
    # The body is not a JSON object.
    Case("malformed-json", 400, "malformed_json", raw=b'{"image": "nginx",'),
    Case("not-utf8", 400, "malformed_json", raw=b'{"image": "\xff\xfe"}'),
    Case("array-body", 400, "malformed_json", body=[VALID]),
    Case("string-body", 400, "malformed_json", body="nginx:1.27"),
    Case("null-body", 400, "malformed_json", raw=b"null"),
    # The image.
    bad("missing-image", {"replicas": 1}, "image"),
    bad("empty-body", None, "image"),
    bad("image-not-string", {"image": 42}, "image"),
    bad("image-list", {"image": ["nginx"]}, "image"),
    bad("image-bare-uppercase", {"image": "Nginx"}, "image"),
    bad("image-UPPER/case", {"image": "UPPER/case"}, "image"),
    bad("image-space", {"image": "a b"}, "image"),
    bad("image-empty-tag", {"image": "web:"}, "image"),
    # found by schemathesis: a tag is ASCII (Docker's \w); Python's \w took "web:é"
    bad("image-unicode-tag", {"image": "web:é"}, "image"),
    bad("image-unicode-digit-tag", {"image": "web:v\u0661"}, "image"),
    bad("image-only-tag", {"image": ":tag"}, "image"),
    bad("image-empty", {"image": ""}, "image"),
    bad("image-bad-digest", {"image": "nginx@sha256:abc"}, "image"),
    bad("image-too-long", {"image": "a" * 600}, "image"),
    # Ports.
    bad("port-0", port(container=0), "ports.0.container"),
    bad("port-70000", port(container=70000), "ports.0.container"),
    bad("port-string", port(container="80"), "ports.0.container"),
    bad("port-float", port(container=80.0), "ports.0.container"),
    bad("port-missing-container", {**VALID, "ports": [{"host": 8080}]}, "ports.0.container"),
    bad("host-port-70000", port(host=70000), "ports.0.host"),
    bad("host-port-negative", port(host=-1), "ports.0.host"),
    bad("host-ip-bad", port(host_ip="localhost"), "ports.0.host_ip"),
    bad("host-ip-999", port(host_ip="999.1.1.1"), "ports.0.host_ip"),
    bad("protocol-sctp", port(protocol="sctp"), "ports.0.protocol"),
    bad("port-unknown-field", port(bogus=1), "ports.0.bogus"),
    bad("ports-not-list", {**VALID, "ports": {"container": 80}}, "ports"),
    bad(
        "same-host-port-twice",
        {**VALID, "ports": [{"container": 80, "host": 8080}, {"container": 81, "host": 8080}]},
        mentions="published twice",
    ),
    # Replicas, restart, env, labels, unknown fields.
    bad("replicas-0", {**VALID, "replicas": 0}, "replicas"),
    bad("replicas-negative", {**VALID, "replicas": -1}, "replicas"),
    bad("replicas-string", {**VALID, "replicas": "2"}, "replicas"),
    bad("replicas-float", {**VALID, "replicas": 1.5}, "replicas"),
    bad("replicas-bool", {**VALID, "replicas": True}, "replicas"),
    bad("replicas-101", {**VALID, "replicas": 101}, "replicas"),
    bad("restart-sometimes", {**VALID, "restart": "sometimes"}, "restart"),
    bad("env-value-int", {**VALID, "env": {"A": 1}}, "env.A"),
    bad("env-key-digit", {**VALID, "env": {"1BAD": "x"}}, "env", mentions="1BAD"),
    bad("env-not-object", {**VALID, "env": ["A=1"]}, "env"),
    bad("label-reserved", {**VALID, "labels": {"flotilla.app": "x"}}, "labels"),
    bad("unknown-top-field", {**VALID, "imagee": "nginx"}, "imagee"),
    bad("command-not-list", {**VALID, "command": "sleep 1"}, "command"),
    # Resources, hosts, health, strategy.
    bad("memory-lots", {**VALID, "resources": {"memory": "lots"}}, "resources.memory"),
    bad("memory-number", {**VALID, "resources": {"memory": 256}}, "resources.memory"),
    bad(
        "memory-beyond-any-host",
        {**VALID, "resources": {"memory": "99999999999999999999g"}},
        "resources.memory",
    ),
    bad("cpus-0", {**VALID, "resources": {"cpus": 0}}, "resources.cpus"),
    bad("cpus-negative", {**VALID, "resources": {"cpus": -1.0}}, "resources.cpus"),
    bad("host-name-bad", {**VALID, "hosts": {"names": ["Bad_Host"]}}, "hosts.names.0"),
    bad("health-type", {**VALID, "health": {"type": "ping"}}, "health.type"),
    bad("health-cmd-no-command", {**VALID, "health": {"type": "cmd"}}, mentions="command"),
    bad(
        "health-port-unpublished",
        {**port(), "health": {"type": "http", "port": 81}},
        mentions="health.port",
    ),
    bad("strategy-order", {**VALID, "strategy": {"order": "random"}}, "strategy.order"),
    bad("strategy-parallel-0", {**VALID, "strategy": {"max_parallel": 0}}, "strategy.max_parallel"),
    bad(
        "start-first-fixed-port",
        {**port(host=8080), "strategy": {"order": "start-first"}},
        mentions="start-first",
    ),
    bad("fixed-port-two-replicas", {**port(host=8080), "replicas": 2}, mentions="one replica"),
    # The app name in the path.
    bad("app-Web", VALID, "app", path="/v1/apps/Web/deployments"),
    bad("app-leading-dash", VALID, "app", path="/v1/apps/-web/deployments"),
    bad("app-trailing-dash", VALID, "app", path="/v1/apps/web-/deployments"),
    bad("app-underscore", VALID, "app", path="/v1/apps/a_b/deployments"),
    bad("app-64-chars", VALID, "app", path=f"/v1/apps/{'a' * 64}/deployments"),
    bad("get-app-Web", None, "app", method="GET", path="/v1/apps/Web"),
    # found by schemathesis: ?app= of the events was not checked (200, an empty list)
    bad("events-app-Web", None, "app", method="GET", path="/v1/events?app=Web"),
    bad("events-app-unicode", None, "app", method="GET", path="/v1/events?app=%F3%88%BB%A0"),
    # Headers.
    bad(
        "idempotency-key-too-long", VALID, "Idempotency-Key", headers={"Idempotency-Key": "k" * 201}
    ),
    # found by schemathesis: a dry run answered 200 whatever its Idempotency-Key
    bad(
        "dry-run-idempotency-key-too-long",
        VALID,
        "Idempotency-Key",
        path=DEPLOY + "?dry_run=true",
        headers={"Idempotency-Key": "k" * 201},
    ),
    # Size.
    Case(
        "oversize-body",
        413,
        "body_too_large",
        body={**VALID, "env": {"BIG": "x" * (300 * 1024)}},
    ),
    # Authentication.
    Case("no-token", 401, "unauthorized", body=VALID, token=""),
    Case("wrong-token", 401, "unauthorized", body=VALID, token=WRONG_TOKEN),
    Case("basic-auth", 401, "unauthorized", body=VALID, headers={"Authorization": "Basic eDp5"}),
    Case("no-token-get-apps", 401, "unauthorized", method="GET", path="/v1/apps", token=""),
    Case("wrong-token-get", 401, "unauthorized", method="GET", path="/v1/apps/web", token="nope"),
    # Things that do not exist.
    Case("unknown-app", 404, "not_found", method="GET", path="/v1/apps/nosuchapp", fields=("app",)),
    Case(
        "unknown-app-releases",
        404,
        "not_found",
        method="GET",
        path="/v1/apps/nosuchapp/releases",
        fields=("app",),
    ),
    Case(
        "unknown-deployment",
        404,
        "not_found",
        method="GET",
        path="/v1/deployments/999999",
        fields=("id",),
    ),
    Case(
        "deployment-id-beyond-int32",
        404,
        "not_found",
        method="GET",
        path="/v1/deployments/99999999999",
    ),
    Case(
        "deployment-id-not-a-number",
        422,
        "invalid_request",
        method="GET",
        path="/v1/deployments/notanumber",
        fields=("id",),
    ),
    Case(
        "deployment-wait-nan",
        422,
        "invalid_request",
        method="GET",
        path="/v1/deployments/1?wait=nan",
        fields=("wait",),
    ),
    Case(
        "deployment-version-too-long",
        422,
        "invalid_request",
        method="GET",
        path="/v1/deployments/1?wait=1&version=" + "v" * 101,
        fields=("version",),
    ),
    Case(
        "deployments-limit-0",
        422,
        "invalid_request",
        method="GET",
        path="/v1/deployments?limit=0",
        fields=("limit",),
    ),
    Case(
        "deployments-unknown-app",
        404,
        "not_found",
        method="GET",
        path="/v1/deployments?app=nosuchapp",
    ),
    Case("unknown-route", 404, "not_found", method="GET", path="/v1/nothing"),
    Case("wrong-method", 405, "method_not_allowed", method="PATCH", path="/v1/apps/web"),
]


async def send(flotilla: Flotilla, case: Case) -> tuple[int, str, Any]:
    """Send the request; return its status, Content-Type and decoded body."""
    data = case.raw
    if data is None and case.body is not None:
        data = json.dumps(case.body).encode()
    headers: dict[str, str] = {}
    if case.token != "":
        token = case.token if case.token is not None else flotilla.api.token
        headers["Authorization"] = f"Bearer {token}"
    if data:
        headers["Content-Type"] = "application/json"
    headers.update(case.headers)
    async with flotilla.api.session.request(
        case.method, flotilla.url + case.path, data=data, headers=headers
    ) as resp:
        text = await resp.text()
        content_type = resp.headers.get("Content-Type", "")
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return resp.status, content_type, body


def check_problem(case: Case, status: int, content_type: str, body: Any) -> None:
    assert status < 500, f"{case.id}: server error {status}: {body!r}"
    assert status == case.status, f"{case.id}: expected {case.status}, got {status}: {body!r}"
    assert content_type.split(";")[0].strip() == PROBLEM_JSON, (case.id, content_type)
    assert isinstance(body, dict), (case.id, body)
    assert body["status"] == status
    assert body["code"] == case.code, (case.id, body)
    assert body["type"] == f"urn:flotilla:problem:{case.code}"
    assert body["instance"] == case.path.split("?")[0]
    named = [e["field"] for e in body.get("errors", [])]
    for wanted in case.fields:
        assert wanted in named, f"{case.id}: {wanted!r} not among the named fields {named}"
    if case.mentions:
        assert case.mentions in json.dumps(body), f"{case.id}: {case.mentions!r} not in {body}"


async def row_counts(flotilla: Flotilla) -> dict[str, int]:
    """Rows in every table of the schema, read through the server's own sessions; but the
    audit trail's, which records every refused call (401, 403) by design (issue 17)."""
    counts = {}
    async with flotilla.server.app[SESSIONS]() as session:
        for name, table in Base.metadata.tables.items():
            if name == "audit":
                continue
            counts[name] = int(await session.scalar(select(func.count()).select_from(table)) or 0)
    return counts


def database_kind(flotilla: Flotilla) -> str:
    return flotilla.settings.database_url.split("+")[0]


# Each case against a server of its own on SQLite; on PostgreSQL every case goes through one
# server (test_all_bad_requests_leave_the_database_unchanged, below): a server per case and
# database was a minute of the suite.
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
async def test_bad_request(
    flotilla_sqlite: Flotilla, case: Case, request: pytest.FixtureRequest
) -> None:
    flotilla = flotilla_sqlite
    if case.xfail and database_kind(flotilla) in case.xfail_on:
        request.applymarker(pytest.mark.xfail(strict=True, reason=case.xfail))
    before = await row_counts(flotilla)
    status, content_type, body = await send(flotilla, case)
    check_problem(case, status, content_type, body)
    assert await row_counts(flotilla) == before, case.id


async def test_all_bad_requests_leave_the_database_unchanged(flotilla: Flotilla) -> None:
    before = await row_counts(flotilla)
    assert all(before[t] == 0 for t in ("apps", "releases", "deployments", "events")), before
    # Known bugs are pinned by their xfail cases above; here they would only mask the rest.
    kind = database_kind(flotilla)
    wrong = []
    for case in CASES:
        if case.xfail and kind in case.xfail_on:
            continue
        status, content_type, body = await send(flotilla, case)
        try:
            check_problem(case, status, content_type, body)
        except AssertionError as exc:
            wrong.append(str(exc))
    assert wrong == []
    status, body = await flotilla.api.call("GET", "/v1/apps")
    assert (status, body) == (200, {"apps": []})
    status, body = await flotilla.api.call("GET", "/v1/deployments")
    assert (status, body) == (200, {"deployments": [], "next_cursor": None})
    assert await row_counts(flotilla) == before


async def test_unauthorized_challenge(flotilla: Flotilla) -> None:
    async with flotilla.api.session.get(flotilla.url + "/v1/apps") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_idempotency_key_repeated(flotilla: Flotilla) -> None:
    headers = {"Idempotency-Key": "deploy-42"}
    body = {**VALID, "message": "first"}
    first = await flotilla.api.deploy("web", body, headers=headers)
    again = await flotilla.api.deploy("web", body, headers=headers)
    assert again["id"] == first["id"]
    assert again["release"] == first["release"] == 1

    status, releases = await flotilla.api.call("GET", "/v1/apps/web/releases")
    assert status == 200
    assert [r["number"] for r in releases["releases"]] == [1]
    await flotilla.api.wait(first["id"])  # no host: it fails; then the controller is quiet
    counts = await row_counts(flotilla)
    assert (counts["apps"], counts["releases"], counts["deployments"]) == (1, 1, 1)

    case = Case(
        "idempotency-key-reused",
        409,
        "idempotency_key_reused",
        body={**VALID, "message": "second"},
        headers=headers,
    )
    status, content_type, problem = await send(flotilla, case)
    check_problem(case, status, content_type, problem)
    assert await row_counts(flotilla) == counts

    # The same key on another app is a different request.
    other = await flotilla.api.deploy("api", body, headers=headers)
    assert other["id"] != first["id"] and other["release"] == 1


async def test_idempotency_key_concurrent(
    flotilla: Flotilla, request: pytest.FixtureRequest
) -> None:
    """Parallel retries of one request create one deployment and all see it."""
    headers = {"Idempotency-Key": "retry-storm"}
    apps = ["web", "api", "db", "cache"]
    for app in apps:
        results = await asyncio.gather(
            *(
                flotilla.api.call("POST", f"/v1/apps/{app}/deployments", VALID, headers=headers)
                for _ in range(5)
            )
        )
        assert [status for status, _ in results] == [202] * 5, (app, results)
        assert len({body["id"] for _, body in results}) == 1, (app, results)
    counts = await row_counts(flotilla)
    assert (counts["apps"], counts["releases"], counts["deployments"]) == (4, 4, 4)
