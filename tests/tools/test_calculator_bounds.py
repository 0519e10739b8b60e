"""The calculator's a-priori cost bounds: sound (never below the truth), tight (within 4x), never cancelling,
and consulted before every expensive call."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools import arithmetic, result_bounds
from tools.arithmetic import COMPUTE_CEILING_BITS, MAX_INT_BITS, CalculatorError, evaluate

# --- the bounds themselves ------------------------------------------------------------------------

_n = st.integers(min_value=0, max_value=3000)


def _bits(value: int) -> int:
    return max(value.bit_length(), 1)


def _sound_and_tight(bound: int, value: int) -> None:
    assert value.bit_length() <= bound  # sound: an upper bound
    assert bound <= 4 * _bits(value) + 4  # tight: refusing past 4x the limit never refuses a legal result


@settings(max_examples=400, deadline=None)
@given(_n, st.data())
def test_comb_bound(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    _sound_and_tight(result_bounds.comb_bits(n, k), math.comb(n, k))


@settings(max_examples=400, deadline=None)
@given(_n, st.data())
def test_perm_bound(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    _sound_and_tight(result_bounds.perm_bits(n, k), math.perm(n, k))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=1500))
def test_factorial_bound(n: int) -> None:
    _sound_and_tight(result_bounds.factorial_bits(n), math.factorial(n))


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=0, max_value=400))
def test_power_bound(base: int, exponent: int) -> None:
    bound = result_bounds.power_bits(base, exponent)
    value = base**exponent
    assert value.bit_length() <= bound
    if abs(base) > 1 and exponent > 0:
        assert bound <= 2 * _bits(value)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=-(2**3000), max_value=2**3000), st.integers(min_value=-(2**3000), max_value=2**3000)
)
def test_product_and_lcm_bounds(a: int, b: int) -> None:
    assert (a * b).bit_length() <= result_bounds.product_bits(a, b)
    assert math.lcm(a, b).bit_length() <= result_bounds.lcm_bits(a, b)


@given(st.integers(min_value=0, max_value=2000))
def test_power_of_ten_bound(n: int) -> None:
    assert (10**n).bit_length() <= result_bounds.power_of_ten_bits(n)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**4000),
    st.integers(min_value=0, max_value=10**6),
)
def test_comb_bound_does_not_cancel_when_n_dwarfs_k(n: int, k: int) -> None:
    # lgamma(n+1) - lgamma(k+1) - lgamma(n-k+1) was 0 for comb(10**300, 60000) in floating point.
    if k > n:
        return
    j = min(k, n - k)
    assert result_bounds.comb_bits(n, k) >= j * max(n.bit_length() - j.bit_length(), 1)


# --- the evaluator consults them before computing -------------------------------------------------


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap math's expensive functions: each call asserts that its bound was within the ceiling."""
    calls: list[str] = []
    bounds: dict[str, Callable[..., int]] = {
        "comb": result_bounds.comb_bits,
        "perm": result_bounds.perm_bits,
        "factorial": result_bounds.factorial_bits,
        "lcm": result_bounds.lcm_bits,
    }
    for name, bound in bounds.items():
        original = getattr(math, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, _bound: Any = bound) -> Any:
            ints = [abs(int(a)) for a in args]
            if _name == "perm" and len(ints) == 1:
                ints.append(ints[0])
            if _name in ("comb", "perm") and ints[1] > ints[0]:
                return _original(*args)
            assert _bound(*ints) <= COMPUTE_CEILING_BITS, f"{_name}{tuple(args)!r} computed past its bound"
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(arithmetic.math, name, spy)
    return calls


@pytest.mark.parametrize(
    "expression",
    [
        "comb(10**300, 6*10**4)",
        "perm(10**300, 3*10**4)",
        "comb(10**3000, 1500)",
        "comb(10**300, 10**300 - 6*10**4)",  # the symmetric case: min(k, n-k) is what counts
        "perm(10**9)",
        "perm(10**300)",
        "comb(2**9999, 2**9998)",
        "factorial(1001)",
        "lcm(2**9999-1, 2**9998-1, 2**9997-1, 2**9996-1, 2**9995-1)",
        "10**9999 * 10**9999",
        "(10**300) ** 10**300",
        "pow(7, 10**6)",
        "2 ** 40001",
        "round(10**100, -1001)",
    ],
)
def test_expensive_calls_are_refused_before_they_run(spied: list[str], expression: str) -> None:
    with pytest.raises(CalculatorError, match="too large"):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("comb(10**300, 3)", math.comb(10**300, 3)),  # huge n, small k: cheap, and now exact
        ("perm(10**300, 9)", math.perm(10**300, 9)),
        ("comb(10**300, 10**300 - 2)", math.comb(10**300, 2)),
        ("comb(1000, 500)", math.comb(1000, 500)),
        ("perm(1000, 700)", math.perm(1000, 700)),
        ("factorial(1000)", math.factorial(1000)),
        ("lcm(2**3000-1, 2**3001-1, 2**3002-1)", math.lcm(2**3000 - 1, 2**3001 - 1, 2**3002 - 1)),
        ("2**9999 // 2**9998", 2),
        ("round(10**1000 + 7, -999)", 10**1000),
        ("isqrt(2**9999)", math.isqrt(2**9999)),
    ],
)
def test_results_within_the_limit_are_computed(spied: list[str], expression: str, expected: int) -> None:
    assert evaluate(expression) == expected


_SHARED_SPY = [HealthCheck.function_scoped_fixture]  # the spies hold no per-example state


@settings(max_examples=300, deadline=None, suppress_health_check=_SHARED_SPY)
@given(
    st.sampled_from(["comb", "perm"]),
    st.integers(min_value=0, max_value=3000).map(lambda e: 10**e) | st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**6) | st.integers(min_value=0, max_value=3000).map(lambda e: 10**e),
)
def test_comb_and_perm_of_any_size_are_computed_only_within_bounds(
    spied: list[str], function: str, n: int, k: int
) -> None:
    expression = f"{function}({n}, {k})"
    try:
        result: int | float | str = evaluate(expression)
    except CalculatorError as exc:
        result = str(exc)
    if isinstance(result, str):
        assert "too large" in result or "too long" in result
        return
    assert isinstance(result, int)
    assert result.bit_length() <= MAX_INT_BITS
    assert result == (getattr(math, function)(n, k) if k <= n else 0)


_hostile_pieces = [
    "9",
    "99",
    "10**300",
    "**",
    "*",
    "(",
    ")",
    ",",
    "-",
    "2",
    "1000",
    "6*10**4",
    "factorial(",
    "comb(",
    "perm(",
    "lcm(",
    "pow(",
    "round(",
    "isqrt(",
    "gcd(",
]


@settings(max_examples=400, deadline=None, suppress_health_check=_SHARED_SPY)
@given(st.lists(st.sampled_from(_hostile_pieces), max_size=40).map("".join))
def test_arbitrary_combinations_never_compute_past_a_bound(spied: list[str], text: str) -> None:
    try:
        result = evaluate(text)
    except CalculatorError:
        return
    if isinstance(result, int):
        assert result.bit_length() <= MAX_INT_BITS
