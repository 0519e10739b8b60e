"""The agent task set: questions with the tools they need and, where one exists, a checkable answer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

TASKS_FILE = Path(__file__).with_name("agent_tasks.yaml")
TaskSet = Literal["natural", "scripted"]


class AgentTask(BaseModel):
    """One task, as written in `agent_tasks.yaml` (or a file of the same shape)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    prompt: str
    tools: list[str] = Field(default_factory=list)
    answer: str | None = None


def load_tasks(task_set: str = "natural", path: Path | None = None) -> list[AgentTask]:
    """The tasks of one set (`natural` for real models, `scripted` for the scripted backend)."""
    data = yaml.safe_load((path or TASKS_FILE).read_text())
    if not isinstance(data, dict) or task_set not in data:
        raise ValueError(f"no task set {task_set!r} in {path or TASKS_FILE}")
    return [AgentTask.model_validate(item) for item in data[task_set]]


def _normalize(text: str) -> str:
    # "7,006,652" and "7 006 652" are the same number as "7006652".
    return re.sub(r"(?<=\d)[,\s](?=\d{3}\b)", "", text).lower()


def answer_correct(task: AgentTask, answer: str) -> bool | None:
    """Whether the answer contains the expected one; None when the task has nothing to check."""
    if task.answer is None:
        return None
    return _normalize(task.answer) in _normalize(answer)


def tools_valid(task: AgentTask, called: list[str], failed_calls: int) -> bool:
    """The agent called exactly the expected set of tools, and none of its calls was malformed."""
    return set(called) == set(task.tools) and failed_calls == 0


def prose_arithmetic(task: AgentTask, called: list[str], answer: str) -> bool | None:
    """For a task that needs the calculator: whether the answer gives numbers without the calculator having
    been called (the model did the arithmetic in prose, where small models go wrong); None otherwise."""
    if "calculator" not in task.tools:
        return None
    return "calculator" not in called and re.search(r"\d", answer) is not None
