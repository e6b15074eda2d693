"""Erlang C and Erlang A: the queueing formulas the simulator is proved against.

Notation: ``n`` agents, arrival rate λ (calls/s), mean handle time 1/μ (s), offered load
a = λ/μ (Erlangs), mean patience 1/θ (s, Erlang A only), service-level threshold t (s).

Erlang C (M/M/n; Cooper, *Introduction to Queueing Theory*, 2nd ed., §3.4; Gans, Koole &
Mandelbaum, "Telephone call centers: tutorial, review and research prospects", MSOM 5(2),
2003, §4.1)::

    B(0) = 1,  1/B(k) = 1 + (k/a)·1/B(k-1)          (Erlang B, the stable recursion)
    C    = n·B / (n - a·(1 - B))                      P(wait > 0), a < n
    P(W <= t) = 1 - C·exp(-(n - a)·μ·t)
    ASA  = C / ((n - a)·μ)

Erlang A (M/M/n+M, "Palm/Erlang-A"; Garnett, Mandelbaum & Reiman, "Designing a call
center with impatient customers", MSOM 4(3), 2002; Mandelbaum & Zeltyn, "Service
engineering in action: the Palm/Erlang-A queue, with applications to call centers", 2007).
With x = nμ/θ and y = λ/θ, the stationary probabilities above ``n`` are
π(n+j) = π(n)·w_j, w_j = Π_{i=1..j} y/(x+i), and below ``n`` they sum to π(n)·(1/B - 1), so

    A(x, y) = Σ_j w_j           (Mandelbaum–Zeltyn's A(x,y) = x·e^y·y^-x·γ(x,y))
    P(wait > 0) = A / (1/B - 1 + A)

An arrival that finds ``j`` callers ahead has an *offered* wait V (the wait if it were
infinitely patient) that is a sum of exponentials with rates θ(x+i), i = 0..j; then
U = e^{-θV} is a product of Beta(x+i, 1) variables, i.e. Beta(x, j+1). With independent
exponential patience the caller is served iff patience > V, which has probability U. So

    P(served | j)            = E[U]            = x / (x+j+1)
    E[V; served | j]          = E[-ln(U)·U]/θ  = x/(x+j+1) · Σ_{i=0..j} 1/(θ(x+1+i))
    P(served, V <= t | waits) = ratio of lower incomplete gammas γ(x+1, y·e^{-θt}) / γ(x+1, y)

(the last by mixing the Beta densities over j: Σ_j w_j·Beta(x, j+1)(u) ∝ u^{x-1}·e^{-yu}).
Every sum is evaluated in log space with the largest term factored out, so overloaded
queues (y ≫ x, terms beyond 1e300) and tiny probabilities stay finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_TAIL = 46.0  # terms below e^-46 (1e-20) of the largest are dropped


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Steady-state figures of one queue (probabilities 0..1, times in seconds).

    ``service_level`` is callers answered within the threshold ÷ all callers (an
    abandoned caller counts against it, however quickly they hung up); ``asa_seconds``
    is the mean wait of answered callers; ``occupancy`` the fraction of agent time busy.
    """

    p_wait: float
    p_abandon: float
    service_level: float
    asa_seconds: float
    mean_wait_seconds: float
    occupancy: float


def _check(agents: int, arrival_rate: float, aht_s: float) -> None:
    if agents < 1:
        raise ValueError("need at least one agent")
    if arrival_rate < 0 or aht_s <= 0:
        raise ValueError("arrival rate must be >= 0 and handle time > 0")


