"""A calculator tool backed by a bounded AST evaluator.

Python's own `eval` is never used: the expression is parsed with `ast.parse(mode="eval")` and only a
small, explicit set of node types is evaluated. Every operation whose cost grows with its operands
(integer powers, factorials, combinatorics, rounding to huge digit counts) is checked against a
budget *before* it runs, so hostile input fails in milliseconds instead of pinning a CPU.

Result formatting: integers are shown exactly. Floats are shown with at most 12 significant digits
(`format(x, ".12g")`), which hides binary rounding noise (0.1 + 0.2 shows as 0.3) and shows
integral floats without a fractional part (2.0 shows as 2). Floats of 10**12 or more switch to
exponent notation (1e+20) instead of printing a long run of digits that look exact but are not.
The price of 12 digits: a float like 123456789012.5 shows as 123456789012. Use integers where
exactness matters: integer arithmetic is exact (up to MAX_INT_BITS).
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tools.base import Tool, ToolOutput, error_output

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_FACTORIAL_ARG",
    "MAX_INT_BITS",
    "MAX_NODES",
    "MAX_ROUND_DIGITS",
    "Calculator",
    "CalculatorError",
    "evaluate",
    "format_number",
]

MAX_EXPRESSION_LENGTH = 500
"""Characters accepted before anything else is done; also bounds the size of every literal."""

MAX_NODES = 300
"""Expression nodes (numbers, names, operations, calls) in the parsed tree; 1+2+...+100 uses 199."""

MAX_DEPTH = 50
"""Nesting depth. A left-to-right chain like 1+2+3+... counts as one level: it is evaluated in a loop."""

MAX_INT_BITS = 10_000
"""Largest integer result, in bits (about 3,000 decimal digits). Must stay below Python's 4,300-digit
int-to-str limit, or formatting the result would fail."""

MAX_FACTORIAL_ARG = 1000
"""1000! has about 8,500 bits, so the factorial bound agrees with MAX_INT_BITS."""

MAX_ROUND_DIGITS = 1000
"""round(x, n) with a large negative n on an int computes 10**-n, so n needs its own bound."""

Number = int | float


class CalculatorError(Exception):
    """The expression is invalid, unsupported, too expensive, or mathematically undefined."""


# --- number helpers -------------------------------------------------------------------------------


def _check_number(value: object) -> Number:
    """Accept the values the evaluator may produce, refuse the ones Python would silently allow."""
    if isinstance(value, bool):
        # bool is an int subclass; it cannot arise from the grammar, but never let it through.
        return int(value)
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise CalculatorError(f"result is too large (more than {MAX_INT_BITS} bits)")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, complex):
        raise CalculatorError("result is a complex number (e.g. a fractional power of a negative number)")
    raise CalculatorError(f"unsupported value of type {type(value).__name__}")


def _is_finite(value: Number) -> bool:
    return isinstance(value, int) or math.isfinite(value)


def _check_finite_result(result: Number, operands: Sequence[Number]) -> Number:
    """Python floats overflow to inf without raising; turn that into an error when inputs were finite."""
    if isinstance(result, float) and not math.isfinite(result) and all(_is_finite(v) for v in operands):
        if math.isnan(result):
            raise CalculatorError("result is undefined (not a number)")
        raise CalculatorError("result is too large (overflows to infinity)")
    return result


def _as_int(value: Number, func: str) -> int:
    """Integer-only functions accept integral floats too, so that factorial(10/2) works."""
    if isinstance(value, int):
        return value
    if math.isfinite(value) and value.is_integer():
        return int(value)
    raise CalculatorError(f"{func}() requires integer arguments, got {format_number(value)}")


def _overflow_detail(exc: OverflowError) -> str:
    """Keep Python's message when it is words ("int too large to convert to float"), not an errno tuple."""
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        return f" ({exc.args[0]})"
    return ""


def _int_power_bits(base: int, exponent: int) -> float:
    """Approximate bit length of base**exponent, computed without computing the power."""
    return exponent * math.log2(abs(base))


def _power(base: Number, exponent: Number) -> Number:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and abs(base) > 1
        and _int_power_bits(base, exponent) > MAX_INT_BITS
    ):
        raise CalculatorError(f"result is too large (more than {MAX_INT_BITS} bits)")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero (zero raised to a negative power)")
    result = _check_number(base**exponent)
    if result == 0 and base != 0 and _is_finite(base) and _is_finite(exponent):
        # e.g. 2**-10**10: a positive number too small for a float; reporting 0 would be wrong.
        raise CalculatorError("result is too small to represent (underflows to zero)")
    return result


