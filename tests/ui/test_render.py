"""What the chat shows for run events and stored conversations (no browser needed)."""

from __future__ import annotations

from typing import Any

from tests.ui.test_branches import without_branch_controls
from tests.ui.test_markdown import assert_inert
from ui.api_models import Message, Run, RunEvent, Source, ToolCall
from ui.conversation_view import conversation_items
from ui.markdown import markdown_html
from ui.render import (
    THINKING,
    RunView,
    Timings,
    ToolStep,
    inline_code,
    md_escape,
    safe_url,
    sources_markdown,
    timing_text,
    tool_body,
    tool_title,
)


def event(seq: int, type_: str, **data: Any) -> RunEvent:
    return RunEvent(seq, type_, data)


def text_of(item: Any) -> str:
    """What a message says (without the branch controls: tests/ui/test_branches.py)."""
    return without_branch_controls("".join(part["text"] for part in item["content"]))


def texts(items: list[Any]) -> list[str]:
    return [text_of(i) for i in items]


def shown(markdown: str) -> str:
    """How untrusted Markdown reaches the Chatbot: rendered inert (see tests/ui/test_markdown.py)."""
    return markdown_html(markdown)


def run_with_search() -> list[RunEvent]:
    return [
        event(1, "run.started", run_id="r1", conversation_id="c1", backend="b"),
        event(2, "message.completed", message_id=1, content="", status="complete", tool_calls=[], usage=None),
        event(3, "tool.started", call_id="t1", name="web_search", arguments={"query": "gradio 6"}),
        event(
            4,
            "tool.finished",
            call_id="t1",
            name="web_search",
            output="<search_results>...</search_results>",
            sources=[{"title": "Gradio docs", "url": "https://www.gradio.app/docs", "snippet": "All of it."}],
            error=None,
            duration_ms=1234.5,
        ),
        event(5, "message.delta", text="Gradio 6 "),
        event(6, "message.delta", text="is out."),
        event(
            7, "message.completed", message_id=2, content="Gradio 6 is out.", status="complete", tool_calls=[]
        ),
        event(
            8,
            "run.finished",
            status="completed",
            timings={"ttft_ms": 420.0, "total_ms": 2310.0, "llm_calls": 2, "tool_calls": 1},
            usage=None,
        ),
    ]


