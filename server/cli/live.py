"""What `--wait` shows while a deployment runs: a live view on a terminal, plain lines elsewhere.

The deployment comes from `server/cli/wait.py`'s long poll (`GET /v1/deployments/{id}
?wait=S&version=V`, answered as soon as a host's state or the deployment's status changed),
so the view costs the server nothing more than the wait itself.

- On a terminal (stdout a TTY, with neither NO_COLOR nor TERM=dumb), `Live` redraws a frame in
  place: a header (deployment, app, release, status, batch k/n, elapsed time) and one row per
  host (state, release, detail), redrawn on every change and every second for the clock.
- Anywhere else (a pipe, a file, `-o json` where the lines go to stderr), `Lines` prints one
  plain line per change of a host's state or of the deployment's status, never an escape.

What is drawn or printed is decided by pure functions (`snapshot`, `render`, `changes`): state
in, text out. A host's states are the API's (pending, updating, healthy, failed, skipped),
and "pulling" for a pending or updating host the API marks `pulling` (the release's image
is not there yet).
The batch is reckoned from the strategy as the planner forms batches (canaries first, then
`max_parallel` hosts at a time).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from server.states import TERMINAL, TargetState

TICK_SECONDS = 1.0  # the live view's clock
DETAIL_WIDTH = 60
# the live view's own state of a pending or updating host whose image of the release is not
# there yet (the API says `"pulling": true`); the others are the API's (TargetState)
PULLING = "pulling"
COLORS = {
    TargetState.HEALTHY: "32",
    TargetState.FAILED: "31",
    TargetState.UPDATING: "33",
    PULLING: "36",
    TargetState.SKIPPED: "2",
}
# when the hosts do not fit the terminal, these come first
PRIORITY = {
    TargetState.FAILED: 0,
    TargetState.UPDATING: 1,
    PULLING: 2,
    TargetState.PENDING: 3,
    TargetState.HEALTHY: 4,
    TargetState.SKIPPED: 5,
}


@dataclass(frozen=True)
class Host:
    """One target host as the view shows it."""

    name: str
    state: str
    release: str  # "3", "3 -> 4", or "-"
    detail: str


@dataclass(frozen=True)
class Snapshot:
    """A deployment as the view shows it (from the API's answer)."""

    id: int
    app: str
    release: int
    kind: str
    status: str
    hosts: tuple[Host, ...]
    batch: tuple[int, int] | None  # (started, of); None: no target hosts yet


def snapshot(deployment: dict[str, Any]) -> Snapshot:
    """The view of one answer of GET /v1/deployments/{id}."""
    release = int(deployment.get("release") or 0)
    hosts = tuple(_host(h, release) for h in deployment.get("hosts") or [])
    strategy = deployment.get("strategy") or {}
    return Snapshot(
        id=int(deployment.get("id") or 0),
        app=str(deployment.get("app") or "-"),
        release=release,
        kind=str(deployment.get("kind") or "deploy"),
        status=str(deployment.get("status") or "-"),
        hosts=hosts,
        batch=batch(
            [str(h.get("state") or TargetState.PENDING) for h in deployment.get("hosts") or []],
            _positive(strategy.get("max_parallel"), 1),
            _positive(strategy.get("canary"), 0),
        ),
    )


def _positive(value: Any, default: int) -> int:
    return value if isinstance(value, int) and value >= 0 else default


def _host(raw: dict[str, Any], release: int) -> Host:
    state = str(raw.get("state") or TargetState.PENDING)
    if state in (TargetState.PENDING, TargetState.UPDATING) and raw.get("pulling") is True:
        state = PULLING  # the API's host whose image of the release is not there yet
    previous = raw.get("previous_release")
    was = str(previous) if previous is not None else "-"
    if state == TargetState.UPDATING:
        shown = f"{was} -> {release}"
    elif state in (TargetState.HEALTHY, TargetState.FAILED):
        shown = str(release)
    else:  # pending, pulling, skipped: what it ran before
        shown = was
    return Host(str(raw.get("name") or "?"), state, shown, _detail(raw))


def _detail(raw: dict[str, Any]) -> str:
    """The host's error, or its newest problem's message (a probe, an exit code)."""
    problems = (raw.get("evidence") or {}).get("problems") or []
    text = raw.get("error") or ""
    if not text and problems and isinstance(problems[-1], dict):
        text = str(problems[-1].get("message") or "")
    return printable(" ".join(str(text).split()))


def printable(text: object) -> str:
    """`text` with every control character (an escape sequence's start) shown as "?": an
    agent's message or a log line can quote a container's output, and none of it may drive
    the terminal."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def batch(states: list[str], max_parallel: int, canary: int) -> tuple[int, int] | None:
    """(the batch under way, how many batches): canaries are batch 1, then `max_parallel`
    hosts a batch; skipped hosts are in none. (0, n) before the first batch starts."""
    counted = [s for s in states if s != TargetState.SKIPPED]
    if not counted:
        return None
    size = max(1, max_parallel)
    canaries = min(canary, len(counted))
    first = 1 if canaries else 0
    total = first + math.ceil((len(counted) - canaries) / size)
    started = sum(1 for s in counted if s != TargetState.PENDING)
    if started == 0:
        return 0, total
    if started <= canaries:
        return 1, total
    return min(total, first + math.ceil((started - canaries) / size)), total


def elapsed_text(seconds: float) -> str:
    """`0:07`, `12:30`, `1:02:03`."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def header(snap: Snapshot, elapsed: float) -> str:
    """The view's first line."""
    parts = [f"deployment {snap.id}", f"{snap.kind} of {snap.app} to release {snap.release}"]
    parts.append(snap.status)
    if snap.batch is not None:
        parts.append(f"batch {snap.batch[0]}/{snap.batch[1]}")
    parts.append(elapsed_text(elapsed))
    return "  ".join(parts)


def render(
    snap: Snapshot, elapsed: float, width: int = 80, height: int = 24, color: bool = False
) -> list[str]:
    """The live view's lines: none wider than `width` - 1 (a wrapped line would throw the
    redraw off), at most `height` - 1 of them (the rest summed up on the last line)."""
    lines = [header(snap, elapsed)]
    counts: dict[str, int] = {}
    for h in snap.hosts:
        counts[h.state] = counts.get(h.state, 0) + 1
    if not snap.hosts:
        lines.append("no target hosts yet")
        return [_fit(line, width) for line in lines]
    lines.append(", ".join(f"{n} {state}" for state, n in _in_order(counts)))
    room = max(1, height - 1 - len(lines) - 1)  # below the table's header
    hosts = list(snap.hosts)
    if len(hosts) > room:  # a line for "... and N more"; trouble first
        room = max(1, room - 1)
        hosts.sort(key=lambda h: (PRIORITY.get(h.state, 9), h.name))
    shown, hidden = hosts[:room], len(hosts) - room
    names = max([4, *(len(h.name) for h in shown)])
    states = max([5, *(len(h.state) for h in shown)])
    releases = max([7, *(len(h.release) for h in shown)])
    lines.append(f"{'HOST':<{names}}  {'STATE':<{states}}  {'RELEASE':<{releases}}  DETAIL")
    for h in shown:
        detail = h.detail if len(h.detail) <= DETAIL_WIDTH else h.detail[: DETAIL_WIDTH - 3] + "..."
        state = h.state.ljust(states)
        row = f"{h.name:<{names}}  {state}  {h.release:<{releases}}  {detail}".rstrip()
        row = _fit(row, width)
        if color and h.state in COLORS:  # after fitting: escapes take no columns
            start = len(h.name.ljust(names)) + 2
            if start < len(row):
                end = start + len(h.state)
                row = f"{row[:start]}\x1b[{COLORS[h.state]}m{row[start:end]}\x1b[0m{row[end:]}"
        lines.append(row)
    if hidden > 0:
        lines.append(f"... and {hidden} more")
    return [line if "\x1b" in line else _fit(line, width) for line in lines]


def _in_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (PRIORITY.get(item[0], 9), item[0]))