def _log2_binomial(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


# --- functions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Function:
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: variadic


def _factorial(x: Number) -> int:
    n = _as_int(x, "factorial")
    if n < 0:
        raise CalculatorError("factorial() is not defined for negative numbers")
    if n > MAX_FACTORIAL_ARG:
        raise CalculatorError(f"factorial() argument is too large (max {MAX_FACTORIAL_ARG})")
    return math.factorial(n)


def _comb(n_: Number, k_: Number) -> int:
    n, k = _as_int(n_, "comb"), _as_int(k_, "comb")
    if n < 0 or k < 0:
        raise CalculatorError("comb() is not defined for negative numbers")
    if k > n:
        return 0
    if _log2_binomial(n, k) > MAX_INT_BITS:
        raise CalculatorError(f"result is too large (more than {MAX_INT_BITS} bits)")
    return math.comb(n, k)


def _perm(n_: Number, k_: Number | None = None) -> int:
    n = _as_int(n_, "perm")
    k = n if k_ is None else _as_int(k_, "perm")
    if n < 0 or k < 0:
        raise CalculatorError("perm() is not defined for negative numbers")
    if k > n:
        return 0
    if (math.lgamma(n + 1) - math.lgamma(n - k + 1)) / math.log(2) > MAX_INT_BITS:
        raise CalculatorError(f"result is too large (more than {MAX_INT_BITS} bits)")
    return math.perm(n, k)


def _gcd(*args: Number) -> int:
    return math.gcd(*(_as_int(a, "gcd") for a in args))


def _lcm(*args: Number) -> int:
    return math.lcm(*(_as_int(a, "lcm") for a in args))


def _isqrt(x: Number) -> int:
    return math.isqrt(_as_int(x, "isqrt"))


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    n = _as_int(ndigits, "round")
    if abs(n) > MAX_ROUND_DIGITS:
        raise CalculatorError(f"round() digit count is too large (max {MAX_ROUND_DIGITS})")
    return round(x, n)


def _exp(x: Number) -> float:
    result = math.exp(x)
    if result == 0.0 and math.isfinite(x):
        raise CalculatorError("result is too small to represent (underflows to zero)")
    return result


def _min(*args: Number) -> Number:
    return min(args)


def _max(*args: Number) -> Number:
    return max(args)


_MATH_FUNCTIONS: dict[str, _Function] = {
    "sqrt": _Function(math.sqrt, 1, 1),
    "exp": _Function(_exp, 1, 1),
    "log": _Function(math.log, 1, 2),
    "log10": _Function(math.log10, 1, 1),
    "log2": _Function(math.log2, 1, 1),
    "sin": _Function(math.sin, 1, 1),
    "cos": _Function(math.cos, 1, 1),
    "tan": _Function(math.tan, 1, 1),
    "asin": _Function(math.asin, 1, 1),
    "acos": _Function(math.acos, 1, 1),
    "atan": _Function(math.atan, 1, 1),
    "atan2": _Function(math.atan2, 2, 2),
    "sinh": _Function(math.sinh, 1, 1),
    "cosh": _Function(math.cosh, 1, 1),
    "tanh": _Function(math.tanh, 1, 1),
    "degrees": _Function(math.degrees, 1, 1),
    "radians": _Function(math.radians, 1, 1),
    "floor": _Function(math.floor, 1, 1),
    "ceil": _Function(math.ceil, 1, 1),
    "factorial": _Function(_factorial, 1, 1),
    "gcd": _Function(_gcd, 1, None),
    "lcm": _Function(_lcm, 1, None),
    "hypot": _Function(math.hypot, 1, None),
    "fabs": _Function(math.fabs, 1, 1),
    # pow shares the ** implementation so that pow(2, 100) stays an exact int and is budgeted.
    "pow": _Function(_power, 2, 2),
    "comb": _Function(_comb, 2, 2),
    "perm": _Function(_perm, 1, 2),
    "isqrt": _Function(_isqrt, 1, 1),
    "trunc": _Function(math.trunc, 1, 1),
}

_BUILTIN_FUNCTIONS: dict[str, _Function] = {
    "abs": _Function(abs, 1, 1),
    "round": _Function(_round, 1, 2),
    "min": _Function(_min, 1, None),
    "max": _Function(_max, 1, None),
}

_FUNCTIONS = {**_MATH_FUNCTIONS, **_BUILTIN_FUNCTIONS}

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf, "nan": math.nan}

_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: _power,
}

