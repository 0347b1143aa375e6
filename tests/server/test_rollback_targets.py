"""Property: an automatic rollback targets only hosts the failed deployment touched."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.rollout.planner import rollback_targets

STATES = st.sampled_from(["pending", "updating", "healthy", "failed"])
HOSTS = st.dictionaries(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), STATES, max_size=30)


@settings(max_examples=300, deadline=None)
@given(HOSTS)
def test_rollback_goes_only_where_the_failed_deployment_went(states: dict[str, str]) -> None:
    """Hosts never assigned the bad release are left alone, unless nothing was touched."""
    targets = rollback_targets(states)
    touched = {n for n, s in states.items() if s != "pending"}
    if touched:
        assert set(targets) == touched
    else:
        assert set(targets) == set(states)  # pre-pull failure: confirm the old release
    assert len(targets) == len(set(targets))
