"""Input shaping: judge-score bins and per-cell counts.

The model never sees individual responses. Every response falls in a cell
``(arm m, region r, judge bin j)`` and, when a human graded it, also has a true class
``y ∈ {0 fail, 1 pass}``. Responses in one cell are exchangeable, so the counts

* ``judge_only[m, r, j]`` — responses with judge bin ``j`` and no human label, and
* ``labelled[m, r, y, j]`` — human-labelled responses with class ``y`` and judge bin ``j``

are sufficient statistics for the model (the two sets are disjoint: a labelled response is
not also counted as judge-only). That is why fit time does not grow with the number of
responses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CellCounts",
    "JointCells",
    "bin_scores",
    "counts_from_arrays",
    "joint_cells_from_arrays",
    "quantile_cuts",
]


def quantile_cuts(values: ArrayLike, n_bins: int) -> NDArray[np.float64]:
    """Interior cut points that split ``values`` into at most ``n_bins`` quantile bins.

    Parameters
    ----------
    values
        Judge scores (any real numbers; NaNs are ignored).
    n_bins
        Wanted number of bins ``J ≥ 2``.

    Returns
    -------
    numpy.ndarray
        Strictly increasing cut points ``c_1 < … < c_{J'-1}`` with ``J' ≤ n_bins``. A score
        ``s`` falls in bin ``#{k : c_k ≤ s}`` (see :func:`bin_scores`).

    Notes
    -----
    Cuts are placed half-way between two consecutive *distinct* observed values, never on an
    observed value, so tied scores are never split across bins. When the scores take at most
    ``n_bins`` distinct values each value gets its own bin (a binary judge scored 0/1 gives
    one cut at 0.5). Otherwise the cut for the ``k``-th quantile ``F^{-1}(k/J)`` is the
    midpoint between that value and the next distinct value above it; duplicates are
    dropped, so heavily tied (discrete) scores can give fewer than ``n_bins`` bins.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[~np.isnan(arr)]
    if arr.size == 0 or n_bins == 1:
        return np.empty(0, dtype=np.float64)
    uniq = np.unique(arr)
    if uniq.size <= n_bins:
        return (uniq[:-1] + uniq[1:]) / 2.0
    probs = np.arange(1, n_bins) / n_bins
    lows = np.quantile(arr, probs, method="inverted_cdf")
    pos = np.searchsorted(uniq, lows, side="right")
    pos = pos[pos < uniq.size]
    cuts = (uniq[pos - 1] + uniq[pos]) / 2.0
    return np.unique(cuts)


def bin_scores(values: ArrayLike, cuts: ArrayLike) -> NDArray[np.int64]:
    """Bin index ``0..J-1`` of each score for the interior ``cuts`` (``J = len(cuts) + 1``).

    A score equal to a cut goes to the upper bin: ``bin(s) = #{k : c_k ≤ s}``.
    """
    cuts_arr = np.asarray(cuts, dtype=np.float64)
    if cuts_arr.ndim != 1 or np.any(np.diff(cuts_arr) <= 0):
        raise ValueError("cuts must be a strictly increasing 1-d array")
    vals = np.asarray(values, dtype=np.float64)
    if np.isnan(vals).any():
        raise ValueError("cannot bin NaN scores")
    return np.searchsorted(cuts_arr, vals, side="right").astype(np.int64)


def _frozen(arr: ArrayLike, shape: tuple[int, ...], name: str) -> NDArray[np.int64]:
    out = np.array(arr, dtype=np.int64, copy=True, order="C")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if (out < 0).any():
        raise ValueError(f"{name} has negative counts")
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class CellCounts:
    """Sufficient statistics for one dimension of one study.

    Attributes
    ----------
    arms
        Arm names; index 0 is the incumbent.
    regions
        Region names.
    n_bins
        Number of judge bins ``J`` (2 for a binary judge).
    judge_only
        ``(M, R, J)`` int64 — responses with a judge bin and no human label.
    labelled
        ``(M, R, 2, J)`` int64 — human-labelled responses by true class ``y`` (0 fail,
        1 pass) and judge bin.
    """

    arms: tuple[str, ...]
    regions: tuple[str, ...]
    n_bins: int
    judge_only: NDArray[np.int64] = field(repr=False)
    labelled: NDArray[np.int64] = field(repr=False)

    def __post_init__(self) -> None:
        arms = tuple(str(a) for a in self.arms)
        regions = tuple(str(r) for r in self.regions)
        if len(arms) < 1 or len(regions) < 1:
            raise ValueError("need at least one arm and one region")
        if len(set(arms)) != len(arms) or len(set(regions)) != len(regions):
            raise ValueError("arm and region names must be unique")
        if self.n_bins < 1:
            raise ValueError("n_bins must be at least 1")
        m, r, j = len(arms), len(regions), int(self.n_bins)
        object.__setattr__(self, "arms", arms)
        object.__setattr__(self, "regions", regions)
        object.__setattr__(self, "n_bins", j)
        object.__setattr__(self, "judge_only", _frozen(self.judge_only, (m, r, j), "judge_only"))
        object.__setattr__(self, "labelled", _frozen(self.labelled, (m, r, 2, j), "labelled"))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, R, J)``: the key under which compiled models are cached."""
        return (len(self.arms), len(self.regions), self.n_bins)

    @property
    def n_labelled(self) -> NDArray[np.int64]:
        """Human labels per arm, shape ``(M,)``."""
        return np.asarray(self.labelled.sum(axis=(1, 2, 3)), dtype=np.int64)

    @property
    def n_responses(self) -> NDArray[np.int64]:
        """All responses (judge-only + labelled) per ``(arm, region)``, shape ``(M, R)``."""
        total = self.judge_only.sum(axis=2) + self.labelled.sum(axis=(2, 3))
        return np.asarray(total, dtype=np.int64)

    def judge_bin_totals(self) -> NDArray[np.int64]:
        """All responses per ``(arm, region, bin)``, labelled or not, shape ``(M, R, J)``."""
        return np.asarray(self.judge_only + self.labelled.sum(axis=2), dtype=np.int64)

    def digest(self) -> str:
        """Stable sha256 hex digest of names, bins and counts (for reproducibility records)."""
        h = hashlib.sha256()
        header = {"arms": list(self.arms), "regions": list(self.regions), "n_bins": self.n_bins}
        h.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        h.update(self.judge_only.astype("<i8", copy=False).tobytes(order="C"))
        h.update(self.labelled.astype("<i8", copy=False).tobytes(order="C"))
        return h.hexdigest()


def counts_from_arrays(
    *,
    arms: tuple[str, ...] | list[str],
    regions: tuple[str, ...] | list[str],
    n_bins: int,
    arm_idx: ArrayLike,
    region_idx: ArrayLike,
    judge_bin: ArrayLike,
    human: ArrayLike,
) -> CellCounts:
    """Aggregate one row per response into :class:`CellCounts`.

    Parameters
    ----------
    arms, regions
        Names; ``arm_idx`` and ``region_idx`` index into them.
    n_bins
        Number of judge bins ``J``; ``judge_bin`` takes values ``0..J-1``.
    arm_idx, region_idx, judge_bin
        Integer arrays of equal length ``N``.
    human
        Integer array of length ``N``: ``1`` pass, ``0`` fail, ``-1`` not labelled.

    Returns
    -------
    CellCounts

    Notes
    -----
    One ``np.bincount`` per table on a flattened cell index, so millions of rows take a
    few tens of milliseconds.
    """
    m, r, j = len(arms), len(regions), int(n_bins)
    a = np.asarray(arm_idx, dtype=np.int64).ravel()
    g = np.asarray(region_idx, dtype=np.int64).ravel()
    b = np.asarray(judge_bin, dtype=np.int64).ravel()
    y = np.asarray(human, dtype=np.int64).ravel()
    if not (a.size == g.size == b.size == y.size):
        raise ValueError("arm_idx, region_idx, judge_bin and human must have the same length")
    for name, arr, hi in (("arm_idx", a, m), ("region_idx", g, r), ("judge_bin", b, j)):
        if arr.size and (arr.min() < 0 or arr.max() >= hi):
            raise ValueError(f"{name} out of range 0..{hi - 1}")
    if y.size and (y.min() < -1 or y.max() > 1):
        raise ValueError("human must be -1 (unlabelled), 0 (fail) or 1 (pass)")

    cell = a * r + g
    unlabelled = y < 0
    judge_only = np.bincount(cell[unlabelled] * j + b[unlabelled], minlength=m * r * j)
    lab = ~unlabelled
    labelled = np.bincount((cell[lab] * 2 + y[lab]) * j + b[lab], minlength=m * r * 2 * j)
    return CellCounts(
        arms=tuple(arms),
        regions=tuple(regions),
        n_bins=j,
        judge_only=judge_only.reshape(m, r, j),
        labelled=labelled.reshape(m, r, 2, j),
    )


@dataclass(frozen=True, eq=False)
class JointCells:
    """Sufficient statistics of a whole study for the calibration-curve model.

    A *cell* is what selection conditions on: ``(arm m, region r, k)`` with ``k`` one
    combination of judge bins over **every** dimension (``combos[k]``). The model of each
    dimension conditions on the whole cell, so the labels the selector picked are missing
    at random for every dimension, not only for the one whose bin drove the pick.

    Attributes
    ----------
    arms, regions
        Names; arm 0 is the incumbent.
    n_bins
        Judge bins ``J_d`` of each dimension.
    combos
        ``(K, D)`` int64: the bin combinations present in the study, ``-1`` where a response
        has no judge score on that dimension.
    totals
        ``(M, R, K)`` responses per cell, labelled or not.
    labelled, passes
        ``(D, M, R, K)``: responses of the cell with a human class on dimension ``d``, and
        how many of them pass. A response graded on some dimensions only counts as
        unlabelled on the others.
    """

    arms: tuple[str, ...]
    regions: tuple[str, ...]
    n_bins: tuple[int, ...]
    combos: NDArray[np.int64] = field(repr=False)
    totals: NDArray[np.int64] = field(repr=False)
    labelled: NDArray[np.int64] = field(repr=False)
    passes: NDArray[np.int64] = field(repr=False)

    def __post_init__(self) -> None:
        arms = tuple(str(a) for a in self.arms)
        regions = tuple(str(r) for r in self.regions)
        n_bins = tuple(int(j) for j in self.n_bins)
        if len(arms) < 2 or len(regions) < 1 or len(n_bins) < 1:
            raise ValueError("need an incumbent, a candidate, a region and a dimension")
        if len(set(arms)) != len(arms) or len(set(regions)) != len(regions):
            raise ValueError("arm and region names must be unique")
        if min(n_bins) < 2:
            raise ValueError("every judge needs at least two bins")
        combos = np.array(self.combos, dtype=np.int64, copy=True).reshape(-1, len(n_bins))
        if combos.size and (combos.min() < -1 or (combos >= np.array(n_bins)).any()):
            raise ValueError("combos hold bins outside 0..J-1 (or -1 for no score)")
        m, r, k, d = len(arms), len(regions), combos.shape[0], len(n_bins)
        combos.flags.writeable = False
        object.__setattr__(self, "arms", arms)
        object.__setattr__(self, "regions", regions)
        object.__setattr__(self, "n_bins", n_bins)
        object.__setattr__(self, "combos", combos)
        object.__setattr__(self, "totals", _frozen(self.totals, (m, r, k), "totals"))
        object.__setattr__(self, "labelled", _frozen(self.labelled, (d, m, r, k), "labelled"))
        object.__setattr__(self, "passes", _frozen(self.passes, (d, m, r, k), "passes"))
        if (self.passes > self.labelled).any() or (self.labelled > self.totals[None]).any():
            raise ValueError("passes <= labelled <= totals must hold in every cell")

    @classmethod
    def from_counts(cls, counts: CellCounts) -> JointCells:
        """The cells of a one-dimension study given as per-bin tables: each judge bin is a
        combination of its own (exact: with one dimension, the cell is the bin)."""
        lab = counts.labelled  # (M, R, 2, J)
        return cls(
            arms=counts.arms,
            regions=counts.regions,
            n_bins=(counts.n_bins,),
            combos=np.arange(counts.n_bins)[:, None],
            totals=counts.judge_bin_totals(),
            labelled=lab.sum(axis=2)[None],
            passes=lab[:, :, 1][None],
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, R, K)``."""
        return (len(self.arms), len(self.regions), int(self.combos.shape[0]))

    @property
    def n_dimensions(self) -> int:
        return len(self.n_bins)

    def levels(self) -> tuple[int, ...]:
        """Levels of each dimension's bin in the design: ``J_d``, plus one for "no score"
        when some response lacks a score on ``d``."""
        missing = (self.combos < 0).any(axis=0)
        return tuple(j + int(mi) for j, mi in zip(self.n_bins, missing, strict=True))

    def level_index(self) -> NDArray[np.int64]:
        """``(K, D)`` the level of each combo on each dimension ("no score" is ``J_d``)."""
        j = np.array(self.n_bins, dtype=np.int64)
        return np.where(self.combos < 0, j[None, :], self.combos)

    def dimension_counts(self, d: int) -> CellCounts:
        """The per-dimension ``(arm, region, bin)`` tables of dimension ``d`` (responses with
        a score on ``d`` only), for views that read the judge one dimension at a time."""
        m, r, _ = self.shape
        j = self.n_bins[d]
        scored = self.combos[:, d] >= 0
        onehot = np.zeros((self.combos.shape[0], j), dtype=np.int64)
        onehot[np.flatnonzero(scored), self.combos[scored, d]] = 1
        tot = self.totals @ onehot  # (M, R, J)
        lab = self.labelled[d] @ onehot
        pas = self.passes[d] @ onehot
        labelled = np.stack([lab - pas, pas], axis=2)
        return CellCounts(
            arms=self.arms,
            regions=self.regions,
            n_bins=j,
            judge_only=tot - lab,
            labelled=labelled,
        )

    def digest(self) -> str:
        """Stable sha256 hex digest of names, bins and counts."""
        h = hashlib.sha256()
        header = {"arms": list(self.arms), "regions": list(self.regions), "bins": self.n_bins}
        h.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        for arr in (self.combos, self.totals, self.labelled, self.passes):
            h.update(arr.astype("<i8", copy=False).tobytes(order="C"))
        return h.hexdigest()


