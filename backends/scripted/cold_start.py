"""A scale-to-zero replica for the scripted server: what a Ray Serve app with `min_replicas: 0` does.

The server starts with no replica. The first chat request starts one, which takes `start_s`; requests
meanwhile are held until it is up (as Ray Serve's handles hold them) or, with `refuse`, answered 503
(as a proxy with no replica does). After `idle_s` without requests the replica goes away again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class ColdStart:
    start_s: float
    idle_s: float = 60.0
    refuse: bool = False
    starts: int = 0
    """Replicas started so far."""
    _ready_at: float | None = None
    _last_request: float = field(default_factory=time.monotonic)

    def _now_state(self) -> float | None:
        now = time.monotonic()
        if self._ready_at is not None and self._ready_at <= now and now - self._last_request > self.idle_s:
            self._ready_at = None  # scaled back to zero
        return self._ready_at

    @property
    def state(self) -> str:
        ready_at = self._now_state()
        if ready_at is None:
            return "zero"
        return "up" if ready_at <= time.monotonic() else "starting"

    async def admit(self) -> bool:
        """Wait for the replica, starting it if needed; False when the request must be refused (503)."""
        ready_at = self._now_state()
        now = time.monotonic()
        if ready_at is None:
            ready_at = self._ready_at = now + self.start_s
            self.starts += 1
        self._last_request = max(now, ready_at)
        if ready_at <= now:
            return True
        if self.refuse:
            return False
        await asyncio.sleep(ready_at - now)
        self._last_request = time.monotonic()
        return True
