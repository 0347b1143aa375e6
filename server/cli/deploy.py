"""`flotilla deploy` and `flotilla diff`: a deploy changes only what its flags name.

Without `-f`, the flags make a JSON merge patch on the app's current release (`"base":
"current"`): `--image` changes the image and keeps env, ports, health, strategy and hosts. An
app with no current release gets the flags as its whole spec. With `-f flotilla.toml`, the
file is the whole spec (the flags, if any, are applied on top of it). Every request carries an
Idempotency-Key, so a retried command never deploys twice.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

from server.cli.api import Exit, Server, UsageError, app_name, call, report_problem
from server.specs import merge_patch

TOML_KEYS = (
    "app", "image", "command", "env", "ports", "replicas", "resources", "restart", "labels",
    "message", "hosts", "health", "strategy",
)  # fmt: skip


NO_BASE_NOTE = (
    "flotilla: note: {app} has no current release: the new release is what the flags say, "
    "nothing else (no env, ports, health or hosts of an earlier release)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `flotilla deploy`."""
    p.add_argument(
        "app", nargs="?", type=app_name, help="the app (with -f: default the file's `app`)"
    )
    p.add_argument("image", nargs="?", help="the image (the same as --image)")
    p.add_argument(
        "-f", "--file", type=Path, help="the whole spec from a TOML file (README: Spec files)"
    )
    p.add_argument("--image", dest="image_flag", metavar="IMAGE", help="the new image")
    p.add_argument(
        "--env", action="append", default=[], type=_env, metavar="K=V",
        help="set an environment variable (repeatable; K= sets it empty)",
    )  # fmt: skip
    p.add_argument(
        "--unset-env", action="append", default=[], type=_env_name, metavar="K",
        help="remove an environment variable (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--port", action="append", default=[], type=_port, metavar="[IP:]HOST:CONTAINER",
        help="publish a port as `docker run -p` does: 8080:80, 127.0.0.1:8080:80, 80 (an "
        "ephemeral host port), 53:53/udp; IP defaults to 127.0.0.1. The ports given replace "
        "all of the app's published ports",
    )  # fmt: skip
    p.add_argument(
        "--health-http", type=_health, metavar="PORT/PATH",
        help="an HTTP health check of a container port, e.g. 80/health",
    )  # fmt: skip
    p.add_argument("--no-health", action="store_true", help="remove the health check")
    p.add_argument("--max-parallel", type=_count(1), metavar="N", help="hosts updated at once")
    p.add_argument("--canary", type=_count(0), metavar="N", help="canary hosts, first")
    p.add_argument(
        "--hosts", type=_hosts, metavar="SELECTOR",
        help="which hosts: labels (role=web) and/or names (web-1), comma-separated; labels "
        "are added to the app's selector, names replace its names; `all`: every host",
    )  # fmt: skip
    p.add_argument("--message", help="why: a commit, a ticket")
    p.add_argument("--idempotency-key", help="repeat-safe key (default: a new one per command)")
    p.add_argument(
        "--dry-run", action="store_true",
        help="show the new spec's changes and its target hosts; create nothing",
    )  # fmt: skip


