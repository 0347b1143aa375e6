"""Reads a JSON request body into its schema; every problem is named by its field."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.api.problems import HttpProblem
from server.errors import FieldError, Invalid

Model = TypeVar("Model", bound=BaseModel)


async def read_body(request: web.Request, schema: type[Model]) -> Model:
    """Validate the request's JSON body against `schema` (400 if not JSON, 422 if invalid)."""
    return parse_body(await request.read(), schema)


def parse_body(raw: bytes, schema: type[Model]) -> Model:
    """Validate a JSON body (empty: `{}`) against `schema` (400 if not JSON, 422 if invalid)."""
    if not raw.strip():
        raw = b"{}"
    try:
        return schema.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        fields = []
        for err in exc.errors(include_url=False):
            if err["type"] == "json_invalid":
                message = f"the body is not valid JSON: {err['msg']}"
                raise HttpProblem(400, "malformed_json", message) from None
            if err["type"] == "model_type":
                raise HttpProblem(400, "malformed_json", "the body must be a JSON object") from None
            name = ".".join(str(p) for p in err["loc"]) or "body"
            fields.append(FieldError(name, err["msg"]))
        names = ", ".join(f.field for f in fields)
        raise Invalid(f"invalid field(s): {names}", fields) from None
