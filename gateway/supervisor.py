"""Supervisor: the one owner of long-lived background work; nothing dies quietly.

Every loop runs as a child of one `asyncio.TaskGroup`. A loop that raises is logged with its name,
backed off (jittered, capped) and started again; after `failing_after` failures in a row it
reports FAILED (still retrying) so health and GetStatus can say so. Only cancellation stops a
loop. One-shot tasks (`restart=False`) run once; their failure is logged and kept in the status.
`close()` cancels every child and waits for all of them: no task outlives its owner.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.core.backoff import reconnect_delay

log = logging.getLogger(__name__)

Factory = Callable[[], Awaitable[None]]
KEPT_FAILED_ONE_SHOTS = 20


class LoopState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"  # failed, will run again
    FAILED = "failed"  # failed `failing_after` times in a row (still retried if restartable)
    DONE = "done"  # a one-shot task finished, or a loop was stopped


@dataclass
class LoopStatus:
    name: str
    restart: bool
    state: LoopState = LoopState.STARTING
    failures: int = 0  # in a row
    restarts: int = 0
    last_error: str = ""


@dataclass
class _Child:
    status: LoopStatus
    factory: Factory
    task: asyncio.Task[None] | None = None
    stop_requested: bool = field(default=False)


class Supervisor:
    def __init__(
        self,
        name: str = "gateway",
        *,
        base_s: float = 0.1,
        cap_s: float = 30.0,
        failing_after: int = 5,
        healthy_after_s: float = 30.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self._base = base_s
        self._cap = cap_s
        self._failing_after = failing_after
        self._healthy_after = healthy_after_s
        self._rand = rand
        self._children: dict[str, _Child] = {}
        self._pending: list[_Child] = []
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Supervisor({self.name!r}, children={len(self._children)})"

    # -- control ----------------------------------------------------------------------------------
    def start(
        self, name: str, factory: Factory, *, restart: bool = True, replace: bool = False
    ) -> None:
        """Run `factory()` as a supervised child named `name` (names are unique while running;
        `replace=True` cancels the running one first)."""
        if self._closed:
            raise RuntimeError(f"supervisor {self.name} is closed")
        current = self._children.get(name)
        if current is not None and self._alive(current):
            if not replace:
                raise ValueError(f"{name} is already running")
            self.cancel(name)
        child = _Child(LoopStatus(name, restart), factory)
        self._children[name] = child
        if self._group is not None:
            child.task = self._group.create_task(self._guard(child), name=name)
        else:
            self._pending.append(child)
            if self._runner is None:
                self._stopping = asyncio.Event()
                self._runner = asyncio.get_running_loop().create_task(
                    self._run(), name=f"supervisor:{self.name}"
                )

    @staticmethod
    def _alive(child: _Child) -> bool:
        """Running, backing off, or failing but still retried (a failed one-shot is over)."""
        state = child.status.state
        if state is LoopState.DONE:
            return False
        return state is not LoopState.FAILED or child.status.restart

    def running(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.status.state not in (LoopState.DONE, LoopState.FAILED)

    def cancel(self, name: str) -> asyncio.Task[None] | None:
        """Ask one child to stop without waiting (for synchronous callbacks); returns the task
        that is ending, if any (never the caller's own: a child stopping itself is only marked)."""
        child = self._children.get(name)
        if child is None:
            return None
        child.stop_requested = True
        if child in self._pending:
            self._pending.remove(child)
            child.status.state = LoopState.DONE
            return None
        task = child.task
        if task is None or task.done() or task is asyncio.current_task():
            return None
        task.cancel()
        return task

    async def stop(self, name: str) -> None:
        """Cancel one child and wait until it has ended."""
        task = self.cancel(name)
        if task is not None:
            await _until_done({task})

    async def close(self) -> None:
        """Cancel every child, wait for all of them, refuse new ones."""
        self._closed = True
        if self._runner is None:
            return
        if self._stopping is not None:
            self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is asyncio.current_task():
            return
        children = {c.task for c in self._children.values() if c.task is not None}
        await _until_done({runner}, also=children)

    # -- reporting --------------------------------------------------------------------------------
    def status(self) -> list[LoopStatus]:
        return [c.status for c in self._children.values()]

    def failing(self) -> list[str]:
        """Loops that failed `failing_after` times in a row and are still retried (health reads
        this; a failed one-shot task is logged and shown, but says nothing about health)."""
        return [
            c.status.name
            for c in self._children.values()
            if c.status.restart and c.status.state is LoopState.FAILED
        ]

    def task_count(self) -> int:
        return sum(1 for c in self._children.values() if c.task is not None and not c.task.done())

    # -- internals --------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._stopping is not None
        async with asyncio.TaskGroup() as group:
            self._group = group
            for child in self._pending:
                child.task = group.create_task(self._guard(child), name=child.status.name)
            self._pending.clear()
            await self._stopping.wait()
            self._group = None
            for child in self._children.values():
                if child.task is not None:
                    child.task.cancel()

    async def _guard(self, child: _Child) -> None:
        try:
            await self._supervise(child)
        finally:
            self._retire(child)

    def _retire(self, child: _Child) -> None:
        """Finished children leave the table (one-shot tasks are spawned by the thousand); the
        last few failed one-shots stay, for GetStatus."""
        name = child.status.name
        if self._children.get(name) is not child:
            return
        if child.status.state is LoopState.DONE:
            del self._children[name]
            return
        failed = [
            n
            for n, c in self._children.items()
            if not c.status.restart and c.status.state is LoopState.FAILED
        ]
        for old in failed[: max(0, len(failed) - KEPT_FAILED_ONE_SHOTS)]:
            del self._children[old]

    async def _supervise(self, child: _Child) -> None:
        """Never lets an exception reach the TaskGroup: that would cancel every sibling."""
        status = child.status
        clock = asyncio.get_running_loop().time
        while not child.stop_requested:
            status.state = LoopState.RUNNING
            started = clock()
            try:
                await child.factory()
            except asyncio.CancelledError:
                status.state = LoopState.DONE
                raise
            except Exception as exc:
                if clock() - started >= self._healthy_after:
                    status.failures = 0  # it ran well for a while: this is a new failure streak
                status.failures += 1
                status.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.error(
                    "%s: %s failed (%d in a row)%s",
                    self.name,
                    status.name,
                    status.failures,
                    "; restarting" if status.restart else "",
                    exc_info=exc,
                )
                failing = status.failures >= self._failing_after
                if not status.restart:
                    status.state = LoopState.FAILED
                    return
                status.state = LoopState.FAILED if failing else LoopState.BACKING_OFF
            else:
                if not status.restart:
                    status.state = LoopState.DONE
                    return
                log.warning("%s: %s returned; restarting it", self.name, status.name)
            status.restarts += 1
            await asyncio.sleep(
                reconnect_delay(
                    min(status.failures, 30), base=self._base, cap=self._cap, rand=self._rand()
                )
            )
        status.state = LoopState.DONE


RECANCEL_S = 1.0


async def _until_done(
    tasks: set[asyncio.Task[None]], also: set[asyncio.Task[None]] | None = None
) -> None:
    """Wait for `tasks`, cancelling again every RECANCEL_S the ones (and the `also` tasks) still
    running: a library can swallow a cancel (redis-py 8 returns from a pipeline's execute() now
    and then although its task was cancelled meanwhile), and a stop must still end."""
    while True:
        _, pending = await asyncio.wait(tasks, timeout=RECANCEL_S)
        if not pending:
            return
        for task in pending | {t for t in also or () if not t.done()}:
            if task is not asyncio.current_task():
                task.cancel()
