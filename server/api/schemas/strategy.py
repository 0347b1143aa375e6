"""How a rollout proceeds (StrategyIn, a part of a deploy's body), and the rollback request,
which may bring a strategy of its own."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from server.api.schemas.fields import Seconds, Strict


class StrategyIn(Strict):
    """How a rollout proceeds: batch size, order, canaries, deadlines, rollback."""

    max_parallel: int = Field(default=1, ge=1, le=100000)
    order: Literal["start-first", "stop-first"] | None = None
    canary: int = Field(default=0, ge=0, le=100000)
    auto_promote: bool = False
    min_healthy_time: Seconds = 0.0
    healthy_deadline: float = Field(default=60.0, gt=0, le=86400)
    progress_deadline: float = Field(default=600.0, gt=0, le=604800)
    auto_rollback: bool = True
    # a host that went away is reconnecting, not failing, this long (its deadline waits)
    reconnect_grace: float = Field(default=30.0, ge=0, le=3600)
    # a target host away longer than reconnect_grace when the deployment starts: skipped
    # (listed as `skipped`, assigned the release when the deployment succeeds) or waited for
    disconnected: Literal["skip", "wait"] = "skip"


class RollbackIn(Strict):
    """POST /v1/apps/{app}/rollback."""

    release: int | None = Field(default=None, ge=1, le=2**31 - 1)
    reason: str | None = Field(default=None, max_length=2000)
    strategy: StrategyIn | None = None
    force: bool = False  # roll back to a release marked bad all the same
