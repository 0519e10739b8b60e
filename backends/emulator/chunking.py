"""Ray Serve's stream batching, as a pure function of token times.

Ray Serve LLM's `Batcher` (stream_batching_interval_ms, 50 ms by default) forwards the first output as
soon as it exists (time to first token is latency-critical), then drains whatever accumulated once
per interval, and flushes at once when the stream ends. Each drained token still travels as its own
SSE event, so a client sees bursts of events a few microseconds apart separated by interval gaps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def flush_times(token_times: Sequence[float], interval_s: float) -> list[float]:
    """When each token reaches the client, given when the engine produced it."""
    if not token_times:
        return []
    if interval_s <= 0:
        return list(token_times)
    first = token_times[0]
    last = token_times[-1]
    flushed = [first]
    for produced in token_times[1:]:
        ticks = max(math.ceil((produced - first) / interval_s - 1e-12), 1)
        # The end of the stream flushes at once, taking whatever is still pending with it.
        flushed.append(min(first + ticks * interval_s, last))
    return flushed


def next_flush(first_flush: float, now: float, interval_s: float) -> float:
    """The next batching tick strictly after `now` for a stream first flushed at `first_flush`."""
    ticks = max(math.floor((now - first_flush) / interval_s + 1e-9) + 1, 1)
    return first_flush + ticks * interval_s
