"""The backends file: validation that catches mistakes at start-up, with messages that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.client.config import BackendConfigError, load_backends


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backends.yaml"
    path.write_text(text)
    return path


def test_shipped_file_is_valid() -> None:
    backends = {b.name: b for b in load_backends(Path("backends/backends.yaml"))}
    assert {"local", "qwen", "deepseek-pd"} <= set(backends)
    assert backends["qwen"].tool_mode == "native"
    assert backends["deepseek-pd"].tool_mode == "prompted"


def test_defaults_and_trailing_slash(tmp_path: Path) -> None:
    (backend,) = load_backends(
        write(tmp_path, "backends:\n  - {name: a, base_url: 'http://h:1/v1/', model: m}\n")
    )
    assert backend.base_url == "http://h:1/v1"
    assert backend.tool_mode == "native"
    assert backend.supports_tools
    assert backend.answer_step == "none"


def test_api_key_is_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (backend,) = load_backends(
        write(tmp_path, "backends:\n  - {name: a, base_url: 'http://h/v1', model: m, api_key_env: MY_KEY}\n")
    )
    assert backend.api_key() is None
    monkeypatch.setenv("MY_KEY", "sekrit")
    assert backend.api_key() == "sekrit"
    assert "sekrit" not in repr(backend)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backends: [", "not valid YAML"),
        ("backends:\n  - {name: a, base_url: 'ftp://x', model: m}\n", "base_url"),
        ("backends:\n  - {name: a, base_url: 'http://x', model: m, tool_mode: magic}\n", "tool_mode"),
        ("backends:\n  - {name: a, base_url: 'http://x', model: m, colour: red}\n", "colour"),
        (
            "backends:\n  - {name: a, base_url: 'http://x', model: m}\n"
            "  - {name: a, base_url: 'http://y', model: m}\n",
            "duplicate",
        ),
        ("backends:\n  - {name: a, base_url: 'http://x', model: m, fallback: b}\n", "fallback"),
        (
            "backends:\n  - {name: a, base_url: 'http://x', model: m, fallback: b}\n"
            "  - {name: b, base_url: 'http://y', model: m, tool_mode: none}\n",
            "tool support",
        ),
        ("nothing: here\n", "backends"),
    ],
)
def test_invalid_files_are_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BackendConfigError) as error:
        load_backends(write(tmp_path, text))
    assert message in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BackendConfigError, match="cannot read"):
        load_backends(tmp_path / "nope.yaml")


def test_the_embedded_model_is_a_kind_not_a_name(tmp_path: Path) -> None:
    from app.embedded_engine import embedded_backend

    shipped = load_backends(Path("backends/backends.yaml"))
    assert [b.name for b in shipped if b.kind == "embedded"] == ["local"]
    named_local = load_backends(
        write(tmp_path, "backends:\n  - {name: local, base_url: 'http://h/v1', model: m}\n")
    )
    assert embedded_backend(named_local) is None  # just a server that happens to be called local
    renamed = load_backends(
        write(tmp_path, "backends:\n  - {name: cpu, kind: embedded, base_url: 'http://h:1/v1', model: m}\n")
    )
    chosen = embedded_backend(renamed)
    assert chosen is not None
    assert chosen.name == "cpu"


def test_only_one_embedded_model(tmp_path: Path) -> None:
    text = (
        "backends:\n"
        "  - {name: a, kind: embedded, base_url: 'http://h:1/v1', model: m}\n"
        "  - {name: b, kind: embedded, base_url: 'http://h:2/v1', model: m}\n"
    )
    with pytest.raises(BackendConfigError, match="at most one backend can be of kind 'embedded'"):
        load_backends(write(tmp_path, text))
