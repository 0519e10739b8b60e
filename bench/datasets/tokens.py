"""Counting tokens for dataset selection: the target model's tokenizer where we can reach it.

In order of preference (`--tokenizer auto`):
1. a `tokenizer.json` given on the command line (needs the `tokenizers` package);
2. the target server's `POST /tokenize` (vLLM serves it): exactly the model being measured;
3. the embedded model's `tokenizer.json` under ~/.cache/chatstack/models (needs `tokenizers`);
4. an estimate, one token per four characters (said so in the results).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from bench.clients.exchange import Engine, Request

EMBEDDED_MODELS = Path.home() / ".cache" / "chatstack" / "models"


class TokenCounter(Protocol):
    name: str

    async def count(self, texts: Sequence[str]) -> list[int]:
        """Token counts of `texts`, in order."""
        ...


class EstimateCounter:
    """One token per four characters: the usual rule of thumb for English BPE vocabularies."""

    name = "estimate:chars/4"

    async def count(self, texts: Sequence[str]) -> list[int]:
        return [max(1, math.ceil(len(t) / 4)) for t in texts]


class JsonTokenizerCounter:
    """A Hugging Face `tokenizer.json`, through the `tokenizers` package."""

    def __init__(self, path: Path) -> None:
        try:
            module: Any = importlib.import_module("tokenizers")
        except ImportError as exc:
            raise RuntimeError(
                f"reading {path} needs the `tokenizers` package (pip install tokenizers)"
            ) from exc
        self._tokenizer = module.Tokenizer.from_file(str(path))
        self.name = f"tokenizer.json:{path}"

    async def count(self, texts: Sequence[str]) -> list[int]:
        encodings = await asyncio.to_thread(
            self._tokenizer.encode_batch, list(texts), add_special_tokens=False
        )
        return [len(e.ids) for e in encodings]


class ServerCounter:
    """vLLM's `POST /tokenize` on the target server (at the server root, beside `/v1`)."""

    def __init__(self, engine: Engine, model: str, path: str = "/tokenize", parallel: int = 16) -> None:
        self._engine, self._model, self._path, self._parallel = engine, model, path, parallel
        self.name = f"server:{engine.origin.host_header}{path} ({model})"

    async def one(self, text: str) -> int:
        body = json.dumps({"model": self._model, "prompt": text, "add_special_tokens": False}).encode()
        exchange = await self._engine.fetch(
            Request("POST", self._path, body, (("content-type", "application/json"),)), 30
        )
        if not exchange.ok:
            raise RuntimeError(
                f"/tokenize answered {exchange.status}: {exchange.error or exchange.body()[:200]!r}"
            )
        return int(json.loads(exchange.body())["count"])

    async def count(self, texts: Sequence[str]) -> list[int]:
        gate = asyncio.Semaphore(self._parallel)

        async def bounded(text: str) -> int:
            async with gate:
                return await self.one(text)

        return list(await asyncio.gather(*(bounded(t) for t in texts)))


def embedded_tokenizer_file() -> Path | None:
    """The first `tokenizer.json` of a model chatstack downloaded, if any."""
    if not EMBEDDED_MODELS.is_dir():
        return None
    return next(iter(sorted(EMBEDDED_MODELS.rglob("tokenizer.json"))), None)


async def pick_counter(choice: str, root_engine: Engine | None, model: str | None) -> TokenCounter:
    """Resolve `--tokenizer` (`auto`, `estimate`, `server` or a path) to a counter."""
    if choice not in ("auto", "estimate", "server"):
        path = Path(choice)
        is_dir = await asyncio.to_thread(path.is_dir)
        return JsonTokenizerCounter(path / "tokenizer.json" if is_dir else path)
    if choice == "estimate":
        return EstimateCounter()
    if root_engine is not None and model:
        server = ServerCounter(root_engine, model)
        try:
            await server.one("hello world")
            return server
        except (RuntimeError, ValueError, KeyError, OSError):
            if choice == "server":
                raise
    local = embedded_tokenizer_file()
    if local is not None:
        try:
            return JsonTokenizerCounter(local)
        except RuntimeError:
            pass
    return EstimateCounter()
