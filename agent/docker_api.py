"""The connection to the Docker Engine, and the first import of the Docker SDK.

Each driver module (agent/docker_driver.py, agent/docker_volumes.py, agent/docker_logs.py)
imports this module before it imports the SDK itself: imported here first, the SDK comes
without its character detector, which the agent cannot afford. The client is the SDK's
low-level APIClient, made at first use. A call to the Engine blocks: make it in a thread.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import warnings

# The Engine API answers JSON, always UTF-8, so requests' character detection is never used,
# yet importing charset_normalizer costs every agent 2.6 MiB of RSS. requests supports running
# without a detector (Response.apparent_encoding then says UTF-8); a None entry in sys.modules
# is Python's documented way to make an import fail. A process that already has one keeps it.
for _detector in ("charset_normalizer", "chardet"):
    sys.modules.setdefault(_detector, None)  # type: ignore[arg-type]
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Unable to find acceptable character detection")
    import docker
    import docker.errors


class DriverError(Exception):
    """A Docker operation failed; `message` is safe to show to users."""


def explain(exc: docker.errors.APIError) -> str:
    """What the Engine said went wrong."""
    return str(exc.explanation or exc)


class EngineConnection:
    """One Docker Engine's API client, made at first use and closed once."""

    def __init__(self, base_url: str | None = None, timeout: int = 60) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._api: docker.APIClient | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def api(self) -> docker.APIClient:
        """The Engine's API client, made at first use: making one asks the Engine for its API
        version, and an agent must start (and keep trying) while the Engine is down."""
        with self._lock:
            if self._closed:  # a pull's or a log reader's thread outliving the agent
                raise DriverError("the agent is stopping: no more calls to the Engine")
            if self._api is None:
                self._socket_answers()
                if self.base_url:
                    self._api = docker.APIClient(base_url=self.base_url, timeout=self.timeout)
                else:
                    self._api = docker.from_env(timeout=self.timeout).api
            return self._api

    def close(self) -> None:
        """Close the connection to the Engine; later calls raise DriverError (a closed
        client would open new connections that nothing closes)."""
        with self._lock:
            self._closed = True
            if self._api is not None:
                self._api.close()

    def reachable(self) -> bool:
        """Does the Engine answer a ping now?"""
        try:
            self._socket_answers()
            return bool(self.api.ping())
        except Exception:  # any failure to answer is the answer
            return False

    def _socket_answers(self) -> None:
        """Raise DriverError if nothing listens on the Engine's unix socket. Checked with a
        plain socket: the SDK's unix adapter leaves a socket open (to the garbage collector)
        on every failed connect, which an agent waiting for its Engine would do every 2 s."""
        url = self.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if not url.startswith(("unix://", "http+unix://")):
            return
        path = url.split("://", 1)[1]
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(2.0)
            probe.connect(path)
        except OSError as exc:
            raise DriverError(f"cannot connect to the Docker Engine at {url}: {exc}") from exc
        finally:
            probe.close()

    def version(self) -> str:
        """The Engine's version, or "unknown"."""
        return str(self.api.version().get("Version", "unknown"))
