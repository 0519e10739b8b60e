"""Per-request records: raw monotonic timestamps, kept as measured; metrics are derived from them later."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    """One OpenAI-compatible request. Times are `time.monotonic()` seconds.

    `intended_at` is when the schedule wanted the request to start: for the open loop its arrival
    time, for closed loops the moment a worker became free. Latencies count from it, so a bench that
    falls behind its own schedule shows as latency (no coordinated omission) and as `dispatch_lag`.
    """

    index: int
    phase: str
    level: float
    intended_at: float
    dispatched_at: float = 0.0
    sent_at: float = 0.0
    token_times: list[float] = field(default_factory=list)
    last_at: float = 0.0
    ended_at: float = 0.0
    status: int = 0
    error: str | None = None
    error_source: str | None = None
    """`server` or `transport` for a failure: see `StreamOutcome.error_source`."""
    prompt_tokens: int | None = None
    output_tokens: int = 0
    token_source: str = "chunks"
    expected_prompt_tokens: int | None = None
    max_tokens: int | None = None
    output_chars: int = 0
    clock: str = "user"

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def dispatch_lag(self) -> float:
        return self.dispatched_at - self.intended_at

    def to_json(self, origin: float) -> dict[str, Any]:
        """A JSON-ready dict with times in milliseconds relative to `origin`."""
        data = asdict(self)

        def rel(t: float) -> float | None:
            return round((t - origin) * 1000, 3) if t else None

        for key in ("intended_at", "dispatched_at", "sent_at", "last_at", "ended_at"):
            data[key + "_ms"] = rel(data.pop(key))
        data["token_times_ms"] = [rel(t) for t in data.pop("token_times")]
        return data


@dataclass(slots=True)
class AgentRecord:
    """One agent run over chatstack's SSE API (create conversation, post message, follow events)."""

    index: int
    phase: str
    level: float
    intended_at: float
    task_id: str = ""
    dispatched_at: float = 0.0
    run_started_at: float = 0.0
    """When the message POST was sent (the run's clock starts here; conversation creation is excluded)."""
    first_event_at: float = 0.0
    first_answer_token_at: float = 0.0
    first_token_at: float = 0.0
    finished_at: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    tool_names: list[str] = field(default_factory=list)
    llm_s: float = 0.0
    tools_s: float = 0.0
    tools_by_server: dict[str, float] = field(default_factory=dict)
    """Of `tools_s`, the seconds in each tool server's calls: `builtin`, or an MCP server's name."""
    tool_calls_by_server: dict[str, int] = field(default_factory=dict)
    approval_wait_s: float = 0.0
    """Time the run waited for the user to approve or deny tool calls (neither tools' nor chatstack's)."""
    approvals: int = 0
    status: str = ""
    error: str | None = None
    error_source: str | None = None
    """`server` or `transport` for a failure (see `RequestRecord.error_source`); None if unknown."""
    answer: str = ""
    prompt_tokens: int | None = None
    output_tokens: int = 0
    server_timings: dict[str, Any] = field(default_factory=dict)
    tool_valid: bool | None = None
    answer_correct: bool | None = None
    prose_arithmetic: bool | None = None
    """A calculator task answered with numbers but no calculator call (see `agent_tasks.prose_arithmetic`)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_s(self) -> float:
        return self.finished_at - self.intended_at if self.finished_at else 0.0

    @property
    def overhead_s(self) -> float:
        """Time that was neither the model's, a tool's nor the user's (approving a call): chatstack
        itself (and the network)."""
        return max(0.0, self.total_s - self.llm_s - self.tools_s - self.approval_wait_s)

    def to_json(self, origin: float) -> dict[str, Any]:
        data = asdict(self)
        for key in (
            "intended_at",
            "dispatched_at",
            "run_started_at",
            "first_event_at",
            "first_answer_token_at",
            "first_token_at",
            "finished_at",
        ):
            value = data.pop(key)
            data[key + "_ms"] = round((value - origin) * 1000, 3) if value else None
        data["llm_ms"] = round(data.pop("llm_s") * 1000, 3)
        data["tools_ms"] = round(data.pop("tools_s") * 1000, 3)
        data["tools_by_server_ms"] = {k: round(v * 1000, 3) for k, v in data.pop("tools_by_server").items()}
        data["approval_wait_ms"] = round(data.pop("approval_wait_s") * 1000, 3)
        data["overhead_ms"] = round(self.overhead_s * 1000, 3)
        return data
