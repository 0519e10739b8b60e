"""Why an MCP call did not produce a result.

McpError
├── McpUnavailable       the server is not connected (starting, restarting, or failing to start)
├── McpCallTimeout       no answer within the server's `timeout_s`
├── McpConnectionLost    the server went away during the call (it is being restarted)
└── McpCallFailed        the server answered with a protocol error, or a result that is not valid
"""

from __future__ import annotations


class McpError(Exception):
    """Base of the MCP client's errors; the message is phrased for the model and the user."""


class McpUnavailable(McpError):
    pass


class McpCallTimeout(McpError):
    pass


class McpConnectionLost(McpError):
    pass


class McpCallFailed(McpError):
    pass
