"""Child processes that lead a process group of their own, die with their parent, and stop as a group.

`start_child` (asyncio) and `start_child_blocking` (subprocess) start a command in a new session: a stop
then reaches every worker it starts, and a Ctrl-C in the terminal reaches the parent alone, which stops
its children in order. On Linux the child also gets SIGTERM when its parent dies, so a killed parent
(SIGKILL: no cleanup at all) leaves nothing behind. `stop_group` and `stop_group_blocking` send signals
in turn until the child exits, then SIGKILL whatever is left of its group. `kill_session` reaches the
processes that left the group but not the session (Ray's workers do). Used by the embedded engine's
supervisor, the nginx runner and the tests' server fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1

Escalation = Sequence[tuple[int, float]]
"""(signal, seconds to wait for the exit) pairs, sent in turn while the child still runs."""


def die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that has the child get SIGTERM when its parent dies (Linux only; else None).
    libc is resolved here, in the parent: the child may only call it."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return functools.partial(prctl, PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


async def start_child(*command: str, **options: Any) -> asyncio.subprocess.Process:
    """`asyncio.create_subprocess_exec(*command, **options)` in a session of its own, dying with us."""
    return await asyncio.create_subprocess_exec(
        *command, start_new_session=True, preexec_fn=die_with_parent(), **options
    )


def start_child_blocking(command: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(command, **options)` in a session of its own, dying with us."""
    return subprocess.Popen(list(command), start_new_session=True, preexec_fn=die_with_parent(), **options)


def _signal(pid: int, sig: int, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _escalate(pid: int, steps: Escalation, running: Callable[[], bool], leader_only: bool) -> Iterator[float]:
    """Send each signal while the child runs; yields how long to wait for its exit after each."""
    for sig, wait_s in steps:
        if not running():
            return
        _signal(pid, sig, group=not leader_only)
        yield wait_s


async def stop_group(
    process: asyncio.subprocess.Process, steps: Escalation, *, leader_only: bool = False
) -> bool:
    """Stop a child from `start_child`: each signal of `steps` in turn, to its whole group (or, with
    `leader_only`, to the child alone, which stops its workers itself), until it exits; then SIGKILL to
    whatever is left of the group, also when the child had already exited (a crashed child's workers).
    Returns whether the child exited before the SIGKILL."""
    for wait_s in _escalate(process.pid, steps, lambda: process.returncode is None, leader_only):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), wait_s)
    exited = process.returncode is not None
    _signal(process.pid, signal.SIGKILL, group=True)
    await process.wait()
    return exited


def stop_group_blocking(
    process: subprocess.Popen[Any], steps: Escalation, *, leader_only: bool = False
) -> bool:
    """`stop_group` for a child from `start_child_blocking`."""
    for wait_s in _escalate(process.pid, steps, lambda: process.poll() is None, leader_only):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait_s)
    exited = process.poll() is not None
    _signal(process.pid, signal.SIGKILL, group=True)
    process.wait()
    return exited


def session_members(session: int) -> list[int]:
    """The live processes in session `session` (Linux: from /proc; elsewhere none)."""
    members = []
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # After the command name (which may hold spaces and parentheses): state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[-1].split()
        # A zombie has already exited (a group's SIGKILL just now): only its parent's wait() is missing.
        if len(fields) > 3 and int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def kill_session(session: int) -> int:
    """SIGKILL every process left in `session` (a child from `start_child` leads the session of its own
    pid): those that lead a process group of their own are out of reach of `stop_group`. Returns how
    many processes were signalled. Blocking: it reads /proc."""
    killed = 0
    for pid in session_members(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed
