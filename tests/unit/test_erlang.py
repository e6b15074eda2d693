"""Erlang B/C/A against independent brute-force computations.

The oracles here share no code with :mod:`tsunagu.acd.erlang`: exact rational sums for
Erlang B/C, and for Erlang A a truncated birth–death chain plus a numerically integrated
ODE of the "callers ahead" process with patience as a killing rate.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsunagu.acd.erlang import (
    erlang_a_metrics,
    erlang_b,
    erlang_c,
    erlang_c_metrics,
)


def brute_erlang_c(n: int, a: Fraction) -> Fraction:
    """P(wait) of M/M/n from the textbook closed form, in exact arithmetic."""
    below = sum(a**k / math.factorial(k) for k in range(n))
    top = a**n / math.factorial(n) * n / (n - a)
    return top / (below + top)


def test_erlang_c_ten_agents_eight_erlangs_textbook_value() -> None:
    # The classic example (10 agents, 8 Erlangs): about 40.9 % of callers wait.
    c = erlang_c(10, 8.0)
    assert c == pytest.approx(float(brute_erlang_c(10, Fraction(8))), rel=1e-12)
    assert round(c, 4) == 0.4092


@given(n=st.integers(1, 60), frac=st.floats(0.01, 0.99))
def test_erlang_b_and_c_match_exact_sums(n: int, frac: float) -> None:
    a = Fraction(frac).limit_denominator(1000) * n
    if a == 0:
        return
    exact_b = (a**n / math.factorial(n)) / sum(a**k / math.factorial(k) for k in range(n + 1))
    assert erlang_b(n, float(a)) == pytest.approx(float(exact_b), rel=1e-9)
    assert erlang_c(n, float(a)) == pytest.approx(float(brute_erlang_c(n, a)), rel=1e-9)


def test_erlang_c_service_level_and_asa_against_state_sums() -> None:
    """P(W > t) = Σ_{j>=0} π(n+j)·P(Gamma(j+1, nμ) > t); E[W] = Σ π(n+j)(j+1)/(nμ)."""
    n, aht, rate, t = 12, 240.0, 10.0 / 240.0, 30.0
    a = rate * aht
    mu = 1.0 / aht
    weights = [a**k / math.factorial(k) for k in range(n)]
    top = a**n / math.factorial(n)
    tail = [top * (a / n) ** j for j in range(4000)]
    norm = sum(weights) + sum(tail)
    p_late = 0.0
    mean_wait = 0.0
    for j, w in enumerate(tail):
        x = n * mu * t  # P(Gamma(j+1, nμ) > t) = Σ_{i<=j} e^-x x^i / i!
        poisson_cdf = sum(math.exp(-x) * x**i / math.factorial(i) for i in range(min(j, 170) + 1))
        p_late += w / norm * poisson_cdf
        mean_wait += w / norm * (j + 1) / (n * mu)
    m = erlang_c_metrics(n, rate, aht, t)
    assert m.service_level == pytest.approx(1.0 - p_late, rel=1e-9)
    assert m.asa_seconds == pytest.approx(mean_wait, rel=1e-9)
    assert m.occupancy == pytest.approx(a / n)


def test_erlang_c_unstable_queue() -> None:
    m = erlang_c_metrics(5, 6.0 / 100.0, 100.0, 20.0)
    assert (m.p_wait, m.service_level, m.asa_seconds) == (1.0, 0.0, math.inf)


def brute_erlang_a(
    n: int, rate: float, aht: float, patience: float, t: float, *, ahead_max: int = 400
) -> dict[str, float]:
    """M/M/n+M by a truncated birth–death chain and an ODE for the wait of one caller."""
    mu, theta = 1.0 / aht, 1.0 / patience
    death = [k * mu for k in range(n + 1)] + [n * mu + j * theta for j in range(1, ahead_max)]
    weights = [1.0]
    for k in range(1, len(death)):
        weights.append(weights[-1] * rate / death[k])
    norm = sum(weights)
    pi = [w / norm for w in weights]
    p_wait = sum(pi[n:])
    p_abandon = sum((k - n) * theta * pi[k] for k in range(n + 1, len(pi))) / rate
    # A caller arriving to n+j waits through phases with rates r_i = nμ + iθ (i = j..0) and
    # is lost at rate θ meanwhile. Integrate the distribution over "callers ahead".
    ahead = np.array(pi[n:])  # index j: arrived with j ahead
    rates = n * mu + theta * np.arange(ahead.size)
    served = 0.0

    def deriv(p: np.ndarray) -> tuple[np.ndarray, float]:
        d = -(rates + theta) * p
        d[:-1] += rates[1:] * p[1:]
        return d, rates[0] * p[0]

    dt = 0.01
    for _ in range(round(t / dt)):  # RK4
        k1, s1 = deriv(ahead)
        k2, s2 = deriv(ahead + dt / 2 * k1)
        k3, s3 = deriv(ahead + dt / 2 * k2)
        k4, s4 = deriv(ahead + dt * k3)
        ahead = ahead + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        served += dt / 6 * (s1 + 2 * s2 + 2 * s3 + s4)
    # Mean wait of served callers: E[V·1{served} | j] = L_j(θ)·Σ_i 1/(r_i + θ), with
    # L_j(θ) = Π_i r_i/(r_i + θ) the Laplace transform of the offered wait at θ.
    served_wait = 0.0
    lap, harm = 1.0, 0.0
    for j in range(ahead_max):
        r = n * mu + j * theta
        lap *= r / (r + theta)
        harm += 1.0 / (r + theta)
        served_wait += pi[n + j] * lap * harm
    return {
        "p_wait": p_wait,
        "p_abandon": p_abandon,
        "service_level": 1.0 - p_wait + served,
        "asa_seconds": served_wait / (1.0 - p_abandon),
    }


@pytest.mark.parametrize(
    ("n", "calls_per_hour", "aht", "patience", "t"),
    [
        (10, 200.0, 180.0, 180.0, 20.0),  # ρ = 1.0: stable only thanks to patience
        (5, 80.0, 300.0, 600.0, 30.0),
        (3, 200.0, 120.0, 60.0, 10.0),  # overloaded (ρ ≈ 2.2)
        (20, 300.0, 200.0, 1000.0, 15.0),
    ],
)
def test_erlang_a_matches_brute_force_chain(
    n: int, calls_per_hour: float, aht: float, patience: float, t: float
) -> None:
    rate = calls_per_hour / 3600.0
    m = erlang_a_metrics(n, rate, aht, patience, t)
    ref = brute_erlang_a(n, rate, aht, patience, t)
    assert m.p_wait == pytest.approx(ref["p_wait"], rel=1e-9)
    assert m.p_abandon == pytest.approx(ref["p_abandon"], rel=1e-8)
    assert m.service_level == pytest.approx(ref["service_level"], rel=1e-6)
    assert m.asa_seconds == pytest.approx(ref["asa_seconds"], rel=1e-8)
    assert m.mean_wait_seconds == pytest.approx(m.p_abandon * patience)


def test_erlang_a_tends_to_erlang_c_with_endless_patience() -> None:
    c = erlang_c_metrics(10, 8.0 / 180.0, 180.0, 20.0)
    a = erlang_a_metrics(10, 8.0 / 180.0, 180.0, 1e9, 20.0)
    assert a.p_wait == pytest.approx(c.p_wait, rel=1e-6)
    assert a.service_level == pytest.approx(c.service_level, rel=1e-6)
    assert a.asa_seconds == pytest.approx(c.asa_seconds, rel=1e-5)
    assert a.p_abandon < 1e-6


def test_erlang_a_stays_finite_far_into_overload_and_at_scale() -> None:
    # y = λ/θ ≫ x = nμ/θ: terms beyond 1e300 must not overflow.
    m = erlang_a_metrics(10, 50.0, 180.0, 600.0, 20.0)
    assert m.p_wait == pytest.approx(1.0)
    assert m.p_abandon == pytest.approx(1.0 - 10 / 180.0 / 50.0, rel=1e-3)
    assert all(math.isfinite(v) for v in (m.service_level, m.asa_seconds))
    big = erlang_a_metrics(2000, 10.5, 180.0, 120.0, 20.0)
    assert 0.0 < big.p_wait < 1.0 and 0.0 < big.service_level <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    rho=st.floats(0.1, 1.5),
    patience=st.floats(10.0, 2000.0),
)
def test_erlang_a_more_agents_never_hurt(n: int, rho: float, patience: float) -> None:
    aht = 180.0
    rate = rho * n / aht
    one = erlang_a_metrics(n, rate, aht, patience, 20.0)
    more = erlang_a_metrics(n + 1, rate, aht, patience, 20.0)
    assert more.p_wait <= one.p_wait + 1e-12
    assert more.p_abandon <= one.p_abandon + 1e-12
    assert more.service_level >= one.service_level - 1e-12
    assert 0.0 <= one.p_abandon <= one.p_wait <= 1.0
    assert 0.0 <= one.service_level <= 1.0 - one.p_abandon + 1e-12
