"""Upper bounds on the bit length of integer results, known before the result is computed.

The evaluator asks these before every operation whose cost grows with its result (powers, factorials,
permutations, combinations, products, least common multiples, powers of ten), and refuses when the
bound is beyond what it may compute. Every bound is exact integer arithmetic on bit lengths, with no
floating point and no difference of large, nearly equal quantities: `lgamma(n+1) - lgamma(k+1) -
lgamma(n-k+1)` cancels to nothing when n >> k (comb(10**300, 60000) passed such a check and then ran
for a minute), these cannot.

Notation: b(x) = x.bit_length(), so 2**(b(x)-1) <= |x| < 2**b(x) for x != 0. Each function promises
`result.bit_length() <= bound`, and each is within a small factor (at most 4, in the bits) of the
true size, so a bound far over the limit means a result far over it.
"""

from __future__ import annotations

__all__ = [
    "comb_bits",
    "factorial_bits",
    "lcm_bits",
    "perm_bits",
    "power_bits",
    "power_of_ten_bits",
    "product_bits",
]


def product_bits(a: int, b: int) -> int:
    """a * b: |a*b| < 2**(b(a)+b(b))."""
    return a.bit_length() + b.bit_length()


def lcm_bits(a: int, b: int) -> int:
    """lcm(a, b) divides |a*b|."""
    return product_bits(a, b)


def power_bits(base: int, exponent: int) -> int:
    """base ** exponent for exponent >= 0: |base|**e < 2**(b(base)*e).

    Loose by at most a factor of 2 (base 2 or 3: the true size is e*(b-1)+1 at least).
    """
    if exponent < 0:
        raise ValueError("power_bits() is for non-negative exponents (negative ones give floats)")
    if base in (-1, 0, 1):
        return 1
    return max(base.bit_length() * exponent, 1)


def power_of_ten_bits(n: int) -> int:
    """10 ** n for n >= 0: 10 < 2**4."""
    return 4 * max(n, 0) + 1


def factorial_bits(n: int) -> int:
    """n! for n >= 0: n! <= n**n < 2**(n*b(n)). For n = 1000: 10,000 against the true 8,530."""
    return max(n, 1) * max(n, 1).bit_length()


def perm_bits(n: int, k: int) -> int:
    """n! / (n-k)! for 0 <= k <= n: a product of k factors, each at most n."""
    return k * n.bit_length() if k else 1


def comb_bits(n: int, k: int) -> int:
    """n! / (k! (n-k)!) for 0 <= k <= n.

    With j = min(k, n-k): C(n, j) <= (e*n/j)**j, since j! >= (j/e)**j. Then
    log2 C < j * (log2 n + log2 e - log2 j) < j * (b(n) + 1.45 - (b(j) - 1)), so
    C < 2**(j * (b(n) - b(j) + 3)). Since j <= n, b(j) <= b(n): every term is positive and the bound
    grows with j; it never cancels. Loose by about a factor of 2 at worst (C(2j, j) ~ 4**j).
    """
    j = min(k, n - k)
    if j <= 0:
        return 1
    return j * (n.bit_length() - j.bit_length() + 3) + 1