_OPERATOR_HINTS: dict[type[ast.operator], str] = {
    ast.BitXor: "'^' is not supported: use ** for powers",
    ast.BitAnd: "'&' is not supported",
    ast.BitOr: "'|' is not supported",
    ast.LShift: "'<<' is not supported",
    ast.RShift: "'>>' is not supported",
    ast.MatMult: "'@' is not supported",
}

_SYNTAX_NAMES: dict[type[ast.AST], str] = {
    ast.Compare: "comparisons",
    ast.BoolOp: "boolean operators",
    ast.Lambda: "lambda",
    ast.IfExp: "conditional expressions",
    ast.Subscript: "subscripts",
    ast.Starred: "starred arguments",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "strings",
    ast.FormattedValue: "strings",
    ast.NamedExpr: "assignment expressions",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slices",
}

_LITERAL_NAMES: dict[type, str] = {
    str: "strings",
    bytes: "bytes",
    bool: "booleans",
    complex: "complex numbers",
    type(None): "None",
    type(...): "ellipsis",
}


# --- parsing and limits ---------------------------------------------------------------------------

_REPLACEMENTS = str.maketrans({"×": "*", "÷": "/", "−": "-"})


def _normalize(expression: str) -> str:
    """Accept what people type: ×, ÷, the Unicode minus sign, and a trailing '='."""
    text = expression.translate(_REPLACEMENTS).strip()
    if text.endswith("="):
        text = text[:-1].rstrip()
    return text


def _parse(text: str) -> ast.expr:
    if not text:
        raise CalculatorError("empty expression")
    try:
        # Invalid escape sequences and similar only warn; the text is refused later anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"invalid syntax: {exc.msg}") from None
    except ValueError as exc:  # e.g. null bytes on Python 3.11
        raise CalculatorError(f"invalid expression: {exc}") from None
    except (RecursionError, MemoryError):
        raise CalculatorError("expression is nested too deeply") from None
    return tree.body


