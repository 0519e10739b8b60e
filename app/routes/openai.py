from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import CurrentUser, ServicesDep, UsageDep
from app.errors import NotFound
from app.openai_agent import agent_chat
from app.openai_proxy import proxy_chat
from app.openai_schemas import ChatCompletionRequest, ModelCard, ModelList
from app.schemas import ErrorBody
from tools.catalog import offered_tools

router = APIRouter(prefix="/v1", tags=["openai"])
AGENT_MODEL = "agent"


@router.get("/models")
async def list_models(_user: CurrentUser, services: ServicesDep) -> ModelList:
    """Each backend by name, plus `agent` and `agent/<backend>`."""
    now = int(time.time())
    cards = [ModelCard(id=AGENT_MODEL, created=now, owned_by="chatstack")]
    cards += [
        ModelCard(id=f"{AGENT_MODEL}/{n}", created=now, owned_by="chatstack")
        for n in services.registry.choices()
    ]
    cards += [ModelCard(id=n, created=now, owned_by="chatstack") for n in services.registry.names()]
    return ModelList(data=cards)


@router.post(
    "/chat/completions",
    responses={
        404: {"model": ErrorBody},
        429: {"model": ErrorBody, "description": "Rate limited, or the token budget is used up"},
        502: {"model": ErrorBody},
        504: {"model": ErrorBody},
    },
)
async def chat_completions(
    body: ChatCompletionRequest, user: CurrentUser, services: ServicesDep, usage: UsageDep
) -> Response:
    """OpenAI chat completions. Model `<backend>` proxies that backend; `agent[/<backend>]` runs the agent."""
    registry = services.registry
    if body.model == AGENT_MODEL or body.model.startswith(f"{AGENT_MODEL}/"):
        backend = body.model.partition("/")[2] or None
        if backend is not None and not registry.is_choice(backend):
            raise NotFound(f"no backend named {backend!r} for the agent", code="model_not_found")
        await usage.check(user.id)
        # No channel to ask the user on here: tools that need approval are not offered.
        offered = offered_tools(services.tools, None, allow_ask=False)
        tools = {name: entry.tool for name, entry in offered.items()}
        return await agent_chat(registry, backend, tools, services.settings, body, usage.sink(user.id))
    if body.model not in registry:
        raise NotFound(
            f"model {body.model!r} does not exist; GET /v1/models lists them", code="model_not_found"
        )
    await usage.check(user.id)
    payload = body.model_dump(exclude_unset=True, mode="json")
    return await proxy_chat(registry.get(body.model), payload, services.metrics, usage.sink(user.id))
