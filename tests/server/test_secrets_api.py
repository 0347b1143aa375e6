"""Secrets through the REST API and the CLI: set, list, remove, refusals; values never shown."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path

from server.db import tokens
from server.keys import SESSIONS
from tests.conftest import Flotilla
from tests.e2e.test_secrets import database_bytes
from tests.harness import ROOT, free_port
from tests.server.test_cli import clean_env

VALUE = "s3cr3t-canary-7f4e9b21"


async def test_set_list_remove(flotilla: Flotilla) -> None:
    api = flotilla.api
    status, body = await api.call("PUT", "/v1/apps/web/secrets/DB_PASSWORD", {"value": VALUE})
    assert (status, body) == (200, {"app": "web", "name": "DB_PASSWORD", "version": 1})
    status, body = await api.call("PUT", "/v1/apps/web/secrets/DB_PASSWORD", {"value": "x2"})
    assert (status, body["version"]) == (200, 2)
    await api.call("PUT", "/v1/apps/web/secrets/API_KEY", {"value": "other-value"})
    status, body = await api.call("GET", "/v1/apps/web/secrets")
    assert status == 200
    assert [(s["name"], s["version"], s["updated_by"]) for s in body["secrets"]] == [
        ("API_KEY", 1, "admin"),
        ("DB_PASSWORD", 2, "admin"),
    ]
    assert set(body["secrets"][0]) == {"name", "version", "updated_at", "updated_by"}
    assert (await api.call("GET", "/v1/apps/other/secrets")) == (200, {"secrets": []})

    status, body = await api.call("DELETE", "/v1/apps/web/secrets/API_KEY")
    assert status == 204
    status, body = await api.call("DELETE", "/v1/apps/web/secrets/API_KEY")
    assert status == 404 and body["code"] == "not_found"
    status, body = await api.call("GET", "/v1/apps/web/secrets")
    assert [s["name"] for s in body["secrets"]] == ["DB_PASSWORD"]

    status, events = await api.call("GET", "/v1/events?app=web")
    kinds = [e["kind"] for e in events["events"]]
    assert kinds.count("secret_set") == 3 and "secret_removed" in kinds
    assert VALUE not in str(events)


async def test_bad_input_is_refused_and_changes_nothing(flotilla: Flotilla) -> None:
    api = flotilla.api
    for name in ("1ABC", "A-B", "A%0A", "A.B", "x" * 256):
        status, body = await api.call("PUT", f"/v1/apps/web/secrets/{name}", {"value": "v"})
        assert status == 422, (name, status, body)
        assert body["errors"][0]["field"] == "name"
    cases: list[tuple[object, str]] = [
        ({}, "value"),
        ({"value": ""}, "value"),
        ({"value": 5}, "value"),
        ({"value": "v", "other": 1}, "other"),
        ({"value": "v" * 65537}, "value"),
    ]
    for body_in, field in cases:
        status, body = await api.call("PUT", "/v1/apps/web/secrets/OK", body_in)
        assert status == 422, (body_in, body)
        assert body["errors"][0]["field"] == field
    status, body = await api.call("PUT", "/v1/apps/web/secrets/OK", data=b"raw text")
    assert status == 400 and body["code"] == "malformed_json"
    status, body = await api.call("PUT", "/v1/apps/Web/secrets/OK", {"value": "v"})
    assert status == 422 and body["errors"][0]["field"] == "app"
    assert (await api.call("GET", "/v1/apps/web/secrets")) == (200, {"secrets": []})


async def test_scopes(flotilla: Flotilla) -> None:
    async with flotilla.server.app[SESSIONS].begin() as session:
        reader = await tokens.create_token(session, "reader", ["read"])
        deployer = await tokens.create_token(session, "ci", ["deploy"])
    api = flotilla.api
    path = "/v1/apps/web/secrets/TOKEN"
    status, body = await api.call("PUT", path, {"value": "v"}, token=reader)
    assert status == 403 and body["code"] == "forbidden"
    assert (await api.call("PUT", path, {"value": "v"}, token=deployer))[0] == 200
    assert (await api.call("GET", "/v1/apps/web/secrets", token=reader))[0] == 200
    assert (await api.call("DELETE", path, token=reader))[0] == 403
    assert (await api.call("DELETE", path, token=deployer))[0] == 204
    assert (await api.call("GET", "/v1/apps/web/secrets", token=""))[0] == 401


async def test_deploy_naming_a_missing_secret_creates_nothing(flotilla: Flotilla) -> None:
    api = flotilla.api
    await api.call("PUT", "/v1/apps/web/secrets/PRESENT", {"value": VALUE})
    body = {"image": "web:v1", "secrets": {"A": "PRESENT", "B": "ABSENT", "C": "GONE"}}
    status, answer = await api.call("POST", "/v1/apps/web/deployments", body)
    assert status == 422, answer
    assert [e["field"] for e in answer["errors"]] == ["secrets.ABSENT", "secrets.GONE"]
    assert "ABSENT" in answer["detail"]
    assert (await api.call("GET", "/v1/apps/web"))[0] == 404  # no app, no release
    bad: list[tuple[dict[str, object], str]] = [
        ({"secrets": ["bad-name"]}, "secrets"),
        ({"secrets": {"OK": "bad name"}}, "secrets"),
        ({"secrets": ["PRESENT"], "env": {"PRESENT": "x"}}, "body"),
        ({"secrets": ["PRESENT"], "secrets_as": "volume"}, "secrets_as"),
        ({"secrets": ["PRESENT"], "secrets_as": "files", "secrets_dir": "/etc"}, "secrets_dir"),
        ({"secrets": ["PRESENT"], "secrets_as": "files", "secrets_dir": "run/x"}, "secrets_dir"),
        ({"secrets": ["PRESENT"], "secrets_as": "files", "secrets_dir": "/a/../b"}, "secrets_dir"),
    ]
    for extra, field in bad:
        status, answer = await api.call(
            "POST", "/v1/apps/web/deployments", {"image": "web:v1", **extra}
        )
        assert status == 422, (extra, answer)
        assert answer["errors"][0]["field"].startswith(field), (extra, answer)
    assert (await api.call("GET", "/v1/apps/web"))[0] == 404


def secret_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", "secret", *args],
        cwd=ROOT,
        env=clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_set_list_rm(flotilla_sqlite: Flotilla) -> None:
    f = flotilla_sqlite
    conn = ("--server", f.url, "--token", f.api.token)

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return secret_cli(args[0], *conn, *args[1:], stdin=stdin)

    done = await asyncio.to_thread(run, "set", "web", "DB_PASSWORD", stdin=VALUE + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "secret DB_PASSWORD of web set (version 1)"
    listed = await asyncio.to_thread(run, "list", "web")
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[:2] == [
        "DB_PASSWORD",
        "1",
    ]
    assert VALUE not in listed.stdout
    as_json = await asyncio.to_thread(run, "list", "web", "-o", "json")
    assert [s["name"] for s in json.loads(as_json.stdout)["secrets"]] == ["DB_PASSWORD"]
    assert VALUE not in as_json.stdout
    _, body = await f.api.call("GET", "/v1/apps/web/secrets")
    assert [(s["name"], s["version"]) for s in body["secrets"]] == [("DB_PASSWORD", 1)]

    empty = await asyncio.to_thread(run, "set", "web", "EMPTY", stdin="")
    assert empty.returncode == 2 and "no value" in empty.stderr
    bad = await asyncio.to_thread(run, "set", "web", "1BAD", stdin="v")
    assert bad.returncode == 2 and "name" in bad.stderr and "Traceback" not in bad.stderr

    removed = await asyncio.to_thread(run, "rm", "web", "DB_PASSWORD")
    assert removed.returncode == 0, removed.stderr
    again = await asyncio.to_thread(run, "rm", "web", "DB_PASSWORD")
    assert again.returncode == 1 and "no secret" in again.stderr
    assert (await f.api.call("GET", "/v1/apps/web/secrets"))[1] == {"secrets": []}


async def test_key_file_and_value_at_rest(flotilla_sqlite: Flotilla, tmp_path: Path) -> None:
    f = flotilla_sqlite
    key = tmp_path / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    await f.api.call("PUT", "/v1/apps/web/secrets/DB_PASSWORD", {"value": VALUE})
    assert VALUE.encode() not in database_bytes(tmp_path)


def test_a_bad_key_stops_the_server_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("not a key\n")
    args = ["server", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{free_port()}"]
    done = subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "secret.key is not a Fernet key" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    bad_env = {**clean_env(), "FLOTILLA_SECRET_KEY": "short"}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args],
        cwd=ROOT,
        env=bad_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "FLOTILLA_SECRET_KEY is not a Fernet key" in done.stderr
    assert "Traceback" not in done.stderr