def _check_limits(root: ast.expr) -> None:
    """Count nodes and measure nesting iteratively, so that the check itself cannot recurse too deep."""
    count = 0
    stack: list[tuple[ast.expr, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise CalculatorError(f"expression is too long (more than {MAX_NODES} terms and operations)")
        if depth > MAX_DEPTH:
            raise CalculatorError(f"expression is nested too deeply (max depth {MAX_DEPTH})")
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                # The evaluator walks the left spine of a BinOp in a loop: no extra nesting there.
                same_level = isinstance(node, ast.BinOp) and child is node.left
                stack.append((child, depth if same_level else depth + 1))


# --- evaluation -----------------------------------------------------------------------------------


def _resolve_function(func: ast.expr) -> tuple[str, _Function]:
    if isinstance(func, ast.Name):
        if func.id in _FUNCTIONS:
            return func.id, _FUNCTIONS[func.id]
        raise CalculatorError(f"unknown function '{func.id}'")
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math":
        if func.attr in _MATH_FUNCTIONS:
            return func.attr, _MATH_FUNCTIONS[func.attr]
        raise CalculatorError(f"unknown function 'math.{func.attr}'")
    raise CalculatorError("unsupported syntax: only named functions can be called, e.g. sqrt(2)")


def _call(node: ast.Call) -> Number:
    name, function = _resolve_function(node.func)
    if node.keywords:
        raise CalculatorError("unsupported syntax: keyword arguments")
    if any(isinstance(arg, ast.Starred) for arg in node.args):
        raise CalculatorError("unsupported syntax: starred arguments")
    n = len(node.args)
    if n < function.min_args or (function.max_args is not None and n > function.max_args):
        if function.max_args is None:
            expected = f"at least {function.min_args}"
        elif function.min_args == function.max_args:
            expected = str(function.min_args)
        else:
            expected = f"{function.min_args} to {function.max_args}"
        raise CalculatorError(f"{name}() takes {expected} argument(s), got {n}")
    args = [_eval(arg) for arg in node.args]
    try:
        result = function.impl(*args)
    except CalculatorError:
        raise
    except ZeroDivisionError:
        raise CalculatorError(f"division by zero in {name}()") from None
    except OverflowError as exc:
        raise CalculatorError(f"result of {name}() is too large{_overflow_detail(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise CalculatorError(f"invalid argument for {name}(): {exc}") from None
    return _check_finite_result(_check_number(result), args)


def _binop(op: ast.operator, left: Number, right: Number) -> Number:
    operator = _BINARY_OPERATORS.get(type(op))
    if operator is None:
        hint = _OPERATOR_HINTS.get(type(op), f"operator {type(op).__name__} is not supported")
        raise CalculatorError(f"unsupported syntax: {hint}")
    try:
        result = operator(left, right)
    except CalculatorError:
        raise
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError as exc:
        raise CalculatorError(f"result is too large{_overflow_detail(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise CalculatorError(f"invalid operation: {exc}") from None
    return _check_finite_result(_check_number(result), (left, right))


def _constant(node: ast.Constant) -> Number:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = _LITERAL_NAMES.get(type(value), f"{type(value).__name__} literals")
        raise CalculatorError(f"unsupported syntax: {kind}")
    return _check_number(value)


def _name(node: ast.Name) -> Number:
    if node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if node.id in _FUNCTIONS:
        raise CalculatorError(f"'{node.id}' is a function: call it, e.g. {node.id}(...)")
    allowed = ", ".join(_CONSTANTS)
    raise CalculatorError(f"unknown name '{node.id}' (allowed constants: {allowed})")


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        return _constant(node)
    if isinstance(node, ast.BinOp):
        # Walk the left spine iteratively: long sums like 1+2+...+100 must not cost recursion depth.
        chain: list[tuple[ast.operator, ast.expr]] = []
        current: ast.expr = node
        while isinstance(current, ast.BinOp):
            chain.append((current.op, current.right))
            current = current.left
        value = _eval(current)
        for op, right in reversed(chain):
            value = _binop(op, value, _eval(right))
        return value
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return -_eval(node.operand)
        if isinstance(node.op, ast.UAdd):
            return +_eval(node.operand)
        raise CalculatorError(f"unsupported syntax: unary operator {type(node.op).__name__}")
    if isinstance(node, ast.Name):
        return _name(node)
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr in _CONSTANTS:
            return _CONSTANTS[node.attr]
        raise CalculatorError("unsupported syntax: attribute access (only math.<name> is allowed)")
    if isinstance(node, ast.Tuple):
        raise CalculatorError(
            "unsupported syntax: commas are only allowed between function arguments "
            "(write numbers without thousands separators, e.g. 1000 not 1,000)"
        )
    what = _SYNTAX_NAMES.get(type(node), type(node).__name__)
    raise CalculatorError(f"unsupported syntax: {what}")


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely.

    Supports int and float literals, + - * / // % **, unary + and -, parentheses, the constants
    pi, e, tau, inf and nan, a whitelist of `math` functions (also as `math.sqrt(2)`), and abs,
    round, min, max. Raises CalculatorError for anything else, for results beyond the module's
    bounds, and for mathematical errors (division by zero, domain errors, overflow).
    """
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculatorError(f"expression is too long (max {MAX_EXPRESSION_LENGTH} characters)")
    root = _parse(_normalize(expression))
    _check_limits(root)
    try:
        return _eval(root)
    except RecursionError:  # defence in depth: _check_limits should make this unreachable
        raise CalculatorError("expression is nested too deeply") from None


def format_number(value: int | float) -> str:
    """Render a result for the model: ints exactly, floats to 12 significant digits (see module doc)."""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"  # also turns -0.0 into 0
    return format(value, ".12g")


# --- the tool -------------------------------------------------------------------------------------


class Calculator:
    """The `calculator` tool: evaluates one arithmetic expression and returns the number."""

    @property
    def name(self) -> str:
        return "calculator"

    @property
    def description(self) -> str:
        return (
            "Evaluate an arithmetic expression exactly and return the result. Use it for any "
            "non-trivial arithmetic instead of computing in your head. Supports + - * / // % ** "
            "(use ** for powers, not ^), parentheses, the constants pi, e, tau, inf, nan, and the "
            "functions sqrt, exp, log(x[, base]), log10, log2, sin, cos, tan, asin, acos, atan, "
            "atan2, sinh, cosh, tanh, degrees, radians, floor, ceil, trunc, factorial, comb, perm, "
            "gcd, lcm, isqrt, hypot, fabs, pow, abs, round, min, max. Angles are in radians. "
            "Write numbers without thousands separators."
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
        """Evaluate `arguments["expression"]`; errors come back as error outputs, never as exceptions.

        Evaluation runs inline on the event loop: the bounds above keep every call to milliseconds.
        """
        if not isinstance(arguments, dict):
            return error_output("the arguments must be an object with an 'expression' string")
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            return error_output("the 'expression' argument is required and must be a string")
        try:
            result = evaluate(expression)
        except CalculatorError as exc:
            message = f"could not evaluate the expression: {exc}"
            if "'^'" in str(exc):
                # Spelled out, because a small model told "use **" tends to explain it rather than retry.
                message += f"; call the calculator again with {expression.replace('^', '**')!r}"
            return error_output(message)
        return ToolOutput(content=format_number(result))


if TYPE_CHECKING:
    _protocol_check: Tool = Calculator()
