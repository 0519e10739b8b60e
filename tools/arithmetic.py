"""A bounded AST evaluator for arithmetic expressions: the calculator's engine.

Python's own `eval` is never used: the expression is parsed with `ast.parse(mode="eval")` and only a
small, explicit set of node types is evaluated. Every operation whose cost grows with its result
(integer powers and products, factorials, permutations, combinations, lcm, rounding to powers of
ten) is first given an upper bound on its result's size (`tools.result_bounds`, exact integer
arithmetic that cannot cancel) and refused when that bound is beyond COMPUTE_CEILING_BITS; what is
computed is then held to MAX_INT_BITS. So every call costs milliseconds whatever its input, and the
calculator tool still runs it in a worker process with a deadline (`tools.worker_pool`), in case a
bound here is ever wrong.

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
from typing import Any

from tools import result_bounds
from tools.expression_forms import PERCENT_FUNCTION, ExpressionFormError, check_forms, normalize

__all__ = [
    "COMPUTE_CEILING_BITS",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_FACTORIAL_ARG",
    "MAX_INT_BITS",
    "MAX_NODES",
    "MAX_ROUND_DIGITS",
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
int-to-str limit, or formatting the result would fail; it also bounds the cost of that formatting."""

MAX_DIGITS = int(MAX_INT_BITS * math.log10(2))
"""MAX_INT_BITS in decimal digits (3,010), for messages."""

COMPUTE_CEILING_BITS = 4 * MAX_INT_BITS
"""An operation is computed only if its result bound is at most this. The bounds are within a factor
of 4 of the truth, so everything refused here would have been refused after computing, too; and a
40,000-bit result costs well under a millisecond."""

MAX_FACTORIAL_ARG = 1000
"""1000! has about 8,500 bits, so the factorial bound agrees with MAX_INT_BITS."""

MAX_ROUND_DIGITS = 1000
"""round(x, n) with a large negative n on an int computes 10**-n, so n needs its own bound."""

Number = int | float


class CalculatorError(Exception):
    """The expression is invalid, unsupported, too expensive, or mathematically undefined."""


# --- number helpers -------------------------------------------------------------------------------


def _too_large(what: str) -> str:
    return f"result is too large: {what} has more than {MAX_DIGITS:,} digits, the calculator's limit"


def _require_bits(bound_bits: int, what: str) -> None:
    """Refuse, before computing, an operation whose result bound is beyond the ceiling."""
    if bound_bits > COMPUTE_CEILING_BITS:
        raise CalculatorError(_too_large(what))


def _check_number(value: object) -> Number:
    """Accept the values the evaluator may produce, refuse the ones Python would silently allow."""
    if isinstance(value, bool):
        # bool is an int subclass; it cannot arise from the grammar, but never let it through.
        return int(value)
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise CalculatorError(_too_large("the result"))
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


# --- operations whose cost grows with their result --------------------------------------------------


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        _require_bits(result_bounds.power_bits(base, exponent), "the power")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero (zero raised to a negative power)")
    result = _check_number(base**exponent)
    if result == 0 and base != 0 and _is_finite(base) and _is_finite(exponent):
        # e.g. 2**-10**10: a positive number too small for a float; reporting 0 would be wrong.
        raise CalculatorError("result is too small to represent (underflows to zero)")
    return result


def _multiply(a: Number, b: Number) -> Number:
    if isinstance(a, int) and isinstance(b, int):
        _require_bits(result_bounds.product_bits(a, b), "the product")
    return a * b


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
    _require_bits(result_bounds.factorial_bits(n), "factorial()")
    return math.factorial(n)


def _comb(n_: Number, k_: Number) -> int:
    n, k = _as_int(n_, "comb"), _as_int(k_, "comb")
    if n < 0 or k < 0:
        raise CalculatorError("comb() is not defined for negative numbers")
    if k > n:
        return 0
    _require_bits(result_bounds.comb_bits(n, k), "comb()")
    return math.comb(n, k)


def _perm(n_: Number, k_: Number | None = None) -> int:
    n = _as_int(n_, "perm")
    k = n if k_ is None else _as_int(k_, "perm")
    if n < 0 or k < 0:
        raise CalculatorError("perm() is not defined for negative numbers")
    if k > n:
        return 0
    _require_bits(result_bounds.perm_bits(n, k), "perm()")
    return math.perm(n, k)


