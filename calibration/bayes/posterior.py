"""Posterior draws and diagnostics of a fit: light data classes, no PyMC import.

A web process that only *reads* fits (dashboards, selection, reports) imports this module
and numpy; PyMC, PyTensor and nutpie (3–8 s to import) are only needed by the worker that
samples (:mod:`calibration.bayes.fit`, which re-exports these names).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibration.bayes.curve import CurveDesign, pass_probability

__all__ = [
    "DIVERGENCES_MAX",
    "ESS_MIN",
    "FIT_SETTINGS",
    "MODEL_VERSION",
    "RETRY_TARGET_ACCEPT",
    "RHAT_MAX",
    "TOP_UP_ESS_MARGIN",
    "TOP_UP_MAX_FACTOR",
    "TOP_UP_RHAT_MAX",
    "DimensionFit",
    "diagnose",
    "ess_top_up_chains",
]

#: Bump whenever the model (priors, parameterisation, likelihood) changes. It lives here,
#: not in :mod:`calibration.bayes.model`, so that reading stored draws needs no PyMC;
#: ``model.MODEL_VERSION`` is the same object.
MODEL_VERSION = "baton-calib-2026.12-curve-1"

#: Format 1 (model versions up to ``baton-calib-2026.12-4``: judge confusion per arm) stays
#: readable; format 2 adds the calibration curve's parameters and design.
_FORMAT = "baton-dimension-fit-2"
_FORMATS = ("baton-dimension-fit-1", _FORMAT)


#: NUTS settings per dimension (draws per chain; chains run as threads in nutpie).
# The calibration curve's geometry is mostly benign, so a target acceptance of 0.9 rather
# than 0.95 takes longer steps: on the demo at 100 grades, 3.7-5.6 s of CPU per dimension
# instead of 5.2-7.2, every fit passing (R-hat <= 1.006, bulk ESS >= 870). Where it is not
# (a large study, bench/bayes_fit_time.py), a fit with too many divergences is sampled again
# once at RETRY_TARGET_ACCEPT (Fitter.fit). 2 x 1000 draws were too few: the folded R-hat
# over the curve's ~150 scalars reached 1.0175 and 4 of 6 fits failed.
# bench/fit_diagnostics.py and bench/bayes_fit_time.py measure these settings.
FIT_SETTINGS: dict[str, Any] = {"draws": 2000, "tune": 500, "chains": 2, "target_accept": 0.9}

#: Target acceptance of the one re-run of a fit whose first run has more than
#: ``DIVERGENCES_MAX`` divergent transitions (``Fitter.fit``, *Divergence retry*).
# A large study (3 models x 6 regions x 3 dimensions, 300 grades per model:
# bench/bayes_fit_time.py) gave 7-14 divergences in 6 of its 18 warm fits at 0.9; at 0.97
# all 18 passed (at most 3 divergences). Sampling every fit at 0.97 instead cost 15-26% on
# that study but 2.3x on a 720-cell study at 20-80 grades (bench/scale_month.py, variant
# refit_target_accept_097: 19-22 s of sampling per refit, against 8-10 s at 0.9 in the
# month's run of the same cells), where 0.9 already passes; so only the fits that need the
# smaller steps pay for them.
RETRY_TARGET_ACCEPT = 0.97

#: A fit is ``ok`` when every monitored quantity has rank-normalised split R-hat ≤ this ...
RHAT_MAX = 1.01
#: ... bulk ESS ≥ this (Vehtari et al. 2021 suggest ≥ 100 per chain; 400 for 2–4 chains) ...
ESS_MIN = 400.0
#: ... and at most this many divergent transitions after warm-up (a "handful").
DIVERGENCES_MAX = 5

# The ESS top-up (:func:`ess_top_up_chains`, used by ``Fitter.fit``).
#: A fit short of ESS is topped up only while its max R-hat is at most this. Ordered-logit
#: fits at 5M responses short of ESS (min bulk ESS 219–390 with 2 × 2000 draws, 34 of 60
#: in ``bench/bayes_ordinal.py --studies 30 --sizes 5000000``, the model before the
#: calibration curve; the bench is in git history) had a max R-hat of
#: 1.002–1.022 and at most 1 divergence: the folded R-hat is noisy at that ESS. A real
#: failure to converge is far above this (a chain stuck elsewhere: 2.2 with 437
#: divergences, 10k responses, J = 3, in the same bench on another CPU). Between 1.01 and
#: this value the extra chains must bring R-hat, computed over all chains, down to
#: RHAT_MAX to pass. They do not always: more chains of the same length lower the noise
#: of R-hat but not its level, which is set by the ESS per chain (6 of 23 J = 3 top-ups
#: in that bench ended at R-hat 1.010–1.015 with a min bulk ESS above 500).
TOP_UP_RHAT_MAX = 1.05
#: Extra chains are sized so that the expected min bulk ESS (proportional to the number
#: of chains) is this multiple of ESS_MIN: the min over ~100 scalars is itself noisy.
TOP_UP_ESS_MARGIN = 1.25
#: All top-ups together never take a fit beyond this multiple of its requested chains
#: (so of its draws, and about of its sampling CPU time: each extra chain also tunes).
TOP_UP_MAX_FACTOR = 3


def _z_scale(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rank-normalise each column of ``x`` (chain, draw, K) over all its draws (Blom)."""
    from scipy import special, stats

    c, n, k = x.shape
    ranks = stats.rankdata(x.reshape(c * n, k), axis=0, method="average")
    size = c * n
    return np.asarray(special.ndtri((ranks - 0.375) / (size + 0.25))).reshape(c, n, k)


