"""`/v1/chat/completions` for a backend model: the request goes through, the stream comes back byte for byte.

Nothing is parsed or re-encoded on the way back, which is what keeps this path nearly free.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.errors import backend_error_response
from app.metrics import Metrics
from backends.client import BackendClient
from backends.errors import BackendError

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def stream_error_chunk(code: str, message: str) -> bytes:
    """An error inside an already-started stream, in the form OpenAI clients raise on."""
    body = {"error": {"code": code, "message": message, "type": "server_error"}}
    return f"data: {json.dumps(body)}\n\n".encode()


async def proxy_chat(client: BackendClient, payload: dict[str, Any], metrics: Metrics) -> Response:
    payload = {**payload, "model": client.config.model}
    stack = AsyncExitStack()
    try:
        response = await stack.enter_async_context(client.post("/chat/completions", payload))
        if response.status >= 400:
            body = (await response.read())[:4000].decode("utf-8", "replace")
            raise BackendError(
                client.name, "http_error", f"HTTP {response.status}: {body}", status=response.status
            )
        if not payload.get("stream"):
            content = await response.read()
            await stack.aclose()
            return Response(content, media_type="application/json")
    except BackendError as exc:
        await stack.aclose()
        metrics.backend_errors.labels(exc.backend, exc.kind).inc()
        return backend_error_response(exc)
    except (aiohttp.ClientError, TimeoutError) as exc:
        await stack.aclose()
        return JSONResponse(
            {"error": {"code": "backend_bad_response", "message": str(exc), "type": "server_error"}},
            status_code=502,
        )
    relay = _relay(response, stack, client.name, metrics)
    return StreamingResponse(relay, media_type="text/event-stream", headers=SSE_HEADERS)


async def _relay(
    response: aiohttp.ClientResponse, stack: AsyncExitStack, backend: str, metrics: Metrics
) -> AsyncIterator[bytes]:
    metrics.active_streams.inc()
    try:
        async for data in response.content.iter_any():
            yield data
    except (aiohttp.ClientError, TimeoutError) as exc:
        kind = "timeout" if isinstance(exc, TimeoutError) else "unavailable"
        metrics.backend_errors.labels(backend, kind).inc()
        yield stream_error_chunk(
            f"backend_{kind}", f"backend {backend!r} failed mid-stream: {exc or type(exc).__name__}"
        )
    finally:
        metrics.active_streams.dec()
        await stack.aclose()
