"""A vLLM-style engine core without a GPU: continuous batching, chunked prefill, paged KV admission.

It is a pure state machine over emulated time: `start_step(now)` decides what the next iteration
computes (as vLLM V1's scheduler does) and how long it takes; `finish_step()` applies it and says
which sequences got a token. Nothing here sleeps or knows about HTTP, so the same core runs in real
time behind the server and in virtual time for calibration and tests.

Scheduling, simplified from vLLM V1: running sequences first (one token each when decoding, a chunk
when prefilling), then waiting sequences in arrival order while the token budget, `max_num_seqs`
and free KV blocks allow. When a running sequence cannot get a block, the most recently admitted
one is preempted: its blocks are freed and it goes back to the head of the queue, to recompute.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from backends.emulator.profiles import EngineLimits
from backends.emulator.timing import StepCosts, blocks_for, step_duration


@dataclass(slots=True, eq=False)
class Sequence:
    """One request inside the engine; times are emulated seconds."""

    seq_id: int
    prompt_tokens: int
    output_tokens: int
    """How many tokens this request will generate (the emulator knows its answer up front)."""
    computed: int = 0
    """Tokens whose KV is in the cache (prefill progress, then one more per decode step)."""
    generated: int = 0
    blocks: int = 0
    submitted_at: float = 0.0
    """When the request reached the deployment's front door (before ingress)."""
    arrived_at: float = 0.0
    """When the request reached the engine's front end (after ingress), as vLLM's metrics count it."""
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    cancelled: bool = False
    preemptions: int = 0

    @property
    def context(self) -> int:
        return self.prompt_tokens + self.generated

    @property
    def pending(self) -> int:
        """Tokens to compute before the next token can be sampled."""
        return self.context - self.computed

    @property
    def done(self) -> bool:
        return self.generated >= self.output_tokens


@dataclass(slots=True)
class Step:
    """One planned engine iteration."""

    start: float
    end: float
    work: list[tuple[Sequence, int]]
    decode_seqs: int
    prefill_tokens: int


@dataclass(slots=True)
class StepResult:
    """What one finished iteration produced."""

    time: float
    tokens: list[Sequence] = field(default_factory=list)
    """Sequences that sampled one new token in this step (their fields may have moved on since)."""
    first_tokens: list[Sequence] = field(default_factory=list)
    """The subset whose token was their first."""
    itls: list[float] = field(default_factory=list)
    """Inter-token latency of every other token, captured when it was sampled."""
    finished: list[Sequence] = field(default_factory=list)
    prefill_tokens: int = 0
    decode_seqs: int = 0
    preempted: int = 0


class EngineCore:
    """The scheduler and KV-cache bookkeeping of one engine (one vLLM instance)."""

    def __init__(self, limits: EngineLimits, costs: StepCosts) -> None:
        self.limits = limits
        self.costs = costs
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.free_blocks = limits.kv_blocks
        self.current: Step | None = None
        self._preempted_in_step = 0

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (vLLM's `kv_cache_usage_perc`, 0-1)."""
        total = self.limits.kv_blocks
        return (total - self.free_blocks) / total if total else 0.0

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def add(self, seq: Sequence) -> None:
        """Queue `seq` for scheduling; it can join the next step that starts."""
        self.waiting.append(seq)

    def cancel(self, seq: Sequence) -> None:
        """Drop `seq` wherever it is, freeing its KV blocks (a client went away)."""
        seq.cancelled = True
        if seq in self.running:
            self.running.remove(seq)
            self._free(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def start_step(self, now: float) -> Step | None:
        """Plan the next iteration at `now`; None when there is nothing to compute."""
        if self.current is not None:
            raise RuntimeError("a step is already running")
        self._preempted_in_step = 0
        budget = self.limits.max_num_batched_tokens
        work: list[tuple[Sequence, int]] = []
        decode_seqs = prefill_tokens = 0

        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            tokens = min(seq.pending, budget)
            decoding = seq.pending == 1
            if not self._reserve(seq, tokens):
                continue  # `seq` itself was preempted; the list shifted under `index`
            work.append((seq, tokens))
            budget -= tokens
            if decoding:
                decode_seqs += 1
            else:
                prefill_tokens += tokens
            index += 1

        # As in vLLM, nothing new is admitted in a step that had to preempt.
        while (
            self.waiting
            and not self._preempted_in_step
            and budget > 0
            and len(self.running) < self.limits.max_num_seqs
        ):
            seq = self.waiting[0]
            tokens = min(seq.pending, budget)
            needed = blocks_for(seq.computed + tokens, self.limits.block_size) - seq.blocks
            if needed > self.free_blocks:
                break  # first come, first served: later arrivals do not overtake
            self.waiting.popleft()
            self.free_blocks -= needed
            seq.blocks += needed
            if seq.scheduled_at is None:
                seq.scheduled_at = now
            self.running.append(seq)
            work.append((seq, tokens))
            budget -= tokens
            if seq.pending == 1:
                decode_seqs += 1  # arrived with its prompt already prefilled (P/D)
            else:
                prefill_tokens += tokens

        if not work:
            return None
        duration = step_duration(self.costs, decode_seqs, prefill_tokens)
        self.current = Step(now, now + duration, work, decode_seqs, prefill_tokens)
        return self.current

    def finish_step(self) -> StepResult:
        """Apply the running step: advance prefill, sample tokens, retire finished sequences."""
        step = self.current
        if step is None:
            raise RuntimeError("no step is running")
        self.current = None
        result = StepResult(
            step.end,
            prefill_tokens=step.prefill_tokens,
            decode_seqs=step.decode_seqs,
            preempted=self._preempted_in_step,
        )
        for seq, tokens in step.work:
            if seq.cancelled or seq.finished_at is not None:
                continue
            seq.computed += tokens
            if seq.computed < seq.context:
                continue  # a chunk of a longer prefill: no token yet
            seq.generated += 1
            if seq.first_token_at is None:
                seq.first_token_at = step.end
                result.first_tokens.append(seq)
            else:
                result.itls.append(step.end - (seq.last_token_at or step.end))
            seq.last_token_at = step.end
            result.tokens.append(seq)
            if seq.done:
                seq.finished_at = step.end
                result.finished.append(seq)
        if result.finished:
            done = {id(seq) for seq in result.finished}
            self.running = [seq for seq in self.running if id(seq) not in done]
            for seq in result.finished:
                self._free(seq)
        return result

    def _reserve(self, seq: Sequence, tokens: int) -> bool:
        """Make room for `seq` to compute `tokens` more; False if `seq` had to be preempted."""
        needed = blocks_for(seq.computed + tokens, self.limits.block_size) - seq.blocks
        while needed > self.free_blocks:
            victim = self.running[-1]
            self._preempt(victim)
            if victim is seq:
                return False
        self.free_blocks -= needed
        seq.blocks += needed
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self._free(seq)
        seq.computed = 0  # recompute: prompt and generated tokens are prefilled again
        seq.preemptions += 1
        self._preempted_in_step += 1
        self.waiting.appendleft(seq)

    def _free(self, seq: Sequence) -> None:
        self.free_blocks += seq.blocks
        seq.blocks = 0