def erlang_b_inverse(agents: int, load: float) -> float:
    """1/B(n, a) by the recursion 1/B(k) = 1 + (k/a)/B(k-1); ``inf`` once B underflows."""
    if load <= 0:
        return math.inf
    inv = 1.0
    for k in range(1, agents + 1):
        inv = 1.0 + inv * k / load
    return inv


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of ``agents`` servers offered ``load`` Erlangs (no queue)."""
    return 1.0 / erlang_b_inverse(agents, load)


def erlang_c(agents: int, load: float) -> float:
    """Probability that a caller waits (M/M/n); 1.0 when ``load >= agents``."""
    if load >= agents:
        return 1.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1.0 - b))


def erlang_c_metrics(
    agents: int, arrival_rate: float, aht_s: float, sl_threshold_s: float
) -> QueueMetrics:
    """Erlang C figures (callers never abandon). Unstable queues (load >= agents) get
    P(wait) = 1, service level 0 and infinite waits."""
    _check(agents, arrival_rate, aht_s)
    load = arrival_rate * aht_s
    if load >= agents:
        return QueueMetrics(1.0, 0.0, 0.0, math.inf, math.inf, 1.0)
    c = erlang_c(agents, load)
    gap = agents - load
    asa = c * aht_s / gap
    sl = 1.0 - c * math.exp(-gap * sl_threshold_s / aht_s)
    return QueueMetrics(c, 0.0, sl, asa, asa, load / agents)


def _log_products(a: float, z: float) -> npt.NDArray[np.float64]:
    """log Π_{i=1..k} z/(a+i) for k = 0..K, with K past the point where terms vanish."""
    if z <= 0:
        return np.zeros(1)
    peak = max(0, math.ceil(z - a))
    count = peak + int(12 * math.sqrt(z + 1.0)) + 64
    log_z = math.log(z)
    while True:
        k = np.arange(1, count + 1, dtype=np.float64)
        terms = np.concatenate(([0.0], np.cumsum(log_z - np.log(a + k))))
        if terms[-1] < terms.max() - _TAIL:
            return terms
        count *= 2  # not far enough past the peak yet


def _log_sum(log_terms: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    """log Σ exp(log_terms)·weights for weights >= 0, without overflow."""
    top = float(log_terms.max())
    total = float(np.sum(np.exp(log_terms - top) * weights))
    return top + math.log(total) if total > 0 else -math.inf


def _log_lower_gamma_series(a: float, z: float) -> float:
    """log of S(a, z) = Σ_k z^k / (a(a+1)…(a+k)), so γ(a, z) = z^a·e^-z·S(a, z)."""
    terms = _log_products(a, z)
    return _log_sum(terms, np.ones_like(terms)) - math.log(a)


def erlang_a_metrics(
    agents: int,
    arrival_rate: float,
    aht_s: float,
    patience_s: float,
    sl_threshold_s: float,
) -> QueueMetrics:
    """Erlang A (M/M/n+M) figures: exponential patience with mean ``patience_s``.

    Stable at any load (impatient callers bound the queue). See the module docstring for
    the formulas and their sources.
    """
    _check(agents, arrival_rate, aht_s)
    if patience_s <= 0:
        raise ValueError("patience must be > 0")
    if arrival_rate == 0:
        return QueueMetrics(0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    theta = 1.0 / patience_s
    x = agents * patience_s / aht_s  # nμ/θ
    y = arrival_rate * patience_s  # λ/θ
    load = arrival_rate * aht_s

    log_w = _log_products(x, y)  # log w_j, j = 0..J
    j = np.arange(log_w.size, dtype=np.float64)
    served = x / (x + j + 1.0)  # P(served | j ahead)
    harmonic = np.cumsum(1.0 / (x + 1.0 + j))  # θ·E[V | j]
    log_a = _log_sum(log_w, np.ones_like(log_w))
    log_served = _log_sum(log_w, served)
    log_served_wait = _log_sum(log_w, served * harmonic)

    inv_b = erlang_b_inverse(agents, load)
    log_below = math.log(inv_b - 1.0) if math.isfinite(inv_b) else math.inf
    # log π(n), normalised: 1 / (1/B - 1 + A)
    if math.isinf(log_below):
        log_pi_n = -math.inf
    else:
        top = max(log_below, log_a)
        log_pi_n = -(top + math.log(math.exp(log_below - top) + math.exp(log_a - top)))
    p_wait = math.exp(log_pi_n + log_a)
    p_served_after_wait = math.exp(log_pi_n + log_served)
    p_abandon = max(0.0, p_wait - p_served_after_wait)
    p_served = 1.0 - p_abandon
    asa = math.exp(log_pi_n + log_served_wait) / theta / p_served if p_served > 0 else math.inf

    # P(served within t | waited) = served mass × (1 - γ(x+1, y·c)/γ(x+1, y)), c = e^{-θt}
    c_log = -theta * sl_threshold_s
    a1 = x + 1.0
    if sl_threshold_s <= 0:
        ratio = 1.0
    else:
        log_ratio = (
            a1 * c_log
            + y * (1.0 - math.exp(c_log))
            + _log_lower_gamma_series(a1, y * math.exp(c_log))
            - _log_lower_gamma_series(a1, y)
        )
        ratio = math.exp(min(0.0, log_ratio))
    sl = (1.0 - p_wait) + p_served_after_wait * (1.0 - ratio)
    occupancy = load * p_served / agents
    return QueueMetrics(p_wait, p_abandon, sl, asa, p_abandon / theta, occupancy)
