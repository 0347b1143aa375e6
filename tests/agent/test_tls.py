"""The one rule for what counts as loopback (plain HTTP needs no --insecure there), and the
names a peer certificate is for (mutual TLS matches them against the token's host)."""

from __future__ import annotations

import pytest

from agent.tls import certificate_names, is_loopback, plain_to_elsewhere


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", "LOCALHOST", "a.localhost"]
)
def test_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "10.0.0.1", "192.0.2.10", "control.example", "localhost.example", ""]
)
def test_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:8700", False),
        ("ws://localhost:8700", False),
        ("http://[::1]:8700", False),
        ("http://10.0.0.5:8700", True),
        ("ws://control.example", True),
        ("https://10.0.0.5:8700", False),
        ("wss://control.example", False),
    ],
)
def test_plain_to_elsewhere(url: str, refused: bool) -> None:
    assert plain_to_elsewhere(url) is refused


def test_certificate_names() -> None:
    peer = {
        "subject": ((("countryName", "NL"),), (("commonName", "Web-1"),)),
        "subjectAltName": (("DNS", "web-1.example"), ("IP Address", "10.0.0.1")),
    }
    assert certificate_names(peer) == {"web-1", "web-1.example"}
    assert certificate_names(None) == set()
    assert certificate_names({}) == set()
