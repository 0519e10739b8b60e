"""chatstack's agent runs over its SSE API: conversations made before the clock, one run per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.clients import agent_runs
from bench.clients.clock import now
from bench.clients.exchange import Exchange
from bench.config import BenchConfig
from bench.datasets.agent_tasks import AgentTask, answer_correct, prose_arithmetic, tools_valid
from bench.metrics import Slo
from bench.phases import LevelPlan
from bench.records import AgentRecord
from bench.summary import GeneratorHealth, LevelSummary, summarize_agent_runs
from bench.targets.base import EngineTarget, Prepared


@dataclass(slots=True)
class _Outcome:
    index: int
    intended_at: float
    dispatched_at: float
    posted_at: float = 0.0
    events: Exchange | None = None
    error: str | None = None


class AgentTarget(EngineTarget):
    """Runs the agent: POST a message to a fresh conversation, follow its events to `run.finished`."""

    kind = "agent"

    def __init__(self, config: BenchConfig, tasks: Sequence[AgentTask] = ()) -> None:
        super().__init__(config)
        self.tasks = {task.id: task for task in tasks}
        self._tasks_running: set[asyncio.Task[None]] = set()
        self._conversations: list[str] = []

    async def close(self) -> None:
        await self._delete_conversations()
        await super().close()

    async def _create_conversations(self, count: int) -> list[str]:
        gate = asyncio.Semaphore(8)
        request = agent_runs.conversation_request(self.config.backend, self.config.api_key)

        async def one() -> str:
            async with gate:
                exchange = await self.engine.fetch(request, 30)
            return str(agent_runs.json_body(exchange)["id"])

        ids = list(await asyncio.gather(*(one() for _ in range(count))))
        self._conversations += ids
        return ids

    async def _delete_conversations(self) -> None:
        if self._engine is None or not self._conversations:
            return
        gate = asyncio.Semaphore(8)

        async def one(conversation_id: str) -> None:
            async with gate:
                await self.engine.fetch(agent_runs.delete_request(conversation_id, self.config.api_key), 30)

        await asyncio.gather(*(one(c) for c in self._conversations), return_exceptions=True)
        self._conversations = []

    async def prepare(self, plan: LevelPlan) -> Prepared[AgentRecord]:
        await self._delete_conversations()
        conversations = await self._create_conversations(len(plan.prompts))
        config, engine = self.config, self.engine
        messages = [
            agent_runs.message_request(cid, prompt.text, config.backend, config.api_key)
            for cid, prompt in zip(conversations, plan.prompts, strict=True)
        ]
        for message in messages:
            message.wire(engine.origin)

        async def run(outcome: _Outcome, done: Callable[[_Outcome], None]) -> None:
            try:
                outcome.posted_at = now()
                posted = await engine.fetch(messages[outcome.index], config.timeout_s)
                started = agent_runs.json_body(posted)
                events = agent_runs.events_request(str(started["events_url"]), config.api_key)
                outcome.events = await engine.fetch(events, config.timeout_s)
            except (ValueError, KeyError, OSError) as exc:
                outcome.error = str(exc)
            done(outcome)

        def launch(index: int, intended_at: float, done: Callable[[_Outcome], None]) -> None:
            task = asyncio.get_running_loop().create_task(run(_Outcome(index, intended_at, now()), done))
            self._tasks_running.add(task)
            task.add_done_callback(self._tasks_running.discard)

        def finish(results: list[Any]) -> list[AgentRecord]:
            return [self._record(plan, outcome) for outcome in results]

        return Prepared(launch, finish)

    def _record(self, plan: LevelPlan, outcome: _Outcome) -> AgentRecord:
        prompt = plan.prompts[outcome.index]
        record = AgentRecord(
            index=outcome.index,
            phase=plan.phase,
            level=plan.level,
            intended_at=outcome.intended_at,
            task_id=prompt.id,
            dispatched_at=outcome.dispatched_at,
            run_started_at=outcome.posted_at,
        )
        if outcome.events is None:
            record.error = outcome.error or "no event stream"
            return record
        timeline = agent_runs.read_run_events(outcome.events)
        record.first_event_at = timeline.first_event_at
        record.first_token_at = timeline.first_token_at
        record.first_answer_token_at = timeline.first_answer_token_at
        record.finished_at = timeline.finished_at
        record.llm_calls, record.tool_calls = timeline.llm_calls, timeline.tool_calls
        record.tool_names = timeline.tool_names
        record.llm_s, record.tools_s = timeline.llm_s, timeline.tools_s
        record.tools_by_server, record.tool_calls_by_server = (
            timeline.tools_by_server,
            timeline.tool_calls_by_server,
        )
        record.approval_wait_s, record.approvals = timeline.approval_wait_s, timeline.approvals
        record.status, record.error, record.answer = timeline.status, timeline.error, timeline.answer
        record.error_source = timeline.error_source
        record.prompt_tokens, record.output_tokens = timeline.prompt_tokens, timeline.output_tokens
        record.server_timings = timeline.server_timings
        task = self.tasks.get(prompt.id)
        if task is not None and record.ok:
            record.tool_valid = tools_valid(task, timeline.tool_names, timeline.failed_tool_calls)
            record.answer_correct = answer_correct(task, timeline.answer)
            record.prose_arithmetic = prose_arithmetic(task, timeline.tool_names, timeline.answer)
        return record

    def summarize(
        self, plan: LevelPlan, records: Sequence[AgentRecord], health: GeneratorHealth, slo: Slo
    ) -> LevelSummary:
        return summarize_agent_runs(plan.phase, plan.level, records, health)
