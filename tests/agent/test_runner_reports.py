"""When a reconcile pass leaves its status to the look that follows it.

A pass that starts an instance with a health probe reports with the look 0.25 s later that
probes it (one status, "running, ready", instead of two); one that starts an instance which
must run a while before it is ready reports at once, so the API shows it without delay.
"""

from __future__ import annotations

from agent.protocol import Assignment, ContainerSpec, DesiredState, HealthSpec
from agent.reconcile import Remove, Run, Start, Stop
from agent.runner import _probed_at_look

PROBED = ContainerSpec(image="web:2", health=HealthSpec(type="cmd", command=("true",)))
UNPROBED = ContainerSpec(image="web:2")
SETTLING = ContainerSpec(image="web:2", health=PROBED.health, min_healthy_time=5.0)


def desired(spec: ContainerSpec) -> DesiredState:
    return DesiredState("h1", 1, assignments=(Assignment("web", 2, 7, 1, spec),))


def test_a_probed_instance_is_reported_by_the_look_that_probes_it() -> None:
    state = desired(PROBED)
    assert _probed_at_look(Run(state.assignments[0], 0, "n"), state)
    assert _probed_at_look(Start("c1", "web", 2), state)


def test_an_instance_that_must_run_a_while_is_reported_at_once() -> None:
    for spec in (UNPROBED, SETTLING):
        state = desired(spec)
        assert not _probed_at_look(Run(state.assignments[0], 0, "n"), state)
        assert not _probed_at_look(Start("c1", "web", 2), state)


def test_other_actions_and_unknown_releases_are_reported_at_once() -> None:
    state = desired(PROBED)
    assert not _probed_at_look(Start("c1", "web", 1), state)  # not the assigned release
    assert not _probed_at_look(Stop("c0", "web", 1), state)
    assert not _probed_at_look(Remove("c0", "web", 1), state)
