"""What hands a container the host is refused unless an admin allowed it for the app
(issue 18 item 5): 403 naming the rule, nothing created; `PUT /v1/apps/{app}/policy` allows
a rule for one app, in the audit log; some host paths are refused whatever the policy."""

from __future__ import annotations

from typing import Any

import pytest

from server.db import tokens
from server.keys import SESSIONS
from server.policy import RULES, breaches
from tests.conftest import Flotilla, Images

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("privileged", {"privileged": True}, "privileged", "privileged"),
    ("host network", {"network_mode": "host"}, "host_network", "network_mode"),
    ("host pid", {"pid_mode": "host"}, "host_pid", "pid_mode"),
    ("host ipc", {"ipc_mode": "host"}, "host_ipc", "ipc_mode"),
    ("a capability", {"cap_add": ["SYS_ADMIN"]}, "capabilities", "cap_add.0"),
    ("NET_RAW back", {"cap_add": ["CHOWN", "NET_RAW"]}, "capabilities", "cap_add.1"),
    ("a device", {"devices": ["/dev/fuse"]}, "devices", "devices.0"),
    ("a host path", {"mounts": [{"source": "/srv/data", "target": "/data"}]}, "host_paths",
     "mounts.0.source"),
]  # fmt: skip
DANGEROUS = ["/var/run/docker.sock", "/run/docker.sock", "/", "/etc/", "/proc", "/sys",
             "/var/lib/docker", "/etc/../etc"]  # fmt: skip


@pytest.mark.parametrize(("what", "fields", "rule", "field"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_is_named(what: str, fields: dict[str, Any], rule: str, field: str) -> None:
    (found,) = breaches(fields, frozenset())
    assert (found.rule, found.field) == (rule, field)
    assert breaches(fields, frozenset({rule})) == []


def test_safe_capabilities_need_no_rule() -> None:
    assert breaches({"cap_add": ["NET_BIND_SERVICE", "CHOWN"]}, frozenset()) == []


@pytest.mark.parametrize("path", DANGEROUS)
def test_the_host_itself_is_never_mounted(path: str) -> None:
    (found,) = breaches({"mounts": [{"source": path, "target": "/x"}]}, frozenset(RULES))
    assert found.rule is None and "never allowed" in found.message


async def test_refused_until_an_admin_allows_it(flotilla: Flotilla, images: Images) -> None:
    api = flotilla.api
    for what, fields, rule, field in CASES:
        status, problem = await api.call(
            "POST", "/v1/apps/pol/deployments", {"image": images.v1, **fields}
        )
        assert status == 403, (what, problem)
        assert problem["code"] == rule and field in [e["field"] for e in problem["errors"]]
    status, _ = await api.call("GET", "/v1/apps/pol/releases")
    assert status == 404  # nothing was created

    async with flotilla.server.app[SESSIONS].begin() as session:
        deployer = await tokens.create_token(session, "ci", ["deploy"])
    status, problem = await api.call(
        "PUT", "/v1/apps/pol/policy", {"allow": ["host_paths"]}, token=deployer
    )
    assert status == 403
    status, problem = await api.call("PUT", "/v1/apps/pol/policy", {"allow": ["root"]})
    assert status == 422 and problem["errors"][0]["field"].startswith("allow")

    status, policy = await api.call("PUT", "/v1/apps/pol/policy", {"allow": ["host_paths"]})
    assert status == 200 and policy["allow"] == ["host_paths"]
    status, policy = await api.call("GET", "/v1/apps/pol/policy", token=deployer)
    assert status == 200 and policy["allow"] == ["host_paths"] and "privileged" in policy["rules"]

    mount = {"mounts": [{"source": "/srv/data", "target": "/data"}]}
    status, dry = await api.call(
        "POST", "/v1/apps/pol/deployments?dry_run=true", {"image": images.v1, **mount}
    )
    assert status == 200, dry
    status, problem = await api.call(
        "POST", "/v1/apps/pol/deployments", {"image": images.v1, "privileged": True}
    )
    assert status == 403 and problem["code"] == "privileged"  # only what was allowed
    sock = {"mounts": [{"source": "/var/run/docker.sock", "target": "/s"}]}
    status, problem = await api.call(
        "POST", "/v1/apps/pol/deployments", {"image": images.v1, **sock}
    )
    assert status == 403 and problem["code"] == "dangerous_host_path"
    assert "Docker socket" in problem["errors"][0]["message"]

    status, audit = await api.call("GET", "/v1/audit?action=policy.set")
    assert status == 200
    (entry, *_) = audit["audit"]
    assert (entry["action"], entry["actor"], entry["outcome"]) == ("policy.set", "admin", 200)
