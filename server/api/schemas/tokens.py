"""The API tokens' bodies: creating one (the token shown once) and a token as listed."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from server.api.schemas.fields import DnsLabel, Strict, documented

TOKEN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
MAX_EXPIRES_IN = 10 * 366 * 86400  # ten years, in seconds


def _token_name(value: str) -> str:
    if not re.fullmatch(TOKEN_NAME, value):
        raise ValueError(
            "1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-', first a letter or digit"
        )
    return value


class TokenIn(Strict):
    """POST /v1/tokens."""

    name: Annotated[str, AfterValidator(_token_name), documented(pattern=TOKEN_NAME)]
    scopes: list[Literal["read", "rollback", "deploy", "admin"]] = Field(min_length=1, max_length=4)
    apps: list[DnsLabel] | None = Field(default=None, min_length=1, max_length=100)
    expires_in: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_IN)


class TokenOut(BaseModel):
    """A token as GET /v1/tokens shows it: never the token, never its hash."""

    name: str
    scopes: list[str]
    apps: list[str] | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    expired: bool


class TokenCreated(TokenOut):
    """POST /v1/tokens' answer: the token itself, this once."""

    token: str
