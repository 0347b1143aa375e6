"""The read commands and the deployment controls, for people (tables) and scripts (`-o json`).

`apps`, `status APP`, `deployment ID`, `history APP`, `releases APP`, `hosts`, `events`
and `pause|resume|promote|cancel ID`: each is one or two GETs (or one POST) through
server/cli/api.call. With `-o json` the server's answer is printed as it came.
"""

from __future__ import annotations

import argparse
import re
import urllib.parse
from typing import Any

from agent.protocol import ContainerState
from server.cli.api import Exit, app_name, call, report_problem, server_of
from server.cli.output import cell, emit_json, labels, table, when
from server.states import ACTIVE

MAX_ID = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")


def deployment_id(value: str) -> int:
    """A deployment id as an argument (argparse's type)."""
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{value!r} is not a deployment id (1-{MAX_ID})")
    return int(value)


def app_or_id(value: str) -> str | int:
    """`status`'s argument: an app's name, or (all digits) a deployment id."""
    if value.isascii() and value.isdigit():
        return deployment_id(value)
    return app_name(value)


def limit(value: str) -> int:
    """A --limit, 1-1000 (what the API takes)."""
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= 1000:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 1 to 1000")
    return int(value)


def run(args: argparse.Namespace, token: str) -> int:
    """Run one read command or deployment control; its exit code."""
    command = args.command
    if command == "status" and isinstance(args.target, int):
        args.deployment, command = args.target, "deployment"
    if command in ("pause", "resume", "promote", "cancel"):
        path = f"/v1/deployments/{args.deployment}/{command}"
        status, answer = call(server_of(args), token, "POST", path)
        if status >= 400:
            return report_problem(status, answer)
        if args.output == "json":
            emit_json(answer)
        else:
            print(f"deployment {answer['id']}: {answer['status']}")
        return Exit.OK
    status, answer = call(server_of(args), token, "GET", _path(args, command))
    if status >= 400:
        return report_problem(status, answer)
    if command == "status":
        extra = _active_deployment(args, token)
    if args.output == "json":
        emit_json(answer)
        return Exit.OK
    if command == "status":
        _print_status(answer, extra)
    else:
        _PRINTERS[command](answer)
    return Exit.OK


def _path(args: argparse.Namespace, command: str) -> str:
    if command == "status":
        return f"/v1/apps/{args.target}"
    if command == "deployment":
        return f"/v1/deployments/{args.deployment}"
    if command == "history":
        return f"/v1/deployments?app={args.app}&limit={args.limit}"
    if command == "releases":
        return f"/v1/apps/{args.app}/releases"
    if command == "apps":
        return "/v1/apps"
    if command == "hosts":
        return "/v1/hosts"
    query = {"limit": str(args.limit)}
    if args.app:
        query["app"] = args.app
    return "/v1/events?" + urllib.parse.urlencode(query)


def _active_deployment(args: argparse.Namespace, token: str) -> dict[str, Any] | None:
    """The app's newest deployment, if it is still under way."""
    status, answer = call(
        server_of(args), token, "GET", f"/v1/deployments?app={args.target}&limit=1"
    )
    newest = (answer.get("deployments") or [None])[0] if status == 200 else None
    if newest and str(newest.get("status")) in ACTIVE:
        return dict(newest)
    return None


def _print_status(app: dict[str, Any], active: dict[str, Any] | None) -> None:
    spec = app.get("spec") or {}
    current = app.get("current_release")
    if current is None:
        print(f"app {app['name']}: no current release")
    else:
        print(f"app {app['name']}: release {current} ({spec.get('image', '?')})")
    if active is not None:
        print(
            f"deployment {active['id']}: {active['kind']} of release {active['release']} "
            f"{active['status']}"
        )
    rows = []
    for host in app.get("hosts") or []:
        instances = host.get("instances") or []
        running = [i for i in instances if i.get("state") == ContainerState.RUNNING]
        count = f"{len(running)} running"
        if len(instances) > len(running):
            count += f", {len(instances) - len(running)} stopped"
        ports = [
            f"{p['host_ip']}:{p['host_port']}->{p['container']}/{p['protocol']}"
            for i in running
            for p in i.get("ports") or []
        ]
        rows.append([host["name"], host.get("release"), host["state"], count, " ".join(ports)])
    shown = {row[0] for row in rows}
    for target in (active or {}).get("hosts") or []:  # targets nothing was assigned to yet
        if target["name"] not in shown:
            rows.append([target["name"], None, target["state"], "0 running", None])
    table(["HOST", "RELEASE", "STATE", "INSTANCES", "PORTS"], rows, "no host runs it")


