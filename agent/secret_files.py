"""A container's secrets asked for as files: a folder of its own under the secrets root.

The root is on a tmpfs (/dev/shm by default), so no secret reaches a disk. The Docker driver
(agent/docker_driver.py) writes a container's folder before it creates the container,
bind-mounts it read-only, and deletes it when it removes the container (or its create
failed). File system calls block: the driver's methods run in a thread.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# secrets asked for as files: one folder per container under this root, on a tmpfs
DEFAULT_SECRETS_ROOT = Path("/dev/shm/flotilla-secrets")


def write_secrets(root: Path, name: str, secrets: tuple[tuple[str, str], ...]) -> Path:
    """The container's secret files, in a folder of its own under the secrets root (a
    tmpfs: /dev/shm by default), bind-mounted read-only. The root is 0700 (no other host
    user reaches them); inside, files are 0444 so that a non-root container user reads
    them."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    for file_name, value in secrets:
        path = folder / file_name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "w") as f:
            f.write(value)
    return folder


def forget_secrets(root: Path, name: str) -> None:
    """Delete a container's secret files (it was removed, or never created)."""
    if name and "/" not in name and name not in (".", ".."):
        shutil.rmtree(root / name, ignore_errors=True)
