"""The wire protocol between server and agent (`agent.protocol`): round trips and rejections."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.caps import MAX_LOG_LINES, MAX_TEXT
from agent.codec import decode, dumps_json, encode, loads_json
from agent.protocol import (
    PROTOCOL_VERSION,
    AppProblem,
    Assignment,
    ContainerSpec,
    DesiredState,
    Event,
    HealthSpec,
    Hello,
    Instance,
    Message,
    PortSpec,
    ProtocolError,
    PublishedPort,
    Status,
    fit_status,
)
from agent.strict import decode_report

SETTINGS = settings(max_examples=200, deadline=None)

text = st.text(max_size=20)
small = st.integers(0, 2**31)
ports = st.integers(0, 65535)  # what Docker publishes: an agent reports nothing else
floats = st.floats(allow_nan=False, allow_infinity=False)
pairs = st.lists(st.tuples(text, text), max_size=3).map(tuple)
strings = st.lists(text, max_size=3).map(tuple)

port_specs = st.builds(PortSpec, container=small, host=small, host_ip=text, protocol=text)
health_specs = st.builds(
    HealthSpec,
    type=st.sampled_from(["http", "tcp", "cmd"]),
    port=st.none() | small,
    path=text,
    command=strings,
    interval=floats,
    timeout=floats,
    retries=small,
    start_period=floats,
)
container_specs = st.builds(
    ContainerSpec,
    image=text,
    command=st.none() | strings,
    env=pairs,
    ports=st.lists(port_specs, max_size=3).map(tuple),
    memory=st.none() | small,
    cpus=st.none() | floats,
    restart=text,
    labels=pairs,
    health=st.none() | health_specs,
    min_healthy_time=floats,
    stop_first=st.booleans(),
)
assignments = st.builds(
    Assignment, app=text, release=small, deployment=small, replicas=small, spec=container_specs
)
desired_states = st.builds(
    DesiredState,
    host=text,
    generation=small,
    assignments=st.lists(assignments, max_size=3).map(tuple),
)
instances = st.builds(
    Instance,
    container_id=text,
    name=text,
    host=text,
    app=text,
    release=small,
    replica=small,
    deployment=small,
    state=st.sampled_from(["created", "running", "exited", "paused", "restarting", "dead"]),
    health=st.sampled_from(["none", "starting", "healthy", "unhealthy"]),
    exit_code=st.none() | st.integers(-1, 255),
    image=text,
    ports=st.lists(
        st.builds(PublishedPort, container=ports, host_ip=text, host_port=ports, protocol=text),
        max_size=2,
    ).map(tuple),
    ready=st.booleans(),
)
problems = st.builds(
    AppProblem,
    app=text,
    release=small,
    reason=st.sampled_from(["pull_failed", "exited", "unhealthy", "create_failed"]),
    message=text,
    exit_code=st.none() | st.integers(-1, 255),
    logs=strings,
)
statuses = st.builds(
    Status,
    host=text,
    generation=small,
    instances=st.lists(instances, max_size=3).map(tuple),
    digests=pairs,
    problems=st.lists(problems, max_size=2).map(tuple),
)


@SETTINGS
@given(message=desired_states)
def test_desired_state_round_trips(message: DesiredState) -> None:
    """What the server pushes is exactly what the agent reads."""
    assert decode(encode(message)) == message


@SETTINGS
@given(message=statuses)
def test_status_round_trips(message: Status) -> None:
    """What the agent reports is exactly what the server reads."""
    assert decode(encode(message)) == message


@pytest.mark.parametrize(
    "message",
    [
        Hello(host="h1", agent_version="0.1.0", docker_version="26.1.5"),
        Hello(host="h1", agent_version="0.1.0", docker_version="26.1.5", protocol=7),
        Event(host="h1", kind="drift_healed", app="web", message="restarted web replica 0"),
        DesiredState(host="h1", generation=0),
        Status(host="h1", generation=0),
    ],
    ids=["hello", "hello-other-version", "event", "desired-empty", "status-empty"],
)
def test_every_message_type_round_trips(message: Message) -> None:
    """Every message type, from bytes too (as a WebSocket may deliver it)."""
    wire = encode(message)
    assert json.loads(wire)["type"] in {"hello", "event", "desired", "status"}
    assert decode(wire) == message
    assert decode(wire.encode()) == message


def test_hello_carries_the_protocol_version() -> None:
    """An agent announces the protocol version it speaks."""
    hello = Hello(host="h1", agent_version="0.1.0", docker_version="26")
    assert json.loads(encode(hello))["protocol"] == PROTOCOL_VERSION


@SETTINGS
@given(message=statuses)
def test_server_decode_takes_every_status(message: Status) -> None:
    """The server's strict decode of what an agent sends gives back the same status."""
    assert decode_report(encode(message)) == message