def request_of(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The app and the deployment request the flags (and -f file) make; UsageError if they
    cannot make one."""
    image = args.image_flag
    if args.image is not None:
        if image is not None:
            raise UsageError("give the image once: as IMAGE or as --image")
        image = args.image
    patch = _patch(args, image)
    if args.file is not None:
        app, spec = load_spec(args.file)
        if args.app is not None and app is not None and args.app != app:
            raise UsageError(f"{args.file}: app is {app!r}, not {args.app!r}")
        app = args.app or app
        if app is None:
            raise UsageError(f"{args.file}: no `app`: set it there or give APP")
        return app, merge_patch(spec, patch)
    if args.app is None:
        raise UsageError("give APP (or -f FILE)")
    return args.app, {"base": "current", **patch}


def _patch(args: argparse.Namespace, image: str | None) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    if image is not None:
        patch["image"] = image
    env: dict[str, Any] = dict(args.env)
    env.update({name: None for name in args.unset_env})
    if env:
        patch["env"] = env
    if args.port:
        patch["ports"] = args.port
    if args.health_http is not None and args.no_health:
        raise UsageError("--health-http and --no-health contradict each other")
    if args.health_http is not None:
        patch["health"] = args.health_http
    if args.no_health:
        patch["health"] = None
    strategy = {}
    if args.max_parallel is not None:
        strategy["max_parallel"] = args.max_parallel
    if args.canary is not None:
        strategy["canary"] = args.canary
    if strategy:
        patch["strategy"] = strategy
    if args.hosts is not None:
        patch["hosts"] = args.hosts or None  # `all`: no selector
    if args.message is not None:
        patch["message"] = args.message
    return patch


def load_spec(path: Path) -> tuple[str | None, dict[str, Any]]:
    """A spec file's app (if it names one) and spec; UsageError naming the file and the key
    at fault. Its values are checked by the same schema the server uses."""
    from pydantic import ValidationError

    from server.api.schemas.spec import DeploymentIn

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - set(TOML_KEYS))
    if unknown:
        raise UsageError(
            f"{path}: unknown key {unknown[0]!r} (the keys are: {', '.join(TOML_KEYS)})"
        )
    app = doc.pop("app", None)
    if app is not None:
        try:
            app_name(app if isinstance(app, str) else "")
        except argparse.ArgumentTypeError:
            raise UsageError(f"{path}: app: {app!r} is not an app name (a DNS label)") from None
    try:
        DeploymentIn.model_validate_json(json.dumps(doc, default=str), strict=True)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise UsageError(f"{path}: " + "; ".join(lines)) from None
    return app, doc


def deploy(server: Server, token: str, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """POST the deployment (or its dry run); (HTTP status, answer). A patch on an app with
    no current release is sent again as the whole spec, and stderr says so: after `app rm`,
    or when no release of the app has succeeded yet, nothing of an earlier spec is kept."""
    app, body = request_of(args)
    key = args.idempotency_key or f"cli-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    path = f"/v1/apps/{app}/deployments" + ("?dry_run=true" if args.dry_run else "")
    status, answer = call(server, token, "POST", path, body, headers)
    if status == 409 and answer.get("code") == "no_base_release" and "base" in body:
        print(NO_BASE_NOTE.format(app=app), file=sys.stderr)
        whole = _without_nulls({k: v for k, v in body.items() if k != "base"})
        status, answer = call(server, token, "POST", path, whole, headers)
    return status, answer


def _without_nulls(value: Any) -> Any:
    """A patch as a whole document: its removals have nothing to remove."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def print_dry_run(answer: dict[str, Any]) -> None:
    """A dry run's answer for people: the changes, the target hosts."""
    base = answer.get("current_release")
    against = f"release {base}" if base is not None else "nothing (no current release)"
    print(f"dry run of {answer['app']}: the new release against {against}")
    print_changes(answer.get("changes") or [])
    hosts = answer.get("hosts") or []
    print(f"target hosts ({len(hosts)}): {', '.join(hosts) or 'none'}")
    print("nothing was created")


def print_changes(changes: list[dict[str, Any]]) -> None:
    """One line per change: `+ path: new`, `- path: old`, `~ path: old -> new`."""
    if not changes:
        print("  no changes")
    for c in changes:
        if c["op"] == "add":
            print(f"  + {c['path']}: {_json(c['new'])}")
        elif c["op"] == "remove":
            print(f"  - {c['path']}: {_json(c['old'])}")
        else:
            print(f"  ~ {c['path']}: {_json(c['old'])} -> {_json(c['new'])}")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def diff(server: Server, token: str, args: argparse.Namespace) -> int:
    """`flotilla diff APP [A] [B]`: from A to B; A alone: from A-1 to A; neither: the newest
    release against the one before."""
    app, first, second = args.app, args.a, args.b
    if first is None:
        status, answer = call(server, token, "GET", f"/v1/apps/{app}/releases")
        if status != 200:
            return report_problem(status, answer)
        numbers = [r["number"] for r in answer.get("releases", [])]
        if not numbers:
            print(f"flotilla: app {app!r} has no release", file=sys.stderr)
            return Exit.FAILED
        path = f"/v1/apps/{app}/releases/{numbers[0]}/diff"
    elif second is None:
        path = f"/v1/apps/{app}/releases/{first}/diff"
    else:
        path = f"/v1/apps/{app}/releases/{second}/diff?against={first}"
    status, answer = call(server, token, "GET", path)
    if status != 200:
        return report_problem(status, answer)
    if args.output == "json":
        print(json.dumps(answer, indent=2))
        return Exit.OK
    against = answer.get("against")
    print(f"{app}: release {against if against is not None else '(none)'} -> {answer['release']}")
    print_changes(answer.get("changes") or [])
    return Exit.OK


# ---- flag values: each bad one is argparse's usage error (exit 2), naming the flag ----------


def _env(value: str) -> tuple[str, str]:
    name, sep, val = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{value!r} is not K=V (K= sets it empty)")
    return _env_name(name), val


def _env_name(value: str) -> str:
    if (
        not value
        or not (value[0].isalpha() or value[0] == "_")
        or not all(c.isalnum() or c == "_" for c in value)
    ):
        raise argparse.ArgumentTypeError(f"{value!r} is not an environment variable name")
    return value


def _port_number(value: str, what: str, allow_zero: bool) -> int:
    if not value.isdigit() or not (0 if allow_zero else 1) <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{what} port {value!r} is not a number 1-65535")
    return int(value)


def _port(value: str) -> dict[str, Any]:
    """`docker run -p`'s form: [IP:][HOST:]CONTAINER[/PROTOCOL]."""
    spec, _, protocol = value.partition("/")
    if protocol and protocol not in ("tcp", "udp"):
        raise argparse.ArgumentTypeError(f"{value!r}: the protocol is tcp or udp")
    ip = None
    if spec.startswith("["):  # [::1]:8080:80
        ip, sep, spec = spec[1:].partition("]:")
        if not sep:
            raise argparse.ArgumentTypeError(f"{value!r} is not [IP:]HOST:CONTAINER")
    parts = spec.split(":")
    if ip is None and len(parts) == 3:
        ip, parts = parts[0], parts[1:]
    if len(parts) > 2 or (ip is not None and len(parts) != 2):
        raise argparse.ArgumentTypeError(f"{value!r} is not [IP:]HOST:CONTAINER")
    host = parts[0] if len(parts) == 2 else ""
    port: dict[str, Any] = {"container": _port_number(parts[-1], "container", False)}
    port["host"] = _port_number(host, "host", True) if host else 0
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r}: {ip!r} is not an IP address") from None
        port["host_ip"] = ip
    if protocol:
        port["protocol"] = protocol
    return port


def _health(value: str) -> dict[str, Any]:
    port, _, path = value.partition("/")
    return {
        "type": "http",
        "port": _port_number(port, "health check", False),
        "path": "/" + path,
        "command": None,
    }


def _count(least: int) -> Any:
    def parse(value: str) -> int:
        if not value.isdigit() or int(value) < least:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= {least}")
        return int(value)

    return parse


def _hosts(value: str) -> dict[str, Any]:
    if value == "all":
        return {}
    names: list[str] = []
    labels: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in value.split(","))):
        key, sep, val = item.partition("=")
        if sep:
            if not key:
                raise argparse.ArgumentTypeError(f"{item!r}: a label needs a name")
            labels[key] = val
        else:
            names.append(item)
    if not names and not labels:
        raise argparse.ArgumentTypeError("give labels (role=web), host names, or `all`")
    selector: dict[str, Any] = {}
    if names:
        selector["names"] = names
    if labels:
        selector["labels"] = labels
    return selector
