"""What chatstack offers to MCP clients: the agent as the tool `ask`, and the caller's conversations as
resources (`chatstack://conversations/{id}`, read as Markdown).

The handlers run inside the SDK's streamable HTTP transport; `app.mcp_endpoint` has authenticated the
request before and left its user in the ASGI scope (`USER_SCOPE_KEY`). Every handler works for that
user only: another user's conversation is as unknown as one that does not exist.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request

from app.auth import AuthUser
from app.deps import Services
from app.errors import NotFound
from app.export import export_markdown
from app.mcp_ask import Answer, AskFailed, ask
from app.replica_client import Hop
from app.schemas import Conversation, message_out

USER_SCOPE_KEY = "chatstack.user"
URI_PREFIX = "chatstack://conversations/"
PAGE_SIZE = 100
MARKDOWN = "text/markdown"


class AskArguments(BaseModel):
    question: str = Field(min_length=1, description="The question, as a user would type it.")
    conversation_id: str | None = Field(
        default=None, max_length=64, description="Continue this conversation (a new one if left out)."
    )
    backend: str | None = Field(
        default=None,
        max_length=200,
        description="The model backend to answer with (the default if left out).",
    )


ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "status": {"type": "string"},
        "conversation_id": {"type": "string"},
        "run_id": {"type": "string"},
        "backend": {"type": "string"},
        "sources": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "url": {"type": "string"},
                    "snippet": {"type": "string"},
                },
                "required": ["url"],
            },
        },
    },
    "required": ["answer", "status", "conversation_id", "run_id", "backend", "sources"],
}

ASK_TOOL = types.Tool(
    name="ask",
    title="Ask chatstack's agent",
    description=(
        "Ask chatstack's agent a question. It may search the web or compute before it answers, and "
        "answers with the final text and the sources it used. Pass `conversation_id` from an earlier "
        "answer to continue that conversation."
    ),
    input_schema=AskArguments.model_json_schema(),
    output_schema=ANSWER_SCHEMA,
    annotations=types.ToolAnnotations(read_only_hint=False, open_world_hint=True, idempotent_hint=False),
)

CONVERSATION_TEMPLATE = types.ResourceTemplate(
    name="conversation",
    title="A chatstack conversation",
    uri_template=URI_PREFIX + "{id}",
    description="One of your conversations, every message and tool step, as Markdown.",
    mime_type=MARKDOWN,
)


def build_server() -> Server[Any]:
    return Server(
        "chatstack",
        version="0.1.0",
        instructions="chatstack's agent (the `ask` tool) and your conversations with it (resources).",
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
        on_list_resources=_list_resources,
        on_list_resource_templates=_list_templates,
        on_read_resource=_read_resource,
    )


def _caller(ctx: ServerRequestContext[Any]) -> tuple[Services, AuthUser, Request]:
    request = ctx.request
    if not isinstance(request, Request) or USER_SCOPE_KEY not in request.scope:
        # Only reachable if the endpoint were mounted without its authentication: refuse, never guess.
        raise MCPError(types.INTERNAL_ERROR, "this request was not authenticated")
    services: Services = request.app.state.services
    user: AuthUser = request.scope[USER_SCOPE_KEY]
    return services, user, request


async def _list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[ASK_TOOL])


async def _call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    services, user, request = _caller(ctx)
    if params.name != ASK_TOOL.name:
        raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}; this server has: ask")
    try:
        arguments = AskArguments.model_validate(params.arguments or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        return _tool_error(
            f"invalid arguments: {'.'.join(map(str, first['loc'])) or 'arguments'}: {first['msg']}"
        )
    try:
        answer = await ask(
            services.runs,
            services.store,
            user,
            arguments.question,
            conversation_id=arguments.conversation_id,
            backend=arguments.backend,
            hop=Hop.of(request),
        )
    except AskFailed as exc:
        return _tool_error(str(exc))
    if answer.status != "completed":
        reason = answer.error.message if answer.error else f"the answer ended as {answer.status or 'unknown'}"
        return _tool_error(f"{reason} (conversation {answer.conversation_id})")
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=_answer_text(answer))],
        structured_content={
            "answer": answer.text,
            "status": answer.status,
            "conversation_id": answer.conversation_id,
            "run_id": answer.run_id,
            "backend": answer.backend,
            "sources": [s.to_data() for s in answer.sources],
        },
    )


def _answer_text(answer: Answer) -> str:
    lines = [answer.text]
    if answer.sources:
        lines += ["", "Sources:"]
        lines += [f"{i}. {s.title or s.url} <{s.url}>" for i, s in enumerate(answer.sources, 1)]
    lines += ["", f"(conversation_id: {answer.conversation_id})"]
    return "\n".join(lines)


def _tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


async def _list_resources(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    services, user, _ = _caller(ctx)
    cursor = params.cursor if params else None
    offset = int(cursor) if cursor and cursor.isdigit() and len(cursor) < 10 else 0
    rows, total = await services.store.list_conversations(user.id, PAGE_SIZE, offset)
    resources = [
        types.Resource(
            uri=URI_PREFIX + row.id,
            name=row.title,
            title=row.title,
            description=f"chatstack conversation, last active {row.updated_at:%Y-%m-%d %H:%M} UTC",
            mime_type=MARKDOWN,
        )
        for row in rows
    ]
    following = offset + len(rows)
    return types.ListResourcesResult(
        resources=resources, next_cursor=str(following) if following < total else None
    )


async def _list_templates(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=[CONVERSATION_TEMPLATE])


async def _read_resource(
    ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    services, user, _ = _caller(ctx)
    uri = str(params.uri)
    conversation_id = uri.removeprefix(URI_PREFIX)
    if conversation_id == uri or not conversation_id or "/" in conversation_id:
        raise MCPError(
            types.INVALID_PARAMS, f"unknown resource; conversations are {URI_PREFIX}{{id}}", {"uri": uri}
        )
    try:
        row = await services.store.get_conversation(conversation_id, user.id)
    except NotFound:
        raise MCPError(types.INVALID_PARAMS, "conversation not found", {"uri": uri}) from None
    path, _ = await services.store.active_path(conversation_id)
    messages = [message_out(m) for m in path]
    text = export_markdown(Conversation.model_validate(row), messages)
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=uri, mime_type=MARKDOWN, text=text)]
    )