def _split(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Split each chain in two halves (the middle draw of an odd length is dropped)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _rhat_cols(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Basic R-hat of each column of ``x`` (chain, draw, K)."""
    n = x.shape[1]
    between = n * np.var(x.mean(axis=1), axis=0, ddof=1)
    within = np.var(x, axis=1, ddof=1).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.sqrt((between / within + n - 1) / n))


def _ess_cols(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """ESS of each column of ``x`` (chain, draw, K) by Geyer's initial monotone sequence."""
    c, n, k = x.shape
    centred = x - x.mean(axis=1, keepdims=True)
    m = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, n=m, axis=1)
    acov = np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n  # (c, n, k)
    mean_acov = acov.mean(axis=0)  # (n, k)
    mean_var = mean_acov[0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if c > 1:
        var_plus = var_plus + np.var(x.mean(axis=1), axis=0, ddof=1)
    out = np.empty(k)
    spread = x.max(axis=(0, 1)) - x.min(axis=(0, 1))
    for col in range(k):
        if spread[col] < np.finfo(float).resolution:
            out[col] = c * n
            continue
        rho = 1.0 - (mean_var[col] - mean_acov[:, col]) / var_plus[col]
        rho_t = np.zeros(n)
        rho_even = 1.0
        rho_t[0] = rho_even
        rho_odd = rho[1]
        rho_t[1] = rho_odd
        t = 1
        while t < n - 3 and rho_even + rho_odd > 0.0:
            rho_even, rho_odd = rho[t + 1], rho[t + 2]
            if rho_even + rho_odd >= 0:
                rho_t[t + 1], rho_t[t + 2] = rho_even, rho_odd
            t += 2
        max_t = t - 2
        if rho_even > 0:
            rho_t[max_t + 1] = rho_even
        t = 1
        while t <= max_t - 2:
            if rho_t[t + 1] + rho_t[t + 2] > rho_t[t - 1] + rho_t[t]:
                rho_t[t + 1] = rho_t[t + 2] = (rho_t[t - 1] + rho_t[t]) / 2.0
            t += 2
        total = c * n
        tau = -1.0 + 2.0 * rho_t[: max_t + 1].sum() + rho_t[max_t + 1 : max_t + 2].sum()
        tau = max(tau, 1.0 / np.log10(total))
        out[col] = np.nan if np.isnan(rho_t).any() else total / tau
    return out


def _rhat_ess(x: NDArray[np.float64]) -> tuple[float, float, float]:
    """Max rank-normalised split R-hat, min bulk ESS and min tail ESS over the trailing
    dims of ``x`` (chain, draw, ...).

    The formulas of Vehtari et al. (2021) as ArviZ implements them (``az.rhat``,
    ``az.ess(method="bulk")``, ``az.ess(method="tail", prob=(0.05, 0.95))``; a test checks
    the agreement), vectorised over the entries: ArviZ loops over them in Python, which
    cost about a second per fit, more than the sampling itself on an idle machine.
    """
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    # Constant entries (e.g. a cell with no data fixed by construction) give NaN: ignore.
    keep = flat.std(axis=(0, 1)) > 0
    if not keep.any():
        return 1.0, float("inf"), float("inf")
    flat = np.asarray(flat[:, :, keep], dtype=np.float64)
    split = _split(flat)
    rhat_bulk = _rhat_cols(_z_scale(split))
    c, n, k = split.shape
    folded = np.abs(split - np.median(split.reshape(c * n, k), axis=0))
    rhat = np.fmax(rhat_bulk, _rhat_cols(_z_scale(folded)))
    bulk = _ess_cols(_z_scale(split))
    lo, hi = np.quantile(flat.reshape(-1, flat.shape[2]), [0.05, 0.95], axis=0)
    tail = np.fmin(
        _ess_cols(_split((flat <= lo).astype(np.float64))),
        _ess_cols(_split((flat <= hi).astype(np.float64))),
    )
    return float(np.nanmax(rhat)), float(np.nanmin(bulk)), float(np.nanmin(tail))


def diagnose(
    posterior: dict[str, NDArray[np.float64]], diverging: NDArray[np.bool_]
) -> dict[str, float]:
    """Convergence diagnostics over every variable of a ``(chain, draw, ...)`` posterior.

    Returns ``max_rhat`` (rank-normalised split R-hat, Vehtari et al. 2021: the max of the
    bulk and the folded version), ``min_ess_bulk`` and ``min_ess_tail`` (5%/95% quantiles)
    over all entries of all variables (the sampling coordinates, hyper-parameters and the
    served ``theta``/``confusion``), the same restricted to ``theta`` (``max_rhat_theta``,
    ``min_ess_theta``), and the number of divergent post-warm-up transitions.

    Notes
    -----
    NUTS draws are often antithetic for the mean (bulk ESS above the number of draws) but
    positively autocorrelated for the spread, so the folded R-hat is the noisy one: with
    2 chains × 1000 draws about 1 fit in 11 showed a max R-hat of 1.011–1.016 over ~90
    monitored scalars while every bulk ESS was above 2000 (measured); 2 × 2000 draws
    brought it to ≈ 1.003. Hence ``Fitter.fit`` defaults to 2000 draws per chain.
    """
    rhats, bulks, tails = [], [], []
    out: dict[str, float] = {}
    for name, arr in posterior.items():
        rh, bulk, tail = _rhat_ess(np.asarray(arr, dtype=np.float64))
        rhats.append(rh)
        bulks.append(bulk)
        tails.append(tail)
        if name == "theta":
            out["max_rhat_theta"] = rh
            out["min_ess_theta"] = bulk
    out["max_rhat"] = max(rhats)
    out["min_ess_bulk"] = min(bulks)
    out["min_ess_tail"] = min(tails)
    out["divergences"] = float(np.asarray(diverging).sum())
    return out


def ess_top_up_chains(diagnostics: dict[str, float], *, chains: int, max_chains: int) -> int:
    """How many chains to add to a fit that fails on ESS alone (0: do not top up).

    A top-up is worth it only when the chains agree and the sampler had no trouble, so
    that more draws of the same kind will raise the ESS and nothing is hidden:

    * the fit fails (``DimensionFit.is_ok`` is false) *and* its min bulk ESS is below
      ``ESS_MIN`` — a fit with enough ESS that fails on R-hat is not topped up;
    * max R-hat ≤ ``TOP_UP_RHAT_MAX`` (1.05): not far off, see that constant;
    * divergences ≤ ``DIVERGENCES_MAX``: divergences point at a geometry the sampler cannot
      explore, which more draws would only dilute;
    * ``chains < max_chains``, and the ESS expected at ``max_chains`` reaches ``ESS_MIN``
      (``min_ess_bulk · max_chains / chains ≥ ESS_MIN``): a fit further off than that
      would still fail at the cap, and sampling it more would only cost time.

    The size: ESS grows about in proportion to the number of chains of equal length, so
    the chains needed for ``TOP_UP_ESS_MARGIN · ESS_MIN`` are
    ``ceil(chains · (TOP_UP_ESS_MARGIN · ESS_MIN / min_ess_bulk − 1))``, at least 1 and at
    most ``max_chains − chains``. Pure: ``diagnostics`` as :func:`diagnose` returns them.
    """
    rhat = float(diagnostics["max_rhat"])
    ess = float(diagnostics["min_ess_bulk"])
    divergences = float(diagnostics["divergences"])
    room = max_chains - chains
    if room <= 0 or chains <= 0 or DimensionFit.is_ok(diagnostics):
        return 0
    if not (np.isfinite(rhat) and rhat <= TOP_UP_RHAT_MAX):
        return 0
    if not divergences <= DIVERGENCES_MAX:
        return 0
    if not (np.isfinite(ess) and 0.0 < ess < ESS_MIN):
        return 0
    if ess * max_chains / chains < ESS_MIN:
        return 0
    need = int(np.ceil(chains * (TOP_UP_ESS_MARGIN * ESS_MIN / ess - 1.0)))
    return int(min(max(need, 1), room))


@dataclass(frozen=True, eq=False)
class DimensionFit:
    """Posterior draws and diagnostics of one dimension's fit.

    Attributes
    ----------
    arms, regions, n_bins
        As in the :class:`~calibration.bayes.data.CellCounts` that was fitted.
    theta
        ``(S, M, R)`` draws of ``P(pass)`` per arm and region. From ``Fitter.fit``
        ``S = chains · draws`` as requested, also after an ESS top-up (the draws of all
        chains are then thinned evenly back to that size).
    confusion
        ``(S, M, 2, J)`` draws of ``P(judge bin | true class)`` per arm.
    diagnostics
        ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``max_rhat_theta``, ``min_ess_theta``,
        ``divergences``, ``chains``, ``draws``, ``tune``, ``sample_seconds``,
        ``swap_seconds``, ``compile_seconds`` (0 when the compiled model was reused), and
        from ``Fitter.fit`` the ESS top-up: ``top_ups`` (how many extra sampling runs),
        ``top_up_seconds`` (their time, included in ``sample_seconds``) and
        ``max_rhat_first``, ``min_ess_bulk_first``, ``divergences_first`` (the first run
        alone, what decided the top-up; equal to the others when none ran). ``chains`` counts
        every chain sampled, top-ups included, and ``draws`` is per chain: the
        diagnostics are computed over all ``chains · draws`` draws. Older fits lack the
        top-up keys (none ran).
    ok
        ``max_rhat ≤ RHAT_MAX`` and ``min_ess_bulk ≥ ESS_MIN`` and
        ``divergences ≤ DIVERGENCES_MAX``, over all chains (top-ups included).
    seed, counts_digest, model_version
        What is needed to reproduce the fit.
    """

    arms: tuple[str, ...]
    regions: tuple[str, ...]
    n_bins: int
    theta: NDArray[np.floating[Any]] = field(repr=False)
    confusion: NDArray[np.floating[Any]] = field(repr=False)
    diagnostics: dict[str, float]
    ok: bool
    seed: int
    counts_digest: str
    model_version: str = MODEL_VERSION
    params: dict[str, NDArray[np.floating[Any]]] | None = field(default=None, repr=False)
    design: CurveDesign | None = field(default=None, repr=False)
    combos: NDArray[np.int64] | None = field(default=None, repr=False)

    @property
    def has_curve(self) -> bool:
        """True for fits of the calibration-curve model (format 2)."""
        return self.params is not None and self.design is not None and self.combos is not None

    def pass_by_cell(self) -> NDArray[np.float64]:
        """``(S, M, R, K)`` P(pass | cell) per draw over this fit's columns ``K``.

        For a curve fit, the columns are the study's bin combinations (:attr:`combos`);
        for a fit of the older confusion model, the dimension's own judge bins (Bayes' rule
        on ``θ`` and the confusion, which is what that model conditioned on).
        """
        if self.has_curve:
            assert self.params is not None and self.design is not None
            return pass_probability(self.params, self.design)
        from calibration.bayes.select import pass_given_bin

        return pass_given_bin(self.theta, self.confusion)

    def columns(self, bins: NDArray[np.int64], dimension: int) -> NDArray[np.int64]:
        """The column of :meth:`pass_by_cell` of responses with judge ``bins`` ``(N, D)``
        (``-1``: no score); ``-1`` where the fit has no column for them."""
        b = np.asarray(bins, dtype=np.int64)
        if not self.has_curve:
            return b[:, dimension].copy()
        assert self.combos is not None
        index = {tuple(row): k for k, row in enumerate(self.combos.tolist())}
        return np.array([index.get(tuple(row), -1) for row in b.tolist()], dtype=np.int64)

    @staticmethod
    def is_ok(diagnostics: dict[str, float]) -> bool:
        """The ``ok`` rule (thresholds are the module constants)."""
        return bool(
            diagnostics["max_rhat"] <= RHAT_MAX
            and diagnostics["min_ess_bulk"] >= ESS_MIN
            and diagnostics["divergences"] <= DIVERGENCES_MAX
        )

    @property
    def n_draws(self) -> int:
        return int(self.theta.shape[0])

    def thinned(self, max_draws: int) -> DimensionFit:
        """At most ``max_draws`` evenly spaced draws (chains are already concatenated)."""
        s = self.n_draws
        if s <= max_draws:
            return self
        idx = np.linspace(0, s - 1, max_draws).round().astype(np.int64)
        return DimensionFit(
            arms=self.arms,
            regions=self.regions,
            n_bins=self.n_bins,
            theta=self.theta[idx],
            confusion=self.confusion[idx],
            diagnostics=dict(self.diagnostics),
            ok=self.ok,
            seed=self.seed,
            counts_digest=self.counts_digest,
            model_version=self.model_version,
            params=None if self.params is None else {k: v[idx] for k, v in self.params.items()},
            design=self.design,
            combos=self.combos,
        )

    def to_bytes(self, *, max_draws: int = 1000) -> bytes:
        """Compact serialisation: ``np.savez_compressed`` of float32 draws (thinned to
        ``max_draws``) plus a JSON header; no pickle."""
        fit = self.thinned(max_draws)
        meta = {
            "format": _FORMAT,
            "arms": list(fit.arms),
            "regions": list(fit.regions),
            "n_bins": fit.n_bins,
            "diagnostics": fit.diagnostics,
            "ok": fit.ok,
            "seed": fit.seed,
            "counts_digest": fit.counts_digest,
            "model_version": fit.model_version,
        }
        arrays: dict[str, NDArray[Any]] = {
            "theta": fit.theta.astype(np.float32),
            "confusion": fit.confusion.astype(np.float32),
        }
        if fit.has_curve:
            assert fit.params is not None and fit.design is not None and fit.combos is not None
            meta["design"] = {
                "dimension": fit.design.dimension,
                "n_bins": fit.design.n_bins,
                "n_other": fit.design.n_other,
            }
            arrays.update({f"param_{k}": v.astype(np.float32) for k, v in fit.params.items()})
            arrays.update(
                design_own=fit.design.own,
                design_own_x=fit.design.own_x,
                design_other=fit.design.other,
                combos=fit.combos,
            )
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> DimensionFit:
        """Inverse of :meth:`to_bytes` (draws come back as float32)."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes().decode())
            theta = npz["theta"]
            confusion = npz["confusion"]
            params = {k[6:]: npz[k] for k in npz.files if k.startswith("param_")} or None
            design = combos = None
            if "design" in meta:
                info = meta["design"]
                design = CurveDesign(
                    dimension=int(info["dimension"]),
                    own=npz["design_own"],
                    own_x=npz["design_own_x"],
                    n_bins=int(info["n_bins"]),
                    other=npz["design_other"],
                    n_other=int(info["n_other"]),
                )
                combos = npz["combos"]
        if meta.get("format") not in _FORMATS:
            raise ValueError(f"unknown fit format {meta.get('format')!r}")
        return cls(
            arms=tuple(meta["arms"]),
            regions=tuple(meta["regions"]),
            n_bins=int(meta["n_bins"]),
            theta=theta,
            confusion=confusion,
            diagnostics={k: float(v) for k, v in meta["diagnostics"].items()},
            ok=bool(meta["ok"]),
            seed=int(meta["seed"]),
            counts_digest=str(meta["counts_digest"]),
            model_version=str(meta["model_version"]),
            params=params,
            design=design,
            combos=combos,
        )


# ---------------------------------------------------------------------------------------
# The stored draws of a fit (``Fit.draws``): every dimension in one blob.

#: Draws per dimension kept in ``Fit.draws`` (selection needs a few hundred to a thousand).
DRAWS_STORED = 1000
DRAWS_FORMAT = "baton-fit-draws-1"


def dump_draws(fits: dict[str, DimensionFit]) -> bytes:
    """All dimensions' draws in one blob: float32, thinned to :data:`DRAWS_STORED`."""
    buf = io.BytesIO()
    parts = {
        f"dim_{i}": np.frombuffer(f.to_bytes(max_draws=DRAWS_STORED), dtype=np.uint8)
        for i, f in enumerate(fits.values())
    }
    meta = {"format": DRAWS_FORMAT, "dimensions": list(fits)}
    header = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(buf, meta=header, **parts)  # type: ignore[arg-type]  # stub: **kwds vs allow_pickle
    return buf.getvalue()


def parse_draws(blob: bytes) -> dict[str, DimensionFit]:
    """Inverse of :func:`dump_draws`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes().decode())
        if meta.get("format") != DRAWS_FORMAT:
            raise ValueError(f"unknown draws format {meta.get('format')!r}")
        return {
            key: DimensionFit.from_bytes(npz[f"dim_{i}"].tobytes())
            for i, key in enumerate(meta["dimensions"])
        }
