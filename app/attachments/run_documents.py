"""What a run gets from its conversation's attachments: the documents each user message references
(as text for the model, within the backend's context budget), and the `search_documents` tool.

`RunManager` asks `ConversationDocuments.for_run` once per run; that is the whole seam.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.attachments.context import SEARCH_TOOL, with_documents
from app.attachments.store import AttachedDocument, AttachmentStore
from app.errors import InvalidRequest
from app.search_query import parse
from backends.client.config import BackendConfig
from tools.base import Tool
from tools.document_search import DocumentPassage, DocumentSearch, Searcher, SearchRefused

TOOL_NAMES = frozenset({SEARCH_TOOL})


@dataclass(frozen=True, slots=True)
class RunDocuments:
    tools: dict[str, Tool] = field(default_factory=dict)
    attached: dict[int, str] = field(default_factory=dict)
    """For each user message (by id) that references documents: its content with them added."""


def inline_budget(config: BackendConfig, cap_tokens: int) -> int:
    """Tokens one message's documents may take in the backend's context: at most half of what the
    history may hold (the rest is for the system prompt, the tools, earlier turns and tool results),
    and at most `cap_tokens`."""
    window = config.context_length
    reserve = config.max_tokens or min(1024, window // 4)
    return max(0, min(cap_tokens, (window - reserve) // 2))


class ConversationDocuments:
    def __init__(self, store: AttachmentStore, cap_tokens: int) -> None:
        self._store = store
        self._cap_tokens = cap_tokens

    async def for_run(
        self, conversation_id: str, config: BackendConfig, messages: Mapping[int, str]
    ) -> RunDocuments:
        """`messages`: the user messages of the run's history, by id, with their content."""
        if not await self._store.has_any(conversation_id):
            return RunDocuments()
        budget = inline_budget(config, self._cap_tokens)
        searchable = config.tool_mode != "none"
        documents = await self._store.documents_by_message(conversation_id, budget)
        attached = {
            message_id: with_documents(content, documents[message_id], budget, searchable=searchable)
            for message_id, content in messages.items()
            if documents.get(message_id)
        }
        tool = DocumentSearch(self._searcher(conversation_id))
        return RunDocuments({tool.name: tool} if searchable else {}, attached)

    def _searcher(self, conversation_id: str) -> Searcher:
        store = self._store

        async def search(query: str, limit: int) -> list[DocumentPassage]:
            try:
                terms = parse(query)
            except InvalidRequest as exc:
                raise SearchRefused(exc.message) from None
            hits = await store.search(conversation_id, terms, limit)
            return [
                DocumentPassage(
                    name=hit.name,
                    location=hit.location,
                    text=hit.text,
                    url=f"/api/conversations/{conversation_id}/attachments/{hit.attachment_id}"
                    + _fragment(hit.location),
                )
                for hit in hits
            ]

        return search


def _fragment(location: str) -> str:
    # PDF viewers open `#page=N` at that page.
    if location.startswith("page"):
        first = location.split()[-1].split("-")[0]
        return f"#page={first}"
    return ""


__all__ = ["TOOL_NAMES", "AttachedDocument", "ConversationDocuments", "RunDocuments", "inline_budget"]
