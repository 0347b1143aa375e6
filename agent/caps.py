"""The wire protocol's caps on what an agent sends, and the constrained field types (Name,
Ref, Text, ...) that carry them into the messages' annotations (stdlib only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from msgspec import Meta as Meta  # for the type checker only; exported to the messages
else:

    class _Unchecked:
        """The constraints of a field, as msgspec.Meta takes them, kept until a message is
        first checked strictly (agent/strict.py). An agent checks only what the server sends it
        and never imports msgspec: importing it was 3.6 MiB of every agent's memory."""

        def __init__(self, **constraints: Any) -> None:
            self.constraints = constraints

    Meta = _Unchecked


# Caps on what an agent sends. The server refuses a report past any of them (decode_report);
# an agent clips what it sends to fit (fit_status, fit_event), so only a broken or hostile
# agent is refused. Past these a status is no longer a host's evidence but a flood.
MAX_NAME = 255  # a host, app or container name, a state, a reason, an event kind
MAX_REF = 1024  # a container id, an image reference, a digest
MAX_TEXT = 4096  # a problem's or an event's message
MAX_LOG_LINE = 1024
MAX_LOG_LINES = 50
MAX_ITEMS = 1000  # instances, digests, problems or ports in one status
MAX_INT = 2**63 - 1

Name = Annotated[str, Meta(max_length=MAX_NAME)]
Ref = Annotated[str, Meta(max_length=MAX_REF)]
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
LogLine = Annotated[str, Meta(max_length=MAX_LOG_LINE)]
Count = Annotated[int, Meta(ge=0, le=MAX_INT)]
PortNumber = Annotated[int, Meta(ge=0, le=65535)]
ExitCode = Annotated[int, Meta(ge=-(2**31), le=2**32)]
