"""The `calculator` tool: one arithmetic expression in, one number out, computed off the event loop.

The evaluation itself is `tools.arithmetic.evaluate` (bounded, milliseconds at most). The tool never
runs it on the event loop: it sends the expression to a worker process of a `WorkerPool`, with a
hard deadline, so that even a bound that turned out wrong costs one killed worker, not a stalled
server. `evaluate` stays importable from here for synchronous use.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tools.arithmetic import (
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_FACTORIAL_ARG,
    MAX_INT_BITS,
    MAX_NODES,
    MAX_ROUND_DIGITS,
    CalculatorError,
    evaluate,
    format_number,
)
from tools.base import ToolOutput, error_output
from tools.worker_pool import (
    PoolClosed,
    PoolSaturated,
    WorkerOutOfMemory,
    WorkerPool,
    WorkerPoolError,
    WorkerTimeout,
)

if TYPE_CHECKING:
    from tools.base import Tool

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_FACTORIAL_ARG",
    "MAX_INT_BITS",
    "MAX_NODES",
    "MAX_ROUND_DIGITS",
    "WORKER_MODULES",
    "Calculator",
    "CalculatorError",
    "answer",
    "evaluate",
    "format_number",
]

WORKER_MODULES = ("tools.calculator",)
"""What a worker pool must allow for the calculator (`answer` below runs in the worker)."""

ANSWER_FUNCTION = "tools.calculator:answer"

DEFAULT_EVALUATION_TIMEOUT_S = 5.0
"""The hard deadline of one evaluation in a worker; real ones take milliseconds."""


def answer(expression: str) -> list[str]:
    """What the worker runs: `["ok", number as text]` or `["error", message for the model]`."""
    try:
        return ["ok", format_number(evaluate(expression))]
    except CalculatorError as exc:
        return ["error", f"could not evaluate the expression: {exc}"]


class Calculator:
    """The `calculator` tool: evaluates one arithmetic expression and returns the number.

    `pool` must allow WORKER_MODULES; the app passes the one it owns for its lifetime. Without one,
    the tool makes a private one-worker pool on its first call (for scripts and tests).
    `timeout_s` bounds a whole call, waiting for a free worker included; `evaluation_timeout_s`
    is the deadline after which a worker is killed.
    """

    def __init__(
        self,
        pool: WorkerPool | None = None,
        *,
        timeout_s: float = 10.0,
        evaluation_timeout_s: float = DEFAULT_EVALUATION_TIMEOUT_S,
    ) -> None:
        if timeout_s <= 0 or evaluation_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        self._pool = pool if pool is not None else WorkerPool(WORKER_MODULES, size=1)
        self._timeout_s = timeout_s
        self._evaluation_timeout_s = min(evaluation_timeout_s, timeout_s)

    @property
    def name(self) -> str:
        return "calculator"

    @property
    def description(self) -> str:
        return (
            "Evaluate an arithmetic expression exactly and return the result. Use it for any "
            "non-trivial arithmetic instead of computing in your head. Supports + - * / // % ** "
            "(or ^ for powers), percentages, parentheses, the constants pi, e, tau, inf, nan, and the "
            "functions sqrt, exp, log(x[, base]), log10, log2, sin, cos, tan, asin, acos, atan, "
            "atan2, sinh, cosh, tanh, degrees, radians, floor, ceil, trunc, factorial, comb, perm, "
            "gcd, lcm, isqrt, hypot, fabs, pow, abs, round, min, max. Angles are in radians."
        )

    @property
    def parameters(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    # No worked example here: small models copy it into their call instead of the
                    # user's numbers (measured on Qwen2.5-Coder-1.5B, docs/embedded-model.md).
                    "description": "The arithmetic expression to evaluate, written with the user's numbers.",
                    "maxLength": MAX_EXPRESSION_LENGTH,
                }
            },
            "required": ["expression"],
            "additionalProperties": False,
        }

    async def run(self, arguments: dict[str, Any]) -> ToolOutput:
        """Evaluate `arguments["expression"]` in a worker; errors come back as error outputs, never raised."""
        if not isinstance(arguments, dict):
            return error_output("the arguments must be an object with an 'expression' string")
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            return error_output("the 'expression' argument is required and must be a string")
        if len(expression) > MAX_EXPRESSION_LENGTH:  # no need to ship it to a worker to say so
            limit = f"max {MAX_EXPRESSION_LENGTH} characters"
            return error_output(f"could not evaluate the expression: expression is too long ({limit})")
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._pool.call(
                    ANSWER_FUNCTION, expression, timeout_s=self._evaluation_timeout_s
                )
        except WorkerTimeout:
            return error_output(
                f"the expression took longer than {self._evaluation_timeout_s:g} s to evaluate and was "
                "stopped; split it into smaller steps"
            )
        except WorkerOutOfMemory:
            return error_output("the expression needs more memory than the calculator may use; simplify it")
        except PoolSaturated:
            return error_output("the calculator is busy with too many calculations; try again in a moment")
        except PoolClosed:
            return error_output("the calculator is shutting down")
        except TimeoutError:  # asyncio.timeout's own: no worker was free in time (WorkerTimeout is not one)
            return error_output(
                f"no calculator worker was free within {self._timeout_s:g} s; try again later"
            )
        except WorkerPoolError as exc:
            return error_output(f"the calculator failed: {exc}")
        if not (isinstance(reply, list) and len(reply) == 2 and all(isinstance(x, str) for x in reply)):
            return error_output("the calculator failed: its worker answered in an unexpected form")
        status, text = reply
        if status == "ok":
            return ToolOutput(content=text)
        return error_output(text)


if TYPE_CHECKING:
    _protocol_check: Tool = Calculator()
