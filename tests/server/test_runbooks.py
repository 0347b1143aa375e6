"""The alert rules' runbook hints name `flotilla` commands and flags that exist.

Every backticked `flotilla ...` in deploy/prometheus/alerts.yml is parsed by the CLI's own
argument parser (what `flotilla COMMAND --help` describes), with the alert's labels and the
hints' placeholders filled in: `ID` a deployment id, `HOST` a host name.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex

from server.cli.main import build_parser
from tests.harness import ROOT

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
FILLED = {"{{ $labels.app }}": "web", "{{ $labels.host }}": "web-1"}
PLACEHOLDERS = {"ID": "7", "HOST": "web-1", "APP": "web"}


def hints() -> list[tuple[str, str]]:
    """(alert, hint) for each backticked `flotilla ...` of the rules (folded lines joined)."""
    text = re.sub(r"\s+", " ", ALERTS.read_text())
    found = []
    for rule in text.split("- alert: ")[1:]:
        alert = rule.split(" ", 1)[0]
        found += [(alert, hint) for hint in re.findall(r"`(flotilla [^`]*)`", rule)]
    return found


def refusal(hint: str) -> str | None:
    """Why `flotilla`'s parser refuses the hint, or None if it takes it."""
    for label, value in FILLED.items():
        hint = hint.replace(label, value)
    argv = [PLACEHOLDERS.get(word, word) for word in shlex.split(hint)[1:]]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            said = err.getvalue().strip().splitlines()
            return said[-1] if said else f"exit {exc.code}"
    return None


def test_every_runbook_hint_names_a_command_and_flags_that_exist() -> None:
    named = hints()
    wrong = [f"{alert}: `{hint}`: {why}" for alert, hint in named if (why := refusal(hint))]
    assert not wrong, "\n".join(wrong)
    commands = {hint.split()[1] for _, hint in named}
    assert {"status", "history", "deployment", "rollback", "cancel", "hosts"} <= commands, commands


def test_a_wrong_hint_is_caught() -> None:
    assert refusal("flotilla status") is not None  # no app
    assert refusal("flotilla cancel web") is not None  # an id is a number
    assert refusal("flotilla history web --since 1h") is not None  # no such flag
    assert refusal("flotilla logz web") is not None  # no such command
    assert refusal("flotilla history {{ $labels.app }} --limit 5") is None
