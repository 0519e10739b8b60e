"""Tools the agent can call: a safe calculator and web search.

This package depends on nothing else in the project, so it can be tested and reused on its own.
"""

from tools.base import Source, Tool, ToolOutput, error_output
from tools.calculator import Calculator
from tools.web_search import WebSearch, build_search_provider

__all__ = ["Calculator", "Source", "Tool", "ToolOutput", "WebSearch", "build_search_provider", "error_output"]
