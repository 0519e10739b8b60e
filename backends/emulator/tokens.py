"""Token arithmetic without a tokenizer: prompt counting and deterministic filler text.

Prompt tokens are estimated at 4 characters per token (the usual rule of thumb for English with
BPE tokenizers), plus 4 tokens per message for the chat template's role markers, plus the tools'
JSON schema at the same rate. Output tokens are words from a fixed vocabulary, each one token.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

from protocol.openai_wire import content_delta

CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS_PER_MESSAGE = 4

_WORDS = (
    "the of and to in is that it for as with was on be by this are from or an at which not have "
    "but they their can more one all has been also other its were we there these some time when "
    "model tokens system request stream answer cache memory batch latency throughput engine queue "
    "prefill decode expert layer attention vector weight result value data server client network "
    "first second next last each every many most long short fast slow large small new old high low "
    "because however therefore while where after before during within without between across over "
    "shows gives makes takes keeps finds uses needs runs reads writes sends holds moves starts ends"
)
_VOCABULARY = tuple(_WORDS.split())
# Pre-encoded JSON deltas: the hot path concatenates bytes instead of calling json.dumps per token.
_FILLER_DELTAS = tuple(content_delta(f" {word}") for word in _VOCABULARY)


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message, whether `content` is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]], tools: Any = None) -> int:
    """Estimated prompt tokens for a chat request (see the module docstring); at least 1."""
    chars = 0
    count = 0
    for message in messages:
        count += 1
        chars += len(message_text(message))
        if message.get("tool_calls"):
            chars += len(json.dumps(message["tool_calls"]))
    if tools:
        chars += len(json.dumps(tools))
    return max(1, math.ceil(chars / CHARS_PER_TOKEN) + TEMPLATE_TOKENS_PER_MESSAGE * count)


class FillerText:
    """An endless, deterministic word sequence for one request, chosen by the seed and the prompt.

    The same seed and prompt give the same words; different prompts give different ones.
    """

    __slots__ = ("_offset", "_stride")

    def __init__(self, seed: int, prompt_key: str) -> None:
        digest = hashlib.sha256(f"{seed}:{prompt_key}".encode()).hexdigest()
        rng = random.Random(digest)
        size = len(_VOCABULARY)
        self._offset = rng.randrange(size)
        # A stride coprime with the vocabulary size walks every word before repeating.
        self._stride = rng.choice([s for s in range(1, size) if math.gcd(s, size) == 1])

    def delta_json(self, index: int) -> str:
        """The JSON `delta` object for token `index`."""
        return _FILLER_DELTAS[(self._offset + index * self._stride) % len(_FILLER_DELTAS)]

    def word(self, index: int) -> str:
        return " " + _VOCABULARY[(self._offset + index * self._stride) % len(_VOCABULARY)]

    def text(self, count: int) -> str:
        return "".join(self.word(i) for i in range(count))