def _print_deployment(d: dict[str, Any]) -> None:
    print(
        f"deployment {d['id']}: {d['kind']} of {d['app']} to release {d['release']}, {d['status']}"
    )
    print(
        f"  by {d['trigger']}; created {when(d['created_at'])}, started "
        f"{when(d.get('started_at'))}, finished {when(d.get('finished_at'))}"
    )
    if d.get("rollback_of"):
        print(f"  rolls back deployment {d['rollback_of']}")
    for key in ("reason", "error"):
        if d.get(key):
            print(f"  {key}: {d[key]}")
    rows = [
        [h["name"], h["state"], h.get("previous_release"), h.get("error")]
        for h in d.get("hosts") or []
    ]
    table(["HOST", "STATE", "PREVIOUS", "ERROR"], rows, "no target hosts yet")


def _print_history(answer: dict[str, Any]) -> None:
    rows = [
        [
            d["id"],
            d["kind"],
            d["release"],
            d["status"],
            d["trigger"],
            when(d["created_at"]),
            _took(d),
            d.get("error") or d.get("reason"),
        ]
        for d in answer["deployments"]
    ]
    header = ["ID", "KIND", "RELEASE", "STATUS", "BY", "CREATED", "TOOK", "WHY"]
    table(header, rows, "no deployments")


def _took(d: dict[str, Any]) -> str:
    import datetime as dt

    if not d.get("started_at") or not d.get("finished_at"):
        return "-"
    took = dt.datetime.fromisoformat(d["finished_at"]) - dt.datetime.fromisoformat(d["started_at"])
    return f"{took.total_seconds():.1f}s"


def _print_releases(answer: dict[str, Any]) -> None:
    rows = [
        [
            r["number"],
            r["image"],
            (r.get("digest") or "")[:19],
            r.get("outcome"),
            when(r["created_at"]),
            r["created_by"],
            r.get("message"),
        ]
        for r in answer["releases"]
    ]
    header = ["RELEASE", "IMAGE", "DIGEST", "OUTCOME", "CREATED", "BY", "MESSAGE"]
    table(header, rows, "no releases")


def _print_apps(answer: dict[str, Any]) -> None:
    rows = [[a["name"], a.get("current_release"), a.get("last_release")] for a in answer["apps"]]
    table(["APP", "CURRENT", "LATEST"], rows, "no apps")


def _print_hosts(answer: dict[str, Any]) -> None:
    print_hosts(answer["hosts"])


def print_hosts(hosts: list[dict[str, Any]]) -> None:
    """Hosts as a table (`flotilla hosts`, `flotilla host list`)."""
    rows = [
        [
            h["name"],
            labels(h.get("labels")),
            h["status"] + (" (cordoned)" if h.get("cordoned") else ""),
            when(h.get("last_seen")),
            h.get("agent_version"),
            h.get("docker_version"),
        ]
        for h in hosts
    ]
    header = ["NAME", "LABELS", "STATUS", "LAST SEEN", "AGENT", "DOCKER"]
    table(header, rows, "no hosts")


def _print_events(answer: dict[str, Any]) -> None:
    events = list(reversed(answer["events"]))  # oldest first, as --follow goes on
    table(EVENT_HEADER, [event_row(e) for e in events], "no events")


EVENT_HEADER = ["ID", "AT", "KIND", "APP", "DEPLOYMENT", "HOST", "BY", "MESSAGE"]


def event_row(e: dict[str, Any]) -> list[str]:
    """One event as a table's row."""
    values = [e.get("id"), when(e.get("at")), e.get("kind"), e.get("app")]
    values += [e.get("deployment"), e.get("host"), e.get("actor"), e.get("message")]
    return [cell(v) for v in values]


_PRINTERS = {
    "deployment": _print_deployment,
    "history": _print_history,
    "releases": _print_releases,
    "apps": _print_apps,
    "hosts": _print_hosts,
    "events": _print_events,
}
