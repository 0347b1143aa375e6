"""The bodies of what is stored encrypted and never answered back: a private registry's
credentials and an app's secrets (their names and versions are)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, Field

from server.api.schemas.fields import Strict


class RegistryIn(Strict):
    """POST /v1/registries: credentials for one registry host (`host[:port]`, as in an image
    reference: `registry.example.com`, `127.0.0.1:5000`; Docker Hub is `docker.io`)."""

    registry: Annotated[
        str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$", max_length=255)
    ]
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=4096)


class RegistryOut(BaseModel):
    """A registry's credentials in a response: never the password."""

    registry: str
    username: str
    updated_at: dt.datetime
    updated_by: str


class RegistrySetOut(BaseModel):
    """POST /v1/registries' answer: the registry and the user name, never the password."""

    registry: str
    username: str


class RegistryListOut(BaseModel):
    """GET /v1/registries."""

    registries: list[RegistryOut]


class SecretIn(Strict):
    """PUT /v1/apps/{app}/secrets/{name}: the value, 1 to 65536 characters."""

    value: str = Field(min_length=1, max_length=65536)


class SecretOut(BaseModel):
    """A secret in a response: its name and live version, never its value."""

    name: str
    version: int
    updated_at: dt.datetime
    updated_by: str