class TestLiveRun:
    def test_nothing_yet_shows_thinking(self) -> None:
        view = RunView()
        view.apply(event(1, "run.started"))
        assert texts(view.messages()) == [THINKING]

    def test_a_backend_starting_from_zero_is_shown_until_it_answers(self) -> None:
        view = RunView()
        view.apply(event(1, "run.started"))
        view.apply(event(2, "backend.starting", backend="qwen-<serverless>", timeout_s=600))
        (notice,) = texts(view.messages())
        assert "Starting qwen-&lt;serverless&gt;" in notice
        assert "up to 10 min" in notice
        view.apply(event(3, "backend.ready", backend="qwen-<serverless>", waited_ms=41_000))
        assert texts(view.messages()) == [THINKING]
        view.apply(event(4, "message.delta", text="Hi"))
        assert texts(view.messages()) == [shown("Hi")]

    def test_deltas_accumulate_into_one_message(self) -> None:
        view = RunView()
        for i, text in enumerate(["Hel", "lo", " there"], 1):
            view.apply(event(i, "message.delta", text=text))
        items = view.messages()
        assert texts(items) == [shown("Hello there")]
        assert items[0]["role"] == "assistant"
        assert "metadata" not in items[0]

    def test_tool_step_is_pending_then_done_with_sources_and_duration(self) -> None:
        events = run_with_search()
        view = RunView()
        for e in events[:3]:
            view.apply(e)
        pending = view.messages()[0]
        assert pending["metadata"]["title"] == "Searching the web: gradio 6"
        assert pending["metadata"]["status"] == "pending"

        view.apply(events[3])
        items = view.messages()
        done = items[0]
        assert done["metadata"]["title"] == "Searched the web: gradio 6"
        assert done["metadata"]["status"] == "done"
        assert done["metadata"]["duration"] == 1.2345
        assert '<a href="https://www.gradio.app/docs" target="_blank"' in text_of(done)
        assert ">Gradio docs</a>" in text_of(done)
        # The model is working again after the tool: say so.
        assert texts(items)[-1] == THINKING

    def test_finished_run_has_answer_and_timing_footer(self) -> None:
        view = RunView()
        for e in run_with_search():
            view.apply(e)
        assert view.finished
        items = texts(view.messages())
        assert items[1] == shown("Gradio 6 is out.")
        assert "first token 420 ms · total 2.3 s · 1 tool call" in items[-1]
        assert "cs-badge" not in items[-1]

    def test_a_streamed_answer_only_adds_to_its_settled_part_and_ends_as_one(self) -> None:
        # Gradio sends an update that only appends to a text as the appended text: the settled blocks
        # go out once, and each update carries only the block being written.
        answer = "First paragraph.\n\n- a\n- b\n\nLast one, still being written"
        view = RunView()
        settled = ""
        for seq, start in enumerate(range(0, len(answer), 4), 1):
            view.apply(event(seq, "message.delta", text=answer[start : start + 4]))
            parts = [part["text"] for part in view.messages()[0]["content"]]
            if len(parts) == 2:
                assert parts[0].startswith(settled)
                settled = parts[0]
                assert parts[1].startswith('<div class="cs-last-block">')
        assert settled == shown("First paragraph.\n\n- a\n- b")
        view.apply(event(99, "message.completed", content=answer, status="complete"))
        assert texts(view.messages())[0] == shown(answer)
        assert len(view.messages()[0]["content"]) == 1

    def test_completed_message_replaces_streamed_text(self) -> None:
        view = RunView()
        view.apply(event(1, "message.delta", text="partial"))
        view.apply(event(2, "message.completed", content="the whole answer", status="complete"))
        assert texts(view.messages()) == [shown("the whole answer"), THINKING]

    def test_stopped_answer_keeps_text_and_is_marked(self) -> None:
        view = RunView()
        view.apply(event(1, "message.delta", text="half an"))
        view.apply(event(2, "message.completed", content="half an", status="cancelled", tool_calls=[]))
        view.apply(event(3, "run.finished", status="cancelled", timings={"ttft_ms": 5, "total_ms": 900}))
        items = texts(view.messages())
        assert items[0] == shown("half an")
        assert ">Stopped<" in items[-1]

    def test_stopped_before_any_text(self) -> None:
        view = RunView()
        view.apply(event(1, "message.completed", content="", status="cancelled", tool_calls=[]))
        view.apply(event(2, "run.finished", status="cancelled", timings={"total_ms": 50, "tool_calls": 0}))
        items = texts(view.messages())
        assert len(items) == 1
        assert ">Stopped<" in items[0]

    def test_backend_down_is_explained(self) -> None:
        view = RunView()
        view.apply(
            event(1, "run.error", code="backend_unavailable", message="The backend 'x' is not reachable.")
        )
        view.apply(event(2, "run.finished", status="failed", timings={"total_ms": 9, "tool_calls": 0}))
        notice, footer = texts(view.messages())
        assert "The model backend is not reachable" in notice
        assert "The backend 'x' is not reachable." in notice
        assert "Pick another backend" in notice
        assert ">Failed<" in footer

    def test_step_limit_is_explained(self) -> None:
        view = RunView()
        view.apply(event(1, "run.error", code="step_limit", message="The agent reached its step limit."))
        view.apply(event(2, "run.finished", status="failed", timings={}))
        assert "Step limit reached" in texts(view.messages())[0]

    def test_lost_connection_while_running(self) -> None:
        view = RunView()
        view.apply(event(1, "message.delta", text="so far"))
        view.lose_connection("connection refused")
        items = texts(view.messages())
        assert items[0] == shown("so far")
        assert "Lost the connection" in items[1]
        assert not view.finished

    def test_malformed_arguments_are_shown_raw(self) -> None:
        view = RunView()
        view.apply(event(1, "tool.started", call_id="t", name="calculator", arguments='{"expression": "1+'))
        assert view.messages()[0]["metadata"]["title"] == 'Calculating: \\{"expression": "1\\+'

    def test_replay_is_deterministic(self) -> None:
        first, second = RunView(), RunView()
        for e in run_with_search():
            first.apply(e)
            second.apply(e)
        assert first.messages() == second.messages()


