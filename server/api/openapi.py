"""The OpenAPI 3.1 document (`GET /v1/openapi.json`) and its browsable page (`GET /docs`).

The document is generated, never kept by hand: its paths and methods are the router's
(`server/api/routes.py`), what each route does is its entry in `server/api/operations.py`,
and its schemas are the pydantic models the handlers validate and answer with
(the `server/api/schemas/` package), through pydantic's JSON Schema (2020-12, the dialect of OpenAPI
3.1). A route without an entry, or an entry without a route, is refused (`document` raises),
so the two cannot drift.

The page is Swagger UI 5, whose files come from the `swagger-ui-py` distribution (Apache-2.0)
installed with the server: nothing is fetched from a CDN.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from server.api.answers import ProblemOut
from server.api.operations import OPERATIONS, PATH_PARAMS, Op
from server.api.problems import PROBLEM_JSON
from server.errors import NotFound

_REF = "#/components/schemas/{model}"
_SCOPED = ("read", "rollback", "deploy", "admin")
_TAGS = {"healthz": "health", "readyz": "health", "metrics": "health", "openapi": "docs"}
_PARAM = re.compile(r"{([^}]+)}")
_ERRORS = {
    400: "The body is not JSON, or not a JSON object (`malformed_json`)",
    401: "No valid bearer token (`unauthorized`)",
    403: "The token lacks the scope, or may not act on this app",
    404: "Not found (`not_found`, naming the field)",
    409: "The request contradicts the state it would change (`code` says how)",
    413: "The body is too large (`body_too_large`)",
    422: "A value is not acceptable (`invalid_request`; `errors` names each field)",
    429: "Too many failed authentications from this address (Retry-After)",
    503: "Stopping, or the database does not answer (Retry-After)",
}


def _version() -> str:
    try:
        return version("flotilla")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "0"


def _routes(app: web.Application) -> list[tuple[str, str, str]]:
    """(name, method, path template) of every route but the HEADs aiohttp adds to GETs."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        name = route.name
        if name is None:
            raise LookupError(f"route {route.method} {route.resource.canonical} has no name")
        out.append((name, route.method, route.resource.canonical))
    return out


def _models(ops: list[Op]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ProblemOut, "serialization"): None
    }
    for op in ops:
        for model in op.body:
            wanted[(model, "validation")] = None
        for answer in op.answers:
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
    return list(wanted)


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": _REF.format(model=ProblemOut.__name__)}
    return {"description": description, "content": {PROBLEM_JSON: {"schema": schema}}}


def _errors(op: Op, path_params: list[str]) -> list[int]:
    """The error statuses a route may answer: those of its kind, and its own."""
    codes = {503, *op.errors}
    if op.scope in _SCOPED:
        codes |= {401, 403, 429}
    if op.body:
        codes |= {400, 413, 422}
    if op.params or (path_params and op.scope != "public"):
        codes.add(422)
    return sorted(codes)


def _operation(
    name: str, path: str, op: Op, refs: Mapping[tuple[Any, JsonSchemaMode], Any]
) -> dict[str, Any]:
    path_params = _PARAM.findall(path)
    params: list[dict[str, Any]] = []
    for p in path_params:
        schema = op.path.get(p) or PATH_PARAMS.get(p)
        if schema is None:
            raise LookupError(f"route {name}: no schema for the path parameter {{{p}}}")
        params.append({"name": p, "in": "path", "required": True, "schema": schema})
    params += [
        {
            "name": p.name,
            "in": p.where,
            "required": False,
            "description": p.description,
            "schema": p.schema,
        }
        for p in op.params
    ]
    responses: dict[str, Any] = {}
    for answer in op.answers:
        out: dict[str, Any] = {"description": answer.description}
        if answer.model is not None:
            out["content"] = {answer.media: {"schema": refs[(answer.model, "serialization")]}}
        elif answer.status not in (101, 204):
            out["content"] = {answer.media: {"schema": {}}}
        responses[str(answer.status)] = out
    for status in _errors(op, path_params):
        responses[str(status)] = _problem(_ERRORS[status])
    scope = {"host": "a host's token", "public": "public: no token"}.get(
        op.scope, f"scope `{op.scope}`"
    )
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": op.summary,
        "description": f"Needs {scope}. {op.description}".strip(),
        "tags": [_TAGS.get(name, name.split(".")[0])],
        "responses": responses,
        "security": []
        if op.scope == "public"
        else [{"hostToken" if op.scope == "host" else "bearer": []}],
    }
    if params:
        operation["parameters"] = params
    if op.body:
        bodies = [refs[(m, "validation")] for m in op.body]
        schema = bodies[0] if len(bodies) == 1 else {"oneOf": bodies}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return operation


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`'s routes (LookupError if a route is undescribed,
    or a description has no route)."""
    routes = _routes(app)
    names = {name for name, _, _ in routes}
    missing, stale = sorted(names - set(OPERATIONS)), sorted(set(OPERATIONS) - names)
    if missing or stale:
        raise LookupError(
            f"routes without a description: {missing}; descriptions without a route: {stale}"
        )
    refs, defs = models_json_schema(_models([OPERATIONS[n] for n in names]), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for name, method, path in routes:
        paths.setdefault(path, {})[method.lower()] = _operation(name, path, OPERATIONS[name], refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flotilla",
            "version": _version(),
            "description": "A deployment control plane for Docker hosts. Errors are RFC 9457 "
            "problem+json; clients read `code`.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"},
                "hostToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a host's token (agents only)",
                },
            },
        },
    }


@dataclass
class Cached:
    """The document's JSON, made on first request (the router is complete by then)."""

    body: bytes | None = None


DOCUMENT = web.AppKey("openapi_document", Cached)


async def openapi_json(request: web.Request) -> web.Response:
    """GET /v1/openapi.json: the OpenAPI 3.1 document (public)."""
    cached = request.app[DOCUMENT]
    if cached.body is None:
        cached.body = json.dumps(document(request.app)).encode()
    return web.Response(body=cached.body, content_type="application/json")


def _assets() -> Path:
    """Swagger UI's files, from the installed swagger-ui-py (not imported: only its files)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise LookupError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Flotilla API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({url: "/v1/openapi.json", dom_id: "#ui", deepLinking: true, validatorUrl: null});
</script>
</body>
</html>
"""


async def docs(_: web.Request) -> web.Response:
    """GET /docs: the document, browsable (Swagger UI; public)."""
    return web.Response(text=_PAGE, content_type="text/html")


async def asset(request: web.Request) -> web.FileResponse:
    """GET /docs/assets/{file}: one of the page's two files, from the installed package."""
    name = request.match_info["file"]
    if name not in ASSETS:
        raise NotFound(f"no asset {name[:80]!r}", "file")
    return web.FileResponse(
        _assets() / name, headers={"Content-Type": ASSETS[name], "Cache-Control": "max-age=3600"}
    )
