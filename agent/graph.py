"""The ReAct graph: model -> (tools -> model)* -> end, with an explicit step limit."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.context import AgentContext
from agent.messages import ChatMessage
from agent.nodes import call_model, call_tools, route_after_model, route_after_tools, route_start
from agent.state import AgentState, Outcome


@cache
def build_graph() -> CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState]:
    """The compiled agent graph. It holds no run data, so one instance serves every run."""
    graph = StateGraph(AgentState, context_schema=AgentContext)
    graph.add_node("model", call_model)
    graph.add_node("tools", call_tools)
    graph.add_conditional_edges(START, route_start, ["model", "tools"])
    graph.add_conditional_edges("model", route_after_model, ["tools", END])
    graph.add_conditional_edges("tools", route_after_tools, ["model", END])
    return graph.compile(name="chatstack-agent")


@dataclass(frozen=True, slots=True)
class AgentResult:
    outcome: Outcome
    steps: int
    messages: list[ChatMessage]
    """Only the messages this run added."""

    @property
    def answer(self) -> str:
        for message in reversed(self.messages):
            if message["role"] == "assistant":
                return str(message.get("content") or "")
        return ""


async def run_agent(
    context: AgentContext, history: list[ChatMessage], *, resume: bool = False, steps: int = 0
) -> AgentResult:
    """Run the agent on `history` (ending with the user's message) until it answers, runs out of
    steps, or stops before tool calls that wait for the user (outcome `awaiting_approval`).

    With `resume`, continue such a run: `history` ends with the calls that waited, still unanswered,
    `context.approvals.decisions` says what became of them, and `steps` counts the model calls the
    run made before it paused."""
    initial: AgentState = {
        "messages": history,
        "steps": steps,
        "outcome": "awaiting_approval" if resume else "running",
        "failed_rounds": 0,
        "last_round_failed": False,
    }
    # Each step is two graph super-steps (model, tools); the limit is enforced by the model node,
    # so this recursion limit only guards against a routing bug.
    limit = 2 * context.max_steps + 4
    final = await build_graph().ainvoke(initial, context=context, config={"recursion_limit": limit})
    return AgentResult(
        outcome=final["outcome"], steps=final["steps"], messages=final["messages"][len(history) :]
    )
