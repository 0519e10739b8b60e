"""Open-loop arrival schedules."""

from __future__ import annotations

import itertools

import pytest

from bench.arrivals import arrival_offsets


def test_constant_arrivals_are_evenly_spaced() -> None:
    offsets = arrival_offsets(4, 2.5, "constant", 0)
    assert offsets == pytest.approx([i * 0.25 for i in range(10)])


def test_poisson_arrivals_have_the_asked_rate_and_are_seeded() -> None:
    offsets = arrival_offsets(50, 200, "poisson", 7)
    assert len(offsets) == pytest.approx(50 * 200, rel=0.05)
    assert offsets == arrival_offsets(50, 200, "poisson", 7)
    assert offsets != arrival_offsets(50, 200, "poisson", 8)
    assert all(b > a for a, b in itertools.pairwise(offsets))
    assert offsets[-1] < 200
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    # exponential gaps: the standard deviation equals the mean
    mean = sum(gaps) / len(gaps)
    std = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert std == pytest.approx(mean, rel=0.1)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        arrival_offsets(0, 10, "poisson", 0)
