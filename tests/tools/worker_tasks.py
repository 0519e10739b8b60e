"""Functions the worker-pool tests run in real worker processes (`--allow tests.tools.worker_tasks`)."""

from __future__ import annotations

import os
from typing import Any


def echo(*args: Any) -> list[Any]:
    return list(args)


def pid() -> int:
    return os.getpid()


def spin() -> int:
    """Burns CPU until killed, as a runaway computation would."""
    n = 0
    while True:
        n += 1


def allocate(mib: int) -> int:
    """Allocates and touches `mib` MiB."""
    block = bytearray(mib << 20)
    return len(block)


def fail(message: str) -> None:
    raise ValueError(message)


def die() -> None:
    os._exit(3)


def print_noise() -> str:
    print("this must not reach the protocol")
    return "clean"