def _fit(line: str, width: int) -> str:
    limit = max(10, width - 1)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def changes(before: Snapshot | None, after: Snapshot) -> list[str]:
    """The plain lines for what changed from `before` to `after`: the deployment's status
    (not an ending: `--wait` says how it ended itself), and each host whose state changed. A
    host first seen `pending` is no change (it is counted in the status line)."""
    lines = []
    if (before is None or before.status != after.status) and after.status not in TERMINAL:
        where = f": {len(after.hosts)} host(s)" if after.hosts else ""
        on = f", batch {after.batch[0]}/{after.batch[1]}" if after.batch else ""
        lines.append(f"deployment {after.id}: {after.status}{where}{on}")
    was = {h.name: h.state for h in before.hosts} if before is not None else {}
    for h in after.hosts:
        if was.get(h.name, TargetState.PENDING) == h.state:
            continue
        line = f"host {h.name}: {h.state}"
        if h.state == TargetState.UPDATING:
            line += f" to release {after.release}"
        elif h.state == PULLING:
            line += f" the image of release {after.release}"
        elif h.state == TargetState.HEALTHY:
            line += f" on release {after.release}"
        if h.detail and h.state in (TargetState.FAILED, TargetState.SKIPPED):
            line += f": {h.detail}"
        lines.append(line)
    return lines