class TestToolSteps:
    def test_calculator_shows_expression_and_result(self) -> None:
        step = ToolStep("c", "calculator", {"expression": "6*7"}, done=True, output="42")
        assert tool_title(step) == "Calculated: 6\\*7"
        assert tool_body(step) == "`6*7` = **42**"

    def test_failed_tool(self) -> None:
        step = ToolStep(
            "c", "calculator", {"expression": "1/0"}, done=True, output="Error: division by zero", error="x"
        )
        assert tool_title(step) == "Calculation failed: 1/0"
        assert tool_body(step) == "division by zero"

    def test_other_tools(self) -> None:
        step = ToolStep("c", "weather", {"city": "Oslo"}, done=True, output="sunny")
        assert tool_title(step) == "Used: weather"
        assert '`{"city": "Oslo"}`' in tool_body(step)
        assert "```text\nsunny\n```" in tool_body(step)

    def test_untrusted_source_text_cannot_inject_markdown(self) -> None:
        body = sources_markdown(
            [Source(title="[click](javascript:alert(1))", url="https://ex.com/a b)", snippet="<img src=x>")]
        )
        assert "](javascript" not in body.replace("\\]", "")
        assert "(https://ex.com/a%20b%29)" in body
        assert "\\<img" in body  # shown as text, not parsed as a tag

    def test_non_http_sources_are_not_linked(self) -> None:
        body = sources_markdown([Source(title="local", url="file:///etc/passwd")])
        assert "](" not in body

    def test_long_query_is_shortened(self) -> None:
        step = ToolStep("s", "web_search", {"query": "word " * 100})
        assert len(tool_title(step)) < 120
        assert tool_title(step).endswith("…")


