"""The default client against every way HTTP/1.1 lets a response end (issue 11).

RFC 9112, section 6.3: a body ends with its last chunk (chunked), after Content-Length bytes, or, with
neither, when the server closes the connection (HTTP/1.0 servers, and HTTP/1.1 servers that stream
that way). Each server here is a real process that records the TTFT and TPOT it really produced; the
bench, run as a user runs it with its default engine, must measure them within 5% and count no error.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bench.conftest import ReferenceFactory, run_bench
from tests.nginx.support import fresh_prefix, proxy_options, running_front
from tests.support.processes import ServerProcess, start_python_server

pytestmark = pytest.mark.slow

TTFT_MS, TPOT_MS, TOKENS = 60.0, 8.0, 12
# Behind nginx the client also sees nginx's own scheduling delays, a fraction of a millisecond (more on
# a loaded machine) that the upstream's record does not hold: longer times keep that within the 5%.
NGINX_TTFT_MS, NGINX_TPOT_MS = 90.0, 14.0


def truth(stats_root: str) -> tuple[float, float]:
    """The median TTFT and TPOT (ms) the server produced since the last call (NaN for none)."""
    streams = httpx.get(f"{stats_root}/stats?detail=1&reset=1", timeout=5).json()["streams"]
    if not streams:
        return math.nan, math.nan
    return statistics.median(s[1] for s in streams), statistics.median(s[2] for s in streams)


def assert_measured_right(
    base_url: str, stats_root: str, out: Path, ttft_ms: float = TTFT_MS, tpot_ms: float = TPOT_MS
) -> None:
    """Run the bench (default engine) against `base_url` and compare it with the server's own record."""
    truth(stats_root)
    doc = run_bench(
        [
            "openai", "--base-url", base_url, "--model", "reference", "--phases", "concurrency",
            "--concurrency", "1,4", "--requests", "24", "--dataset", "fixed", "--input-tokens", "20",
            "--max-tokens", str(TOKENS), "--warmup", "0", "--tokenizer", "estimate",
        ],
        out,
    )  # fmt: skip
    true_ttft, true_tpot = truth(stats_root)
    assert true_ttft == pytest.approx(ttft_ms, rel=0.2)  # the server kept roughly to its timing
    assert true_tpot == pytest.approx(tpot_ms, rel=0.2)
    assert doc["environment"]["receive_clock"] == "kernel"  # the default engine: the socket engine
    assert [level["level"] for level in doc["levels"]] == [1, 4]
    for level in doc["levels"]:
        row = level["summary"]
        assert row["error_count"] == 0, level["errors"]
        assert row["total_requests"] == 24
        assert row["output_tokens_p50"] == TOKENS
        # On a starved machine the bench says so (health problems): shown if the comparison fails.
        # 10%, not the validation test's 5%: a closing server costs each request a new connection,
        # whose scheduling on a busy 2-core machine the server's own record does not see. The defect
        # this guards against measured nothing at all (every request an error).
        context = (level["level"], level["health"]["problems"])
        assert row["ttft_p50_ms"] == pytest.approx(true_ttft, rel=0.1), context
        assert row["tpot_p50_ms"] == pytest.approx(true_tpot, rel=0.1), context


@pytest.mark.parametrize("framing", ["close", "http1.0", "length", "chunked-close"])
def test_the_reference_server_in_each_framing(
    framing: str, reference_servers: ReferenceFactory, tmp_path: Path
) -> None:
    """close: HTTP/1.1, neither Content-Length nor Transfer-Encoding, the close ends the body (the
    issue's server); http1.0: the same from an HTTP/1.0 server; length: the stream's Content-Length
    up front, keep-alive; chunked-close: chunked with `Connection: close` (keep-alive off)."""
    server = reference_servers(ttft_ms=TTFT_MS, tpot_ms=TPOT_MS, output_tokens=TOKENS, framing=framing)
    assert_measured_right(server.url, server.url.removesuffix("/v1"), tmp_path)


@pytest.fixture(scope="module")
def library_servers(log_dir: Path) -> Iterator[dict[str, ServerProcess]]:
    """Python's own HTTP/1.0 server and aiohttp's chunked keep-alive server (tests/bench/framing_servers)."""
    args = ["--ttft-ms", str(TTFT_MS), "--tpot-ms", str(TPOT_MS)]
    servers = {
        kind: start_python_server("tests.bench.framing_servers", ["--kind", kind, *args], log_dir, kind)
        for kind in ("http1.0", "aiohttp")
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize("kind", ["http1.0", "aiohttp"])
def test_servers_written_with_common_libraries(
    kind: str, library_servers: dict[str, ServerProcess], tmp_path: Path
) -> None:
    server = library_servers[kind]
    assert_measured_right(server.url, server.url.removesuffix("/v1"), tmp_path)


@pytest.mark.parametrize("upstream_framing", ["close", "chunked"])
def test_behind_nginx_which_reframes_the_stream(
    upstream_framing: str, reference_servers: ReferenceFactory, output_dir: Path, tmp_path: Path
) -> None:
    """Debian's nginx with chatstack's production proxy configuration (chunked to the client whatever
    the upstream sent, keep-alive on both sides)."""
    server = reference_servers(
        ttft_ms=NGINX_TTFT_MS, tpot_ms=NGINX_TPOT_MS, output_tokens=TOKENS, framing=upstream_framing
    )
    options = proxy_options(server)
    nginx_output = output_dir / "nginx"
    nginx_output.mkdir(exist_ok=True)
    prefix = fresh_prefix(nginx_output, f"bench-{upstream_framing}-{options.listen_port}")
    with running_front(options, prefix) as front:
        probe = httpx.post(
            f"{front.url}/v1/chat/completions",
            json={"stream": True, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert probe.headers.get("transfer-encoding") == "chunked"  # nginx's framing, not the server's
        root = server.url.removesuffix("/v1")
        assert_measured_right(f"{front.url}/v1", root, tmp_path, NGINX_TTFT_MS, NGINX_TPOT_MS)
