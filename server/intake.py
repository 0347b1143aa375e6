"""One agent connection's reports: parsed at the door, confined, rate-capped, then recorded.

Every frame an agent sends is untrusted input. An `Intake` per connection:

1. parses it once (`agent.strict.decode_report`) into the strict typed models of
   `agent/protocol.py` and `agent/log_protocol.py` (types, lengths and ranges checked; a frame
   past the hub's size cap never gets here): a bad frame raises ProtocolError and the hub
   closes the connection with 1007 and the reason;
2. takes a token of the connection's bucket (`rate` a second, up to `burst` at once). A status
   past the rate is not lost but coalesced: the newest one waits for the next token, and
   only the ones it replaced are dropped. An event past the rate is dropped. Both are
   counted (`reason="rate"`);
3. confines it to what the host was told of (`server.confine`) and records it: a status in
   the status store, an event and new digests through the hub's callbacks.

Log chunks and ends (`flotilla logs`) have a bucket of their own (LOG_RATE, LOG_BURST: an
agent sends at most LOG_CHUNKS_PER_SECOND per stream, MAX_LOG_STREAMS streams), so a host's
logs never delay its statuses; they go to `server.log_streams.LogStreams.take`, which keeps
them only for a stream this process opened to this host (else counted, `reason="stream"`).
A chunk past the rate is dropped (counted, and the stream's client told how many lines).

A status is confined again whenever the host is told of something new (`told`): the status
an agent sent before the push that assigned it an app is recorded again, with that app's
instances, and nothing the agent sent is lost while the push is on its way. For that alone
the Intake keeps the newest status as the agent sent it; what the host last reported is
the status store's, in its confined form, and no one else reads this copy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agent.log_protocol import LOG_CHUNKS_PER_SECOND, MAX_LOG_STREAMS, LogChunk, LogsEnd
from agent.protocol import Event, Hello, ProtocolError, Status
from agent.strict import decode_report
from server.confine import NOTHING, Told, confine_status, event_refusal
from server.metrics import Metrics
from server.statuses import StatusStore

RATE = 20.0  # messages a second per host: an agent at work sends a status every 0.1 s at most
BURST = 50.0
LOG_RATE = float(LOG_CHUNKS_PER_SECOND * MAX_LOG_STREAMS)  # what a well-behaved agent may send
LOG_BURST = 2 * LOG_RATE

# a log chunk or end, and whether it came past the rate: whether an open stream took it
LogsTaker = Callable[[LogChunk | LogsEnd, bool], bool]


class Intake:
    """Takes one agent connection's messages (see the module docstring)."""

    def __init__(
        self,
        host_id: int,
        host: str,
        statuses: StatusStore,
        metrics: Metrics,
        recorded: Callable[[Status], None],
        engine: Callable[[str | None], None],
        event: Callable[[Event], None],
        rate: float = RATE,
        burst: float = BURST,
        clock: Callable[[], float] = time.monotonic,
        logs: LogsTaker | None = None,
    ) -> None:
        self.host_id = host_id
        self.host = host
        self.statuses = statuses
        self.metrics = metrics
        self.recorded = recorded  # a status was recorded (its confined form)
        self.engine = engine  # the host's Docker Engine went down (why) or came back (None)
        self.event = event  # an event the agent may report
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._filled_at = clock()
        self._told = NOTHING
        self._last: Status | None = None  # the newest status, as the agent sent it
        self._cut = 0  # how much confinement cut of it
        self._waiting: asyncio.TimerHandle | None = None  # a status waits for a token
        self.logs = logs
        self._log_tokens = LOG_BURST
        self._log_filled_at = clock()

    def take(self, text: str | bytes) -> None:
        """Take one frame; ProtocolError if it is not a valid agent message for this host."""
        message = decode_report(text)
        if message.host != self.host:
            raise ProtocolError(f"a message of host {message.host!r} on {self.host!r}'s connection")
        if isinstance(message, Hello):
            return  # a second hello changes nothing
        if isinstance(message, LogChunk | LogsEnd):
            over = isinstance(message, LogChunk) and not self._log_token()
            if over:
                self._refuse("rate")
            if self.logs is None or not self.logs(message, over):
                self._refuse("stream")
            return
        if isinstance(message, Status):
            if self._waiting is not None:  # it replaces the one waiting for a token
                self._refuse("rate")
                self._last = message
                return
            self._last = message
            if self._token():
                self._record()
            else:
                self._refuse("rate")
                wait = (1.0 - self._tokens) / self.rate
                self._waiting = asyncio.get_running_loop().call_later(wait, self._waited)
            return
        if not self._token():
            self._refuse("rate")
            return
        refusal = event_refusal(message, self._told)
        if refusal is not None:
            self._refuse(refusal)
            return
        self.event(message)

    def told(self, told: Told) -> None:
        """The host was pushed a desired state telling it of `told`. What a connection was
        told of only grows (a retained release's image stays the agent's to report), and the
        last status is recorded again only if something of it was cut: a fan-out pushes to
        every host, and recording 10,000 unchanged statuses again was 10,000 hosts' news."""
        if told.apps <= self._told.apps and told.images <= self._told.images:
            return  # nothing new: the common case, once per host on every push
        merged = Told(self._told.apps | told.apps, self._told.images | told.images)
        self._told = merged
        if self._cut and self._last is not None and self._waiting is None:
            self._record()

    def close(self) -> None:
        """The connection ended: a status waiting for a token is recorded now."""
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
            self._record()

    def _waited(self) -> None:
        self._waiting = None
        self._token()
        self._record()

    def _record(self) -> None:
        assert self._last is not None
        status, cut = confine_status(self._last, self.host, self._told)
        if cut and cut != self._cut:  # counted once per status, not again on each push
            self.metrics.agent_refused.labels("foreign").inc(cut)
        self._cut = cut
        previous = self.statuses.latest(self.host)
        was = previous.status.engine_error if previous and previous.status else None
        if (status.engine_error is None) != (was is None):
            self.engine(status.engine_error)
        self.statuses.record(self.host_id, self.host, status)
        self.recorded(status)

    def _token(self) -> bool:
        """Take a token if the bucket has one (refilled at `rate`, up to `burst`)."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _log_token(self) -> bool:
        """Take a token of the log bucket (LOG_RATE a second, up to LOG_BURST)."""
        now = self.clock()
        refill = (now - self._log_filled_at) * LOG_RATE
        self._log_tokens = min(LOG_BURST, self._log_tokens + refill)
        self._log_filled_at = now
        if self._log_tokens >= 1.0:
            self._log_tokens -= 1.0
            return True
        return False

    def _refuse(self, reason: str) -> None:
        self.metrics.agent_refused.labels(reason).inc()
