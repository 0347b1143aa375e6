"""The key that encrypts apps' secrets at rest, and the encryption itself (Fernet).

Where the key comes from: `FLOTILLA_SECRET_KEY` (one Fernet key, or several separated by
commas: the first encrypts, every one decrypts), else `<data-dir>/secret.key` (0600, created
on first start). `flotilla secret rotate-key` writes the new key to `secret.key.next` before it
re-encrypts anything, and renames it over `secret.key` once the database is re-encrypted: a
box reads both files and encrypts with the next key when there is one, so a rotation stopped
at any point leaves every secret readable. A box reads the files again when they change (a
rotation ran beside a running server). With FLOTILLA_SECRET_KEY, rotating is: put a new key
first (`NEW,OLD`) on every server, run `rotate-key` with the same setting, then drop OLD.

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`): authenticated, and its token
format carries the key's version, so there is nothing of our own to get wrong.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from server.errors import SettingsError

KEY_FILE = "secret.key"
NEXT_KEY_FILE = "secret.key.next"


class SecretKeyError(SettingsError):
    """The key cannot be read, or does not open a stored secret; the message says which (a
    SettingsError: at start, the command line prints it in one line and exits)."""


def new_key() -> str:
    """A fresh random Fernet key (url-safe base64 of 32 bytes)."""
    return Fernet.generate_key().decode()


def write_key_file(path: Path, key: str) -> None:
    """Write a key to `path`, readable by its owner only, atomically (a crash leaves either
    the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.chmod(0o600)
    tmp.replace(path)


def check_keys(keys: str) -> None:
    """Raise SecretKeyError unless FLOTILLA_SECRET_KEY's value is Fernet keys."""
    _parse(keys, "FLOTILLA_SECRET_KEY")


def _parse(keys: str, where: str) -> list[Fernet]:
    parsed = []
    for item in (k.strip() for k in keys.split(",")):
        if not item:
            continue
        try:
            parsed.append(Fernet(item.encode()))
        except ValueError:
            raise SecretKeyError(
                f"{where} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "make one with `flotilla secret new-key`)"
            ) from None
    if not parsed:
        raise SecretKeyError(f"{where} is empty")
    return parsed


class SecretBox:
    """Encrypts and decrypts secret values with the server's key(s). Thread-safe."""

    def __init__(self, data_dir: Path, env_keys: str = "") -> None:
        self.data_dir = data_dir
        self.env_keys = env_keys
        self._lock = threading.Lock()
        self._fernet: MultiFernet | None = None
        self._keys: list[Fernet] = []
        self._files: tuple[object, ...] = ()

    @property
    def from_env(self) -> bool:
        """Whether the key comes from FLOTILLA_SECRET_KEY rather than the data dir."""
        return bool(self.env_keys.strip())

    def load(self, create: bool = True) -> None:
        """Read the key(s); with no FLOTILLA_SECRET_KEY and no key file, create the file."""
        with self._lock:
            self._keys = self._read(create)
            self._fernet = MultiFernet(self._keys)
            self._files = self._stamp()

    def _stamp(self) -> tuple[object, ...]:
        """What the key files look like now: a change means a rotation ran."""
        if self.from_env:
            return ()
        out: list[object] = []
        for name in (KEY_FILE, NEXT_KEY_FILE):
            try:
                st = (self.data_dir / name).stat()
                out.append((st.st_ino, st.st_mtime_ns))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def _read(self, create: bool) -> list[Fernet]:
        if self.from_env:
            return _parse(self.env_keys, "FLOTILLA_SECRET_KEY")
        path = self.data_dir / KEY_FILE
        nxt = self.data_dir / NEXT_KEY_FILE
        if not path.exists() and not nxt.exists():
            if not create:
                raise SecretKeyError(f"there is no secret key at {path}")
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_key_file(path, new_key())
        keys: list[Fernet] = []
        for p in (nxt, path):  # a rotation's next key encrypts once it exists; both open
            if p.exists():
                p.chmod(0o600)
                keys += _parse(p.read_text(), str(p))
        return keys

    def _get(self) -> MultiFernet:
        if self._fernet is None:
            self.load()
        assert self._fernet is not None
        return self._fernet

    def encrypt(self, value: str) -> bytes:
        """The value, encrypted with the current key."""
        if self._fernet is not None and self._stamp() != self._files:
            self.load(create=False)
        return self._get().encrypt(value.encode())

    def rotate(self, token: bytes) -> bytes:
        """A stored value re-encrypted with the first key (the one that encrypts)."""
        try:
            return self._get().rotate(token)
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be opened with the secret key") from None

    def opens_with_first(self, token: bytes) -> bool:
        """Whether the first key alone opens this stored value (it needs no rotation)."""
        self._get()
        first = self._keys[0]
        try:
            first.decrypt(token)
        except InvalidToken:
            return False
        return True

    def decrypt(self, token: bytes) -> str:
        """The value of a stored secret; raise SecretKeyError if no key opens it."""
        try:
            return self._get().decrypt(token).decode()
        except InvalidToken:
            pass
        if not self.from_env:  # perhaps `flotilla secret rotate-key` ran: read the files again
            self.load(create=False)
            try:
                return self._get().decrypt(token).decode()
            except InvalidToken:
                pass
        raise SecretKeyError("a stored secret cannot be opened with the server's secret key")
