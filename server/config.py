"""One frozen Settings per process, built by the command line from flags, env and defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.tls import is_loopback
from server.errors import SettingsError

DEFAULT_LISTEN = "127.0.0.1:8700"
DEFAULT_DATA_DIR = ".flotilla"
MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything a server process is configured with; frozen, checked by validate()."""

    listen: str = DEFAULT_LISTEN
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str = ""
    max_body_bytes: int = MAX_BODY_BYTES
    host_timeout: float = 30.0  # a host is disconnected this long after its last message
    controller_interval: float = 1.0
    # an agent socket the server has heard nothing on for this long (in a small fleet: it
    # grows with the fleet) is pinged, and closed if no answer comes within half of it
    agent_heartbeat: float = 20.0
    fleet_metrics_interval: float = 5.0  # how often host and app gauges are refreshed
    # webhook URLs at link-local or cloud metadata addresses (169.254.169.254, ...) are refused
    # unless this is set: a webhook is a request the server makes on an admin's word
    allow_internal_webhooks: bool = False
    # every container's limits unless its deployment sets them (resources.memory, .pids)
    default_memory: str = "300m"
    default_pids_limit: int = 4096
    # registries deployments may pull from (empty: any), such as ("registry.example:5000",
    # "docker.io"); an image without a registry is Docker Hub's, "docker.io"
    allowed_registries: tuple[str, ...] = ()
    # TLS: the server's certificate and key files (PEM; empty: plain HTTP, which a
    # non-loopback `listen` refuses unless `insecure`), and the CA that signs agents' client
    # certificates (mutual TLS on the agents' socket; empty: agents need none)
    tls_cert: str = ""
    tls_key: str = ""
    agent_ca: str = ""
    insecure: bool = False  # plain HTTP on a non-loopback address (--insecure)
    # FLOTILLA_SECRET_KEY: Fernet key(s) for apps' secrets (empty: <data-dir>/secret.key)
    secret_key: str = field(default="", repr=False)

    @property
    def effective_database_url(self) -> str:
        """The database URL given, or SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'flotilla.db'}"

    @property
    def listen_host(self) -> str:
        """The host part of `listen` (127.0.0.1 if empty)."""
        return self.listen.rpartition(":")[0] or "127.0.0.1"

    @property
    def tls(self) -> bool:
        """Does the server speak HTTPS (and WSS to agents)?"""
        return bool(self.tls_cert)

    @property
    def plain_elsewhere(self) -> bool:
        """Plain HTTP on an address other machines can reach (allowed with `insecure`)."""
        return not self.tls and not is_loopback(self.listen_host)

    @property
    def listen_port(self) -> int:
        """The port part of `listen`."""
        return int(self.listen.rpartition(":")[2])

    def validate(self) -> Settings:
        """Fail at start, with the setting's name, rather than later."""
        _, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(
                f"--listen / FLOTILLA_LISTEN must be HOST:PORT, got {self.listen!r}"
            )
        self._validate_tls()
        if not re.fullmatch(r"[1-9][0-9]{0,12}[bkmg]?", self.default_memory, re.IGNORECASE):
            raise SettingsError(
                "--default-memory / FLOTILLA_DEFAULT_MEMORY must be a size such as 300m, "
                f"got {self.default_memory!r}"
            )
        if not 1 <= self.default_pids_limit <= 4_194_304:
            raise SettingsError(
                "--default-pids-limit / FLOTILLA_DEFAULT_PIDS_LIMIT must be 1-4194304, "
                f"got {self.default_pids_limit}"
            )
        for registry in self.allowed_registries:
            if not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?", registry):
                raise SettingsError(
                    "--allowed-registries / FLOTILLA_ALLOWED_REGISTRIES must be registry hosts "
                    f"separated by commas (such as registry.example:5000,docker.io), got {registry!r}"
                )
        if self.secret_key:
            from server.secret_box import SecretKeyError, check_keys

            try:
                check_keys(self.secret_key)
            except SecretKeyError as exc:
                raise SettingsError(str(exc)) from None
        url = self.effective_database_url
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise SettingsError(
                "--database-url / FLOTILLA_DATABASE_URL must start with sqlite+aiosqlite:// "
                f"or postgresql+asyncpg://, got {url.split('://')[0]!r}"
            )
        return self

    def _validate_tls(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError(
                "--tls-cert / FLOTILLA_TLS_CERT and --tls-key / FLOTILLA_TLS_KEY go together: "
                "give both or neither"
            )
        if self.agent_ca and not self.tls:
            raise SettingsError(
                "--agent-ca / FLOTILLA_AGENT_CA needs --tls-cert and --tls-key: agents' client "
                "certificates are checked over TLS"
            )
        if self.plain_elsewhere and not self.insecure:
            raise SettingsError(
                f"refusing to serve plain HTTP on {self.listen}, which is not a loopback "
                "address: tokens would cross the network readable. Give --tls-cert and "
                "--tls-key, or --insecure (behind a TLS-terminating proxy)"
            )
