"""A whole emulated deployment as a discrete-event system: ingress, optional P/D prefill, engine.

Requests pass through three stages, each timed by the profile:

1. ingress: a fixed delay (network, load balancer, Ray Serve proxy and router);
2. with prefill/decode disaggregation only, a FIFO prefill server (prefill plus KV transfer);
3. the engine core (`engine.py`), which schedules prefill chunks and decode steps.

The driver asks `next_event_time()`, waits until then (really, or virtually), and calls
`advance(now)`, which processes every event due by `now` at its own scheduled time. Because each
event keeps its exact emulated time, a driver that wakes up late delays delivery but never stretches
the emulated schedule.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from backends.emulator.engine import EngineCore, Sequence, StepResult
from backends.emulator.profiles import Profile
from backends.emulator.timing import prefill_service_time


@dataclass(slots=True)
class _Prefilling:
    seq: Sequence
    end: float


class Deployment:
    """The emulated GPU deployment behind one endpoint (pure: no clock, no I/O)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.engine = EngineCore(profile.limits, profile.costs)
        self._ingress: list[tuple[float, int, Sequence]] = []
        self._prefill_queue: deque[Sequence] = deque()
        self._prefilling: _Prefilling | None = None
        self._order = 0

    @property
    def num_running(self) -> int:
        return len(self.engine.running)

    @property
    def num_waiting(self) -> int:
        """Requests queued for the engine or for the prefill server (not those still in ingress)."""
        return len(self.engine.waiting) + len(self._prefill_queue) + (1 if self._prefilling else 0)

    def submit(self, seq: Sequence, now: float) -> None:
        """A request reached the front door at `now`."""
        self._order += 1
        seq.submitted_at = now
        heapq.heappush(self._ingress, (now + self.profile.ingress_s, self._order, seq))

    def cancel(self, seq: Sequence, now: float) -> None:
        """Forget `seq` wherever it is (the client disconnected at `now`)."""
        seq.cancelled = True
        if self._prefilling is not None and self._prefilling.seq is seq:
            self._prefilling = None
            self._start_prefill(now)
        elif seq in self._prefill_queue:
            self._prefill_queue.remove(seq)
        self.engine.cancel(seq)

    def next_event_time(self) -> float | None:
        """When the next state change happens, or None when the deployment is idle."""
        times = []
        if self._ingress:
            times.append(self._ingress[0][0])
        if self._prefilling is not None:
            times.append(self._prefilling.end)
        if self.engine.current is not None:
            times.append(self.engine.current.end)
        return min(times) if times else None

    def advance(self, now: float) -> list[StepResult]:
        """Process every event due by `now`, in time order; returns the engine steps that finished."""
        results: list[StepResult] = []
        while True:
            when = self.next_event_time()
            if when is None or when > now:
                return results
            self._process(when, results)

    def _process(self, when: float, results: list[StepResult]) -> None:
        """Apply everything scheduled at exactly `when`, then start whatever can start."""
        while self._ingress and self._ingress[0][0] <= when:
            _, _, seq = heapq.heappop(self._ingress)
            if seq.cancelled:
                continue
            seq.arrived_at = when
            if self.profile.prefill_stage is None:
                self.engine.add(seq)
            else:
                self._prefill_queue.append(seq)
        if self._prefilling is not None and self._prefilling.end <= when:
            seq = self._prefilling.seq
            self._prefilling = None
            # The KV of the prompt arrives with it; the decode engine samples the first token.
            seq.computed = seq.prompt_tokens - 1
            self.engine.add(seq)
        engine_step = self.engine.current
        if engine_step is not None and engine_step.end <= when:
            results.append(self.engine.finish_step())
        self._start_prefill(when)
        if self.engine.current is None and self.engine.has_work:
            self.engine.start_step(when)

    def _start_prefill(self, now: float) -> None:
        stage = self.profile.prefill_stage
        if stage is None or self._prefilling is not None:
            return
        while self._prefill_queue:
            seq = self._prefill_queue.popleft()
            if seq.cancelled:
                continue
            if seq.scheduled_at is None:
                seq.scheduled_at = now
            self._prefilling = _Prefilling(seq, now + prefill_service_time(stage, seq.prompt_tokens))
            return
