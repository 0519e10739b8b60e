"""The agent asked once, start to end: what `/mcp`'s `ask` tool runs.

A question goes through the same run machinery as `POST /api/conversations/{id}/messages`: the run is
started, stored and recorded exactly like one the browser starts, and its event log is followed to its
`run.finished`. The answer is the run's last assistant message with the sources its tools cited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.auth import AuthUser
from app.errors import ChatstackError, InvalidRequest
from app.replica_client import Hop
from app.run_manager import RunManager
from app.store import Store
from protocol.run_events import MessageCompleted, RunError, RunFinished, Source, ToolFinished

TITLE_CHARS = 60
"""A new conversation's title: the question's start (the browser's chats are titled the same way)."""


class AskFailed(Exception):
    """The question could not be answered; the message says why, for the MCP client's user."""


@dataclass(slots=True)
class Answer:
    conversation_id: str
    run_id: str
    backend: str
    text: str = ""
    status: str = ""
    sources: list[Source] = field(default_factory=list)
    error: RunError | None = None


async def ask(
    runs: RunManager,
    store: Store,
    user: AuthUser,
    question: str,
    *,
    conversation_id: str | None,
    backend: str | None,
    hop: Hop,
) -> Answer:
    """Answer `question` for `user` in `conversation_id` (a new conversation if None) on `backend`.

    Raises `AskFailed` when the run cannot start (unknown conversation or backend, an answer already
    running, a budget or run limit reached); a run that starts and then fails returns its `Answer`
    with `error` set."""
    question = question.strip()
    if not question:
        raise AskFailed("the question is empty")
    try:
        if len(question) > runs.settings.max_message_chars:
            raise InvalidRequest(
                f"the question is {len(question)} characters; the limit is {runs.settings.max_message_chars}"
            )
        if conversation_id is None:
            title = question.splitlines()[0][:TITLE_CHARS]
            conversation_id = (await store.create_conversation(user.id, title, None)).id
        # Nobody could approve a tool call of this run: it is offered only tools that need no approval.
        run_id, _, chosen = await runs.start(conversation_id, user.id, question, backend, allow_ask=False)
    except ChatstackError as exc:
        raise AskFailed(exc.message) from exc
    answer = Answer(conversation_id, run_id, chosen)
    await _follow(runs, answer, hop)
    return answer


async def _follow(runs: RunManager, answer: Answer, hop: Hop) -> None:
    """Read the run's events to its end into `answer`."""
    seen: set[str] = set()
    async for record in runs.events(answer.run_id, 0, hop):
        event = record.parsed()
        if isinstance(event, MessageCompleted):
            answer.text = event.content
        elif isinstance(event, ToolFinished):
            for source in event.sources:
                if source.url not in seen:
                    seen.add(source.url)
                    answer.sources.append(source)
        elif isinstance(event, RunError):
            answer.error = event
        elif isinstance(event, RunFinished):
            answer.status = event.status
