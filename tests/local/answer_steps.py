"""Measure the answer-step policies (none, nudge, inline) on a running engine with the task set.

Runs chatstack's own agent in this process (the same graph, prompts, tools and message shapes that
`chatstack serve` uses) against an OpenAI-compatible engine, with web search answered by the canned
search server, and prints how many tasks end with a correct final answer under each policy:

    .venv/bin/python -m tests.local.answer_steps --base-url http://127.0.0.1:8001/v1 \
        --model qwen2.5-coder-0.5b-instruct --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import get_args

from agent.context import AgentContext
from agent.events import AgentEvent
from agent.graph import run_agent
from agent.model import BackendChatModel
from agent.prompts import SYSTEM_PROMPT
from backends.client.config import AnswerStep, BackendConfig
from backends.client.errors import BackendError
from backends.client.http_client import BackendClient, new_http_session
from tests.local.canned_search import canned_search_server
from tests.local.tasks import TASKS, Task, is_correct
from tools import Calculator, Tool, WebSearch, build_search_provider


@dataclass(frozen=True)
class Outcome:
    policy: str
    prompt: str
    kind: str
    correct: bool
    steps: int
    seconds: float
    answer: str


async def _ignore(_: AgentEvent) -> None:
    pass


async def run_task(
    client: BackendClient,
    tools: dict[str, Tool],
    task: Task,
    policy: AnswerStep,
    temperature: float | None = None,
) -> Outcome:
    context = AgentContext(
        model=BackendChatModel(client, temperature=temperature),
        tool_mode="native",
        tools=tools,
        emit=_ignore,
        system_prompt=SYSTEM_PROMPT,
        max_steps=6,
        answer_step=policy,
    )
    started = time.monotonic()
    try:
        result = await run_agent(context, [{"role": "user", "content": task.prompt}])
    except BackendError as exc:  # counts as a wrong answer, and the other runs go on
        return Outcome(policy, task.prompt, task.kind, False, 0, time.monotonic() - started, f"ERROR {exc}")
    return Outcome(
        policy,
        task.prompt,
        task.kind,
        is_correct(task, result.answer),
        result.steps,
        round(time.monotonic() - started, 2),
        result.answer,
    )


async def measure(
    base_url: str,
    model: str,
    policies: list[AnswerStep],
    repeats: int,
    concurrency: int,
    temperature: float | None = None,
) -> list[Outcome]:
    """Every task `repeats` times under every policy, `concurrency` runs at a time."""
    with canned_search_server() as (search_url, _):
        session = new_http_session()
        try:
            search = WebSearch(build_search_provider("searxng", searxng_url=search_url), timeout_s=20)
            tools: dict[str, Tool] = {"calculator": Calculator(), "web_search": search}
            gate = asyncio.Semaphore(concurrency)

            async def one(task: Task, policy: AnswerStep) -> Outcome:
                config = BackendConfig(name="local", base_url=base_url, model=model, answer_step=policy)
                async with gate:
                    return await run_task(BackendClient(config, session), tools, task, policy, temperature)

            jobs = [one(t, p) for _ in range(repeats) for p in policies for t in TASKS]
            return list(await asyncio.gather(*jobs))
        finally:
            await session.close()


def summarise(outcomes: list[Outcome]) -> dict[str, dict[str, str]]:
    """`{policy: {kind: "correct/total", "all": ...}}`."""
    table: dict[str, dict[str, str]] = {}
    for policy in dict.fromkeys(o.policy for o in outcomes):
        mine = [o for o in outcomes if o.policy == policy]
        row = {}
        for kind in ("calculator", "search", "none"):
            group = [o for o in mine if o.kind == kind]
            row[kind] = f"{sum(o.correct for o in group)}/{len(group)}"
        row["all"] = f"{sum(o.correct for o in mine)}/{len(mine)}"
        row["mean_s"] = f"{sum(o.seconds for o in mine) / len(mine):.1f}"
        table[policy] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure answer-step policies on a running engine.")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--policies", default="none,nudge,inline")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--temperature", type=float, help="default: the engine's generation config")
    parser.add_argument("--json", help="write every outcome to this file")
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p in get_args(AnswerStep)]
    outcomes = asyncio.run(
        measure(args.base_url, args.model, policies, args.repeats, args.concurrency, args.temperature)
    )
    for outcome in outcomes:
        if not outcome.correct:
            print(f"WRONG [{outcome.policy}] {outcome.prompt!r}: {outcome.answer[:160]!r}")
    print(json.dumps(summarise(outcomes), indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([asdict(o) for o in outcomes], out, indent=2)


if __name__ == "__main__":
    main()
