from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from app.deps import AttachmentsDep, CurrentUser, HopDep, RegistryDep, RunsDep, ServicesDep, StoreDep
from app.errors import InvalidRequest
from app.export import content_disposition, export_json, export_markdown
from app.run_manager import require_backend_choice
from app.schemas import (
    Conversation,
    ConversationCreate,
    ConversationDetail,
    ConversationList,
    ConversationUpdate,
    ErrorBody,
    ExportFormat,
    MessageCreate,
    Regenerate,
    RunOut,
    RunStarted,
    message_out,
)
from app.store_tree import ACTIVE_LEAF
from app.tooling import require_known_tools

router = APIRouter(prefix="/api/conversations", tags=["conversations"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such conversation"}
}


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_conversation(
    body: ConversationCreate, user: CurrentUser, store: StoreDep, registry: RegistryDep, services: ServicesDep
) -> Conversation:
    require_backend_choice(registry, body.backend)
    require_known_tools(services.tools, body.tools)
    row = await store.create_conversation(user.id, body.title, body.backend, body.tools)
    return Conversation.model_validate(row)


@router.get("")
async def list_conversations(
    user: CurrentUser,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> ConversationList:
    rows, total = await store.list_conversations(user.id, limit, offset)
    return ConversationList(items=[Conversation.model_validate(r) for r in rows], total=total)


@router.get("/{conversation_id}", responses=NOT_FOUND)
async def get_conversation(
    conversation_id: str, user: CurrentUser, store: StoreDep, attachments: AttachmentsDep
) -> ConversationDetail:
    row = await store.get_conversation(conversation_id, user.id)
    # Runs first, then the active run, then the messages: a run stores its messages no later than it
    # stops being active, so a run listed here and not active has all its messages in the path read
    # after. The other order could show a finished run without its answer.
    runs = [RunOut.model_validate(r) for r in await store.runs_of(conversation_id)]
    active = await store.active_run_id(conversation_id)
    path, tree = await store.active_path(conversation_id)
    messages = [message_out(m, tree.siblings(m.id)) for m in path]
    await attachments.show_on(conversation_id, messages)
    return ConversationDetail(
        **Conversation.model_validate(row).model_dump(), messages=messages, runs=runs, active_run_id=active
    )


@router.patch(
    "/{conversation_id}",
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "Switching branch while answering"}},
)
async def update_conversation(
    conversation_id: str,
    body: ConversationUpdate,
    user: CurrentUser,
    store: StoreDep,
    registry: RegistryDep,
    services: ServicesDep,
) -> Conversation:
    require_backend_choice(registry, body.backend)
    require_known_tools(services.tools, body.tools)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "tools" in body.model_fields_set:
        changes["tools"] = body.tools  # null is a value here: every tool again
    leaf = changes.pop("active_leaf_id", None)
    if leaf is not None:
        row = await store.select_branch(conversation_id, user.id, leaf)
        if not changes:  # a switch of branch alone is no activity: the list order stays
            return Conversation.model_validate(row)
    row = await store.update_conversation(conversation_id, user.id, changes)
    return Conversation.model_validate(row)


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_conversation(
    conversation_id: str,
    user: CurrentUser,
    store: StoreDep,
    runs: RunsDep,
    hop: HopDep,
) -> Response:
    await store.get_conversation(conversation_id, user.id)
    await runs.cancel_conversation(conversation_id, hop)
    await store.delete_conversation(conversation_id, user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{conversation_id}/export", responses=NOT_FOUND)
async def export_conversation(
    conversation_id: str,
    user: CurrentUser,
    store: StoreDep,
    attachments: AttachmentsDep,
    format: Annotated[ExportFormat, Query()] = "json",
) -> Response:
    conversation = Conversation.model_validate(await store.get_conversation(conversation_id, user.id))
    if format == "markdown":  # what the reader sees: the active branch
        path, _ = await store.active_path(conversation_id)
        messages = [message_out(m) for m in path]
        await attachments.show_on(conversation_id, messages)
        body, media, ext = export_markdown(conversation, messages), "text/markdown; charset=utf-8", "md"
    else:  # complete: every branch, each message with its parent
        tree = await store.message_tree(conversation_id)
        messages = [message_out(m, tree.siblings(m.id)) for m in await store.messages(conversation_id)]
        await attachments.show_on(conversation_id, messages)
        body, media, ext = export_json(conversation, messages), "application/json", "json"
    return Response(
        body, media_type=media, headers={"Content-Disposition": content_disposition(conversation, ext)}
    )


@router.post(
    "/{conversation_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "An answer is already running"}},
)
async def send_message(
    conversation_id: str, body: MessageCreate, user: CurrentUser, runs: RunsDep, request: Request
) -> RunStarted:
    """Store the message and start the agent; follow the answer at `events_url`. With `parent_id`
    other than the active leaf (e.g. the parent of an earlier question: an edit) it starts a branch."""
    if len(body.content) > runs.settings.max_message_chars:
        raise InvalidRequest(
            f"message is {len(body.content)} characters; the limit is {runs.settings.max_message_chars}",
            code="message_too_long",
        )
    parent = body.parent_id if "parent_id" in body.model_fields_set else ACTIVE_LEAF
    started = await runs.start(
        conversation_id, user.id, body.content, body.backend, parent, attachment_ids=body.attachments
    )
    return _run_started(request, conversation_id, *started)


@router.post(
    "/{conversation_id}/regenerate",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "An answer is running, or nothing to redo"},
    },
)
async def regenerate(
    conversation_id: str, body: Regenerate, user: CurrentUser, runs: RunsDep, request: Request
) -> RunStarted:
    """Answer the active branch's last question again: the previous answer stays as an alternative
    (`siblings`), the new one becomes the active branch."""
    started = await runs.start(conversation_id, user.id, None, body.backend)
    return _run_started(request, conversation_id, *started)


def _run_started(
    request: Request, conversation_id: str, run_id: str, message_id: int, backend: str
) -> RunStarted:
    return RunStarted(
        run_id=run_id,
        conversation_id=conversation_id,
        user_message_id=message_id,
        backend=backend,
        events_url=str(request.url_for("run_events", run_id=run_id)),
    )
