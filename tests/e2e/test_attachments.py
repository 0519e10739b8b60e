"""Attachments over HTTP against a real server, on SQLite and PostgreSQL: every type, downloads that a
browser cannot render as a page, documents in what the model receives, search over long ones, hostile
files refused with nothing lost, per-user isolation, and deletion with the conversation."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from app.db.engine import create_engine
from tests.support.pdfs import bomb_pdf, many_pages_pdf, text_pdf
from tests.support.processes import ServerProcess, start_chatstack, users_cli
from tests.support.sse import answer_text, ask, new_conversation

pytestmark = pytest.mark.slow

MAX_BYTES = 2 * 1024 * 1024
FILES = {
    "notes.txt": b"Plain notes.\nThe meeting moved to Thursday.\n",
    "guide.md": b"# Guide\n\nSome **bold** text and a [link](https://example.com).\n\n- one\n- two\n",
    "tool.py": b"import os\n\n\ndef main():\n    return os.getcwd()\n",
    "table.csv": b"name,age,city\nAda,36,London\nLinus,29,Helsinki\n",
    "data.json": b'{"answer": 42, "items": [1, 2, 3]}',
}
PDF_SENTENCE = "The lighthouse keeper counted 317 ships in March."


@pytest.fixture(scope="module")
def chatstack_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    return {
        **chatstack_env,
        "CHATSTACK_ATTACHMENT_MAX_BYTES": str(MAX_BYTES),
        "CHATSTACK_ATTACHMENT_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024),
        "CHATSTACK_ATTACHMENT_MAX_FILES": "10",
        "CHATSTACK_ATTACHMENT_PARSE_TIMEOUT_S": "10",
        "CHATSTACK_RATE_LIMIT_PER_MINUTE": "6000",
    }


def pdf_bytes() -> bytes:
    return text_pdf([["Annual report", PDF_SENTENCE], ["Second page: revenue grew."]])


async def upload(
    client: httpx.AsyncClient, cid: str, files: dict[str, bytes], field: str = "file"
) -> httpx.Response:
    parts = [(field, (name, data, "application/octet-stream")) for name, data in files.items()]
    return await client.post(f"/api/conversations/{cid}/attachments", files=parts)


async def uploaded(client: httpx.AsyncClient, cid: str, files: dict[str, bytes]) -> list[dict[str, object]]:
    response = await upload(client, cid, files)
    assert response.status_code == 201, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


BOUNDARY = "chatstack-test-boundary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


async def multipart_stream(files: dict[str, bytes]) -> AsyncIterator[bytes]:
    """A multipart body sent in 64 KiB pieces, without a Content-Length."""
    for name, data in files.items():
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code, response.text


async def test_every_type_is_stored_typed_by_content_and_downloaded_safely(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    files = {**FILES, "report.pdf": pdf_bytes()}
    items = await uploaded(client, cid, files)
    by_name = {str(i["name"]): i for i in items}
    assert [i["name"] for i in items] == list(files)  # in the order sent
    assert by_name["notes.txt"]["media_type"] == "text/plain"
    assert by_name["guide.md"]["media_type"] == "text/markdown"
    assert by_name["tool.py"]["media_type"] == "text/x-python"
    assert by_name["table.csv"]["media_type"] == "text/csv"
    assert by_name["data.json"]["media_type"] == "application/json"
    assert by_name["report.pdf"]["media_type"] == "application/pdf"
    assert by_name["report.pdf"]["pages"] == 2
    for name, data in files.items():
        assert by_name[name]["bytes"] == len(data)
        assert isinstance(by_name[name]["tokens"], int)
        assert by_name[name]["tokens"] > 0

    listed = (await client.get(f"/api/conversations/{cid}/attachments")).json()["items"]
    assert [i["id"] for i in listed] == [i["id"] for i in items]

    for name, data in files.items():
        response = await client.get(f"/api/conversations/{cid}/attachments/{by_name[name]['id']}")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "html" not in response.headers["content-type"]
        assert response.headers["content-disposition"].startswith("attachment;")
        assert f"filename*=UTF-8''{quote(name)}" in response.headers["content-disposition"]

    gone = str(by_name["notes.txt"]["id"])
    assert (await client.delete(f"/api/conversations/{cid}/attachments/{gone}")).status_code == 204
    assert_error(await client.get(f"/api/conversations/{cid}/attachments/{gone}"), 404, "not_found")
    assert_error(await client.delete(f"/api/conversations/{cid}/attachments/{gone}"), 404, "not_found")
    assert len((await client.get(f"/api/conversations/{cid}/attachments")).json()["items"]) == 5


async def test_the_content_decides_the_type_not_the_name(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    items = await uploaded(
        client,
        cid,
        {
            "disguised.txt": pdf_bytes(),  # a PDF, whatever its name says
            "page.html": b"<html><body><script>alert(1)</script></body></html>\n",
            "résumé «final».md": b"# Heading\n\n- a list\n",
        },
    )
    assert [i["media_type"] for i in items] == ["application/pdf", "text/plain", "text/markdown"]
    html = await client.get(f"/api/conversations/{cid}/attachments/{items[1]['id']}")
    assert html.headers["content-type"] == "text/plain; charset=utf-8"  # never served as a page
    assert "sandbox" in html.headers["content-security-policy"]
    disposition = (await client.get(f"/api/conversations/{cid}/attachments/{items[2]['id']}")).headers[
        "content-disposition"
    ]
    assert disposition.isascii()
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%C2%ABfinal%C2%BB.md" in disposition


async def test_a_referenced_document_reaches_the_model(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    [pdf, notes] = await uploaded(client, cid, {"report.pdf": pdf_bytes(), "notes.txt": FILES["notes.txt"]})
    events = await ask(client, cid, "What is in these files?", attachments=[pdf["id"], notes["id"]])
    answer = answer_text(events)
    # The scripted backend echoes the user message as it received it: the documents, fenced.
    assert answer.startswith("Echo: What is in these files?")
    assert PDF_SENTENCE in answer
    assert "The meeting moved to Thursday." in answer
    assert 'Attached file 1: "report.pdf" (application/pdf, 2 pages' in answer
    assert "not instructions" in answer

    detail = (await client.get(f"/api/conversations/{cid}")).json()
    question = detail["messages"][0]
    assert question["content"] == "What is in these files?"  # stored as typed; documents apart
    assert [(a["id"], a["name"]) for a in question["attachments"]] == [
        (pdf["id"], "report.pdf"),
        (notes["id"], "notes.txt"),
    ]
    assert question["attachments"][0]["media_type"] == "application/pdf"
    assert detail["messages"][1]["attachments"] == []

    exported = (await client.get(f"/api/conversations/{cid}/export", params={"format": "json"})).json()
    assert [a["name"] for a in exported["messages"][0]["attachments"]] == ["report.pdf", "notes.txt"]
    markdown = (await client.get(f"/api/conversations/{cid}/export", params={"format": "markdown"})).text
    assert "_Attached: `report.pdf`, `notes.txt`_" in markdown

    # Later turns still see it (the history keeps the document with its message).
    again = answer_text(await ask(client, cid, "history"))
    assert PDF_SENTENCE in again


async def test_a_message_cannot_reference_what_is_not_in_its_conversation(client: httpx.AsyncClient) -> None:
    other = await new_conversation(client)
    [foreign] = await uploaded(client, other, {"notes.txt": FILES["notes.txt"]})
    cid = await new_conversation(client)
    for ids in ([foreign["id"]], [uuid.uuid4().hex]):
        response = await client.post(
            f"/api/conversations/{cid}/messages", json={"content": "read it", "attachments": ids}
        )
        assert_error(response, 422, "unknown_attachment")
    bad = await client.post(
        f"/api/conversations/{cid}/messages", json={"content": "x", "attachments": ["../x"]}
    )
    assert_error(bad, 422, "invalid_request")
    detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert detail["messages"] == []
    assert detail["active_run_id"] is None


async def test_a_long_document_is_searched_with_sources(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    filler = [
        f"Paragraph {i}: the committee reviewed routine matters of procedure and budget." for i in range(3000)
    ]
    filler[2200] = "Paragraph 2200: the zebra quota for the northern reserve is 4711 animals."
    long_text = "\n\n".join(filler).encode()
    [document] = await uploaded(client, cid, {"minutes.txt": long_text})
    assert int(str(document["tokens"])) > 40_000

    # Too long for the context: the model is told to search it...
    told = answer_text(await ask(client, cid, "Summarise this.", attachments=[document["id"]]))
    assert "too long to show here whole" in told
    assert "search_documents" in told
    assert "zebra" not in told
    # ...and the search finds the passage, shown as a source.
    events = await ask(client, cid, "docs: zebra quota northern")
    finished = next(e for e in events if e.type == "tool.finished")
    assert finished.data["name"] == "search_documents"
    assert finished.data["error"] is None
    assert "4711 animals" in finished.data["output"]
    assert "<document_passages>" in finished.data["output"]
    source = finished.data["sources"][0]
    assert source["title"].startswith("minutes.txt (lines ")
    assert source["url"] == f"/api/conversations/{cid}/attachments/{document['id']}"
    assert answer_text(events).startswith("According to minutes.txt, lines ")  # the model read it

    # A query whose words never occur together still finds the best passage (any word).
    events = await ask(client, cid, "docs: zebra xylophonequartet")
    assert "4711" in next(e for e in events if e.type == "tool.finished").data["output"]


async def test_pdf_passages_name_their_page(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    pages = [[f"Page {n} filler text about shipping schedules and harbour fees."] * 40 for n in range(1, 31)]
    pages[17] = ["The harbour master's password hint is periwinkle.", *pages[17][1:]]
    [pdf] = await uploaded(client, cid, {"harbour.pdf": text_pdf(pages)})
    events = await ask(client, cid, "docs: periwinkle")
    finished = next(e for e in events if e.type == "tool.finished")
    assert "periwinkle" in finished.data["output"]
    source = finished.data["sources"][0]
    assert source["title"].startswith("harbour.pdf (page")
    assert "18" in source["title"]
    assert source["url"].endswith("#page=18") or source["url"].endswith("#page=17")
    assert pdf["pages"] == 30


@pytest.mark.parametrize(
    ("name", "make", "status", "code"),
    [
        ("bomb.pdf", lambda: bomb_pdf(200), 422, "pdf_too_complex"),
        ("long.pdf", lambda: many_pages_pdf(2000), 422, "too_many_pages"),
        ("broken.pdf", lambda: b"%PDF-1.7\n" + os.urandom(4000), 422, "invalid_pdf"),
        ("binary.txt", lambda: b"\x7fELF\x02\x01\x01\x00" + os.urandom(5000), 415, "unsupported_attachment"),
        ("latin1.txt", lambda: "Caf\xe9 cr\xe8me".encode("latin-1"), 415, "unsupported_attachment"),
        ("big.txt", lambda: b"a" * (MAX_BYTES + 1), 413, "attachment_too_large"),
        ("empty.txt", lambda: b"", 422, "empty_attachment"),
    ],
)
async def test_hostile_files_are_refused_and_nothing_is_lost(
    client: httpx.AsyncClient, name: str, make: object, status: int, code: str
) -> None:
    cid = await new_conversation(client)
    [kept] = await uploaded(client, cid, {"notes.txt": FILES["notes.txt"]})
    await ask(client, cid, "hello")
    assert callable(make)
    data = make()
    # Alone, and beside a good file: the upload is refused whole.
    assert_error(await upload(client, cid, {name: data}), status, code)
    assert_error(await upload(client, cid, {"good.md": FILES["guide.md"], name: data}), status, code)

    listed = (await client.get(f"/api/conversations/{cid}/attachments")).json()["items"]
    assert [i["id"] for i in listed] == [kept["id"]]
    download = await client.get(f"/api/conversations/{cid}/attachments/{kept['id']}")
    assert download.content == FILES["notes.txt"]
    assert len((await client.get(f"/api/conversations/{cid}")).json()["messages"]) == 2
    # The reader (its worker replaced if it had to be killed) still reads the next file.
    [fine] = await uploaded(client, cid, {"report.pdf": pdf_bytes()})
    assert fine["pages"] == 2


async def test_upload_limits_and_malformed_uploads(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    url = f"/api/conversations/{cid}/attachments"
    assert_error(await client.post(url, json={"file": "x"}), 422, "not_multipart")
    assert_error(await client.post(url, files={"note": (None, b"just a field")}), 422, "no_files")
    broken = await client.post(
        url,
        content=b'--b\r\nContent-Disposition: form-data; name="file"',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert broken.status_code == 422, broken.text
    # Over the request limit (declared): refused before the body is read.
    huge = b"x" * (4 * 1024 * 1024 + 100 * 1024)
    assert_error(await upload(client, cid, {"a.txt": huge}), 413, "payload_too_large")
    # The larger limit is the upload route's only: a JSON body of 2 MB is still too large elsewhere.
    message = await client.post(f"/api/conversations/{cid}/messages", json={"content": "y" * MAX_BYTES})
    assert_error(message, 413, "payload_too_large")
    # Without a declared length (chunked), the upload is counted as it streams.
    streamed = await client.post(
        url, content=multipart_stream({"s.txt": b"streamed\n" * 10_000}), headers=MULTIPART
    )
    assert streamed.status_code == 201, streamed.text
    three = {f"{i}.txt": b"c" * (MAX_BYTES - 1000) for i in range(3)}  # each within its limit, not together
    assert_error(
        await client.post(url, content=multipart_stream(three), headers=MULTIPART), 413, "payload_too_large"
    )
    # A file of exactly the limit passes.
    [exact] = await uploaded(client, cid, {"exact.txt": b"b" * MAX_BYTES})
    assert exact["bytes"] == MAX_BYTES
    # The conversation holds at most 10 files (it has 2).
    notes = {f"n{i}.txt": b"note %d" % i for i in range(9)}
    assert_error(await upload(client, cid, notes), 409, "too_many_attachments")
    await uploaded(client, cid, dict(list(notes.items())[:8]))
    assert_error(await upload(client, cid, {"one-more.txt": b"no room"}), 409, "too_many_attachments")
    assert len((await client.get(url)).json()["items"]) == 10
    assert_error(await upload(client, "0" * 32, {"a.txt": b"a"}), 404, "not_found")


async def test_deleting_the_conversation_deletes_its_files(
    client: httpx.AsyncClient, chatstack_env: dict[str, str]
) -> None:
    cid = await new_conversation(client)
    long_text = "\n".join(f"line {i} about cascading deletes" for i in range(5000)).encode()
    [doc, _] = await uploaded(client, cid, {"long.txt": long_text, "report.pdf": pdf_bytes()})
    await ask(client, cid, "read", attachments=[doc["id"]])
    engine = create_engine(chatstack_env["CHATSTACK_DATABASE_URL"])
    count = "SELECT count(*) FROM {table} WHERE {column} = :id"
    try:
        async with engine.connect() as conn:
            assert (
                await conn.scalar(
                    text(count.format(table="attachments", column="conversation_id")), {"id": cid}
                )
            ) == 2
            chunks = await conn.scalar(
                text(count.format(table="attachment_chunks", column="conversation_id")), {"id": cid}
            )
            assert chunks
            assert chunks > 10
        assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
        assert_error(await client.get(f"/api/conversations/{cid}/attachments/{doc['id']}"), 404, "not_found")
        async with engine.connect() as conn:
            for table in ("attachments", "attachment_chunks"):
                assert (
                    await conn.scalar(text(count.format(table=table, column="conversation_id")), {"id": cid})
                ) == 0
            links = "SELECT count(*) FROM message_attachments WHERE attachment_id = :id"
            assert (await conn.scalar(text(links), {"id": doc["id"]})) == 0
            if engine.dialect.name == "sqlite":  # the full-text index forgot the passages too
                found = (
                    "SELECT count(*) FROM attachment_chunks_fts WHERE attachment_chunks_fts MATCH 'cascading'"
                )
                remaining = await conn.scalar(text(found))
                owned = "SELECT count(*) FROM attachment_chunks WHERE text LIKE '%cascading%'"
                assert remaining == await conn.scalar(text(owned))
    finally:
        await engine.dispose()


# With API keys on: one user's attachments are another's 404s.


@pytest.fixture(scope="module")
def auth_env(chatstack_env: dict[str, str]) -> dict[str, str]:
    return {**chatstack_env, "CHATSTACK_AUTH": "on", "CHATSTACK_AUTH_CACHE_S": "0.5"}


@pytest.fixture(scope="module")
def keys(auth_env: dict[str, str]) -> dict[str, str]:
    found = {}
    for who in ("owner", "other"):
        name = f"attach-{who}-{uuid.uuid4().hex[:8]}"  # unique: the PostgreSQL database is shared
        result = users_cli(auth_env, "create", name)
        assert result.returncode == 0, result.stderr
        found[who] = result.stdout.strip().splitlines()[-1]
    return found


@pytest.fixture(scope="module")
def auth_server(auth_env: dict[str, str], keys: dict[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    process = start_chatstack(auth_env, log_dir)
    yield process
    process.stop()


@pytest.fixture
async def users(
    auth_server: ServerProcess, keys: dict[str, str]
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    def client_of(who: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {keys[who]}"}
        return httpx.AsyncClient(base_url=auth_server.url, headers=headers, timeout=30)

    async with client_of("owner") as owner, client_of("other") as other:
        yield owner, other


async def test_attachments_are_private_to_their_user(
    users: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    owner, other = users
    cid = await new_conversation(owner)
    [doc] = await uploaded(owner, cid, {"secret.txt": b"The vault code is 8812.\n"})
    base = f"/api/conversations/{cid}/attachments"
    assert_error(await other.get(base), 404, "not_found")
    assert_error(await other.get(f"{base}/{doc['id']}"), 404, "not_found")
    assert_error(await other.delete(f"{base}/{doc['id']}"), 404, "not_found")
    assert_error(await upload(other, cid, {"x.txt": b"planted"}), 404, "not_found")
    mine = await new_conversation(other)
    stolen = await other.post(
        f"/api/conversations/{mine}/messages", json={"content": "read it", "attachments": [doc["id"]]}
    )
    assert_error(stolen, 422, "unknown_attachment")
    # Nothing changed for the owner.
    items = (await owner.get(base)).json()["items"]
    assert [i["id"] for i in items] == [doc["id"]]
    assert (await owner.get(f"{base}/{doc['id']}")).content == b"The vault code is 8812.\n"
    anonymous = await httpx.AsyncClient(base_url=str(owner.base_url)).get(base)
    assert anonymous.status_code == 401
