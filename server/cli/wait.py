"""`--wait`: follow a deployment to its end (and an automatic rollback to its end), say how it
ended and where the app stands, and exit with a code CI can act on (server/cli/api.Exit).

One long poll (`GET /v1/deployments/{id}?wait=S&version=V`) answers when the deployment
ended, or as soon as it changed (its `version` is not V: a host's state or its status), or
when the server's cap is up; each answer goes to the view (server/cli/live.py: a live view
on a terminal, a plain line per change elsewhere), and the next poll waits past it, until
--timeout has passed. A server that stops answering (restarting, a lost connection, a 503)
is not an ending: the wait goes on until it answers again or time is up.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, TextIO

from server.cli import live
from server.cli.api import Exit, Server, Unreachable, call, report_problem
from server.states import TERMINAL, DeploymentStatus, TargetState

# The server answers a long poll after this long at most (MAX_WAIT_SECONDS of
# GET /v1/deployments/{id}?wait=): a longer --timeout polls again until it has passed.
LONG_POLL_SECONDS = 600.0
RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0)  # between tries while the server does not answer
LOG_TAIL = 10  # lines of a failed instance's log shown as evidence
# an answer that came back unchanged this early (a stopping server answers at once) is
# followed by a pause, so that no loop of polls can spin
EARLY_SECONDS = 0.5
# each answer reads and sends every host of the deployment: a large one is asked at most
# every few seconds (10,000 hosts: 5 s), a small one as often as it changes
SPACING_PER_HOST = 0.0005
MAX_SPACING = 5.0


@dataclass(frozen=True)
class Target:
    """Where to ask: the server and the token."""

    server: Server
    token: str

    def get(self, path: str, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        """GET `path` of the API."""
        return call(self.server, self.token, "GET", path, timeout=timeout)


class Refused(Exception):
    """The server refused a poll: the exit code its problem was reported with."""

    def __init__(self, code: Exit) -> None:
        super().__init__(code)
        self.code = code


def follow(
    target: Target, deployment: dict[str, Any], timeout: float, progress: TextIO | None = None
) -> int:
    """Wait until the deployment ends, showing its progress on `progress` (default stdout;
    another stream, as `-o json` gives, gets plain lines only); then say how, with its
    evidence, and follow an automatic rollback it started. The exit code."""
    started = time.monotonic()
    deadline = started + timeout
    deployment_id = int(deployment["id"])
    screen = live.Screen(progress or sys.stdout, started, plain=progress is not None)
    try:
        ended = _until_end(target, deployment, deadline, screen.view(deployment))
    except Refused as exc:
        return exc.code
    except KeyboardInterrupt:
        _say(
            f"interrupted: deployment {deployment_id} goes on; see flotilla status {deployment_id}"
        )
        return Exit.INTERRUPTED
    if ended is None:
        _say(
            f"deployment {deployment_id}: the server did not answer before the timeout "
            f"({timeout:g} s); the deployment goes on without this command"
        )
        return Exit.UNREACHABLE
    status = ended.get("status")
    if status not in TERMINAL:
        print(
            f"deployment {deployment_id}: timed out after {timeout:g} s, still {status}; "
            f"the deployment goes on (see flotilla status {deployment_id})"
        )
        return Exit.TIMED_OUT
    print(f"deployment {deployment_id}: {status}")
    if status == DeploymentStatus.SUCCEEDED:
        return Exit.OK
    if status in (DeploymentStatus.CANCELLED, DeploymentStatus.SUPERSEDED):
        if ended.get("error"):
            print(f"  {ended['error']}", file=sys.stderr)
        return Exit.STOPPED
    evidence(ended)
    if status == DeploymentStatus.ROLLED_BACK:
        try:
            _follow_rollback(target, ended, deadline, screen)
        except (Refused, Unreachable) as exc:
            _say(f"could not follow the automatic rollback: {exc}")
        except KeyboardInterrupt:
            _say("interrupted: the automatic rollback goes on")
            return Exit.INTERRUPTED
    return Exit.FAILED


def _until_end(
    target: Target, deployment: dict[str, Any], deadline: float, view: live.View
) -> dict[str, Any] | None:
    """The deployment once it ended or time is up (None: the server never answered); every
    answer on the way goes to `view`, which is closed at the end."""
    try:
        return _poll(target, deployment, deadline, view)
    finally:
        view.close()


def _poll(
    target: Target, deployment: dict[str, Any], deadline: float, view: live.View
) -> dict[str, Any] | None:
    deployment_id = int(deployment["id"])
    seen = deployment.get("version") or None  # the POST's answer: wait past it
    answer: dict[str, Any] | None = None
    tries = 0
    while True:
        wait = min(LONG_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
        path = f"/v1/deployments/{deployment_id}?wait={wait:.3f}"
        if seen is not None:
            path += "&version=" + urllib.parse.quote(str(seen), safe="")
        asked = time.monotonic()
        try:
            status, body = target.get(path, timeout=wait + 30)
        except Unreachable as exc:
            status, body = 0, {"detail": str(exc)}
        pause = 0.0
        if status == 200:
            answer, tries = body, 0
            view.update(body)
            took = time.monotonic() - asked
            if body.get("version") == seen and took < EARLY_SECONDS:
                pause = EARLY_SECONDS
            spacing = min(MAX_SPACING, len(body.get("hosts") or []) * SPACING_PER_HOST)
            pause = max(pause, spacing - took)
            seen = body.get("version") or None
        elif status == 503 or status == 0:  # restarting, stopping, database down: not an end
            if tries == 0:
                view.say(f"flotilla: waiting for the server: {body.get('detail', 'unavailable')}")
            tries += 1
            pause = RETRY_SECONDS[min(tries, len(RETRY_SECONDS)) - 1]
        else:
            view.close()  # the problem goes below the view, not into it
            raise Refused(report_problem(status, body))
        if answer is not None and answer.get("status") in TERMINAL:
            return answer
        left = deadline - time.monotonic()
        if left <= 0:
            return answer
        if pause > 0:
            time.sleep(min(left, pause))


def evidence(deployment: dict[str, Any]) -> None:
    """Print why a deployment failed: its error, and per failed host its problems (probe,
    exit code, the tail of the log)."""
    if deployment.get("error"):
        print(f"  {live.printable(deployment['error'])}", file=sys.stderr)
    for host in deployment.get("hosts") or []:
        if host.get("state") != TargetState.FAILED:
            continue
        why = live.printable(host.get("error") or "failed")
        print(f"  host {host.get('name')}: {why}", file=sys.stderr)
        found = host.get("evidence") or {}
        for problem in found.get("problems") or []:
            line = f"    {problem.get('reason')}: {live.printable(problem.get('message'))}"
            if problem.get("exit_code") is not None:
                line += f" (exit code {problem['exit_code']})"
            print(line, file=sys.stderr)
            logs = list(problem.get("logs") or [])[-LOG_TAIL:]
            if logs:
                print(f"    last {len(logs)} log lines:", file=sys.stderr)
                for log_line in logs:
                    print(f"      | {live.printable(log_line)}", file=sys.stderr)


def _follow_rollback(
    target: Target, failed: dict[str, Any], deadline: float, screen: live.Screen
) -> None:
    """Follow the automatic rollback a failed deployment started; say where the app stands."""
    app = failed["app"]
    status, answer = target.get(f"/v1/deployments?app={app}&limit=50")
    if status != 200:
        raise Refused(report_problem(status, answer))
    rollback = next(
        (d for d in answer.get("deployments", []) if d.get("rollback_of") == failed["id"]), None
    )
    if rollback is None:
        _say(f"deployment {failed['id']} was rolled back, but its rollback was not found")
        return
    print(f"deployment {rollback['id']}: automatic rollback to release {rollback['release']}")
    ended = _until_end(target, rollback, deadline, screen.view(rollback))
    if ended is None or ended.get("status") not in TERMINAL:
        print(
            f"deployment {rollback['id']}: timed out following the rollback; it goes on "
            f"(see flotilla status {rollback['id']})"
        )
        return
    if ended["status"] != DeploymentStatus.SUCCEEDED:
        print(f"deployment {rollback['id']}: rollback {ended['status']}")
        evidence(ended)
        return
    print(f"rolled back to release {ended['release']}: {_serving(target, app, ended)}")


def _serving(target: Target, app: str, rollback: dict[str, Any]) -> str:
    """ "serving on 3/3 hosts": the rollback's hosts healthy on its release, from the app."""
    names = {h["name"] for h in rollback.get("hosts") or []}
    status, answer = target.get(f"/v1/apps/{app}")
    if status != 200:
        return f"{len(names)} host(s) rolled back"
    serving = [
        h
        for h in answer.get("hosts") or []
        if h.get("name") in names
        and h.get("state") == TargetState.HEALTHY
        and h.get("release") == rollback["release"]
    ]
    return f"serving on {len(serving)}/{len(names)} hosts"


def _say(message: str) -> None:
    print(f"flotilla: {message}", file=sys.stderr)
