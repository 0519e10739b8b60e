"""Warm worker processes for CPU-bound tool work, so that none of it ever runs on the event loop.

A thread would not do: a long computation in C (math.comb on huge ints) holds the GIL, so the loop
stalls all the same, and a thread cannot be stopped. A process can be killed. So:

- `size` long-lived workers (`python -m tools.worker_process`), each a fresh interpreter started with
  `asyncio.create_subprocess_exec` (fork+exec, like multiprocessing's `spawn`: nothing of the running
  server is copied, no fork of a threaded process). They are started by `start()` and warm (imports
  done, memory limit set) before the first call.
- every call has a hard deadline: past it the worker is killed (SIGKILL) and replaced in the
  background, and the caller gets WorkerTimeout at once. A cancelled call does the same.
- a memory bound in each worker (see `tools.worker_process`); hitting it is WorkerOutOfMemory, and
  that worker is replaced too.
- a bounded wait: at most `max_waiting` calls wait for a free worker; one more is refused at once with
  PoolSaturated, so that a flood of slow calls cannot make every later call wait forever.
- all I/O with workers is asynchronous (pipes read by the event loop); nothing here blocks it.

Only functions of the modules named at construction can be called, by `"module:function"`
reference; arguments and results are JSON.

Errors:

    WorkerPoolError
    ├── PoolClosed           the pool was closed (the app is shutting down)
    ├── PoolSaturated        too many calls already waiting for a worker
    ├── WorkerTimeout        the call passed its deadline; its worker was killed and replaced
    ├── WorkerOutOfMemory    the call hit the worker's memory bound; the worker was replaced
    └── WorkerFailed         the function raised, or the worker died or broke the protocol
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tools import worker_protocol

__all__ = [
    "PoolClosed",
    "PoolSaturated",
    "WorkerFailed",
    "WorkerOutOfMemory",
    "WorkerPool",
    "WorkerPoolError",
    "WorkerTimeout",
]

log = logging.getLogger(__name__)

RESPAWN_DELAYS_S = (0.1, 0.5, 2.0, 5.0)
"""Pauses between attempts when a replacement worker fails to start (the last one repeats)."""


class WorkerPoolError(Exception):
    """Base of the pool's errors; the message is fit to show to a model or a user."""


class PoolClosed(WorkerPoolError):
    pass


class PoolSaturated(WorkerPoolError):
    pass


class WorkerTimeout(WorkerPoolError):
    pass


class WorkerOutOfMemory(WorkerPoolError):
    pass


class WorkerFailed(WorkerPoolError):
    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        """The exception type the function raised in the worker, when it raised one."""


class _Broken(Exception):
    """The worker died or sent something that is not a frame; it must be replaced."""


@dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    pid: int
    memory_limit: str
    reader: asyncio.StreamReader = field(repr=False)
    writer: asyncio.StreamWriter = field(repr=False)

    async def send(self, frame: bytes) -> None:
        try:
            self.writer.write(frame)
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise _Broken(f"worker {self.pid} is gone ({type(exc).__name__})") from None

    async def receive(self) -> dict[str, Any]:
        try:
            header = await self.reader.readexactly(worker_protocol.HEADER.size)
            body = await self.reader.readexactly(worker_protocol.body_length(header))
            return worker_protocol.decode(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise _Broken(f"worker {self.pid} exited (status {self.process.returncode})") from None
        except worker_protocol.FrameError as exc:
            raise _Broken(f"worker {self.pid} broke the protocol: {exc}") from None

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def stop(self, grace_s: float) -> None:
        """Close its stdin (it exits at end of input), killing it if it takes longer than `grace_s`."""
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.close()
        try:
            await asyncio.wait_for(self.process.wait(), grace_s)
        except TimeoutError:
            self.kill()
            await self.process.wait()


class WorkerPool:
    """A fixed number of warm worker processes; `call` runs one function in one of them.

    Use as `async with WorkerPool(...) as pool:`, or `await pool.start()` / `await pool.close()`. A
    pool that was never started starts on its first call.
    """

    def __init__(
        self,
        modules: Sequence[str],
        *,
        size: int = 2,
        max_waiting: int = 16,
        memory_mib: int = 256,
        start_timeout_s: float = 30.0,
        python: str = sys.executable,
    ) -> None:
        if size < 1 or max_waiting < 0 or start_timeout_s <= 0:
            raise ValueError("size must be at least 1, max_waiting not negative, start_timeout_s positive")
        self._modules = tuple(modules)
        self._size = size
        self._max_waiting = max_waiting
        self._memory_mib = memory_mib
        self._start_timeout_s = start_timeout_s
        self._python = python
        self._idle: list[_Worker] = []
        self._waiters: deque[asyncio.Future[_Worker]] = deque()
        self._workers: set[_Worker] = set()
        self._respawns: set[asyncio.Task[None]] = set()
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._closed = False
        self.replaced = 0
        """Workers replaced so far (killed on deadline, out of memory, or dead)."""

    # --- lifetime ---------------------------------------------------------------------------------

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every worker and wait until each is ready; idempotent."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._closed:
                raise PoolClosed("the worker pool is closed")
            if self._started:
                return
            workers = await asyncio.gather(
                *(self._spawn() for _ in range(self._size)), return_exceptions=True
            )
            failures = [w for w in workers if isinstance(w, BaseException)]
            for worker in workers:
                if isinstance(worker, _Worker):
                    self._release(worker)
            if failures:
                await self.close()
                raise WorkerFailed(f"could not start the tool workers: {failures[0]}") from failures[0]
            self._started = True

    async def close(self, grace_s: float = 2.0) -> None:
        """Stop every worker (busy ones are killed) and refuse further calls; idempotent."""
        self._closed = True
        for task in list(self._respawns):
            task.cancel()
        await asyncio.gather(*self._respawns, return_exceptions=True)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the worker pool is closed"))
        workers, idle = list(self._workers), set(self._idle)
        self._workers, self._idle = set(), []
        # Idle workers end at end of input; busy ones are computing something nobody will read.
        for worker in workers:
            if worker not in idle:
                worker.kill()
        await asyncio.gather(*(w.stop(grace_s) for w in workers), return_exceptions=True)

    # --- calls --------------------------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return sorted(w.pid for w in self._workers)

    @property
    def busy(self) -> int:
        """Workers running a call now."""
        return len(self._workers) - len(self._idle)

    @property
    def waiting(self) -> int:
        """Calls waiting for a free worker."""
        return len(self._waiters)

    @property
    def memory_limits(self) -> list[str]:
        """The memory limit in force in each live worker ("RLIMIT_AS", "RLIMIT_DATA" or "none")."""
        return [w.memory_limit for w in self._workers]

    async def call(self, function: str, *args: Any, timeout_s: float) -> Any:
        """Run `function` ("module:name", of an allowed module) with JSON `args` in a worker.

        `timeout_s` bounds the run itself, from the moment a worker takes it; waiting for a free
        worker is bounded by `max_waiting` (and by the caller's own timeout or cancellation).
        Raises a WorkerPoolError subclass (see the module docstring).
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        try:
            request = worker_protocol.encode({"function": function, "args": list(args), "cpu_s": timeout_s})
        except (TypeError, ValueError) as exc:  # FrameError is a ValueError
            raise WorkerFailed(f"the arguments cannot be sent to a worker: {exc}") from None
        if not self._started:
            await self.start()
        worker = await self._acquire()
        try:
            async with asyncio.timeout(timeout_s):
                await worker.send(request)
                reply = await worker.receive()
        except TimeoutError:
            self._replace(worker, "deadline")
            raise WorkerTimeout(f"the call did not finish within {timeout_s:g} s and was stopped") from None
        except _Broken as exc:
            self._replace(worker, "broken")
            raise WorkerFailed(str(exc)) from None
        except BaseException:
            # Cancelled mid-call: the worker is still computing something nobody will read.
            self._replace(worker, "cancelled")
            raise
        error = reply.get("error")
        if isinstance(error, dict):
            kind, message = str(error.get("type")), str(error.get("message"))
            if kind == "MemoryError":
                # What is left of the heap after a failed huge allocation is not worth keeping.
                self._replace(worker, "memory")
                raise WorkerOutOfMemory(message)
            self._release(worker)
            raise WorkerFailed(f"{kind}: {message}", kind)
        self._release(worker)
        if "result" not in reply:
            raise WorkerFailed("the worker's reply has neither a result nor an error")
        return reply["result"]

    async def _acquire(self) -> _Worker:
        if self._closed:
            raise PoolClosed("the worker pool is closed")
        if self._idle:
            return self._idle.pop()
        if len(self._waiters) >= self._max_waiting:
            raise PoolSaturated(
                f"all {self._size} workers are busy and {len(self._waiters)} calls are already waiting"
            )
        waiter: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())  # handed a worker just as we were cancelled
            raise

    def _release(self, worker: _Worker) -> None:
        if self._closed or worker not in self._workers:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    # --- workers ------------------------------------------------------------------------------------

    def _replace(self, worker: _Worker, reason: str) -> None:
        """Kill `worker` now and start another in the background; the caller does not wait for it."""
        worker.kill()
        self._workers.discard(worker)
        self.replaced += 1
        log.info("replacing tool worker %d (%s)", worker.pid, reason)
        if not self._closed:
            task = asyncio.create_task(self._respawn(worker))
            self._respawns.add(task)
            task.add_done_callback(self._respawns.discard)

    async def _respawn(self, dead: _Worker) -> None:
        await dead.process.wait()  # reap it
        attempt = 0
        while not self._closed:
            try:
                worker = await self._spawn()
            except Exception as exc:
                delay = RESPAWN_DELAYS_S[min(attempt, len(RESPAWN_DELAYS_S) - 1)]
                log.warning("could not start a tool worker (%s); retrying in %g s", exc, delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if self._closed:
                await worker.stop(0.5)
                return
            self._release(worker)
            return

    async def _spawn(self) -> _Worker:
        # -P: the server's working directory is not put on the worker's import path, so a `tools`
        # directory there cannot stand in for ours (PYTHONPATH still counts).
        command = [self._python, "-P", "-m", "tools.worker_process", "--memory-mib", str(self._memory_mib)]
        for module in self._modules:
            command += ["--allow", module]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdin is not None
        assert process.stdout is not None
        worker = _Worker(process, process.pid, "none", process.stdout, process.stdin)
        try:
            async with asyncio.timeout(self._start_timeout_s):
                hello = await worker.receive()
        except BaseException:
            worker.kill()
            await process.wait()
            raise
        if hello.get("ready") is not True:
            worker.kill()
            await process.wait()
            raise WorkerFailed(f"worker {process.pid} did not start properly: {hello}")
        worker.memory_limit = str(hello.get("memory_limit"))
        if self._closed:
            await worker.stop(0.5)
            raise PoolClosed("the worker pool is closed")
        self._workers.add(worker)
        return worker
