"""An OpenAI-compatible endpoint (vLLM, Ray Serve, chatstack's /v1, nginx in front of any of them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.clients.clock import now
from bench.clients.exchange import Exchange, Request
from bench.clients.openai_chat import chat_request, read_chat_stream
from bench.metrics import Slo
from bench.phases import LevelPlan
from bench.records import RequestRecord
from bench.summary import GeneratorHealth, LevelSummary, summarize_requests
from bench.targets.base import EngineTarget, Prepared

Result = tuple[int, float, float, Exchange]


class OpenAITarget(EngineTarget):
    """Streams chat completions; each request is encoded before its level starts."""

    kind = "openai"

    async def prepare(self, plan: LevelPlan) -> Prepared[RequestRecord]:
        config, engine = self.config, self.engine
        requests: list[Request] = []
        for prompt in plan.prompts:
            request = chat_request(
                model=config.model or "",
                prompt=prompt.text,
                max_tokens=config.max_tokens or prompt.output_tokens,
                api_key=config.api_key,
                ignore_eos=config.ignore_eos,
            )
            request.wire(engine.origin)  # encode now, not on the clock
            requests.append(request)
        expected_concurrency = plan.concurrency or int((plan.level or 1) * 2) + 4
        warm = getattr(engine, "warm", None)
        if warm is not None:
            await warm(min(expected_concurrency, 1024))
        timeout = config.timeout_s

        def launch(index: int, intended_at: float, done: Callable[[Result], None]) -> None:
            dispatched = now()
            engine.start(
                requests[index], lambda exchange: done((index, intended_at, dispatched, exchange)), timeout
            )

        def finish(results: list[Any]) -> list[RequestRecord]:
            return [self._record(plan, result) for result in results]

        return Prepared(launch, finish)

    def _record(self, plan: LevelPlan, result: Result) -> RequestRecord:
        index, intended_at, dispatched_at, exchange = result
        prompt = plan.prompts[index]
        outcome = read_chat_stream(exchange)
        return RequestRecord(
            index=index,
            phase=plan.phase,
            level=plan.level,
            intended_at=intended_at,
            dispatched_at=dispatched_at,
            sent_at=exchange.sent_at,
            token_times=outcome.token_times,
            last_at=outcome.last_data_at or 0.0,
            ended_at=exchange.ended_at,
            status=exchange.status,
            error=outcome.error,
            error_source=outcome.error_source,
            prompt_tokens=outcome.prompt_tokens,
            output_tokens=outcome.output_tokens,
            token_source=outcome.token_source,
            expected_prompt_tokens=prompt.prompt_tokens,
            max_tokens=self.config.max_tokens or prompt.output_tokens,
            output_chars=len(outcome.text),
            clock=exchange.clock,
        )

    def summarize(
        self, plan: LevelPlan, records: Sequence[RequestRecord], health: GeneratorHealth, slo: Slo
    ) -> LevelSummary:
        return summarize_requests(plan.phase, plan.level, records, health, slo)
