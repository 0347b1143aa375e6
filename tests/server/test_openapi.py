"""The OpenAPI 3.1 document and the /docs page (issue 19): public, generated from the router
and the handlers' pydantic models, every route described; a route added without its
description is refused. (tests/server/test_openapi_fuzz.py runs schemathesis against it.)"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from server.api.answers import ProblemOut
from server.api.openapi import document
from server.api.schemas.hosts import HostOut
from server.api.schemas.spec import DeploymentIn
from server.app import create_app
from server.config import Settings
from tests.conftest import Flotilla
from tests.server.test_authz_matrix import AGENT, PUBLIC, RULES


async def _get(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


async def test_the_document_is_public_and_describes_every_route(
    flotilla_sqlite: Flotilla,
) -> None:
    status, media, raw = await _get(flotilla_sqlite.url + "/v1/openapi.json")  # no token
    assert status == 200 and media.startswith("application/json")
    doc = __import__("json").loads(raw)
    assert doc["openapi"] == "3.1.0"
    routes = [r for r in flotilla_sqlite.server.app.router.routes() if r.method != "HEAD"]
    described = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert described == {(r.method, r.resource.canonical) for r in routes if r.resource}
    by_id = {op["operationId"]: op for ops in doc["paths"].values() for op in ops.values()}
    assert set(by_id) == set(RULES)
    for name, op in by_id.items():
        # the scope the document states is the one the authorization matrix proves
        needs = RULES[name].needs
        if needs == PUBLIC:
            assert op["security"] == [], name
        else:
            scheme = "hostToken" if needs == AGENT else "bearer"
            assert op["security"] == [{scheme: []}], name
            assert f"scope `{needs}`" in op["description"] or needs == AGENT, name
        if needs not in (PUBLIC, AGENT):
            for code in ("401", "403", "429", "503"):  # problem+json, one schema
                content = op["responses"][code]["content"]
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/ProblemOut"
                }, (name, code)
    # the bodies are the handlers' own models, not a copy
    schemas = doc["components"]["schemas"]
    assert set(schemas["DeploymentIn"]["properties"]) == set(DeploymentIn.model_fields)
    assert schemas["DeploymentIn"]["additionalProperties"] is False
    assert set(schemas["HostOut"]["properties"]) == set(HostOut.model_fields)
    assert set(schemas["ProblemOut"]["properties"]) == set(ProblemOut.model_fields)
    create = by_id["deployment.create"]
    assert {p["name"] for p in create["parameters"]} >= {"app", "dry_run", "Idempotency-Key"}
    assert len(create["requestBody"]["content"]["application/json"]["schema"]["oneOf"]) == 2
    wait = next(p for p in by_id["deployment.get"]["parameters"] if p["name"] == "wait")
    assert wait["schema"] == {"type": "number", "minimum": 0, "maximum": 600}


async def test_a_route_without_a_description_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/f.db")
    app = create_app(settings)
    assert "/v1/apps" in document(app)["paths"]

    async def handler(_: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/v1/undocumented", handler, name="thing.new")
    with pytest.raises(LookupError, match=r"thing\.new"):
        document(app)
    app = create_app(settings)
    app.router.add_get("/v1/nameless", handler)
    with pytest.raises(LookupError, match="has no name"):
        document(app)


async def test_the_docs_page_uses_only_files_the_server_ships(flotilla_sqlite: Flotilla) -> None:
    status, media, raw = await _get(flotilla_sqlite.url + "/docs")
    assert status == 200 and media.startswith("text/html")
    page = raw.decode()
    assert "/v1/openapi.json" in page
    assert "validatorUrl: null" in page  # Swagger UI's default badge loads from its site
    assert (
        "http://" not in page and "https://" not in page and "//" not in page.replace("://", "")
    )  # no CDN, no other origin
    for name, kind in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")):
        assert f'"/docs/assets/{name}"' in page
        status, media, body = await _get(f"{flotilla_sqlite.url}/docs/assets/{name}")
        assert status == 200 and media.startswith(kind) and len(body) > 10_000, (name, status)
    assert (
        b"SwaggerUIBundle"
        in (await _get(flotilla_sqlite.url + "/docs/assets/swagger-ui-bundle.js"))[2]
    )
    for other in ("index.html", "LICENSE", "..%2F__init__.py", "swagger-editor.js"):
        status, media, body = await _get(f"{flotilla_sqlite.url}/docs/assets/{other}")
        assert status == 404 and media.startswith("application/problem+json"), (other, body)
