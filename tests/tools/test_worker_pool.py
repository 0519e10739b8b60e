"""The tool worker pool, with real worker processes: deadlines, memory bound, saturation, replacement."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.processes import ROOT
from tools import worker_protocol
from tools.worker_pool import (
    PoolClosed,
    PoolSaturated,
    WorkerFailed,
    WorkerOutOfMemory,
    WorkerPool,
    WorkerTimeout,
)

TASKS = "tests.tools.worker_tasks"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child not reaped yet still answers signal 0; it is a zombie, not alive.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


@pytest.fixture(autouse=True)
def tasks_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers do not import from their working directory (-P); the test tasks need the repository root."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    async with WorkerPool([TASKS], size=1, max_waiting=1, memory_mib=64) as started:
        yield started


async def test_calls_run_in_a_warm_worker(pool: WorkerPool) -> None:
    [worker] = pool.pids
    assert worker != os.getpid()
    assert await pool.call(f"{TASKS}:echo", 1, "two", [3.5], timeout_s=10) == [1, "two", [3.5]]
    assert await pool.call(f"{TASKS}:pid", timeout_s=10) == worker
    assert await pool.call(f"{TASKS}:pid", timeout_s=10) == worker  # the same process, not one per call
    assert pool.replaced == 0


async def test_a_call_past_its_deadline_kills_the_worker_and_a_new_one_takes_over(pool: WorkerPool) -> None:
    [first] = pool.pids
    with pytest.raises(WorkerTimeout, match=r"did not finish within 0\.5 s"):
        await pool.call(f"{TASKS}:spin", timeout_s=0.5)
    assert pool.replaced == 1
    second = await pool.call(f"{TASKS}:pid", timeout_s=30)  # waits for the replacement
    assert second != first
    assert not alive(first)
    assert pool.pids == [second]


async def test_a_cancelled_call_kills_its_worker(pool: WorkerPool) -> None:
    [first] = pool.pids
    call = asyncio.create_task(pool.call(f"{TASKS}:spin", timeout_s=60))
    await asyncio.sleep(0)  # the call takes the idle worker in its first step
    assert pool.busy == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await pool.call(f"{TASKS}:pid", timeout_s=30) != first
    assert not alive(first)


async def test_the_memory_bound_holds_and_the_worker_is_replaced(pool: WorkerPool) -> None:
    assert pool.memory_limits == ["RLIMIT_AS"]  # what works on Linux
    assert await pool.call(f"{TASKS}:allocate", 16, timeout_s=30) == 16 << 20
    [first] = pool.pids
    with pytest.raises(WorkerOutOfMemory):
        await pool.call(f"{TASKS}:allocate", 1024, timeout_s=30)
    assert await pool.call(f"{TASKS}:pid", timeout_s=30) != first
    assert await pool.call(f"{TASKS}:allocate", 16, timeout_s=30) == 16 << 20


async def test_a_saturated_pool_refuses_at_once_and_recovers(pool: WorkerPool) -> None:
    busy = asyncio.create_task(pool.call(f"{TASKS}:spin", timeout_s=60))
    await asyncio.sleep(0)  # the call takes the idle worker in its first step
    assert pool.busy == 1
    waiting = asyncio.create_task(pool.call(f"{TASKS}:echo", "waited", timeout_s=30))
    await asyncio.sleep(0)
    assert pool.waiting == 1
    with pytest.raises(PoolSaturated, match="already waiting"):
        await pool.call(f"{TASKS}:echo", "refused", timeout_s=30)
    busy.cancel()  # the spinning worker is killed; the waiting call gets its replacement
    assert await waiting == ["waited"]
    assert await pool.call(f"{TASKS}:echo", "later", timeout_s=30) == ["later"]


async def test_a_function_that_raises_is_a_failure_not_a_dead_worker(pool: WorkerPool) -> None:
    [worker] = pool.pids
    with pytest.raises(WorkerFailed, match="ValueError: no such thing") as excinfo:
        await pool.call(f"{TASKS}:fail", "no such thing", timeout_s=10)
    assert excinfo.value.error_type == "ValueError"
    assert pool.pids == [worker]
    assert await pool.call(f"{TASKS}:print_noise", timeout_s=10) == "clean"


async def test_only_allowed_functions_run(pool: WorkerPool) -> None:
    for reference in ("os:getpid", f"{TASKS}:os", f"{TASKS}:_private", "tools.calculator:answer", "nonsense"):
        with pytest.raises(WorkerFailed, match=r"not an allowed function|needs 'function'"):
            await pool.call(reference, timeout_s=10)


async def test_a_worker_that_dies_is_replaced(pool: WorkerPool) -> None:
    [first] = pool.pids
    with pytest.raises(WorkerFailed, match="exited"):
        await pool.call(f"{TASKS}:die", timeout_s=10)
    assert await pool.call(f"{TASKS}:pid", timeout_s=30) != first


async def test_close_stops_the_workers_and_refuses_calls() -> None:
    pool = WorkerPool([TASKS], size=2)
    await pool.start()
    pids = pool.pids
    assert len(pids) == 2
    await pool.close()
    assert not any(alive(p) for p in pids)
    with pytest.raises(PoolClosed):
        await pool.call(f"{TASKS}:pid", timeout_s=10)


async def test_a_waiting_call_is_refused_when_the_pool_closes() -> None:
    pool = WorkerPool([TASKS], size=1, max_waiting=4)
    await pool.start()
    busy = asyncio.create_task(pool.call(f"{TASKS}:spin", timeout_s=60))
    await asyncio.sleep(0)  # the call takes the idle worker in its first step
    assert pool.busy == 1
    waiting = asyncio.create_task(pool.call(f"{TASKS}:pid", timeout_s=10))
    await asyncio.sleep(0)
    assert pool.waiting == 1
    await pool.close()
    with pytest.raises(PoolClosed):
        await waiting
    with pytest.raises((WorkerFailed, PoolClosed)):
        await busy


def test_the_worker_ends_itself_when_its_cpu_allowance_is_spent() -> None:
    """The kernel's backstop for a call whose parent died before its deadline: RLIMIT_CPU, SIGXCPU."""
    command = [sys.executable, "-P", "-m", "tools.worker_process", "--allow", TASKS]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as worker:
        assert worker.stdin is not None
        assert worker.stdout is not None
        header = worker.stdout.read(worker_protocol.HEADER.size)
        hello = json.loads(worker.stdout.read(worker_protocol.body_length(header)))
        assert hello["ready"] is True
        worker.stdin.write(worker_protocol.encode({"function": f"{TASKS}:spin", "args": [], "cpu_s": 0.5}))
        worker.stdin.flush()
        assert worker.wait(60) == -signal.SIGXCPU


async def test_a_tools_directory_in_the_working_directory_does_not_shadow_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("raise ImportError('the impostor was imported')\n")
    monkeypatch.chdir(tmp_path)
    async with WorkerPool(["tools.calculator"], size=1) as pool:
        assert await pool.call("tools.calculator:answer", "6*7", timeout_s=10) == ["ok", "42"]


async def test_arguments_that_cannot_be_sent_are_refused_without_costing_a_worker(pool: WorkerPool) -> None:
    [worker] = pool.pids
    with pytest.raises(WorkerFailed, match="cannot be sent"):
        await pool.call(f"{TASKS}:echo", "x" * (2 << 20), timeout_s=10)
    with pytest.raises(WorkerFailed, match="cannot be sent"):
        await pool.call(f"{TASKS}:echo", object(), timeout_s=10)
    assert pool.pids == [worker]
    assert pool.replaced == 0
