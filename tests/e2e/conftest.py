"""End-to-end tests' hooks: the fault suite's figures are printed at the end of the run."""

from __future__ import annotations

from typing import Any

from tests.e2e import faults


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the table of faults (scenario, time to converge, deployments, outcome)."""
    if faults.FIGURES:
        terminalreporter.section("faults")
        terminalreporter.write_line(faults.table(faults.FIGURES))
        terminalreporter.write_line(
            f"bounds: every deployment ends within {faults.ENDED_WITHIN:.0f} s and the fleet "
            f"converges within {faults.CONVERGED_WITHIN:.0f} s of a fault's end"
        )
