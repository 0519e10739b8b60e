"""The task set's answer checker: the embedded model's accuracy is only as honest as this."""

from __future__ import annotations

import pytest

from tests.local.tasks import TASKS, Task, is_correct

CALC = Task("What is 1234 * 5678?", ("7006652",), "calculator")
PAINT = Task("Which color do you get by mixing blue and yellow paint?", ("green",), "none")


@pytest.mark.parametrize(
    ("task", "answer", "correct"),
    [
        (CALC, "1234 * 5678 = 7,006,652.", True),
        (CALC, "The result is 3949.71.", False),
        (CALC, '{"name": "calculator", "arguments": {"expression": "1234*5678"}}', False),
        (CALC, "The calculator returned an error, but 7006652 is my guess.", False),
        (PAINT, "Mixing blue and yellow paint gives green.", True),
        (PAINT, "The calculator did not recognize 'blue'; try 'red', 'green' or 'blue'.", False),
        (PAINT, "", False),
    ],
)
def test_answers_are_judged_on_substance(task: Task, answer: str, correct: bool) -> None:
    assert is_correct(task, answer) is correct


def test_every_task_has_an_expected_answer() -> None:
    assert len(TASKS) >= 12
    assert {t.kind for t in TASKS} == {"calculator", "search", "none"}
    assert all(t.expected for t in TASKS)


def test_the_bench_task_file_is_this_task_set() -> None:
    from pathlib import Path

    from bench.datasets.agent_tasks import load_tasks

    tools = {"calculator": ["calculator"], "search": ["web_search"], "none": []}
    bench = load_tasks("embedded", Path(__file__).with_name("embedded_tasks.yaml"))
    assert [(t.prompt, t.tools, t.answer) for t in bench] == [
        (t.prompt, tools[t.kind], t.expected[0]) for t in TASKS
    ]


@pytest.mark.parametrize(
    ("tools", "called", "answer", "prose"),
    [
        (["calculator"], ["calculator"], "1234 * 5678 = 7006652", False),
        (["calculator"], [], "17% of 2350: 0.17 * 2350 = 399.5", True),
        (["calculator"], [], "I cannot compute that.", False),  # no number given: a miss, not prose maths
        (["web_search"], [], "Velmora has 48,213 people.", None),  # not a calculator task
    ],
)
def test_prose_arithmetic_is_a_calculator_task_answered_without_it(
    tools: list[str], called: list[str], answer: str, prose: bool | None
) -> None:
    from bench.datasets.agent_tasks import AgentTask, prose_arithmetic

    task = AgentTask(id="t", prompt="q", tools=tools, answer=None)
    assert prose_arithmetic(task, called, answer) is prose