class TestHistory:
    def message(
        self, id_: int, role: str, content: str = "", run: str | None = "r1", **extra: Any
    ) -> Message:
        return Message(id=id_, role=role, content=content, run_id=run, **extra)  # type: ignore[arg-type]

    def run(self, **extra: Any) -> Run:
        fields: dict[str, Any] = {"id": "r1", "conversation_id": "c", "status": "completed", "backend": "b"}
        fields.update(ttft_ms=100.0, total_ms=1500.0, tool_calls=1, llm_calls=2)
        fields.update(extra)
        return Run(**fields)

    def stored_search_turn(self) -> list[Message]:
        return [
            self.message(1, "user", "what is new?"),
            self.message(
                2,
                "assistant",
                tool_calls=[ToolCall(id="t1", name="web_search", arguments='{"query": "news"}')],
            ),
            self.message(
                3,
                "tool",
                "<search_results>...</search_results>",
                tool_call_id="t1",
                name="web_search",
                sources=[Source(title="News", url="https://news.example.com")],
                duration_ms=812.0,
            ),
            self.message(4, "assistant", "Here is the news."),
        ]

    def test_a_stored_turn_matches_the_live_view(self) -> None:
        items = conversation_items(self.stored_search_turn(), [self.run()], live_run_id=None)
        assert items[0]["role"] == "user"
        assert text_of(items[0]) == shown("what is new?")
        assert items[1]["metadata"]["title"] == "Searched the web: news"
        assert items[1]["metadata"]["status"] == "done"
        assert '<a href="https://news.example.com" target="_blank"' in text_of(items[1])
        assert text_of(items[2]) == shown("Here is the news.")
        assert "first token 100 ms · total 1.5 s · 1 tool call" in text_of(items[3])

    def test_a_reopened_tool_step_shows_its_stored_duration(self) -> None:
        items = conversation_items(self.stored_search_turn(), [self.run()], live_run_id=None)
        assert items[1]["metadata"]["duration"] == 0.812

    def test_each_answer_takes_the_timings_of_its_own_run(self) -> None:
        messages = [
            self.message(1, "user", "one", run="a"),
            self.message(2, "assistant", "first", run="a"),
            self.message(3, "user", "two", run="b"),
            self.message(4, "assistant", "second", run="b"),
        ]
        runs = [
            self.run(id="a", total_ms=100.0, ttft_ms=None),
            self.run(id="b", total_ms=2000.0, ttft_ms=None),
        ]
        items = texts(conversation_items(messages, runs, None))
        assert "total 100 ms" in items[2]
        assert "total 2.0 s" in items[5]

    def test_the_backend_that_answered_is_named_when_it_is_not_the_conversations(self) -> None:
        messages = [
            self.message(1, "user", "calc: 6*7"),
            self.message(
                2,
                "assistant",
                backend="tools-b",
                tool_calls=[ToolCall(id="t1", name="calculator", arguments='{"expression": "6*7"}')],
            ),
            self.message(3, "tool", "42", tool_call_id="t1", name="calculator", backend="auto"),
            self.message(4, "assistant", "The result is 42.", backend="fast-b"),
        ]
        footer = texts(conversation_items(messages, [self.run(backend="auto")], None, "auto"))[-1]
        assert "1 tool call · by tools-b and fast-b" in footer
        # The usual case says nothing: the conversation's own backend wrote it.
        plain = [self.message(1, "user", "hi"), self.message(2, "assistant", "hello", backend="b")]
        assert "by " not in texts(conversation_items(plain, [self.run()], None, "b"))[-1]
        # A failover to another backend is worth the note.
        assert (
            "by other"
            in texts(
                conversation_items(
                    [self.message(1, "user", "hi"), self.message(2, "assistant", "hello", backend="other")],
                    [self.run()],
                    None,
                    "b",
                )
            )[-1]
        )

    def test_a_stopped_answer_saved_under_auto_names_no_writer(self) -> None:
        messages = [
            self.message(1, "user", "go"),
            self.message(2, "assistant", "par", status="cancelled", backend="auto"),
        ]
        footer = texts(conversation_items(messages, [self.run(status="cancelled")], None, "auto"))[-1]
        assert "by " not in footer

    def test_the_live_run_is_left_to_its_stream(self) -> None:
        items = conversation_items(self.stored_search_turn(), [], live_run_id="r1")
        assert texts(items) == [shown("what is new?")]

    def test_failed_run_without_text_shows_its_error(self) -> None:
        messages = [self.message(1, "user", "hi")]
        run = self.run(status="failed", error_code="backend_timeout", error_message="Too slow.", tool_calls=0)
        items = texts(conversation_items(messages, [run], None))
        assert items[0] == shown("hi")
        assert "took too long" in items[1]
        assert ">Failed<" in items[2]

    def test_stopped_answer_from_history(self) -> None:
        messages = [self.message(1, "user", "go"), self.message(2, "assistant", "par", status="cancelled")]
        items = texts(conversation_items(messages, [self.run(status="cancelled")], None))
        assert items[1] == shown("par")
        assert ">Stopped<" in items[2]

    def test_turns_keep_their_order(self) -> None:
        messages = [
            self.message(1, "user", "one", run="a"),
            self.message(2, "assistant", "first", run="a"),
            self.message(3, "user", "two", run="b"),
            self.message(4, "assistant", "second", run="b"),
        ]
        items = texts(conversation_items(messages, [], None))
        assert items == [shown(t) for t in ("one", "first", "two", "second")]

    def test_a_regenerated_answer_replaces_the_first_without_its_timings(self) -> None:
        # The question keeps the first run's id; the new answer is another run's.
        messages = [
            self.message(1, "user", "again?", run="a"),
            self.message(2, "assistant", "second", run="b"),
        ]
        runs = [self.run(id="a", total_ms=111.0), self.run(id="b", total_ms=222.0)]
        items = texts(conversation_items(messages, runs, None))
        assert items[:2] == [shown("again?"), shown("second")]
        assert len(items) == 3
        assert "total 222 ms" in items[2]

    def test_a_regenerated_answer_still_running_shows_nothing_of_the_first(self) -> None:
        messages = [
            self.message(1, "user", "one", run="a"),
            self.message(2, "assistant", "first", run="a"),
            self.message(3, "user", "two", run="b"),
        ]
        runs = [self.run(id="a"), self.run(id="b"), self.run(id="c", status="running")]
        assert texts(conversation_items(messages, runs, live_run_id="c"))[3:] == [shown("two")]


