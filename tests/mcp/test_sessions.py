"""The MCP client against real servers: mcp-server-time (stdio), server-everything (stdio and streamable
HTTP), and tests/mcp/failing_server.py for the failure modes. No protocol mocks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bench.mcp_overhead import TARGETS, measure_overhead, summarise
from tests.mcp.servers import everything_http, everything_stdio, failing_server, time_server
from tools.base import ERROR_PREFIX
from tools.catalog import ToolEntry, offered_tools
from tools.mcp.adapter import MAX_DESCRIPTION_CHARS, McpTool
from tools.mcp.catalog import LiveToolCatalog
from tools.mcp.names import is_valid_name
from tools.mcp.results import MAX_OUTPUT_CHARS
from tools.tools_file import ToolsFile

pytestmark = pytest.mark.slow


async def wait_for(condition: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def entry(catalog: LiveToolCatalog, name: str) -> ToolEntry:
    found = catalog.get(name)
    assert found is not None, [e.name for e in catalog.entries()]
    return found


def available(catalog: LiveToolCatalog, server: str) -> bool:
    return all(s.state.status == "available" for s in catalog.sessions if s.name == server)


@pytest.fixture
async def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveToolCatalog]:
    servers: list[dict[str, Any]] = request.param
    environ = {**os.environ, "FAILING_MCP_DOWN_FILE": str(tmp_path / "down"), "CHATSTACK_SECRET": "s3cret"}
    built = LiveToolCatalog(
        ToolsFile.model_validate({"mcp_servers": servers}),
        {},
        environ=environ,
        stderr_dir=tmp_path,
        backoff_first_s=0.2,
        backoff_max_s=1.0,
    )
    built.start()
    try:
        await wait_for(lambda: all(s.state.status == "available" for s in built.sessions), what="servers up")
        yield built
    finally:
        await built.close()


@pytest.mark.parametrize("catalog", [[time_server()]], indirect=True)
async def test_time_server_over_stdio(catalog: LiveToolCatalog) -> None:
    found = entry(catalog, "get_current_time")
    assert found.server == "time"
    assert found.available
    assert found.approval == "auto"
    assert "timezone" in found.tool.parameters["properties"]
    output = await found.tool.run({"timezone": "UTC"})
    assert output.error is None
    assert '<tool_output server="time" tool="get_current_time">' in output.content
    assert '"timezone": "UTC"' in output.content
    assert "untrusted data" in output.content


@pytest.mark.parametrize("catalog", [[everything_stdio()]], indirect=True)
async def test_everything_over_stdio(catalog: LiveToolCatalog) -> None:
    echo = await entry(catalog, "echo").tool.run({"message": "hello there"})
    assert "Echo: hello there" in echo.content
    image = await entry(catalog, "get-tiny-image").tool.run({})
    assert "[image: image/png" in image.content
    assert "KB]" in image.content
    assert image.attachments
    assert image.attachments[0].kind == "image"
    assert image.attachments[0].data
    assert "iVBOR" not in image.content  # the model reads a summary, not the bytes
    structured = await entry(catalog, "get-structured-content").tool.run({"location": "Chicago"})
    assert structured.error is None
    assert "temperature" in structured.content


@pytest.mark.parametrize("catalog", [[everything_stdio()]], indirect=True)
async def test_stdio_server_gets_only_the_environment_it_is_given(catalog: LiveToolCatalog) -> None:
    output = await entry(catalog, "get-env").tool.run({})
    assert "PATH" in output.content
    assert "CHATSTACK_SECRET" not in output.content
    assert "s3cret" not in output.content


@pytest.mark.parametrize("catalog", [[everything_stdio(env=["CHATSTACK_SECRET"])]], indirect=True)
async def test_stdio_server_gets_the_variables_its_entry_names(catalog: LiveToolCatalog) -> None:
    output = await entry(catalog, "get-env").tool.run({})
    assert "s3cret" in output.content


async def test_everything_over_streamable_http(tmp_path: Path) -> None:
    with everything_http() as url:
        catalog = LiveToolCatalog(
            ToolsFile.model_validate(
                {"mcp_servers": [{"name": "web", "url": url, "headers_from_env": {"X-Token": "TOKEN"}}]}
            ),
            {},
            environ={"TOKEN": "t"},
        )
        catalog.start()
        try:
            await wait_for(lambda: available(catalog, "web"), what="HTTP server up")
            output = await entry(catalog, "echo").tool.run({"message": "over http"})
            assert "Echo: over http" in output.content
            assert (await entry(catalog, "get-sum").tool.run({"a": 2, "b": 3})).content.count("5") >= 1
        finally:
            await catalog.close()


async def test_a_server_that_never_answers_leaves_the_agent_working(tmp_path: Path) -> None:

    catalog = LiveToolCatalog(
        ToolsFile.model_validate({"mcp_servers": [{"name": "gone", "command": str(tmp_path / "missing")}]}),
        {},
        backoff_first_s=0.1,
        backoff_max_s=0.2,
    )
    catalog.start()
    try:
        session = catalog.sessions[0]
        await wait_for(lambda: session.restarts >= 2, what="retries")
        assert session.state.status != "available"
        assert session.state.reason
        assert "cannot start the server" in session.state.reason
        assert catalog.entries() == []
        assert offered_tools(catalog, None) == {}
    finally:
        await catalog.close()


@pytest.mark.parametrize(
    "catalog", [[time_server(), everything_stdio(), failing_server(Path("/x"))]], indirect=True
)
async def test_names_are_valid_unique_and_bounded(catalog: LiveToolCatalog) -> None:
    entries = catalog.entries()
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    assert all(is_valid_name(n) for n in names)
    # Both everything and failing have an `echo`: both are prefixed; the hostile name is sanitized.
    assert {"everything__echo", "failing__echo"} <= set(names)
    assert "echo" not in names
    poisoned = next(e for e in entries if isinstance(e.tool, McpTool) and e.tool.raw_name.startswith("read."))
    assert poisoned.name == "read_file_now_please_"
    assert len(poisoned.tool.description) <= MAX_DESCRIPTION_CHARS
    assert "\u202e" not in poisoned.tool.description
    assert "\u200b" not in poisoned.tool.description


@pytest.mark.parametrize("catalog", [[failing_server(Path("/x"))]], indirect=True)
async def test_failure_modes(catalog: LiveToolCatalog) -> None:
    # isError: a tool error the model can explain
    failed = await entry(catalog, "fail").tool.run({"why": "quota"})
    assert failed.error
    assert "quota" in failed.error
    assert failed.content.startswith(ERROR_PREFIX)
    assert "reported an error" in failed.content
    # huge output: bounded, and the fence cannot be closed from inside
    huge = await entry(catalog, "huge").tool.run({"chars": 3_000_000})
    assert len(huge.content) <= MAX_OUTPUT_CHARS + 200
    assert "output cut" in huge.content
    assert huge.content.count("</tool_output>") == 1
    assert huge.content.endswith("</tool_output>")
    # media: summarised for the model, kept for the UI
    media = await entry(catalog, "media").tool.run({})
    assert "[image: image/png" in media.content
    assert "[resource file:///data.bin" in media.content
    assert "notes" in media.content
    assert "[resource link: the doc" in media.content
    assert [a.kind for a in media.attachments] == ["image", "resource", "resource", "resource_link"]
    assert media.sources
    assert media.sources[0].url == "https://example.org/doc"
    # slow: past the server's timeout (2 s), an error, and the session still works
    started = time.monotonic()
    slow = await entry(catalog, "slow").tool.run({"seconds": 10})
    assert slow.error
    assert "did not answer within 2 s" in slow.error
    assert time.monotonic() - started < 4
    assert (await entry(catalog, "echo").tool.run({"text": "still here"})).error is None


@pytest.mark.parametrize("catalog", [[failing_server(Path("/x"))]], indirect=True)
async def test_list_changed_adds_the_new_tool(catalog: LiveToolCatalog) -> None:
    assert catalog.get("added_later") is None
    assert (await entry(catalog, "add_tool").tool.run({})).error is None
    await wait_for(lambda: catalog.get("added_later") is not None, what="the new tool")
    output = await entry(catalog, "added_later").tool.run({})
    assert "added at runtime" in output.content


@pytest.mark.parametrize("catalog", [[failing_server(Path("/x"))]], indirect=True)
async def test_crash_mid_call_restarts_with_backoff(catalog: LiveToolCatalog, tmp_path: Path) -> None:
    down = tmp_path / "down"
    session = catalog.sessions[0]
    output = await entry(catalog, "crash").tool.run({"stay_down": True})
    assert output.error
    assert "stopped during the call" in output.error
    # While it stays down, its tools are listed as unavailable, with the reason, and not offered.
    await wait_for(lambda: session.restarts >= 2, what="failed restarts")
    echo = entry(catalog, "echo")
    assert not echo.available
    assert echo.reason
    assert "echo" not in offered_tools(catalog, None)
    assert "unavailable" in (await echo.tool.run({"text": "x"})).content
    down.unlink()
    await wait_for(lambda: available(catalog, "failing"), what="the restart")
    assert entry(catalog, "echo").available
    assert (await entry(catalog, "echo").tool.run({"text": "back"})).error is None


@pytest.mark.parametrize("catalog", [[failing_server(Path("/x"))]], indirect=True)
async def test_an_idle_server_that_exits_is_noticed_and_restarted(catalog: LiveToolCatalog) -> None:
    session = catalog.sessions[0]
    # Kill the process from outside, while no call is running.
    pattern = str(Path(__file__).parent / "failing_server.py")
    pgrep = ["pgrep", "-P", str(os.getpid()), "-f", pattern]
    found = await asyncio.to_thread(subprocess.run, pgrep, capture_output=True, text=True, check=False)
    pids = found.stdout.split()
    assert pids
    for pid in pids:
        os.kill(int(pid), 9)
    await wait_for(lambda: session.restarts >= 1, timeout=5, what="the restart")
    await wait_for(lambda: available(catalog, "failing"), what="available again")


@pytest.mark.parametrize("catalog", [[everything_stdio()]], indirect=True)
async def test_call_overhead(catalog: LiveToolCatalog) -> None:
    """chatstack's wrapper (catalog lookup, McpTool.run: timeout, result conversion and fencing) against
    the SDK's bare call on the same session; the measurement is `python -m bench.mcp_overhead`'s."""
    target = TARGETS["everything-stdio"]
    samples = await measure_overhead(catalog, target.tool, target.arguments, calls=300, warmup=20)
    result = summarise(target, samples)
    print(
        f"\nMCP echo over stdio: bare {result.bare.p50_ms:.3f} ms, through chatstack"
        f" {result.wrapped.p50_ms:.3f} ms, overhead {result.added_ms:.3f} ms/call (median of"
        f" {result.calls}), chatstack's own time {result.own.p50_ms:.3f} ms"
    )
    # The 5 ms target is the benchmark's to report (`chatstack bench mcp`), not a timed test's.
    assert result.calls == 300
    assert 0 <= result.own.p50_ms <= result.wrapped.p50_ms
