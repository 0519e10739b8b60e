"""The bench's one clock (`time.monotonic`), and the conversion of kernel receive stamps onto it."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

now = time.monotonic
_TIMESPEC = struct.Struct("qq")


@dataclass(slots=True)
class KernelClock:
    """Maps the kernel's socket receive stamps (CLOCK_REALTIME) onto `time.monotonic()`.

    The two clocks drift apart only by NTP slewing, so an offset measured at the start and refreshed
    every second or so (the loop-lag monitor does it) keeps the error far below a microsecond per
    second of run.
    """

    offset: float = 0.0

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-measure realtime minus monotonic, keeping the tightest of a few samples."""
        best_width, best = float("inf"), 0.0
        for _ in range(5):
            before = time.monotonic()
            real = time.time()
            after = time.monotonic()
            if after - before < best_width:
                best_width, best = after - before, real - (before + after) / 2
        self.offset = best

    def from_cmsg(self, data: bytes) -> float:
        """A `struct timespec` from SCM_TIMESTAMPNS → monotonic seconds."""
        seconds, nanoseconds = _TIMESPEC.unpack_from(data)
        return float(seconds + nanoseconds / 1e9 - self.offset)
