"""`bench agent` against a real chatstack (SQLite) in front of the scripted backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bench.conftest import run_bench
from tests.conftest import write_backends_file
from tests.support.processes import ServerProcess, start_chatstack
from tests.support.search_servers import SearchServerState

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chatstack_sqlite(
    scripted: ServerProcess,
    search: tuple[str, SearchServerState],
    tmp_path_factory: pytest.TempPathFactory,
    log_dir: Path,
) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("bench-agent")
    env = {
        "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'chatstack.db'}",
        "CHATSTACK_BACKENDS_FILE": str(write_backends_file(data_dir / "backends.yaml", scripted.url)),
        "CHATSTACK_DEFAULT_BACKEND": "scripted",
        "CHATSTACK_DATA_DIR": str(data_dir),
        "CHATSTACK_SEARCH_PROVIDER": "searxng",
        "CHATSTACK_SEARXNG_URL": search[0],
        "CHATSTACK_AGENT_MAX_STEPS": "4",
    }
    server = start_chatstack(env, log_dir)
    yield server
    server.stop()


def test_agent_runs_are_timed_and_checked(chatstack_sqlite: ServerProcess, tmp_path: Path) -> None:
    doc = run_bench(
        [
            "agent", "--base-url", chatstack_sqlite.url, "--backend", "scripted", "--task-set", "scripted",
            "--phases", "warmup,baseline,concurrency", "--concurrency", "1,3", "--requests", "6",
            "--warmup", "2",
        ],
        tmp_path,
    )  # fmt: skip
    baseline = next(level for level in doc["levels"] if level["phase"] == "baseline")
    row = baseline["summary"]
    assert row["error_count"] == 0, baseline["errors"]
    assert row["tool_validity_%"] == 100.0
    assert row["answer_correct_%"] == 100.0
    assert row["first_event_p50_ms"] <= row["first_answer_token_p50_ms"] <= row["total_p50_ms"]
    records = {r["task_id"]: r for r in baseline["records"]}
    both = records["both"]
    assert sorted(both["tool_names"]) == ["calculator", "web_search"]
    assert both["llm_calls"] == 2
    assert both["tools_ms"] > 0
    assert both["llm_ms"] > 0
    assert both["overhead_ms"] >= 0
    # Tool time by server (built-ins only here) and no approval waits (issue 12).
    assert set(both["tools_by_server_ms"]) == {"builtin"}
    assert both["tools_by_server_ms"]["builtin"] == both["tools_ms"]
    assert (both["approval_wait_ms"], both["approvals"]) == (0.0, 0)
    assert row["tools_ms_mean_builtin"] == row["tools_ms_mean"]
    assert row["tool_call_ms_mean_builtin"] > 0
    assert row["approval_wait_ms_mean"] == 0.0
    assert records["none-tokens"]["tool_calls"] == 0
    assert records["none-tokens"]["tool_valid"] is True
    concurrency = [level for level in doc["levels"] if level["phase"] == "concurrency"]
    assert [level["level"] for level in concurrency] == [1, 3]
    assert all(level["summary"]["error_count"] == 0 for level in concurrency)
    header = (tmp_path / "concurrency.csv").read_text().splitlines()[0].split(",")
    assert {"tools_ms_mean_builtin", "tool_call_ms_mean_builtin", "approval_wait_ms_mean"} <= set(header)
    assert (tmp_path / "report.html").exists()
    # the bench deletes the conversations it made
    listed = httpx.get(f"{chatstack_sqlite.url}/api/conversations", params={"limit": 200}, timeout=10).json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert not [c for c in items if c.get("title") == "bench"]
