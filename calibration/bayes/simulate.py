"""Simulated studies with a known truth, for tests and benchmarks.

A study has arms (index 0 the incumbent), regions with traffic shares ``w_r``, a true pass
probability ``θ[m, r]`` and a binary judge with sensitivity ``se[m]`` and specificity
``sp[m]`` (possibly different per arm). Responses in cell ``(m, r)`` number
``n[m, r]``; each has a latent true class ``y ~ Bernoulli(θ[m, r])`` and a judge output
``j ~ Bernoulli(se[m])`` if ``y = 1`` else ``Bernoulli(1 - sp[m])``. Human labels start
hidden (``-1``) and are revealed by :func:`reveal_uniform`.

The decision target is the super-population contrast
``Δ_c = Σ_r w_r θ[c, r] − Σ_r w_r θ[0, r]`` (what the model estimates).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibration.bayes.data import (
    CellCounts,
    JointCells,
    counts_from_arrays,
    joint_cells_from_arrays,
)

__all__ = ["SimulatedStudy", "reveal_uniform", "sequential_go_rate", "simulate_study"]


@dataclass(frozen=True, eq=False)
class SimulatedStudy:
    """One simulated dimension of a study, with its truth and one row per response."""

    arms: tuple[str, ...]
    regions: tuple[str, ...]
    weights: NDArray[np.float64]  # (R,) traffic shares, sum 1
    theta: NDArray[np.float64]  # (M, R) true P(pass)
    sensitivity: NDArray[np.float64]  # (M,)
    specificity: NDArray[np.float64]  # (M,)
    arm_idx: NDArray[np.int64] = field(repr=False)
    region_idx: NDArray[np.int64] = field(repr=False)
    judge_bin: NDArray[np.int64] = field(repr=False)
    truth: NDArray[np.int64] = field(repr=False)  # latent y of every response

    @property
    def n_bins(self) -> int:
        return 2

    def cells(self, human: NDArray[np.int64]) -> JointCells:
        """The model's counts for a labelling vector (``-1`` unlabelled, else the class)."""
        return _cells_of(self, human)

    def true_delta(self) -> NDArray[np.float64]:
        """``Δ`` for each arm against arm 0 (``Δ[0] = 0``), shape ``(M,)``."""
        level = self.theta @ self.weights
        return np.asarray(level - level[0], dtype=np.float64)

    def true_delta_by_region(self) -> NDArray[np.float64]:
        """``θ[m, r] − θ[0, r]``, shape ``(M, R)``."""
        return np.asarray(self.theta - self.theta[0], dtype=np.float64)

    def counts(self, human: NDArray[np.int64]) -> CellCounts:
        """Counts for a labelling vector (``-1`` unlabelled, else the revealed class)."""
        return counts_from_arrays(
            arms=self.arms,
            regions=self.regions,
            n_bins=2,
            arm_idx=self.arm_idx,
            region_idx=self.region_idx,
            judge_bin=self.judge_bin,
            human=human,
        )


def _cells_of(study: SimulatedStudy, human: NDArray[np.int64]) -> JointCells:
    return joint_cells_from_arrays(
        arms=study.arms,
        regions=study.regions,
        n_bins=(2,),
        arm_idx=study.arm_idx,
        region_idx=study.region_idx,
        bins=study.judge_bin[:, None],
        human=np.asarray(human, dtype=np.int64)[:, None],
    )


