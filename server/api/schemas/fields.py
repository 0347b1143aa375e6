"""The base of request bodies, and the field types several bodies share (names, labels,
durations)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


def documented(**schema: Any) -> Any:
    """What an AfterValidator enforces, said in the JSON Schema as well (the document's
    only: the validator stays the rule, and its message the one a client sees)."""
    return Field(json_schema_extra=schema)


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if key.startswith("flotilla."):
            raise ValueError(f"label {key!r}: the flotilla. prefix is reserved")
        if not key or len(key) > 255:
            raise ValueError("label names must be 1-255 characters")
    return value


_LABEL = {"minLength": 1, "maxLength": 255, "not": {"pattern": r"^flotilla\."}}
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]
# a deployment's or a host's labels: the flotilla. prefix is the server's own
Labels = Annotated[dict[str, str], AfterValidator(_labels), documented(propertyNames=_LABEL)]
Seconds = Annotated[float, Field(ge=0, le=86400)]


class Strict(BaseModel):
    """The base of request bodies: unknown fields rejected, strict types, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
