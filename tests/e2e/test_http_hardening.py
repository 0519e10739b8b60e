"""Hostile HTTP against a real chatstack: headers built from data (non-ASCII titles), headers and query
values parsed as numbers, oversized request heads, forged log lines, keys in logs, wrong keys by the
hundred, and errors nobody planned for, which still answer JSON with a request id."""

from __future__ import annotations

import asyncio
import email.message
import email.utils
import hashlib
import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, write_backends_file
from tests.support.processes import BIN, ROOT, ServerProcess, start_chatstack
from tests.support.sse import new_conversation, read_events, start_message

pytestmark = pytest.mark.slow

HUGE_HEADER_BYTES = 100 * 1024 * 1024
AUTH_FAILURES_PER_MINUTE = 20


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite: nothing here depends on the database, except the tests that make their own."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'chatstack.db'}"


@pytest.fixture(scope="module")
def chatstack_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    return {**chatstack_env, "CHATSTACK_UI": "false"}


def raw_exchange(server: ServerProcess, request: bytes, timeout: float = 30) -> bytes:
    """Send `request` byte for byte (no client library tidies it) and read until the server closes."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def parse_raw(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_json_error(response: httpx.Response, status: int | None, code: str | None = None) -> None:
    if status is not None:
        assert response.status_code == status, response.text
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


# Defect 3: the export's Content-Disposition was encoded as Latin-1, so other titles were a 500.


def disposition_filenames(value: str) -> tuple[str, str]:
    """(`filename`, decoded `filename*`) of a Content-Disposition value, read by the stdlib's MIME parser."""
    message = email.message.Message()
    message["Content-Disposition"] = value
    params = message.get_params(header="Content-Disposition") or []
    plain = [v for k, v in params if k == "filename" and isinstance(v, str)]
    encoded = [v for k, v in params if k == "filename" and isinstance(v, tuple)]
    assert len(plain) == 1, params
    assert len(encoded) == 1, params
    assert encoded[0][0] == "UTF-8"
    return plain[0], email.utils.collapse_rfc2231_value(encoded[0])


@pytest.mark.parametrize(
    ("title", "stem"),
    [
        ("Привет", "привет"),
        ("中文标题", "中文标题"),
        ("Ωmega", "ωmega"),
        ("Ünïcödé: ça va?", "ünïcödé--ça-va"),
        ('quote " semicolon ; backslash \\', "quote---semicolon---backslash"),
        ("new\r\nline: Set-Cookie: x=1", "new--line--set-cookie--x-1"),
        ("\u202eevil\u202c bidi", "evil--bidi"),
        ("emoji 👋 title", "emoji---title"),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "markdown"])
async def test_export_of_any_title(client: httpx.AsyncClient, title: str, stem: str, fmt: str) -> None:
    cid = await new_conversation(client, title=title)
    response = await client.get(f"/api/conversations/{cid}/export", params={"format": fmt})
    assert response.status_code == 200, response.text
    raw = response.headers.raw
    value = next(v for k, v in raw if k.lower() == b"content-disposition")
    assert value.isascii(), "header values are bytes: the name goes in RFC 5987 `filename*`"
    assert value.startswith(b"attachment; ")
    fallback, name = disposition_filenames(value.decode("ascii"))
    extension = "json" if fmt == "json" else "md"
    assert name == f"{stem}-{cid[:8]}.{extension}"
    assert fallback.endswith(f"-{cid[:8]}.{extension}")
    assert re.fullmatch(r"[a-z0-9_-]+\.[a-z]+", fallback), fallback
    if fmt == "json":
        assert response.json()["conversation"]["title"] == title
    else:
        assert response.text.startswith(f"# {title}\n")


# Defect 4 and its class: numbers parsed from headers and query strings.


@pytest.mark.parametrize(
    "value",
    [
        b"\xb2",  # "²" in Latin-1, as the server decodes headers: str.isdigit() says yes, int() says no
        b"9" * 5000,  # past int()'s 4300-digit limit
        b"\xd9\xa3",  # UTF-8 of an Arabic-Indic digit
        b"2147483648",
        b"1" * 11,
        b"-1",
        b"+1",
        b"1_000",
        b"0x10",
        b"1e3",
        b"1.0",
    ],
)
async def test_odd_last_event_ids_are_422(client: httpx.AsyncClient, value: bytes) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "hello")
    response = await client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": value})
    assert_json_error(response, 422, "bad_event_id")


