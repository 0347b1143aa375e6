"""Reading a container's output from the Docker Engine: its last lines, or a stream of it.

The last lines are a crashed instance's evidence (agent/evidence.py); a stream, stamped and
possibly followed, is what a user's `flotilla logs` reads (agent/logs.py). Every function
blocks, and so does iterating a stream: use them from a thread.
"""

from __future__ import annotations

import contextlib
from typing import Any

import agent.docker_api  # noqa: F401  before the SDK: see agent/docker_api.py

# isort: split
import docker
import docker.errors


def last_lines(api: docker.APIClient, container_id: str, lines: int = 20) -> list[str]:
    """The last `lines` lines of a container's output; none if the Engine cannot say."""
    try:
        raw = api.logs(container_id, tail=lines)
    except docker.errors.APIError:
        return []
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.splitlines()[-lines:]


def open_logs(
    api: docker.APIClient,
    container_id: str,
    *,
    follow: bool,
    tail: int | None,
    since: float | None,
) -> Any:
    """A container's output, stdout and stderr as the Engine interleaves them, each line
    stamped with its time: a blocking iterator of byte chunks (a chunk is not a line)
    whose `close()` ends it from another thread (agent/logs.py)."""
    stream = api.logs(
        container_id,
        stream=True,
        follow=follow,
        timestamps=True,
        tail="all" if tail is None else tail,
        since=since,
    )
    return _LogFeed(stream)


class _LogFeed:
    """A container's output whose `close()` also ends its HTTP response: the SDK's stream
    closes its socket only while the response is still being read, so a stream that had
    ended (`--tail` without `--follow`) kept its Engine connection until it was collected."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Any:
        return iter(self._stream)

    def close(self) -> None:
        """End the stream (from any thread) and give its connection back."""
        with contextlib.suppress(Exception):
            self._stream.close()
        response = getattr(self._stream, "_response", None)  # where the SDK keeps it
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
