"""Debian's docker-registry on 127.0.0.1 for the tests that pull from a registry (the Engine
trusts loopback registries without TLS), and pushing an image to it."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.harness import Engine, free_port


@contextlib.contextmanager
def serving(where: Path, auth: dict[str, Any] | None = None) -> Iterator[str]:
    """docker-registry (with `auth`, its config's auth section) on 127.0.0.1:PORT until the
    block ends, stopped by its pid; its address."""
    binary = shutil.which("docker-registry")
    assert binary, "make test installs docker-registry"
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(where / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth is not None:
        config["auth"] = auth
    (where / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = (where / "registry.log").open("wb")
    proc = subprocess.Popen(
        [binary, "serve", str(where / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def push(
    engine: Engine, source: str, repo: str, tag: str, login: dict[str, str] | None = None
) -> None:
    """Tag `source` as repo:tag and push it, trying again while the registry starts."""
    api = engine.client.api
    api.tag(source, repo, tag)
    for _ in range(50):
        out = api.push(repo, tag, auth_config=login)
        if '"error"' not in out:
            return
        time.sleep(0.2)
    raise AssertionError(out)