async def test_a_good_last_event_id_still_resumes(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "hello there")
    events = await read_events(client, run_id)
    resumed = await read_events(client, run_id, last_event_id=events[1].id)
    assert [e.id for e in resumed] == [e.id for e in events[2:]]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/api/runs/{run}/events?after={value}", "²"),
        ("/api/runs/{run}/events?after={value}", "9" * 5000),
        ("/api/runs/{run}/events?after={value}", "٣"),
        ("/api/conversations?limit={value}", "²"),
        ("/api/conversations?offset={value}", "9" * 5000),
        ("/api/conversations?limit={value}", "1" * 30),
    ],
)
async def test_odd_numbers_in_query_strings_are_422(client: httpx.AsyncClient, path: str, value: str) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "hello")
    response = await client.get(path.format(run=run_id, value=value))
    assert_json_error(response, 422, "invalid_request")


@pytest.mark.parametrize("length", [b"\xb2", b"9" * 5000, b"-1", b"1 2", b"0x10"])
def test_odd_content_lengths_get_a_json_400(chatstack: ServerProcess, length: bytes) -> None:
    request = (
        b"POST /api/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + length + b"\r\n\r\n{}"
    )
    status, headers, body = parse_raw(raw_exchange(chatstack, request))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    assert json.loads(body)["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "header",
    ["Authorization", "X-Request-ID", "Last-Event-ID", "Content-Type", "Accept", "Cookie", "X-Forwarded-For"],
)
@pytest.mark.parametrize(
    "value", ["Привет".encode(), b"\xb2\xff\x80", b"Bearer \xe4\xb8\xad", "\u2028\x85".encode()]
)
async def test_non_ascii_in_any_header_never_fails(
    client: httpx.AsyncClient, header: str, value: bytes
) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "hi")
    for method, path in [
        ("GET", "/api/conversations"),
        ("POST", f"/api/conversations/{cid}/messages"),
        ("GET", f"/api/conversations/{cid}/export"),
        ("GET", f"/api/runs/{run_id}"),
        ("GET", "/v1/models"),
    ]:
        body = b'{"content": "again"}' if method == "POST" else None
        response = await client.request(method, path, content=body, headers={header: value})
        assert response.status_code < 500, (header, value, method, path, response.text)
        assert response.headers["x-request-id"]
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/json", response.text


