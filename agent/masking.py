"""Masks the values of a host's secrets in what its agent reports (crash logs, messages).

An app that prints its environment as it crashes would otherwise hand its secrets to the
server as deployment evidence. Every known value is replaced, longest first (a value that
contains another is masked whole), and each line of a multi-line value on its own, since
logs are reported line by line.
"""

from __future__ import annotations

from dataclasses import replace

from agent.protocol import AppProblem, DesiredState

MASK = "****"


def secret_values(desired: DesiredState | None) -> tuple[str, ...]:
    """Every secret value the desired state carries (and each line of a multi-line one),
    longest first."""
    if desired is None:
        return ()
    found: set[str] = set()
    for a in desired.assignments:
        for _, value in a.spec.secrets:
            found.add(value)
            found.update(line for line in value.splitlines() if line.strip())
    found.discard("")
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


def mask(text: str, values: tuple[str, ...]) -> str:
    """`text` with every occurrence of each of `values` replaced by ****."""
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask_problem(problem: AppProblem, values: tuple[str, ...]) -> AppProblem:
    """The problem with its message and log lines masked."""
    if not values:
        return problem
    return replace(
        problem,
        message=mask(problem.message, values),
        logs=tuple(mask(line, values) for line in problem.logs),
    )