class View(Protocol):
    """What `--wait` shows while it waits."""

    def update(self, deployment: dict[str, Any]) -> None:
        """A new answer of the long poll."""

    def say(self, message: str) -> None:
        """A line for stderr (`flotilla: waiting for the server ...`)."""

    def close(self) -> None:
        """The wait is over: leave what was shown as it is."""


class Lines:
    """One plain line per change, to `out`, from `last` on (what was said already)."""

    def __init__(self, out: TextIO, last: Snapshot | None = None) -> None:
        self.out = out
        self.last = last

    def update(self, deployment: dict[str, Any]) -> None:
        """Print what changed since the last answer."""
        snap = snapshot(deployment)
        for line in changes(self.last, snap):
            print(line, file=self.out, flush=True)
        self.last = snap

    def say(self, message: str) -> None:
        """Print a line to stderr."""
        print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Nothing to tidy."""


class Live:
    """A frame redrawn in place on a terminal, on every change and every second."""

    def __init__(self, out: TextIO, started: float, last: Snapshot | None = None) -> None:
        self.out = out
        self.started = started
        self.last = last
        self.drawn = 0  # lines of the frame on screen, the cursor below them
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="live-view", daemon=True)
        self.ticker.start()

    def update(self, deployment: dict[str, Any]) -> None:
        """Redraw with the new answer."""
        with self.lock:
            self.last = snapshot(deployment)
            self._draw()

    def say(self, message: str) -> None:
        """Print a line above the frame, and the frame again below it."""
        with self.lock:
            self._erase()
            print(message, file=sys.stderr, flush=True)
            self._draw()

    def close(self) -> None:
        """Stop the clock; the last frame stays, and what is printed next goes below it."""
        self.stopped.set()
        if self.ticker is not threading.current_thread():
            self.ticker.join(timeout=2 * TICK_SECONDS)
        with self.lock:
            self.drawn = 0

    def _tick(self) -> None:
        while not self.stopped.wait(TICK_SECONDS):
            with self.lock:
                if self.last is not None and not self.stopped.is_set():
                    self._draw()

    def _erase(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")  # to the frame's first line; clear
            self.out.flush()  # before what goes to stderr
            self.drawn = 0

    def _draw(self) -> None:
        if self.last is None:
            return
        size = shutil.get_terminal_size()
        lines = render(
            self.last, time.monotonic() - self.started, size.columns, size.lines, color=True
        )
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.out.write(up + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
        self.out.flush()
        self.drawn = len(lines)


def view_for(
    out: TextIO, started: float, deployment: dict[str, Any] | None = None, plain: bool = False
) -> View:
    """`Live` on a terminal that takes escapes, `Lines` anywhere else or if `plain` (`-o
    json`); `deployment`: as it was already shown (the answer of the request that started
    it), `started`: when the clock of the elapsed time started (time.monotonic())."""
    term = os.environ.get("TERM", "")
    # no-color.org: NO_COLOR set and not empty
    plain = plain or bool(os.environ.get("NO_COLOR")) or term == "dumb"
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        tty = False
    last = snapshot(deployment) if deployment is not None else None
    return Live(out, started, last) if tty and not plain else Lines(out, last)


@dataclass(frozen=True)
class Screen:
    """Where one `--wait` shows its views (one per deployment it follows): the stream, when
    its clock started, and whether it must be plain lines."""

    out: TextIO
    started: float
    plain: bool = False

    def view(self, deployment: dict[str, Any]) -> View:
        """The view of one deployment, as it was already shown."""
        return view_for(self.out, self.started, deployment, self.plain)
