"""A stored conversation as chat messages: questions, and each one's answer as its run left it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ui.api_models import Message, Run
from ui.attachments import message_chips_html
from ui.branches import anchor_html, answer_branches_item, mark_answer, question_tools_html
from ui.markdown import join_blocks, markdown_html
from ui.render import ChatItem, RunView, chat_item


@dataclass(slots=True)
class Turn:
    question: Message | None
    run_id: str | None
    """The run that wrote the answer shown for the question."""
    replies: list[Message] = field(default_factory=list)


def conversation_items(
    messages: Sequence[Message],
    runs: Sequence[Run],
    live_run_id: str | None,
    conversation_backend: str | None = None,
    servers: Mapping[str, str] | None = None,
    *,
    conversation_id: str = "",
    session_links: bool = False,
) -> list[ChatItem]:
    """The stored conversation as chat messages; the live run's replies are left to its event stream.

    `runs` are the conversation's run records, oldest first (outcome and timings of each answer);
    `conversation_backend` is the backend its answers are expected from (see `render.writers`);
    `servers` the server of each tool by name, for the tool steps. Questions carry their pencil,
    switchers and files (links through the session with `session_links`), answers their switcher.
    """
    by_id = {run.id: run for run in runs}
    items: list[ChatItem] = []
    for turn in turns(messages, [run.id for run in runs]):
        if turn.question is not None:
            items.append(question_item(turn.question, conversation_id, session_links))
        if turn.run_id is not None and turn.run_id == live_run_id:
            continue
        run = by_id.get(turn.run_id or "")
        answer = RunView.from_history(turn.replies, run, conversation_backend, servers).messages()
        mark_answer(answer, [m.id for m in turn.replies])
        items.extend(answer)
        if turn.replies:
            first = turn.replies[0]
            switcher = answer_branches_item(first.id, first.siblings)
            if switcher is not None:
                items.append(switcher)
    return items


def question_item(question: Message, conversation_id: str, session_links: bool) -> ChatItem:
    """A question as the user wrote it, then its files, its switcher and its pencil."""
    return chat_item(
        "user",
        join_blocks(
            anchor_html([question.id]),
            markdown_html(question.content),
            message_chips_html(conversation_id, question.attachments, session=session_links),
            question_tools_html(question.id, question.parent_id, question.siblings, question.content),
        ),
    )


def turns(messages: Sequence[Message], run_order: Sequence[str]) -> list[Turn]:
    """Each question with the replies that follow it, and the run that answered it.

    A question keeps the id of the run first started for it; regenerating starts another run for the
    same question (and deletes the first one's replies). So the answering run is the one the replies
    name, or, before any reply is stored, the newest run started between this question's and the next.
    """
    found: list[Turn] = []
    for message in messages:
        if message.role == "user":
            found.append(Turn(message, message.run_id))
        elif message.role in ("assistant", "tool"):
            if not found:
                found.append(Turn(None, message.run_id))
            found[-1].replies.append(message)
    position = {run_id: index for index, run_id in enumerate(run_order)}
    for index, turn in enumerate(found):
        answered = next((m.run_id for m in reversed(turn.replies) if m.run_id), None)
        start = position.get(turn.run_id or "")
        if answered is None and start is not None:
            later = (position.get(t.run_id or "") for t in found[index + 1 :])
            end = next((p for p in later if p is not None), len(run_order))
            answered = run_order[max(start, end - 1)]
        turn.run_id = answered or turn.run_id
    return found