def _gcd(*args: Number) -> int:
    return math.gcd(*(_as_int(a, "gcd") for a in args))


def _lcm(*args: Number) -> int:
    # Pairwise, each step bounded and checked: the lcm of many coprime numbers grows with every one.
    result = 1
    for arg in args:
        value = _as_int(arg, "lcm")
        _require_bits(result_bounds.lcm_bits(result, value), "lcm()")
        result = math.lcm(result, value)
        _check_number(result)
    return result


def _isqrt(x: Number) -> int:
    return math.isqrt(_as_int(x, "isqrt"))


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    n = _as_int(ndigits, "round")
    if abs(n) > MAX_ROUND_DIGITS:
        raise CalculatorError(f"round() digit count is too large (max {MAX_ROUND_DIGITS})")
    if isinstance(x, int) and n < 0:
        _require_bits(result_bounds.power_of_ten_bits(-n), "round()")  # rounding computes 10**-n
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


def _percent(x: Number) -> float:
    return x / 100


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

_INTERNAL_FUNCTIONS: dict[str, _Function] = {PERCENT_FUNCTION: _Function(_percent, 1, 1)}
"""Written by `normalize` (15% becomes a call), never offered or named to users."""

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf, "nan": math.nan}

_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: _multiply,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: _power,
}

_OPERATOR_HINTS: dict[type[ast.operator], str] = {
    ast.BitAnd: "'&' is not supported (the calculator does arithmetic, not bitwise operations)",
    ast.BitOr: "'|' is not supported (the calculator does arithmetic, not bitwise operations)",
    ast.LShift: "'<<' is not supported: write x * 2**n instead of x << n",
    ast.RShift: "'>>' is not supported: write x // 2**n instead of x >> n",
    ast.MatMult: "'@' is not supported",
}

_SYNTAX_NAMES: dict[type[ast.AST], str] = {
    ast.Compare: "comparisons (compute each side on its own)",
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
        if func.id in _INTERNAL_FUNCTIONS:
            return "%", _INTERNAL_FUNCTIONS[func.id]
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
        hint = ""
        if (
            function.max_args is not None
            and n > function.max_args
            and all(_is_int_literal(a) for a in node.args)
        ):
            values = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, int)]
            if all(0 <= v < 1000 for v in values[1:]):
                joined = str(values[0]) + "".join(f"{v:03d}" for v in values[1:])
                hint = f" (if that is one number with thousands separators, write it without them: {joined})"
        raise CalculatorError(f"{name}() takes {expected} argument(s), got {n}{hint}")
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


def _is_int_literal(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


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
    raise CalculatorError(
        f"unknown name '{node.id}': the calculator has no variables; write the number itself "
        f"(allowed constants: {allowed})"
    )


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
            "unsupported syntax: commas only separate function arguments; write a decimal with a dot "
            "(1.5, not 1,5) and a large number plainly or in groups of three (1234567 or 1,234,567)"
        )
    what = _SYNTAX_NAMES.get(type(node), type(node).__name__)
    raise CalculatorError(f"unsupported syntax: {what}")


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely, synchronously, in the calling thread.

    Supports int and float literals, + - * / // % **, unary + and -, parentheses, the constants
    pi, e, tau, inf and nan, a whitelist of `math` functions (also as `math.sqrt(2)`), and abs,
    round, min, max; and the forms people write (see `tools.expression_forms`). Raises
    CalculatorError for anything else, for results beyond the module's bounds, and for
    mathematical errors (division by zero, domain errors, overflow). Costs milliseconds at most.
    """
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculatorError(f"expression is too long (max {MAX_EXPRESSION_LENGTH} characters)")
    try:
        text = normalize(expression)
        root = _parse(text)
        _check_limits(root)
        check_forms(root, text)
    except ExpressionFormError as exc:
        raise CalculatorError(str(exc)) from None
    try:
        return _eval(root)
    except RecursionError:  # defence in depth: _check_limits should make this unreachable
        raise CalculatorError("expression is nested too deeply") from None


def format_number(value: int | float) -> str:
    """Render a result for the model: ints exactly, floats to 12 significant digits (see module doc).

    Ints are at most MAX_INT_BITS long when they come from `evaluate`, which bounds the (quadratic)
    cost of printing them.
    """
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"  # also turns -0.0 into 0
    return format(value, ".12g")
