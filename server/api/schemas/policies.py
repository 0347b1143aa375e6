"""An app's policy (the rules of server.policy an admin allows it), set and answered."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.api.schemas.fields import Strict
from server.policy import RULES, Rule


class PolicyIn(Strict):
    """PUT /v1/apps/{app}/policy: the rules of server.policy an admin allows for the app."""

    allow: list[Rule] = Field(default_factory=list, max_length=len(RULES))


class PolicyOut(BaseModel):
    """An app's policy in a response."""

    app: str
    allow: list[str]
    rules: list[str]  # every rule there is
