"""Builds and loads chatstack's int8 decode kernel (`int8_decode.cpp`) inside the engine process.

The kernel is compiled once per machine and torch version with torch's own extension builder (g++ and
ninja, which the engine's virtualenv has) into `CHATSTACK_KERNEL_DIR` (the supervisor points it into the
model cache, so every data directory shares one build; about 35 s the first time). Where it cannot be
built (no AVX2, no compiler, a failed build) the int8 layers keep PyTorch's weight-only kernel, which
computes the same product more slowly; the engine's log says which.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch  # type: ignore[import-not-found]

from backends.local.cpu_features import cpu_flags

SOURCE = Path(__file__).with_name("int8_decode.cpp")
BLOCK = 32
"""The kernel takes input sizes in multiples of its activation block (`kBlock` in the source)."""
NEEDS = frozenset({"avx2", "fma"})
ENABLED_ENV = "CHATSTACK_ENGINE_DECODE_KERNEL"
DIR_ENV = "CHATSTACK_KERNEL_DIR"

Kernel = Callable[[Any, Any, Any], Any]


def log(message: str) -> None:
    # The engine's stderr is the engine log; vLLM's logger is not set up yet when layers are created.
    print(f"chatstack int8 decode kernel: {message}", file=sys.stderr, flush=True)


@functools.cache
def decode_kernel() -> Kernel | None:
    """`kernel(x, weight, scale_f32)` = `x @ (weight * scale).T`, or None where it is off or cannot run
    here. Built at most once per process."""
    if os.environ.get(ENABLED_ENV, "1").lower() in ("0", "false", "no", "off"):
        log(f"off ({ENABLED_ENV})")
        return None
    missing = NEEDS - cpu_flags()
    if missing:
        log(f"not used: this CPU lacks {', '.join(sorted(missing))}")
        return None
    try:
        module = _build()
    except Exception as exc:  # any build failure: the slower kernel still gives the right answers
        log(f"not used: building it failed ({type(exc).__name__}: {str(exc)[-500:]})")
        return None
    kernel: Kernel = module.int8_decode
    return kernel


def _build() -> Any:
    from torch.utils import cpp_extension  # type: ignore[import-not-found]

    base = Path(os.environ.get(DIR_ENV) or Path.home() / ".cache" / "chatstack" / "kernels")
    # A build is only valid for the torch it was compiled against.
    directory = base / f"torch-{torch.__version__}"
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("ninja") is None:  # the venv's own ninja, whose bin folder is not on PATH
        os.environ["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
    started = time.monotonic()
    with (directory / "chatstack.lock").open("w") as handle:
        # torch's own lock is a file that a build killed midway (an engine stopped while loading) leaves
        # behind, and every later build would wait on it forever. This lock dies with its holder, and
        # whoever holds it knows that a torch lock file still there is such a leftover.
        fcntl.flock(handle, fcntl.LOCK_EX)
        (directory / "lock").unlink(missing_ok=True)
        module = cpp_extension.load(
            name="chatstack_int8_decode",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-mavx2", "-mfma", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            build_directory=str(directory),
            verbose=False,
        )
    log(f"ready ({time.monotonic() - started:.1f} s, {directory})")
    return module
