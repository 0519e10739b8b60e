"""The forms people and models write, rewritten into the calculator's grammar before parsing.

`normalize` (text to text, before parsing) accepts:
- operators: `^` for powers (`2^10` is `2**10`; as in mathematics, `-2^2` is -4 and `2^3^2` is 512),
  `×` `·` `⋅` `∙` and, between numbers, a spaced ` x `, for `*`; `÷` `∕` for `/`; the Unicode minus
  `−` and the en dash `–` for `-`; superscripts `²` `³`; `√2` and `√(…)` for `sqrt(…)`;
- percentages: `15%` is 0.15, `15% of 2340` is 0.15 * 2340; `15 percent` likewise. A `%` followed by
  a number, a name or `(` stays the remainder operator (`7 % 3`);
- thousands separators: `1,234,567` and `1,234.5`, groups of exactly three digits, outside the
  parentheses of a function call (inside one, `max(1,234)` is two arguments and stays so);
- currency signs (`$`, `€`, `£`, `¥`) and a trailing `=`, dropped.

`check_forms` (on the parsed tree) refuses what stays ambiguous: `200 + 15%` could mean 215 (15% of
200 added, as on a pocket calculator) or 200.15; the message spells out both ways to write it.
"""

from __future__ import annotations

import ast
import re

__all__ = ["PERCENT_FUNCTION", "ExpressionFormError", "check_forms", "normalize"]

PERCENT_FUNCTION = "__percent__"
"""The call `15%` becomes; the evaluator alone knows it."""


class ExpressionFormError(ValueError):
    """A form that cannot be read one way only; the message says how to write it instead."""


_CHARACTERS = str.maketrans(
    {
        "×": "*",
        "·": "*",
        "⋅": "*",
        "∙": "*",
        "÷": "/",
        "∕": "/",
        "−": "-",
        "–": "-",
        "²": "**2",
        "³": "**3",
        "$": None,
        "€": None,
        "£": None,
        "¥": None,
    }
)

_NUMBER = r"(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_SPACED_X = re.compile(r"(?<=[\d)])\s+[xX]\s+(?=[\d(.])")
_ROOT = re.compile(rf"√\s*({_NUMBER})")
_PERCENT_WORD = re.compile(r"(?<=[\d\s])\s*(?:percent|per\s+cent|pct)\b", re.IGNORECASE)
_THOUSANDS = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w.]|,\d)")
_PERCENT = re.compile(rf"(?<![\w.])({_NUMBER})\s*%")
_OF = re.compile(r"\s*of\b", re.IGNORECASE)
_CALL_NAME = re.compile(r"(?<![\w.])[A-Za-z_][\w.]*$")


def normalize(expression: str) -> str:
    """The expression in the evaluator's grammar (see the module docstring).

    Raises ExpressionFormError for a form that has two likely readings.
    """
    text = expression.translate(_CHARACTERS).strip()
    if text.endswith("="):
        text = text[:-1].rstrip()
    text = text.replace("^", "**")
    text = _SPACED_X.sub(" * ", text)
    text = _ROOT.sub(r"sqrt(\1)", text).replace("√", "sqrt")
    text = _PERCENT_WORD.sub("%", text)
    text = _join_thousands(text)
    return _percentages(text)


def _inside_call(text: str, position: int) -> bool:
    """Whether `position` is directly inside the parentheses of a call like `max(…)`."""
    stack: list[bool] = []
    for index, char in enumerate(text[:position]):
        if char == "(":
            before = text[max(0, index - 64) : index].rstrip()
            stack.append(_CALL_NAME.search(before) is not None)
        elif char == ")" and stack:
            stack.pop()
    return bool(stack and stack[-1])


def _join_thousands(text: str) -> str:
    def join(match: re.Match[str]) -> str:
        written = match.group(0)
        if not _inside_call(text, match.start()):
            return written.replace(",", "")
        if ",0" in written:
            # max(1,000) would silently be max(1, 0): a number written with a separator, most likely.
            one, two = written.replace(",", ""), ", ".join(str(int(g)) for g in written.split(","))
            raise ExpressionFormError(
                f"'{written}' inside a function call could be one number or several arguments: "
                f"write {one} for one number, or {two} for separate arguments"
            )
        return written

    return _THOUSANDS.sub(join, text)


def _percentages(text: str) -> str:
    out: list[str] = []
    position = 0
    for match in _PERCENT.finditer(text):
        rest = text[match.end() :]
        of = _OF.match(rest)
        following = rest.lstrip()
        if of is not None:
            replacement, skip = f"{PERCENT_FUNCTION}({match.group(1)}) *", of.end()
        elif _is_percent_end(rest, following):
            replacement, skip = f"{PERCENT_FUNCTION}({match.group(1)})", 0
        else:
            continue  # `7 % 3`: the remainder
        out.append(text[position : match.start()])
        out.append(replacement)
        position = match.end() + skip
    out.append(text[position:])
    return "".join(out)


def _is_percent_end(rest: str, following: str) -> bool:
    """What follows `N%` makes it a percentage: nothing, `)`, `,`, `*`, `/`, or a spaced `+`/`-`."""
    if not following or following[0] in ")*/,":
        return True
    return following[0] in "+-" and len(following) > 1 and following[1].isspace()


def check_forms(root: ast.expr, text: str) -> None:
    """Refuse `a + b%` and `a - b%`, whose meaning people disagree on; say how to write each reading."""
    for node in ast.walk(root):
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub)):
            continue
        right = node.right
        if not (isinstance(right, ast.Call) and isinstance(right.func, ast.Name)):
            continue
        if right.func.id != PERCENT_FUNCTION or len(right.args) != 1:
            continue
        base = _shown(ast.get_source_segment(text, node.left) or "x")
        percent = _shown(ast.get_source_segment(text, right.args[0]) or "p")
        sign = "+" if isinstance(node.op, ast.Add) else "-"
        grouped = base if isinstance(node.left, ast.Constant | ast.Name | ast.Call) else f"({base})"
        verb = "add" if sign == "+" else "subtract"
        raise ExpressionFormError(
            f"'{grouped} {sign} {percent}%' is ambiguous: write {grouped} * (1 {sign} {percent}/100) "
            f"to {verb} {percent}% of {grouped}, or {grouped} {sign} {percent}/100 to {verb} {percent}/100"
        )


def _shown(source: str) -> str:
    """Source text as the user wrote it: the percentage call turned back into `N%`."""
    return re.sub(rf"{PERCENT_FUNCTION}\(([^()]*)\)", r"\1%", source)
