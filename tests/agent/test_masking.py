"""The agent masks its secrets' values in what it reports."""

from __future__ import annotations

from agent.codec import decode, encode
from agent.masking import mask_problem, secret_values
from agent.protocol import AppProblem, Assignment, ContainerSpec, DesiredState


def desired(*values: str) -> DesiredState:
    spec = ContainerSpec(image="web:v1", secrets=tuple((f"S{i}", v) for i, v in enumerate(values)))
    return DesiredState("h", 1, (Assignment("web", 1, 1, 1, spec),))


def test_values_are_masked_in_messages_and_logs() -> None:
    values = secret_values(desired("hunter2-long", "hunter2", "line-one\nline-two"))
    problem = AppProblem(
        "web",
        1,
        "exited",
        "container exited; password hunter2-long",
        logs=("PW=hunter2", "A=hunter2-long", "B=line-one", "nothing here"),
    )
    masked = mask_problem(problem, values)
    assert masked.message == "container exited; password ****"
    assert masked.logs == ("PW=****", "A=****", "B=****", "nothing here")
    assert secret_values(None) == ()
    assert mask_problem(problem, ()) is problem


def test_secrets_cross_the_wire_but_never_show_in_repr() -> None:
    state = desired("hunter2-long")
    again = decode(encode(state))
    assert isinstance(again, DesiredState)
    assert again == state
    assert again.assignments[0].spec.secrets == (("S0", "hunter2-long"),)
    assert "hunter2-long" not in repr(state)
