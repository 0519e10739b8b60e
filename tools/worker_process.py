"""The child side of `tools.worker_pool`: one warm process that runs CPU-bound tool functions.

    python -m tools.worker_process --allow MODULE [--allow MODULE ...] [--memory-mib N]

It is started by the pool as a fresh interpreter (never forked from the server), imports the allowed
modules, bounds its own memory, then answers requests until its stdin closes (which is also how it
ends when the server dies).

The frames it reads and writes are `tools.worker_protocol`'s.

Defences in the child, besides the parent's deadline (the parent kills it on time-out):
- memory: an address-space limit (RLIMIT_AS) of what the interpreter uses after its imports plus
  `--memory-mib`, checked by a probe allocation at start; RLIMIT_DATA where RLIMIT_AS cannot be set.
  An allocation beyond it raises MemoryError in the function, reported as an error.
- CPU: before each call, RLIMIT_CPU's soft limit is set to the CPU time used so far plus `cpu_s`
  (and a second), so a call that outlives a dead or stuck parent is ended by the kernel (SIGXCPU).
- priority: the worker runs at a lower scheduling priority (nice 10) than the server.
- stdout carries only frames: anything a function prints goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import resource
import sys
from types import ModuleType
from typing import Any, BinaryIO

from tools import worker_protocol

__all__ = ["limit_memory", "main"]

NICENESS = 10
_MIB = 1 << 20


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    stream.write(worker_protocol.encode(message))
    stream.flush()


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next message, or None at end of input (the parent closed the pipe or died)."""
    header = stream.read(worker_protocol.HEADER.size)
    if len(header) < worker_protocol.HEADER.size:
        return None
    length = worker_protocol.body_length(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return worker_protocol.decode(body)


def _address_space_bytes() -> int | None:
    """What the interpreter has mapped now (VmSize), or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _probe(limit_bytes: int) -> bool:
    """Whether an allocation beyond the limit really fails (it does not under every kernel setting)."""
    try:
        probe = bytearray(limit_bytes)
    except MemoryError:
        return True
    del probe
    return False


def limit_memory(budget_mib: int) -> str:
    """Bound this process's memory to what it uses now plus `budget_mib`; name the limit in force."""
    current = _address_space_bytes()
    if current is None or budget_mib <= 0:
        return "none"
    limit = current + budget_mib * _MIB
    for name in ("RLIMIT_AS", "RLIMIT_DATA"):
        kind = getattr(resource, name, None)
        if kind is None:
            continue
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY and hard < limit:
            continue
        try:
            resource.setrlimit(kind, (limit, hard))
        except (ValueError, OSError):
            continue
        if _probe(limit):
            return name
        resource.setrlimit(kind, (hard, hard))  # not effective here: do not leave a useless limit
    return "none"


def _cpu_seconds_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _limit_cpu(cpu_s: float | None) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if cpu_s is None:
        soft = hard
    else:
        soft = math.ceil(_cpu_seconds_used() + cpu_s) + 1
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _handle(modules: dict[str, ModuleType], request: dict[str, Any]) -> dict[str, Any]:
    reference = request.get("function")
    args = request.get("args", [])
    if not isinstance(reference, str) or ":" not in reference or not isinstance(args, list):
        return _error("ValueError", "a request needs 'function' as 'module:name' and 'args' as a list")
    module_name, _, function_name = reference.partition(":")
    module = modules.get(module_name)
    function = getattr(module, function_name, None) if module is not None else None
    if function is None or function_name.startswith("_") or not callable(function):
        return _error("LookupError", f"{reference} is not an allowed function")
    cpu_s = request.get("cpu_s")
    _limit_cpu(float(cpu_s) if isinstance(cpu_s, int | float) else None)
    try:
        result = function(*args)
    except MemoryError:
        return _error("MemoryError", "the call needed more memory than the worker may use")
    except Exception as exc:
        return _error(type(exc).__name__, str(exc)[:2000])
    finally:
        _limit_cpu(None)
    try:
        worker_protocol.encode({"result": result})
    except (TypeError, ValueError) as exc:  # FrameError is a ValueError
        return _error("TypeError", f"{reference} returned a value that cannot be sent back: {exc}")
    return {"result": result}


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow", action="append", default=[], help="a module whose functions may run")
    parser.add_argument("--memory-mib", type=int, default=256, help="memory beyond the idle interpreter")
    args = parser.parse_args(argv)

    # The protocol owns the real stdout; whatever else writes to fd 1 or sys.stdout lands on stderr.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer

    modules = {name: importlib.import_module(name) for name in args.allow}
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a SIGXCPU end leaves no core file behind
    os.nice(NICENESS)
    memory_limit = limit_memory(args.memory_mib)
    write_frame(channel, {"ready": True, "pid": os.getpid(), "memory_limit": memory_limit})
    while True:
        request = read_frame(requests)
        if request is None:
            return 0
        write_frame(channel, _handle(modules, request))


if __name__ == "__main__":
    sys.exit(main())
