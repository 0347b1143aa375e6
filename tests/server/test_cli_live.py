"""The view `deploy --wait` shows (server/cli/live.py) as pure functions, a deployment as the
API answers it in, text out: the terminal's frame (`render`), the lines of a pipe
(`changes`), the batch reckoned from the strategy; and which view a stream gets (a real pty
for the terminal). The real command against a live server is in tests/e2e/test_cli_live.py."""

from __future__ import annotations

import io
import os
import pty
from collections.abc import Iterator
from typing import Any

import pytest

from server.cli import live

ESCAPE = "\x1b"


def deployment(status: str = "running", *hosts: tuple[str, str], **kw: Any) -> dict[str, Any]:
    """A GET /v1/deployments/{id} answer with hosts (name, state), release 4 over 3."""
    return {
        "id": 12,
        "app": "web",
        "release": 4,
        "kind": "deploy",
        "status": status,
        "strategy": kw.pop("strategy", {"max_parallel": 1, "canary": 0}),
        "hosts": [
            {"name": name, "state": state, "previous_release": 3, "error": None, "evidence": {}}
            for name, state in hosts
        ],
        **kw,
    }


def test_the_batch_is_reckoned_as_the_planner_forms_them() -> None:
    assert live.batch([], 1, 0) is None
    assert live.batch(["pending"] * 3, 1, 0) == (0, 3)  # none started (pulling first)
    assert live.batch(["healthy", "updating", "pending"], 1, 0) == (2, 3)
    assert live.batch(["updating"] * 2 + ["pending"] * 3, 2, 0) == (1, 3)
    # a canary is batch 1, then max_parallel at a time
    assert live.batch(["updating", "pending", "pending", "pending"], 2, 1) == (1, 3)
    assert live.batch(["healthy", "updating", "pending", "pending"], 2, 1) == (2, 3)
    assert live.batch(["healthy"] * 4, 2, 1) == (3, 3)
    # skipped hosts are in no batch
    assert live.batch(["skipped", "skipped"], 1, 0) is None
    assert live.batch(["skipped", "updating"], 1, 0) == (1, 1)


def test_the_elapsed_time() -> None:
    assert [live.elapsed_text(s) for s in (0, 7.9, 750, 3723)] == [
        "0:00",
        "0:07",
        "12:30",
        "1:02:03",
    ]


def test_a_frame_has_a_header_and_a_row_per_host() -> None:
    d = deployment(
        "running",
        ("web-1", "healthy"),
        ("web-2", "updating"),
        ("web-3", "pending"),
        strategy={"max_parallel": 1, "canary": 1},
    )
    d["hosts"].append(
        {
            "name": "web-4",
            "state": "failed",
            "previous_release": None,
            "error": None,
            "evidence": {"problems": [{"message": "health check failing: HTTP 500"}]},
        }
    )
    frame = live.render(live.snapshot(d), 75.2)
    assert frame[0] == "deployment 12  deploy of web to release 4  running  batch 3/4  1:15"
    assert frame[1] == "1 failed, 1 updating, 1 pending, 1 healthy"
    assert frame[2].split() == ["HOST", "STATE", "RELEASE", "DETAIL"]
    assert [row.split(None, 2) for row in frame[3:]] == [
        ["web-1", "healthy", "4"],
        ["web-2", "updating", "3 -> 4"],
        ["web-3", "pending", "3"],
        ["web-4", "failed", "4        health check failing: HTTP 500"],
    ]
    assert ESCAPE not in "".join(frame)  # color only when asked for


def test_a_frame_before_the_hosts_are_known() -> None:
    frame = live.render(live.snapshot(deployment("pending")), 0)
    assert frame == [
        "deployment 12  deploy of web to release 4  pending  0:00",
        "no target hosts yet",
    ]


def test_a_frame_fits_the_terminal_and_puts_trouble_first() -> None:
    hosts = [(f"h{n:03d}", "healthy") for n in range(100)] + [("h500", "failed")]
    hosts.append(("h400", "updating"))
    long_error = {"error": "x" * 500}
    d = deployment("running", *hosts)
    d["hosts"][-2].update(long_error)
    frame = live.render(live.snapshot(d), 5, width=50, height=10)
    assert len(frame) <= 9 and all(len(line) <= 49 for line in frame), frame
    assert frame[1] == "1 failed, 1 updating, 100 healthy"
    assert frame[3].startswith("h500  failed") and frame[4].startswith("h400  updating")
    assert frame[-1] == "... and 97 more"


def test_color_marks_the_state_only() -> None:
    d = deployment("running", ("web-1", "healthy"), ("web-2", "failed"), ("web-3", "pending"))
    frame = live.render(live.snapshot(d), 1, color=True)
    assert frame[3] == "web-1  \x1b[32mhealthy\x1b[0m  4"
    assert frame[4] == "web-2  \x1b[31mfailed\x1b[0m   4"
    assert frame[5] == "web-3  pending  3"


