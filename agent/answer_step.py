"""The answer step: how a model that cannot write its final answer after tool results is helped to.

Some small models, shown their tool call and its result, only repeat the call. Two request shapes
make them answer (measured on Qwen2.5-Coder-0.5B, see docs/embedded-model.md): a closing user turn
asking for the answer (`nudge`), or a fresh user turn with the question and results as text (`inline`).
Either way the call is made without tools, so the run ends after one tool round on such backends.
"""

from __future__ import annotations

from agent import prompts
from agent.messages import ChatMessage, tool_calls_of
from tools.base import is_error_result


def after_tool_results(history: list[ChatMessage]) -> bool:
    return bool(history) and history[-1]["role"] == "tool"


def current_turn_start(history: list[ChatMessage]) -> int:
    """Index of the user message the current run answers."""
    for index in range(len(history) - 1, -1, -1):
        if history[index]["role"] == "user":
            return index
    return 0


def nudge(history: list[ChatMessage]) -> list[ChatMessage]:
    return [*history, {"role": "user", "content": prompts.ANSWER_NUDGE}]


def inline(history: list[ChatMessage]) -> list[ChatMessage]:
    """Earlier turns as they were, then the question and this turn's tool results as one user message.

    Failed calls are left out: shown an error, a small model explains the error instead of answering.
    """
    start = current_turn_start(history)
    question = str(history[start].get("content") or "")
    names: dict[str, tuple[str, str]] = {}
    results: list[str] = []
    for message in history[start + 1 :]:
        if message["role"] == "assistant":
            for call in tool_calls_of(message):
                names[call.id] = (call.name, call.arguments)
        elif message["role"] == "tool" and not is_error_result(str(message.get("content") or "")):
            name, arguments = names.get(
                str(message.get("tool_call_id")), (str(message.get("name") or "tool"), "")
            )
            results.append(
                prompts.ANSWER_INLINE_RESULT.format(
                    name=name, arguments=arguments, content=message.get("content", "")
                )
            )
    content = (
        prompts.ANSWER_INLINE.format(question=question, results="\n".join(results))
        if results
        else prompts.ANSWER_INLINE_NO_RESULTS.format(question=question)
    )
    return [*history[:start], {"role": "user", "content": content}]
