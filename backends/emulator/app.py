"""The emulator's HTTP surface: an OpenAI-compatible server with vLLM's /metrics and /health.

Routes stay thin: validate, plan the answer, hand the request to the engine runner, return a stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backends.emulator.profiles import Profile, get_profile, with_limits
from backends.emulator.prometheus import CONTENT_TYPE, EngineMetrics
from backends.emulator.reply import plan_output
from backends.emulator.runner import EngineRunner
from backends.emulator.schemas import ChatCompletionRequest
from backends.emulator.stream_response import SUBMITTED_HEADER, CompletionStreamResponse
from backends.emulator.tokens import count_prompt_tokens
from protocol.openai_wire import ChunkEncoder, completion, error_body, error_type, new_completion_id, usage


def error_response(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    """An OpenAI-style error body with `status` (and `param`, as vLLM sends it)."""
    return JSONResponse(error_body(code, message, kind, param=None), status_code=status)


class _Emulator:
    """The request handlers, bound to one profile's runner (no module-level state)."""

    def __init__(self, profile: Profile, runner: EngineRunner, seed: int) -> None:
        self.profile = profile
        self.runner = runner
        self.seed = seed
        self.model_ids = {profile.served_model_name, profile.name}

    async def models(self, _: Request) -> Response:
        model = {
            "id": self.profile.served_model_name,
            "object": "model",
            "created": 0,
            "owned_by": "chatstack-emulator",
            "root": self.profile.served_model_name,
            "max_model_len": self.profile.max_model_len,
        }
        return JSONResponse({"object": "list", "data": [model]})

    async def health(self, _: Request) -> Response:
        return JSONResponse({"status": "ok", "profile": self.profile.name, "engine": self.runner.stats()})

    async def metrics(self, _: Request) -> Response:
        return Response(self.runner.metrics.render(), media_type=CONTENT_TYPE)

    async def completions(self, request: Request) -> Response | CompletionStreamResponse:
        try:
            raw = json.loads(await request.body())
        except ValueError:
            return error_response(400, "The request body is not valid JSON.", "invalid_request_error")
        try:
            body = ChatCompletionRequest.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return error_response(400, f"Invalid request: {problems}", "invalid_request_error")
        if body.model not in self.model_ids:
            message = f"The model `{body.model}` does not exist."
            return error_response(404, message, "invalid_request_error", "model_not_found")

        prompt_tokens = count_prompt_tokens(raw["messages"], raw.get("tools"))
        limit = self._token_limit(prompt_tokens, body.token_limit)
        if isinstance(limit, Response):
            return limit
        prompt_key = json.dumps(raw["messages"], sort_keys=True)
        plan = plan_output(raw, limit, self.seed, prompt_key)
        if plan.failure == "before":
            return error_response(500, "Scripted failure before streaming.", "server_error")

        seq, stream = self.runner.submit(prompt_tokens, plan.count, plan.finish_reason)
        completion_id = new_completion_id()
        if body.stream:
            encoder = ChunkEncoder(completion_id, body.model, int(time.time()))
            return CompletionStreamResponse(
                self.runner, seq, stream, plan, encoder, prompt_tokens, body.include_usage
            )
        try:
            while not stream.finished:
                await stream.wait(stream.produced)
        except asyncio.CancelledError:
            self.runner.cancel(seq)
            raise
        answer = completion(
            completion_id,
            int(time.time()),
            body.model,
            plan.message(),
            plan.finish_reason,
            usage(prompt_tokens, plan.count),
        )
        return JSONResponse(answer, headers={SUBMITTED_HEADER: f"{seq.submitted_at:.6f}"})

    def _token_limit(self, prompt_tokens: int, requested: int | None) -> int | Response:
        room = self.profile.max_model_len - prompt_tokens
        if room < 1 or (requested is not None and requested > room):
            message = (
                f"This model's maximum context length is {self.profile.max_model_len} tokens. However, "
                f"you requested {prompt_tokens + (requested or 0)} tokens ({prompt_tokens} in the messages, "
                f"{requested or 0} in the completion). Reduce the length of the messages or completion."
            )
            return error_response(400, message, "invalid_request_error", "context_length_exceeded")
        return requested if requested is not None else min(self.profile.default_max_tokens, room)


async def _http_error(_: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal server error."
    return error_response(status, str(detail), error_type(status))


def create_app(
    profile_name: str,
    *,
    seed: int = 0,
    time_scale: float = 1.0,
    limits: Mapping[str, int] | None = None,
) -> Starlette:
    """The emulator's ASGI app for `profile_name`.

    `time_scale` < 1 speeds every emulated duration up proportionally (0.1: ten times faster);
    `limits` overrides engine limits (`max_num_seqs`, `max_num_batched_tokens`, `kv_cache_tokens`),
    e.g. to emulate a bigger deployment in capacity tests. Raises `UnknownProfileError`.
    """
    profile = get_profile(profile_name)
    if limits:
        profile = with_limits(profile, **limits)
    metrics = EngineMetrics(profile.served_model_name, profile.max_model_len)
    runner = EngineRunner(profile, time_scale=time_scale, metrics=metrics)
    handlers = _Emulator(profile, runner, seed)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    routes = [
        Route("/v1/chat/completions", handlers.completions, methods=["POST"]),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/health", handlers.health, methods=["GET"]),
        Route("/metrics", handlers.metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.runner = runner
    return app
