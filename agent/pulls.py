"""Image pulls in the background: one task per image, each bounded by a timeout.

A pull is the one Docker call that can take minutes, or forever (a registry that accepts a
connection and never answers). The reconcile pass never waits long for one: it starts the
pull (`start`), waits at most a moment for it (`wait`: a quick pull still makes pull-then-run
one pass), and otherwise goes on with the other apps, holding back only what needs the
image. When the pull ends, `on_done` wakes the loop, which plans again and collects the
outcome (`result`). A pull that no desired state needs any longer (a newer push superseded
its release, a deployment was cancelled) is abandoned at once (`keep_only`), and a pull that
takes longer than `timeout` fails with `PullTimedOut`, recorded against the release as any
failed pull is (problem `pull_failed`) and retried with a backoff.

The Docker SDK's pull cannot be interrupted from another thread. An abandoned or timed-out
pull's thread runs on, ignored, until its HTTP request to the Engine ends: when the Engine
answers, or at the latest when the driver's client timeout (a read that waits 60 s) gives
up and closes the connection. Pulls run on daemon threads of their own (`_Workers`: reused
while pulls keep coming, one more whenever all are busy), never on the threads other Docker
calls go through (a hung pull starves none of them), and never on one that holds up the
agent's exit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

DEFAULT_PULL_TIMEOUT = 300.0  # seconds: a large image on a slow link, not a hung registry


class PullTimedOut(Exception):
    """A pull did not finish within the agent's pull timeout."""


class Pulls:
    """The pulls in flight, one per image, and the outcomes not collected yet."""

    def __init__(
        self, pull: Callable[[str], None], timeout: float, on_done: Callable[[], None]
    ) -> None:
        self._pull = pull
        self.timeout = timeout
        self._on_done = on_done
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._done: dict[str, BaseException | None] = {}  # image -> its error, None: pulled

    def start(self, image: str) -> bool:
        """Start pulling `image` unless it is being pulled, or its outcome waits to be
        collected; whether it started now."""
        if image in self._tasks or image in self._done:
            return False
        self._tasks[image] = asyncio.get_running_loop().create_task(
            self._run(image), name=f"pull {image}"
        )
        return True

    async def wait(self, image: str, seconds: float) -> None:
        """Wait until the pull of `image` ends, or `seconds` pass (it goes on then)."""
        task = self._tasks.get(image)
        if task is not None:
            await asyncio.wait({task}, timeout=seconds)

    def result(self, image: str) -> tuple[bool, BaseException | None]:
        """Whether a pull of `image` ended since it was last asked, and its error (None: it
        succeeded); the outcome is handed out once."""
        if image not in self._done:
            return False, None
        return True, self._done.pop(image)

    def pulling(self) -> frozenset[str]:
        """The images being pulled now."""
        return frozenset(self._tasks)

    def keep_only(self, images: Iterable[str]) -> list[str]:
        """Abandon the pulls (and forget the outcomes) of images not in `images`; the images
        whose pulls were abandoned."""
        wanted = set(images)
        for image in set(self._done) - wanted:
            del self._done[image]
        dropped = sorted(set(self._tasks) - wanted)
        for image in dropped:
            self._tasks.pop(image).cancel()
        return dropped

    def close(self) -> None:
        """Abandon every pull in flight."""
        self.keep_only(())

    async def _run(self, image: str) -> None:
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[BaseException | None] = loop.create_future()
        _WORKERS.submit(lambda: self._in_thread(image, loop, ended))
        try:
            async with asyncio.timeout(self.timeout):
                error = await asyncio.shield(ended)
        except TimeoutError:
            log.warning("pull of %s did not finish within %gs: abandoned", image, self.timeout)
            error = PullTimedOut(
                f"pull of {image} did not finish within {self.timeout:g}s (--pull-timeout)"
            )
        if self._tasks.get(image) is asyncio.current_task():
            del self._tasks[image]
            self._done[image] = error
            self._on_done()

    def _in_thread(
        self,
        image: str,
        loop: asyncio.AbstractEventLoop,
        ended: asyncio.Future[BaseException | None],
    ) -> None:
        error: BaseException | None = None
        try:
            self._pull(image)
        except Exception as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(_settle, ended, error)
        except RuntimeError:  # the loop is closed: nobody waits for this pull any more
            pass


def _settle(ended: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not ended.done():  # not abandoned meanwhile
        ended.set_result(error)


class _Workers:
    """Daemon threads that run pulls: an idle one takes the next pull, and when none is idle
    a new one starts, so a pull that hangs never delays another. A thread idle for
    `idle_seconds` ends. (A ThreadPoolExecutor's threads are joined at exit: a hung pull
    would hold up the agent's exit for as long as it hangs.)"""

    def __init__(self, idle_seconds: float = 30.0) -> None:
        self.idle_seconds = idle_seconds
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job that no submitted job has claimed

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on an idle thread, or on a new one."""
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1  # claimed: that thread takes this job (or one before it)
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._work, name="flotilla-pull", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # unclaimed: nobody counts on this thread
                        self._idle -= 1
                        return
                continue  # claimed just now: its job is on its way
            job()  # never raises: _in_thread catches what the pull raises
            with self._lock:
                self._idle += 1


_WORKERS = _Workers()  # one set of pull threads per process (the benchmark runs 10,000 agents)