def simulate_study(
    *,
    theta: ArrayLike,
    weights: ArrayLike,
    sensitivity: ArrayLike,
    specificity: ArrayLike,
    n_per_arm: int,
    seed: int,
    arms: tuple[str, ...] | None = None,
    regions: tuple[str, ...] | None = None,
) -> SimulatedStudy:
    """Draw every response of a study.

    Parameters
    ----------
    theta
        ``(M, R)`` true pass probabilities.
    weights
        ``(R,)`` traffic shares (normalised here). Each arm's ``n_per_arm`` responses are
        split over regions in these proportions (multinomially), so a uniform sample of an
        arm's responses is a traffic-weighted sample.
    sensitivity, specificity
        ``(M,)`` or scalars: the judge's ``P(j=1 | y=1)`` and ``P(j=0 | y=0)`` per arm.
    n_per_arm
        Responses per arm.
    seed
        Seed of ``numpy.random.default_rng``.
    """
    rng = np.random.default_rng(seed)
    th = np.asarray(theta, dtype=np.float64)
    if th.ndim != 2:
        raise ValueError("theta must be (M, R)")
    m, r = th.shape
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    se = np.broadcast_to(np.asarray(sensitivity, dtype=np.float64), (m,)).copy()
    sp = np.broadcast_to(np.asarray(specificity, dtype=np.float64), (m,)).copy()
    sizes = np.stack([rng.multinomial(n_per_arm, w) for _ in range(m)])  # (M, R)
    cell = np.repeat(np.arange(m * r), sizes.ravel())
    arm_idx = cell // r
    region_idx = cell % r
    truth = (rng.random(cell.size) < th.ravel()[cell]).astype(np.int64)
    p_pos = np.where(truth == 1, se[arm_idx], 1.0 - sp[arm_idx])
    judge = (rng.random(cell.size) < p_pos).astype(np.int64)
    return SimulatedStudy(
        arms=arms or tuple(f"arm{i}" for i in range(m)),
        regions=regions or tuple(f"region{i}" for i in range(r)),
        weights=w,
        theta=th,
        sensitivity=se,
        specificity=sp,
        arm_idx=arm_idx.astype(np.int64),
        region_idx=region_idx.astype(np.int64),
        judge_bin=judge,
        truth=truth,
    )


def reveal_uniform(
    study: SimulatedStudy, n_labels_per_arm: int | ArrayLike, *, seed: int
) -> NDArray[np.int64]:
    """Reveal the true class of a uniform random subset of each arm's responses.

    Returns the ``human`` vector for :func:`~calibration.bayes.data.counts_from_arrays`:
    the true class on the chosen responses, ``-1`` elsewhere. The number per arm is capped
    at the arm's size.
    """
    rng = np.random.default_rng(seed)
    m = len(study.arms)
    per_arm = np.broadcast_to(np.asarray(n_labels_per_arm, dtype=np.int64), (m,))
    human = np.full(study.truth.size, -1, dtype=np.int64)
    for a in range(m):
        idx = np.flatnonzero(study.arm_idx == a)
        k = int(min(per_arm[a], idx.size))
        chosen = rng.choice(idx, size=k, replace=False)
        human[chosen] = study.truth[chosen]
    return human


def sequential_go_rate(
    looks: ArrayLike,
    boundary: ArrayLike,
    *,
    paths: int = 100_000,
    seed: int = 0,
) -> float:
    r"""Share of null paths that ever cross a go boundary, for a normal statistic looked at often.

    Each path is a running mean of i.i.d. standard normal scores at the true boundary
    ``Δ = −δ``: after ``n`` labels ``S_n = Σ_{i≤n} x_i`` and ``z_n = S_n / √n`` (exactly
    ``N(0, 1)`` at each look, correlated across looks as ``corr(z_m, z_n) = √(m/n)``). A path
    gives a (wrong) go at the first look ``n_k`` with ``z_{n_k} ≥ b_k``.

    This is the large-sample picture of a posterior read at every fit; it isolates optional
    stopping from everything the real model adds (priors, judge calibration, small-sample
    skew), which ``bench/label_efficiency.py`` measures with real fits.

    Parameters
    ----------
    looks
        ``(K,)`` strictly increasing positive label counts at which the verdict is read.
    boundary
        ``(K,)`` the ``z`` a go needs at each look (``inf``: no verdict at that look).
    paths, seed
        Monte Carlo size and seed.

    Returns
    -------
    float
        The estimated probability of a go at any look.
    """
    n = np.asarray(looks, dtype=np.float64)
    b = np.asarray(boundary, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or b.shape != n.shape:
        raise ValueError("looks and boundary must be 1-d arrays of the same non-zero length")
    if (n <= 0).any() or (np.diff(n) <= 0).any():
        raise ValueError("looks must be positive and strictly increasing")
    if paths < 1:
        raise ValueError("paths must be positive")
    rng = np.random.default_rng(seed)
    steps = np.diff(n, prepend=0.0)
    crossed = np.zeros(paths, dtype=bool)
    total = np.zeros(paths)
    for k in range(n.size):
        total += rng.normal(0.0, np.sqrt(steps[k]), size=paths)
        crossed |= total / np.sqrt(n[k]) >= b[k]
    return float(crossed.mean())
