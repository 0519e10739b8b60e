"""The tools package: exports, protocol conformance, and independence from the rest of the project."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tools
from tools import Calculator, Source, Tool, ToolOutput, WebSearch, build_search_provider, error_output

TOOLS_DIR = Path(tools.__file__).resolve().parent
PROJECT_PACKAGES = {"app", "agent", "backends", "ui", "bench"}


def test_exports() -> None:
    assert set(tools.__all__) == {
        "Calculator",
        "Source",
        "Tool",
        "ToolOutput",
        "WebSearch",
        "build_search_provider",
        "error_output",
    }


def test_tools_satisfy_the_protocol() -> None:
    provider = build_search_provider("duckduckgo", timeout_s=1)
    instances: list[Tool] = [Calculator(), WebSearch(provider)]
    assert [t.name for t in instances] == ["calculator", "web_search"]
    for tool in instances:
        assert tool.description
        assert tool.parameters["type"] == "object"


def test_error_output_shape() -> None:
    assert error_output("x") == ToolOutput(content="Error: x", sources=[], error="x")
    assert Source("t", "u").snippet == ""


def test_no_imports_from_the_rest_of_the_project() -> None:
    offenders = []
    for path in TOOLS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in PROJECT_PACKAGES]
    assert offenders == []


def test_importing_tools_loads_no_project_package() -> None:
    code = (
        "import sys, tools\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(PROJECT_PACKAGES)!r})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=TOOLS_DIR.parent)