def test_a_pipe_gets_a_line_per_change_and_none_for_the_same_state() -> None:
    before = live.snapshot(deployment("pending"))
    first = live.snapshot(deployment("running", ("a", "updating"), ("b", "pending")))
    assert live.changes(before, first) == [
        "deployment 12: running: 2 host(s), batch 1/2",
        "host a: updating to release 4",  # b, first seen pending, is no change
    ]
    assert live.changes(first, first) == []
    failing = deployment("running", ("a", "failed"), ("b", "pending"))
    failing["hosts"][0]["error"] = "container exited with code 3"
    second = live.snapshot(failing)
    assert live.changes(first, second) == ["host a: failed: container exited with code 3"]
    # an ending is said by --wait itself, once
    ended = live.snapshot(deployment("rolled_back", ("a", "failed"), ("b", "pending")))
    assert live.changes(second, ended) == []
    healthy = live.snapshot(deployment("running", ("a", "healthy"), ("b", "skipped")))
    assert live.changes(first, healthy) == ["host a: healthy on release 4", "host b: skipped"]


def test_a_pending_host_the_api_marks_pulling_is_shown_pulling() -> None:
    answer = deployment("running", ("a", "pending"), ("b", "pending"))
    answer["hosts"][0]["pulling"] = True
    pulling = live.snapshot(answer)
    assert [h.state for h in pulling.hosts] == ["pulling", "pending"]
    assert pulling.batch == (0, 2)  # pulling ahead of the first batch starts none
    assigned = deployment("running", ("a", "updating"), ("b", "pending"))
    assigned["hosts"][0]["pulling"] = True
    assert [h.state for h in live.snapshot(assigned).hosts] == ["pulling", "pending"]
    assert live.snapshot(assigned).batch == (1, 2)
    assert live.changes(live.snapshot(deployment("running")), pulling)[-1] == (
        "host a: pulling the image of release 4"
    )
    assert "a     pulling  3" in live.render(pulling, 0.0, 80, 24, color=False)
    updating = live.snapshot(deployment("running", ("a", "updating"), ("b", "pending")))
    assert live.changes(pulling, updating) == ["host a: updating to release 4"]


def test_a_detail_never_carries_a_control_character() -> None:
    d = deployment("running", ("a", "failed"))
    d["hosts"][0]["error"] = "exited:\n\x1b[2J\x1b]0;pwned\x07 bye"
    (host,) = live.snapshot(d).hosts
    assert host.detail == "exited: ?[2J?]0;pwned? bye"
    assert ESCAPE not in "".join(live.render(live.snapshot(d), 0, color=True)[3:4]).replace(
        "\x1b[31m", ""
    ).replace("\x1b[0m", "")


def test_lines_print_changes_only() -> None:
    out = io.StringIO()
    view = live.Lines(out, live.snapshot(deployment("pending")))
    view.update(deployment("pending"))
    view.update(deployment("running", ("a", "updating")))
    view.update(deployment("running", ("a", "updating")))
    view.update(deployment("succeeded", ("a", "healthy")))
    view.close()
    assert out.getvalue().splitlines() == [
        "deployment 12: running: 1 host(s), batch 1/1",
        "host a: updating to release 4",
        "host a: healthy on release 4",
    ]


def test_live_redraws_its_frame_in_place() -> None:
    out = io.StringIO()
    view = live.Live(out, started=0.0)
    try:
        view.update(deployment("running", ("a", "updating")))
        first = out.getvalue()
        view.update(deployment("running", ("a", "healthy")))
    finally:
        view.close()
    drawn = out.getvalue()[len(first) :]
    assert "\x1b[F" not in first and first.count("\n") == 4  # header, summary, head, one row
    assert drawn.startswith("\x1b[4F")  # back to the frame's first line
    assert "\x1b[32mhealthy" in drawn and drawn.endswith("\x1b[J")


@pytest.fixture
def terminal() -> Iterator[io.TextIOWrapper]:
    """A stream whose other end is a pseudo-terminal: isatty() is true."""
    controller, tty = pty.openpty()
    stream = open(tty, "w")  # noqa: SIM115 (closed below)
    try:
        yield stream
    finally:
        stream.close()
        os.close(controller)


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({"TERM": "xterm"}, live.Live),
        ({"TERM": "xterm", "NO_COLOR": "1"}, live.Lines),
        ({"TERM": "dumb"}, live.Lines),
        ({"TERM": "xterm", "NO_COLOR": ""}, live.Live),  # no-color.org: set and not empty
    ],
)
def test_which_view_a_terminal_gets(
    terminal: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kind: type
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    view = live.view_for(terminal, 0.0)
    view.close()
    assert isinstance(view, kind)


def test_a_pipe_a_file_or_json_gets_lines(
    terminal: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert isinstance(live.view_for(io.StringIO(), 0.0), live.Lines)
    # `-o json` shows its lines on stderr: plain, even where that is a terminal
    assert isinstance(live.Screen(terminal, 0.0, plain=True).view({"id": 1}), live.Lines)
