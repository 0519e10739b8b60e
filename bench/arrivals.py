"""When open-loop requests arrive: Poisson or constant, seeded, as offsets from the level's start."""

from __future__ import annotations

import random
from typing import Literal

Arrival = Literal["poisson", "constant"]


def arrival_offsets(rate: float, duration_s: float, kind: Arrival, seed: int) -> list[float]:
    """Offsets (seconds) of the arrivals in [0, duration_s) at `rate` per second.

    Poisson: exponential gaps, so the count varies around rate x duration as real traffic does.
    Constant: exactly one arrival every 1/rate seconds.
    """
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if kind == "constant":
        count = max(1, round(rate * duration_s))
        return [i / rate for i in range(count)]
    rng = random.Random(seed)
    offsets, t = [], 0.0
    while True:
        offsets.append(t)
        t += rng.expovariate(rate)
        if t >= duration_s:
            return offsets
