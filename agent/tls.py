"""TLS for both ends of Flotilla's connections: what counts as loopback, and the contexts.

Stdlib only (like agent/protocol.py), so that the agent, the server and the client commands
share one rule for what a plain-HTTP connection may reach without `--insecure` (a loopback
address: 127.0.0.0/8, ::1, `localhost`) and one way to build a TLS context from the files
the flags name. A file that cannot be used (missing, not PEM, a key that does not match its
certificate) is a `TlsError` naming the flag: the command line says it in one line.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


class TlsError(ValueError):
    """A TLS setting that cannot work (a certificate, key or CA file that cannot be used, a
    plain URL where TLS is needed); the message names its flag."""


def is_loopback(host: str) -> bool:
    """Is `host` (an address or a name, IPv6 with or without brackets) this machine only?"""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_to_elsewhere(url: str) -> bool:
    """Is `url` a plain (http:// or ws://) URL to a host that is not a loopback address?"""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "ws"):
        return False
    return not is_loopback(parts.hostname or "")


def client_context(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A context that verifies the server (with `ca`, else the system's CAs) and, with
    `cert` and `key`, presents a client certificate (mutual TLS)."""
    try:
        context = ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"--ca {ca}: not a readable PEM CA certificate ({_why(exc)})") from None
    if cert or key:
        if not (cert and key):
            raise TlsError("--cert and --key go together: give both or neither")
        _load_chain(context, cert, key, "--cert", "--key")
    return context


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server's context: its certificate and key; with `client_ca`, clients may present a
    certificate, which must then be signed by that CA (CERT_OPTIONAL: the agents' socket
    demands one, other callers need none)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(context, cert, key, "--tls-cert", "--tls-key")
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(
                f"--agent-ca {client_ca}: not a readable PEM CA certificate ({_why(exc)})"
            ) from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _load_chain(
    context: ssl.SSLContext, cert: str, key: str, cert_flag: str, key_flag: str
) -> None:
    for flag, path in ((cert_flag, cert), (key_flag, key)):
        if not os.path.isfile(path):
            raise TlsError(f"{flag} {path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"{cert_flag} {cert} / {key_flag} {key}: not a PEM certificate and its matching "
            f"private key ({_why(exc)})"
        ) from None


def certificate_names(peercert: object) -> set[str]:
    """The names a verified peer certificate (`SSLSocket.getpeercert()`'s dict) is for: its
    subject's common names and its DNS subject alternative names, lowercased."""
    if not isinstance(peercert, dict):
        return set()
    names = {
        value
        for rdn in peercert.get("subject", ())
        for attribute, value in rdn
        if attribute == "commonName"
    }
    names |= {value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS"}
    return {n.lower() for n in names if isinstance(n, str)}


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