class TestSmallPieces:
    def test_timing_text(self) -> None:
        assert timing_text(Timings(ttft_ms=85, total_ms=12_345, tool_calls=2)) == (
            "first token 85 ms · total 12.3 s · 2 tool calls"
        )
        assert timing_text(Timings(ttft_ms=None, total_ms=10, tool_calls=0)) == "total 10 ms · no tool calls"

    def test_md_escape_and_code(self) -> None:
        assert md_escape("*a* [b](c)") == "\\*a\\* \\[b\\]\\(c\\)"
        assert inline_code("a`b") == "``a`b``"
        assert inline_code("`x`") == "`` `x` ``"

    def test_safe_url(self) -> None:
        assert safe_url("https://e.com/x?q=(1)") == "https://e.com/x?q=%281%29"
        assert safe_url("javascript:alert(1)") is None
        assert safe_url("https://") is None


class TestUntrustedText:
    """Model, tool, search and user text reaches the Chatbot only rendered inert (see test_markdown.py)."""

    def test_a_streamed_answer_with_html_draws_no_elements(self) -> None:
        view = RunView()
        answer = 'Log in: <form action="http://evil.test"><input type=password></form> ![x](http://evil.test/a.png)'
        for seq, start in enumerate(range(0, len(answer), 9), 1):
            view.apply(event(seq, "message.delta", text=answer[start : start + 9]))
            for text in texts(view.messages()):
                assert "<form" not in text
                assert "<input" not in text
                assert "<img" not in text
        (text,) = texts(view.messages())
        assert "&lt;form action=&quot;http://evil.test&quot;&gt;" in text
        assert 'class="cs-image-link" href="http://evil.test/a.png"' in text

    def test_tool_output_sources_and_questions_are_inert(self) -> None:
        messages = [
            Message(id=1, role="user", content="<iframe src=http://evil.test></iframe>", run_id="r1"),
            Message(
                id=2,
                role="assistant",
                content="",
                run_id="r1",
                tool_calls=[ToolCall(id="t1", name="web_search", arguments='{"query": "<img src=x>"}')],
            ),
            Message(
                id=3,
                role="tool",
                content="results",
                run_id="r1",
                tool_call_id="t1",
                name="web_search",
                sources=[
                    Source(title="<b onclick=x>t</b>", url="https://ok.example.com", snippet="<img src=x>")
                ],
            ),
            Message(id=4, role="assistant", content='<div style="position:fixed">x</div>', run_id="r1"),
        ]
        items = conversation_items(messages, [], None)
        question, step, answer = (text_of(i) for i in items[:3])
        for text in (question, step, answer):
            assert_inert(text)
        assert "&lt;iframe" in question
        assert 'rel="noopener noreferrer nofollow"' in step
