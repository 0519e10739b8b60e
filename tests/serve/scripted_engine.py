"""A scripted engine in place of vLLM inside Ray Serve's LLM deployments, for the CPU tests.

Ray Serve LLM picks its engine class from `RAYLLM_VLLM_ENGINE_CLS` (Ray's own tests swap in a mock engine
the same way), so the rest is the real thing: the builders, the OpenAI ingress, the prefill/decode
orchestrator, the NIXL connector backend's setup, placement groups on logical GPUs, autoscaling.

Answers follow chatstack's scripted backend (backends/scripted/script.py): `calc: 2+2` with tools offered
calls `calculator`, a tool result is turned into an answer, anything else is echoed. Every response's
`system_fingerprint` says which path produced it, so a test can see the P/D hand-over:

- `scripted <model>`: a plain engine;
- `pd decode=<engine id> prefill=<engine id>`: a decode engine that continued a prefill, with both
  engines' NIXL ids (Ray's NIXL backend makes them `<suffix>-<side-channel host>-<port>`).

Runs only in the engine virtualenv, inside Ray (imports Ray and vLLM's protocol models).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig, LLMConfig
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorInfo,
    ErrorResponse,
)
from ray.llm._internal.serve.core.engine.protocol import LLMEngine

from backends.scripted.script import Reply, count_tokens, decide

TOKEN_DELAY_S = float(os.environ.get("CHATSTACK_SCRIPTED_TOKEN_DELAY_S", "0.005"))


class ScriptedEngine(LLMEngine):
    def __init__(self, llm_config: LLMConfig) -> None:
        self.llm_config = llm_config
        self.model_id = llm_config.model_id
        self.kv_transfer_config: dict[str, Any] | None = llm_config.engine_kwargs.get("kv_transfer_config")
        if self.kv_transfer_config:
            # What vLLM's engine does first: Ray's connector backend sets the NIXL side channel up
            # (host, port, a unique engine id), from the replica's runtime_env and rank.
            llm_config.setup_engine_backend()
        self.started = False

    async def start(self) -> None:
        self.started = True

    def routing_stats(self) -> dict[str, Any]:
        return {}

    async def resolve_lora(self, lora_model: DiskMultiplexConfig) -> None:
        raise NotImplementedError("the scripted engine serves no LoRA adapters")

    async def reset_prefix_cache(self) -> None:
        return None

    async def check_health(self) -> None:
        if not self.started:
            raise RuntimeError("scripted engine not started")

    # -- chat --------------------------------------------------------------------------------------

    async def chat(
        self, request: ChatCompletionRequest, raw_request_info: Any = None
    ) -> AsyncGenerator[str | ChatCompletionResponse | ErrorResponse, None]:
        params = request.kv_transfer_params or {}
        if params.get("do_remote_decode"):
            yield self._prefill_response(request)
            return
        body = request.model_dump(mode="json")
        reply = decide(body)
        fingerprint = self._fingerprint(params)
        if request.stream:
            async for chunk in self._stream(request, body, reply, fingerprint):
                yield chunk
        else:
            yield self._response(request, body, reply, fingerprint)

    def _engine_id(self) -> str:
        return str((self.kv_transfer_config or {}).get("engine_id", "none"))

    def _fingerprint(self, params: dict[str, Any]) -> str:
        if params.get("do_remote_prefill"):
            return f"pd decode={self._engine_id()} prefill={params.get('remote_engine_id')}"
        return f"scripted {self.model_id}"

    def _prefill_response(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        """The prefill leg (one token, no stream): what the decode side needs to pull the KV cache."""
        body = request.model_dump(mode="json")
        prompt_tokens = count_tokens(body)
        blocks = max(1, prompt_tokens // 16 + 1)
        return ChatCompletionResponse.model_validate(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "created": int(time.time()),
                "model": self.model_id,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": 1,
                    "total_tokens": prompt_tokens + 1,
                },
                "kv_transfer_params": {
                    "do_remote_prefill": True,
                    "do_remote_decode": False,
                    "remote_engine_id": self._engine_id(),
                    "remote_block_ids": list(range(blocks)),
                    "remote_host": os.environ.get("VLLM_NIXL_SIDE_CHANNEL_HOST"),
                    "remote_port": int(os.environ.get("VLLM_NIXL_SIDE_CHANNEL_PORT", "0")),
                },
            }
        )

    async def _stream(
        self, request: ChatCompletionRequest, body: dict[str, Any], reply: Reply, fingerprint: str
    ) -> AsyncGenerator[str, None]:
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model_id,
                "system_fingerprint": fingerprint,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        completion = 0
        if reply.tool_calls and not reply.prompted:
            for index, call in enumerate(_tool_calls(reply)):
                yield chunk({"tool_calls": [{"index": index, **call}]})
                completion += 1
            finish = "tool_calls"
        else:
            for token in reply.tokens():
                await _sleep(TOKEN_DELAY_S)
                yield chunk({"content": token})
                completion += 1
            finish = "stop"
        yield chunk({}, finish)
        options = request.stream_options
        if options is not None and options.include_usage:
            prompt = count_tokens(body)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            data = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model_id,
            }
            yield f"data: {json.dumps({**data, 'choices': [], 'usage': usage})}\n\n"

    def _response(
        self, request: ChatCompletionRequest, body: dict[str, Any], reply: Reply, fingerprint: str
    ) -> ChatCompletionResponse:
        calls = _tool_calls(reply) if reply.tool_calls and not reply.prompted else []
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else reply.text}
        if calls:
            message["tool_calls"] = calls
        prompt, completion = count_tokens(body), max(1, len(reply.tokens()) + len(calls))
        return ChatCompletionResponse.model_validate(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "created": int(time.time()),
                "model": self.model_id,
                "system_fingerprint": fingerprint,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    # -- what the scripted engine does not serve ----------------------------------------------------

    async def completions(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
        yield _unsupported("completions")

    async def embeddings(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
        yield _unsupported("embeddings")

    async def transcriptions(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
        yield _unsupported("transcriptions")


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for name, args in reply.tool_calls
    ]


def _unsupported(what: str) -> ErrorResponse:
    return ErrorResponse(
        error=ErrorInfo(
            message=f"the scripted engine does not serve {what}", type="BadRequestError", code=400
        )
    )


async def _sleep(seconds: float) -> None:
    import asyncio

    if seconds > 0:
        await asyncio.sleep(seconds)
