"""The task set the embedded model must finish: calculator, search and no-tool questions, checkable answers.

Search questions ask about made-up facts that only the canned search server knows, so a right answer
shows the model used the tool result rather than its memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from backends.local.tool_call_text import scan_tool_calls

TaskKind = Literal["calculator", "search", "none"]


@dataclass(frozen=True, slots=True)
class Task:
    prompt: str
    expected: tuple[str, ...]
    """The answer is correct when it contains any of these (compared lowercased, digit groups joined)."""
    kind: TaskKind


@dataclass(frozen=True, slots=True)
class CannedResult:
    keyword: str
    """A query containing this word (lowercased) gets this result."""
    title: str
    url: str
    content: str


CANNED_RESULTS = (
    CannedResult(
        "regatta",
        "Lunar Regatta 2031: results",
        "https://sailing.example.org/lunar-regatta-2031",
        "The 2031 Lunar Regatta was won by the team Silver Kestrel, ahead of Blue Marlin.",
    ),
    CannedResult(
        "velmora",
        "Velmora (town) - Encyclopedia",
        "https://encyclopedia.example.org/velmora",
        "Velmora is a small river town. At the last census Velmora had a population of 48,213.",
    ),
    CannedResult(
        "zentro",
        "Zentro OS 7 announced",
        "https://news.example.org/zentro-os-7",
        'Zentro OS 7, codenamed "Quiet Falcon", ships next spring with a new file system.',
    ),
)

TASKS = (
    Task("What is 1234 * 5678?", ("7006652",), "calculator"),
    Task("Use the calculator to compute 2 to the power of 20.", ("1048576",), "calculator"),
    Task("What is 98765 + 43210? Use the calculator.", ("141975",), "calculator"),
    Task("What is 17% of 2350? Use the calculator.", ("399.5",), "calculator"),
    Task("Search the web: which team won the 2031 Lunar Regatta?", ("kestrel",), "search"),
    Task("Use web search to find the population of the town of Velmora.", ("48213",), "search"),
    Task("Search the web for the codename of Zentro OS 7.", ("quiet falcon",), "search"),
    Task("What is the capital of France?", ("paris",), "none"),
    Task("What is the chemical symbol for gold?", ("au",), "none"),
    Task("Which color do you get by mixing blue and yellow paint?", ("green",), "none"),
    Task("How do you say 'thank you' in Spanish?", ("gracias",), "none"),
    Task(
        "Write a Python function named square that returns the square of a number.", ("def square",), "none"
    ),
)


def normalise(text: str) -> str:
    """Lowercase, with digit groups joined (7,006,652 -> 7006652) so formatting does not matter."""
    return re.sub(r"(?<=\d)[,\u202f ](?=\d{3}\b)", "", text.lower())


def is_correct(task: Task, answer: str) -> bool:
    """A final answer in words (not a leftover tool call) that contains the expected fact, and does not
    talk about tool errors, or about tools at all when the question needs none (a small model that
    called a tool by mistake may ramble about it and still mention the expected word in passing)."""
    if not answer.strip() or scan_tool_calls(answer, None, final=True).calls:
        return False
    text = normalise(answer)
    if re.search(r"\berrors?\b", text):
        return False
    if task.kind == "none" and re.search(r"calculator|web[ _]search", text):
        return False
    if task.expected == ("au",):
        return re.search(r"\bau\b", text) is not None
    return any(expected in text for expected in task.expected)