@pytest.mark.parametrize(
    "wire",
    [
        "",
        "not json",
        "{",
        b"\xff\xfe",
        "[]",
        "42",
        "null",
        '"hello"',
        "{}",
        '{"host": "h1"}',
        '{"type": "launch_missiles", "host": "h1"}',
        '{"type": null, "host": "h1"}',
        '{"type": ["hello"], "host": "h1"}',
    ],
)
def test_rejects_what_is_not_a_message(wire: str | bytes) -> None:
    """Non-JSON, non-objects, a missing or unknown type: ProtocolError, nothing else."""
    with pytest.raises(ProtocolError):
        decode(wire)


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "hello", "agent_version": "1", "docker_version": "2"},
        {"type": "event", "kind": "k", "app": "a", "message": "m"},
        {"type": "event", "host": "h", "app": "a", "message": "m"},
        {"type": "event", "host": "h", "kind": "k", "message": "m"},
        {"type": "event", "host": "h", "kind": "k", "app": "a"},
        {"type": "desired", "generation": 1},
        {"type": "desired", "host": "h"},
        {"type": "desired", "host": "h", "generation": "one"},
        {"type": "desired", "host": "h", "generation": 1, "assignments": [{"app": "web"}]},
        {
            "type": "desired",
            "host": "h",
            "generation": 1,
            "assignments": [{"app": "web", "release": 1, "deployment": 1, "replicas": 1}],
        },
        {
            "type": "desired",
            "host": "h",
            "generation": 1,
            "assignments": [
                {"app": "web", "release": 1, "deployment": 1, "replicas": 1, "spec": {}}
            ],
        },
        {"type": "status", "generation": 1},
        {"type": "status", "host": "h"},
        {"type": "status", "host": "h", "generation": 1, "instances": [{"container_id": "c"}]},
        {"type": "status", "host": "h", "generation": 1, "problems": [{"app": "web"}]},
    ],
    ids=lambda w: w["type"] + ":" + ",".join(sorted(w)),
)
def test_rejects_missing_fields(wire: dict[str, object]) -> None:
    """A message (or a nested object) without a required field is a ProtocolError."""
    with pytest.raises(ProtocolError):
        decode(json.dumps(wire))
    if wire["type"] in ("status", "hello", "event"):  # the server's decode refuses it too
        with pytest.raises(ProtocolError):
            decode_report(json.dumps(wire))


@pytest.mark.parametrize("missing", ["agent_version", "docker_version"])
def test_rejects_hello_without_versions(missing: str) -> None:
    """A hello without the agent's or the engine's version is not a valid hello."""
    body = {"type": "hello", "host": "h1", "agent_version": "1", "docker_version": "2"}
    del body[missing]
    with pytest.raises(ProtocolError):
        decode(json.dumps(body))


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "status", "host": "h", "generation": 1, "instances": [["c1"]]},
        {"type": "status", "host": "h", "generation": 1, "problems": ["oops"]},
        {
            "type": "desired",
            "host": "h",
            "generation": 1,
            "assignments": [
                {
                    "app": "web",
                    "release": 1,
                    "deployment": 1,
                    "replicas": 1,
                    "spec": {"image": "web:1", "ports": [[80, 8080]]},
                }
            ],
        },
        {
            "type": "desired",
            "host": "h",
            "generation": 1,
            "assignments": [
                {
                    "app": "web",
                    "release": 1,
                    "deployment": 1,
                    "replicas": 1,
                    "spec": {"image": "web:1", "health": "http"},
                }
            ],
        },
    ],
    ids=["instance-list", "problem-string", "port-list", "health-string"],
)
def test_rejects_nested_values_of_the_wrong_shape(wire: dict[str, object]) -> None:
    """Malformed nested objects are a ProtocolError, never an unexpected exception."""
    with pytest.raises(ProtocolError):
        decode(json.dumps(wire))
    if wire["type"] in ("status", "hello", "event"):  # the server's decode refuses it too
        with pytest.raises(ProtocolError):
            decode_report(json.dumps(wire))


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "status", "host": "h", "generation": "one"},
        {"type": "status", "host": "h", "generation": 1, "instances": "c1"},
        {"type": "status", "host": "h", "generation": 1, "digests": [["web:1"]]},
        {
            "type": "status",
            "host": "h",
            "generation": 1,
            "problems": [
                {"app": "web", "release": 1, "reason": "exited", "message": "m", "logs": 5}
            ],
        },
        {
            "type": "status",
            "host": "h",
            "generation": 1,
            "instances": [
                {
                    "container_id": "c",
                    "name": "n",
                    "host": "h",
                    "app": "web",
                    "release": 1,
                    "replica": 0,
                    "deployment": 1,
                    "state": "running",
                    "ports": [{"container": 80}],
                }
            ],
        },
    ],
    ids=["generation", "instances-string", "digest-single", "problem-logs", "port-fields"],
)
def test_server_decode_agrees_with_decode(wire: dict[str, object]) -> None:
    """Where a full decode refuses a status, so does the server's strict decode."""
    with pytest.raises(ProtocolError):
        decode(json.dumps(wire))
    with pytest.raises(ProtocolError):
        decode_report(json.dumps(wire))