def joint_cells_from_arrays(
    *,
    arms: tuple[str, ...] | list[str],
    regions: tuple[str, ...] | list[str],
    n_bins: tuple[int, ...] | list[int],
    arm_idx: ArrayLike,
    region_idx: ArrayLike,
    bins: ArrayLike,
    human: ArrayLike,
) -> JointCells:
    """Aggregate one row per response into :class:`JointCells`.

    Parameters
    ----------
    arm_idx, region_idx
        ``(N,)`` indices into ``arms`` and ``regions``.
    bins
        ``(N, D)`` judge bin per dimension, ``-1`` for no score.
    human
        ``(N, D)`` human class per dimension: ``1`` pass, ``0`` fail, ``-1`` not labelled.
    """
    m, r, d = len(arms), len(regions), len(n_bins)
    a = np.asarray(arm_idx, dtype=np.int64).ravel()
    g = np.asarray(region_idx, dtype=np.int64).ravel()
    b = np.asarray(bins, dtype=np.int64).reshape(a.size, d)
    y = np.asarray(human, dtype=np.int64).reshape(a.size, d)
    if g.size != a.size:
        raise ValueError("arm_idx and region_idx must have the same length")
    for name, arr, hi in (("arm_idx", a, m), ("region_idx", g, r)):
        if arr.size and (arr.min() < 0 or arr.max() >= hi):
            raise ValueError(f"{name} out of range 0..{hi - 1}")
    if y.size and (y.min() < -1 or y.max() > 1):
        raise ValueError("human must be -1 (unlabelled), 0 (fail) or 1 (pass)")
    combos, k_of = np.unique(b, axis=0, return_inverse=True)
    k_of = k_of.ravel()
    k = combos.shape[0]
    cell = (a * r + g) * k + k_of
    totals = np.bincount(cell, minlength=m * r * k).reshape(m, r, k)
    labelled = np.zeros((d, m, r, k), dtype=np.int64)
    passes = np.zeros((d, m, r, k), dtype=np.int64)
    for i in range(d):
        lab = y[:, i] >= 0
        labelled[i] = np.bincount(cell[lab], minlength=m * r * k).reshape(m, r, k)
        passes[i] = np.bincount(cell[lab], weights=y[lab, i], minlength=m * r * k).reshape(m, r, k)
    return JointCells(
        arms=tuple(arms),
        regions=tuple(regions),
        n_bins=tuple(int(j) for j in n_bins),
        combos=combos,
        totals=totals,
        labelled=labelled,
        passes=passes,
    )
