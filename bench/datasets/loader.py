"""Turn the configuration's dataset choice into prompts (and, for agent runs, tasks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.clients.engines import open_engine
from bench.config import BenchConfig
from bench.datasets.agent_tasks import AgentTask, load_tasks
from bench.datasets.prompts import Prompt
from bench.datasets.sharegpt import sample_sharegpt
from bench.datasets.synthetic import fixed_prompts, random_prompts
from bench.datasets.tokens import pick_counter


@dataclass(slots=True)
class Workload:
    prompts: list[Prompt]
    tasks: list[AgentTask] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def server_root(base_url: str) -> str:
    """`http://host:8000/v1` → `http://host:8000` (where vLLM serves `/tokenize`)."""
    trimmed = base_url.rstrip("/")
    return trimmed[: -len("/v1")] if trimmed.endswith("/v1") else trimmed


async def load_workload(config: BenchConfig) -> Workload:
    """The prompts the run sends, with a description of where they came from."""
    n = config.num_prompts
    if config.dataset == "agent":
        tasks = load_tasks(config.task_set, config.tasks_file)
        prompts = [Prompt(task.id, task.prompt) for task in tasks]
        return Workload(
            prompts, tasks, {"dataset": "agent", "task_set": config.task_set, "tasks": len(tasks)}
        )
    if config.dataset == "fixed":
        prompts = fixed_prompts(n, config.input_tokens, config.output_tokens, config.seed)
        return Workload(
            prompts,
            info={
                "dataset": "fixed",
                "input_tokens": config.input_tokens,
                "output_tokens": config.output_tokens,
                "prompts": n,
            },
        )
    if config.dataset == "random":
        prompts = random_prompts(
            n, config.input_tokens, config.output_tokens, config.seed, config.random_range_ratio
        )
        return Workload(
            prompts,
            info={
                "dataset": "random",
                "input_tokens": config.input_tokens,
                "output_tokens": config.output_tokens,
                "range_ratio": config.random_range_ratio,
                "prompts": n,
            },
        )
    # The target's own tokenizer (vLLM's /tokenize) is asked over HTTP, so the engine lives as long
    # as the sampling does.
    engine = await open_engine(server_root(config.base_url), "aiohttp") if config.mode == "openai" else None
    try:
        counter = await pick_counter(config.tokenizer, engine, config.model if engine else None)
        prompts = await sample_sharegpt(
            counter, n, config.seed, config.sharegpt_min_tokens, config.sharegpt_max_tokens
        )
    finally:
        if engine is not None:
            await engine.close()
    return Workload(
        prompts,
        info={
            "dataset": "sharegpt",
            "tokenizer": counter.name,
            "prompts": len(prompts),
            "prompt_tokens": [config.sharegpt_min_tokens, config.sharegpt_max_tokens],
        },
    )