def test_ignores_unknown_fields_at_every_level() -> None:
    """A newer peer may add fields anywhere; an older one reads what it knows."""
    spec = ContainerSpec(
        image="web:2",
        ports=(PortSpec(container=80, host=8080),),
        health=HealthSpec(type="http", port=80, path="/healthz"),
    )
    desired = DesiredState(host="h1", generation=3, assignments=(Assignment("web", 2, 9, 2, spec),))
    body = json.loads(encode(desired))
    body["future"] = {"x": 1}
    body["assignments"][0]["priority"] = 5
    body["assignments"][0]["spec"]["gpus"] = 1
    body["assignments"][0]["spec"]["ports"][0]["mode"] = "ingress"
    body["assignments"][0]["spec"]["health"]["grpc"] = True
    assert decode(json.dumps(body)) == desired

    status = Status(
        host="h1",
        generation=3,
        instances=(
            Instance(
                "c1",
                "n",
                "h1",
                "web",
                2,
                0,
                9,
                "running",
                ports=(PublishedPort(80, "127.0.0.1", 8080),),
            ),
        ),
        problems=(AppProblem("web", 2, "exited", "boom", 1, ("line",)),),
    )
    body = json.loads(encode(status))
    body["uptime"] = 5
    body["instances"][0]["cpu"] = 0.5
    body["instances"][0]["ports"][0]["ipv6"] = False
    body["problems"][0]["hint"] = "check logs"
    assert decode(json.dumps(body)) == status

    for message in (
        Hello("h1", "0.1", "26"),
        Event("h1", "drift_healed", "web", "restarted"),
    ):
        body = json.loads(encode(message))
        body["extra"] = [1, 2]
        assert decode(json.dumps(body)) == message


@pytest.mark.parametrize(
    "wire",
    [
        '{"type": "status", "host": "h", "generation": Infinity}',
        '{"type": "desired", "host": "h", "generation": -Infinity}',
        '{"type": "status", "host": "h", "generation": 1, "instances": '
        + "[" * 100_000
        + "]" * 100_000
        + "}",
    ],
    ids=["status-infinity", "desired-infinity", "deep-nesting"],
)
def test_rejects_what_json_allows_but_no_peer_sends(wire: str) -> None:
    """Infinity and very deep nesting parse as JSON (or nearly): still a ProtocolError."""
    with pytest.raises(ProtocolError):
        decode(wire)
    if '"status"' in wire:
        with pytest.raises(ProtocolError):
            decode_report(wire)


def test_encodes_what_orjson_refuses() -> None:
    """A lone surrogate (from an undecodable name, say) or a huge number still encodes."""
    event = Event("h1", "drift_healed", "web", "restarted \udc80")
    assert json.loads(encode(event))["message"] == "restarted \udc80"
    problem = AppProblem("web", 2**70, "exited", "boom")
    status = Status("h1", 1, problems=(problem,))
    assert json.loads(encode(status))["problems"][0]["release"] == 2**70


def test_an_unknown_field_nested_deeper_than_orjson_writes_is_still_ignored() -> None:
    """Assignments are built once per distinct JSON, keyed by re-encoding it; what cannot be
    re-encoded (nesting beyond orjson's 255) is built without the cache, not refused."""
    spec = ContainerSpec(image="web:2")
    desired = DesiredState(host="h1", generation=3, assignments=(Assignment("web", 2, 9, 1, spec),))
    body = json.loads(encode(desired))
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    body["assignments"][0]["future"] = deep
    assert decode(json.dumps(body)) == desired
    assert decode(encode(desired)) == desired  # and the cached path gives the same


def test_stored_json_reads_back_what_the_stdlib_fallback_wrote() -> None:
    """JSON columns are written by dumps_json and read by loads_json: a value only the
    stdlib writes (a lone surrogate) reads back too."""
    value = {"message": "restarted \udc80", "n": 2**70}
    assert loads_json(dumps_json(value)) == value


long_text = st.text(max_size=6000)


@SETTINGS
@given(message=statuses, message_text=long_text, line=long_text, lines=st.integers(0, 80))
def test_what_an_agent_sends_fits_the_servers_caps(
    message: Status, message_text: str, line: str, lines: int
) -> None:
    """fit_status clips an honest agent's evidence (a crash's long message and log lines) to
    the caps the server checks, so the server never refuses it."""
    problem = AppProblem("web", 1, "exited", message_text, logs=(line,) * lines)
    fitted = fit_status(replace(message, problems=(*message.problems, problem)))
    assert decode_report(encode(fitted)) == fitted
    clipped = fitted.problems[-1]
    assert len(clipped.message) <= MAX_TEXT and len(clipped.logs) <= MAX_LOG_LINES


def test_an_agent_process_does_not_load_msgspec() -> None:
    """Only strict checks (the server's of reports, an agent's of a log request) import
    msgspec: an agent that never serves a log stream does without its 3.6 MiB."""
    script = (
        "import sys\n"
        "import agent.cli, agent.main\n"
        "from agent.codec import decode, encode\n"
        "from agent.log_protocol import LogsOpen\n"
        "from agent.protocol import Status\n"
        "decode(encode(Status(host='h', generation=1)))\n"
        "decode(encode(LogsOpen(1, 'web', tail=5, follow=True)))\n"
        "print('msgspec' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "False"