# Defect 8: no bound on the request head.


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_a_100_mb_header_is_refused_early_and_costs_no_memory(chatstack: ServerProcess) -> None:
    pid = chatstack.process.pid
    # Reset the peak (VmHWM) to the current size, so that any growth while the header arrives shows.
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    peak_before, rss_before = proc_status_kib(pid, "VmHWM"), proc_status_kib(pid, "VmRSS")

    address = urlsplit(chatstack.url)
    answer, sent = b"", 0
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        chunk = b"a" * (1024 * 1024)
        try:
            sock.sendall(b"GET /api/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
            while sent < HUGE_HEADER_BYTES:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server may stop reading once it has answered: that is the point
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    grown_peak = proc_status_kib(pid, "VmHWM") - peak_before
    grown_rss = proc_status_kib(pid, "VmRSS") - rss_before

    assert answer, "the server answers (431) before closing, or at least closes: it never waits for more"
    status, headers, body = parse_raw(answer)
    assert status == 431
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request_header_too_large"
    assert grown_peak < 32 * 1024, f"the server's peak memory grew {grown_peak} KiB for a 100 MiB header"
    assert grown_rss < 32 * 1024
    assert httpx.get(f"{chatstack.url}/healthz", timeout=10).status_code == 200


async def test_header_limit_answers_json_431_and_allows_large_normal_heads(
    chatstack: ServerProcess, client: httpx.AsyncClient
) -> None:
    fits = await client.get("/api/conversations", headers={"X-Padding": "a" * 60_000})
    assert fits.status_code == 200
    # Many headers, each small, count together.
    many = {f"X-Padding-{i}": "a" * 1000 for i in range(70)}
    for headers in ({"X-Padding": "a" * 70_000}, many):
        refused = await client.get("/api/conversations", headers=headers)
        assert_json_error(refused, 431, "request_header_too_large")
        assert refused.headers["connection"] == "close"
    # So does the request line (httpx itself refuses URLs this long: sent as bytes).
    long_line = b"GET /api/conversations?q=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, body = parse_raw(await asyncio.to_thread(raw_exchange, chatstack, long_line))
    assert status == 431
    assert json.loads(body)["error"]["code"] == "request_header_too_large"


# Auth on, DEBUG, text logs: forged log lines, keys in logs, and wrong keys by the hundred.


@pytest.fixture(scope="module")
def auth_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    return {
        **chatstack_env,
        "CHATSTACK_AUTH": "on",
        "CHATSTACK_LOG_LEVEL": "DEBUG",
        "CHATSTACK_JSON_LOGS": "false",
        "CHATSTACK_AUTH_FAILURES_PER_MINUTE": str(AUTH_FAILURES_PER_MINUTE),
        "CHATSTACK_RATE_LIMIT_PER_MINUTE": "6000",
    }


def create_key(env: dict[str, str], name: str) -> str:
    result = subprocess.run(
        [str(BIN / "chatstack"), "users", "create", name],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def keys(auth_env: dict[str, str]) -> dict[str, str]:
    return {name: create_key(auth_env, name) for name in ("alice", "bob", "carol")}


@pytest.fixture(scope="module")
def secured(auth_env: dict[str, str], keys: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    server = start_chatstack(auth_env, log_dir)
    yield server
    server.stop()


@pytest.fixture
async def alice(secured: ServerProcess, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    async with httpx.AsyncClient(base_url=secured.url, headers=headers, timeout=30) as http:
        yield http


TEXT_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


async def test_logged_values_cannot_forge_lines(secured: ServerProcess, alice: httpx.AsyncClient) -> None:
    fake = "2030-01-01 00:00:00,000 INFO chatstack.access: GET /admin 200"
    for separator in ["%0a", "%0d", "%0d%0a", "%c2%85", "%e2%80%a8", "%e2%80%a9", "%0b", "%0c", "%1c"]:
        await alice.get(f"/api/conversations/x{separator}{fake.replace(' ', '%20')}")
    await alice.get("/api/conversations/%1b[2J%1b[31mred%e2%80%aeevil")
    lines = secured.log().splitlines()  # str.splitlines splits on every separator above, and more
    assert not [line for line in lines if line.startswith(fake)], "a request path wrote a log line"
    assert not [line for line in lines if "\x1b" in line or "\u202e" in line]
    strays = [line for line in lines if not TEXT_LOG_LINE.match(line) and not line.startswith("    ")]
    assert not strays, "every line starts a record or continues one, indented"
    assert any("x\\n2030-01-01 00:00:00,000 INFO" in line for line in lines), "the value is kept, escaped"


async def test_debug_logs_hold_no_key_material_and_no_prompts(
    secured: ServerProcess, alice: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    prompt = f"my secret prompt {uuid.uuid4().hex}"
    cid = await new_conversation(alice, title="private")
    run_id = await start_message(alice, cid, prompt)
    await read_events(alice, run_id)
    assert (await alice.get(f"/api/conversations/{cid}/export")).status_code == 200
    assert (await alice.get("/v1/models")).status_code == 200
    for stream in (False, True):
        completion = await alice.post(
            "/v1/chat/completions",
            json={"model": "scripted", "messages": [{"role": "user", "content": prompt}], "stream": stream},
        )
        assert completion.status_code == 200, completion.text
    async with httpx.AsyncClient(base_url=secured.url, timeout=30) as anonymous:
        for key in ("cs_" + "x" * 43, keys["bob"] + "x"):
            await anonymous.get("/api/conversations", headers={"Authorization": f"Bearer {key}"})

    log = secured.log()
    assert "DEBUG app.auth: unknown or revoked API key from 127.0.0.1" in log, "the log is at DEBUG"
    for name, key in keys.items():
        for secret in (key, hashlib.sha256(key.encode()).hexdigest(), key[:10], key[3:20]):
            assert secret not in log, f"{name}'s key material is in the log"
    assert "x" * 43 not in log
    assert prompt not in log


async def test_wrong_keys_are_rate_limited_per_address(secured: ServerProcess, keys: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=30) as http:

        async def get(key: str, address: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": address}
            return await http.get("/api/conversations", headers=headers)

        # Successful requests never count, however many.
        good = await asyncio.gather(*(get(keys["bob"], "10.0.0.1") for _ in range(50)))
        assert {r.status_code for r in good} == {200}
        wrong = [await get(f"cs_wrong-{i}", "10.0.0.1") for i in range(AUTH_FAILURES_PER_MINUTE)]
        assert {r.status_code for r in wrong} == {401}
        # The budget is spent (a slow machine may have earned a token or two back meanwhile).
        for attempt in range(5):
            refused = await get(f"cs_wrong-again-{attempt}", "10.0.0.1")
            if refused.status_code != 401:
                break
        assert_json_error(refused, 429, "rate_limited")
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 60 // AUTH_FAILURES_PER_MINUTE
        # Refused without a look at the key: a real key not used lately waits too...
        assert (await get(keys["carol"], "10.0.0.1")).status_code == 429
        # ...but a key in use from this address goes on working,
        assert (await get(keys["bob"], "10.0.0.1")).status_code == 200
        # and other addresses are not affected.
        assert (await get("cs_wrong", "10.0.0.2")).status_code == 401
        assert (await get(keys["alice"], "10.0.0.2")).status_code == 200

        await asyncio.sleep(retry_after)  # Retry-After told the truth: one more attempt is allowed
        assert (await get("cs_wrong-later", "10.0.0.1")).status_code == 401


@pytest.fixture(scope="module")
def shared_limit_replicas(
    postgres_url: str, scripted: ServerProcess, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    data_dir = tmp_path_factory.mktemp("auth-failures")
    env = {
        "CHATSTACK_DATABASE_URL": postgres_url,
        "CHATSTACK_BACKENDS_FILE": str(write_backends_file(data_dir / "backends.yaml", scripted.url)),
        "CHATSTACK_DEFAULT_BACKEND": "scripted",
        "CHATSTACK_DATA_DIR": str(data_dir),
        "CHATSTACK_UI": "false",
        "CHATSTACK_AUTH": "on",
        "CHATSTACK_AUTH_FAILURES_PER_MINUTE": "5",
        "CHATSTACK_REDIS_URL": "redis://127.0.0.1:6379/0",
        "CHATSTACK_REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:10]}",
    }
    servers = [start_chatstack(env, log_dir), start_chatstack(env, log_dir)]
    yield servers
    for server in servers:
        server.stop()


def test_wrong_keys_count_on_every_replica(shared_limit_replicas: list[ServerProcess]) -> None:
    first, second = shared_limit_replicas
    headers = {"Authorization": "Bearer cs_wrong", "X-Forwarded-For": "10.9.9.9"}
    statuses = [
        httpx.get(f"{server.url}/api/conversations", headers=headers, timeout=10).status_code
        for server in (first, second, first, second, first)
    ]
    assert statuses == [401] * 5
    refused = httpx.get(f"{second.url}/api/conversations", headers=headers, timeout=10)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"


# Defect 10: what nobody handled is still the documented JSON error, with the request id.


@pytest.fixture(scope="module")
def read_only_database(
    scripted: ServerProcess, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    """A chatstack on a PostgreSQL database of its own, and that database's name."""
    name = f"chatstack_ro_{uuid.uuid4().hex[:10]}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    data_dir = tmp_path_factory.mktemp("read-only")
    env = {
        "CHATSTACK_DATABASE_URL": f"{base}/{name}",
        "CHATSTACK_BACKENDS_FILE": str(write_backends_file(data_dir / "backends.yaml", scripted.url)),
        "CHATSTACK_DEFAULT_BACKEND": "scripted",
        "CHATSTACK_DATA_DIR": str(data_dir),
        "CHATSTACK_UI": "false",
    }
    server = start_chatstack(env, log_dir)
    yield server, name
    server.stop()
    asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def test_an_unwritable_database_answers_json_500_with_the_request_id(
    read_only_database: tuple[ServerProcess, str],
) -> None:
    server, name = read_only_database
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await http.post("/api/conversations", json={})).status_code == 201
        # Every new session read-only, and the app's pooled connections gone: it reconnects into that.
        await pg_admin(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        failed = await http.post("/api/conversations", json={"title": "never stored"})
        assert failed.status_code == 500
        assert failed.headers["content-type"] == "application/json"
        error = failed.json()["error"]
        assert error["code"] == "internal_error"
        assert error["type"] == "server_error"
        request_id = failed.headers["x-request-id"]
        assert error["request_id"] == request_id
        assert request_id in error["message"]
        assert "read-only" not in failed.text, "no internals in the answer"
        # The same connection goes on serving: reads still work.
        listed = await http.get("/api/conversations")
        assert listed.status_code == 200
        assert "never stored" not in [c["title"] for c in listed.json()["items"]]

    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    logged = [r for r in records if r.get("request_id") == request_id and r.get("exc")]
    assert len(logged) == 1, "one traceback, under the request's id"
    assert "read-only" in logged[0]["exc"]
    assert "never stored" not in logged[0]["exc"], "SQL parameters stay out of the log"
    access = [r for r in records if r.get("request_id") == request_id and r["logger"] == "chatstack.access"]
    assert access[0]["status"] == 500
