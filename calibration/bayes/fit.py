"""Fitting: a cache of compiled models, data swapping, sampling and diagnostics.

Compiling the model (PyTensor graph → numba) costs 10–30 s; sampling it costs about a
second. A long-lived worker therefore keeps one :class:`Fitter`, which compiles each model
shape ``(M, R, J)`` once and, for every refit, only swaps the count tables into the
compiled model (nutpie's ``CompiledPyMCModel.with_data``, the counterpart of
``pm.set_data``) before sampling. Chains run as threads inside nutpie, so no
multiprocessing is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from calibration.bayes.data import CellCounts

# Re-exported: the data classes live in the light module so that readers of stored draws
# never import PyMC; this module imports PyMC only when a model is first compiled.
from calibration.bayes.posterior import (
    DIVERGENCES_MAX,
    ESS_MIN,
    MODEL_VERSION,
    RHAT_MAX,
    TOP_UP_ESS_MARGIN,
    TOP_UP_MAX_FACTOR,
    TOP_UP_RHAT_MAX,
    DimensionFit,
    diagnose,
    ess_top_up_chains,
)

__all__ = [
    "DIVERGENCES_MAX",
    "ESS_MIN",
    "MODEL_VERSION",
    "RHAT_MAX",
    "TOP_UP_ESS_MARGIN",
    "TOP_UP_MAX_FACTOR",
    "TOP_UP_RHAT_MAX",
    "DimensionFit",
    "Fitter",
    "adaptation_for",
    "diagnose",
    "ess_top_up_chains",
    "top_up_seed",
]

_Posterior = dict[str, NDArray[np.float64]]


def adaptation_for(counts: CellCounts) -> Literal["diag", "low_rank"]:
    """nutpie's mass-matrix adaptation for a model shape.

    The binary model samples in coordinates where the data-pinned direction is an axis, so
    a diagonal mass matrix suffices. The ordered-logit model (``J > 2``) keeps correlated
    directions between cut points, shift and prevalence; nutpie's low-rank adaptation
    learns them. Measured (3 arms × 6 regions, 300 labels per arm, 2 × 1000 draws, two
    simulated studies each): J = 4 at 10k responses, min bulk ESS 1311–1505 with
    ``"low_rank"`` against 412–441 with ``"diag"`` in the same time; J = 3 at 5M,
    16 s of sampling instead of 170–180 s, for a min bulk ESS of 228 against 446–601 (the
    J = 3 ridge, see :mod:`calibration.bayes.model`).
    """
    return "low_rank" if counts.n_bins > 2 else "diag"


def top_up_seed(seed: int, top_up: int) -> int:
    """Sampler seed of the ``top_up``-th extra run (1, 2, …) of a fit seeded ``seed``:
    derived, so a fit stays reproducible from its one stored seed, and its extra chains
    are not copies of the first run's."""
    state = np.random.SeedSequence([int(seed), 0x70B, int(top_up)]).generate_state(1)
    return int(state[0] >> 1)


@dataclass
class _Compiled:
    model: Any  # pm.Model
    nutpie_model: Any | None
    compile_seconds: float


class Fitter:
    """Fits :class:`CellCounts` with compiled models cached by shape ``(M, R, J)`` and
    sampling coordinates (:func:`calibration.bayes.model.model_key`).

    Parameters
    ----------
    backend
        ``"nutpie"`` (default: compiled with numba once per shape, data swapped with
        ``with_data``) or ``"pymc"`` (PyMC's own NUTS with ``pm.set_data``; slower, no
        compile cache for the sampler, kept as a fallback).
    cores
        Threads nutpie may use for chains (``None``: one per chain).

    Notes
    -----
    Not thread-safe: a worker should own one Fitter and fit one dimension at a time.
    ``last_timings`` holds ``compile_seconds``, ``swap_seconds`` and ``sample_seconds``
    of the latest :meth:`fit`.
    """

    def __init__(
        self, *, backend: Literal["nutpie", "pymc"] = "nutpie", cores: int | None = None
    ) -> None:
        if backend not in ("nutpie", "pymc"):
            raise ValueError("backend must be 'nutpie' or 'pymc'")
        self.backend = backend
        self.cores = cores
        self._cache: dict[tuple[int, int, int, str], _Compiled] = {}
        self.last_timings: dict[str, float] = {}

    @property
    def cached_shapes(self) -> list[tuple[int, int, int]]:
        return [key[:3] for key in self._cache]

    @property
    def cached_models(self) -> list[tuple[int, int, int, str]]:
        """Keys of the compiled models: shape and coordinates (``model.model_key``)."""
        return list(self._cache)

    def _compiled(self, counts: CellCounts) -> tuple[_Compiled, float]:
        from calibration.bayes.model import create_calibration_model, model_key

        key = model_key(counts)
        hit = self._cache.get(key)
        if hit is not None:
            return hit, 0.0

        t0 = time.perf_counter()
        model = create_calibration_model(counts)
        nutpie_model = None
        if self.backend == "nutpie":
            import nutpie

            nutpie_model = nutpie.compile_pymc_model(model)
        elapsed = time.perf_counter() - t0
        entry = _Compiled(model=model, nutpie_model=nutpie_model, compile_seconds=elapsed)
        self._cache[key] = entry
        return entry, elapsed

    def compile(self, counts: CellCounts) -> float:
        """Compile (or reuse) the model for ``counts`` (its ``model_key``); returns seconds."""
        return self._compiled(counts)[1]

    def _swap(self, entry: _Compiled, counts: CellCounts) -> Any:
        """The model with ``counts`` swapped in: nutpie's compiled model, or the pm.Model."""
        if self.backend == "nutpie":
            assert entry.nutpie_model is not None
            return entry.nutpie_model.with_data(
                judge_only=counts.judge_only, labelled=counts.labelled
            )
        import pymc as pm

        with entry.model:
            pm.set_data({"judge_only": counts.judge_only, "labelled": counts.labelled})
        return entry.model

    def _sample(
        self,
        model: Any,
        counts: CellCounts,
        *,
        seed: int,
        draws: int,
        tune: int,
        chains: int,
        target_accept: float,
    ) -> tuple[_Posterior, NDArray[np.bool_]]:
        """One sampling run: every posterior variable ``(chain, draw, ...)`` and the
        ``(chain, draw)`` divergence flags."""
        if self.backend == "nutpie":
            import nutpie

            trace = nutpie.sample(
                model,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=self.cores or chains,
                seed=seed,
                target_accept=target_accept,
                progress_bar=False,
                save_warmup=False,
                adaptation=adaptation_for(counts),
            )
        else:
            import pymc as pm

            with model:
                trace = pm.sample(
                    draws=draws,
                    tune=tune,
                    chains=chains,
                    cores=1,
                    random_seed=seed,
                    target_accept=target_accept,
                    nuts_sampler="pymc",
                    progressbar=False,
                    compute_convergence_checks=False,
                )
        post_ds = trace["posterior"]
        posterior = {
            str(k): np.asarray(post_ds[k].values, dtype=np.float64) for k in post_ds.data_vars
        }
        diverging = np.asarray(trace["sample_stats"]["diverging"], dtype=bool)
        return posterior, diverging

    def fit(
        self,
        counts: CellCounts,
        *,
        seed: int,
        draws: int = 2000,
        tune: int = 1000,
        chains: int = 2,
        target_accept: float = 0.95,
        ess_top_ups: int = 2,
    ) -> DimensionFit:
        """Sample the posterior of one dimension.

        Parameters
        ----------
        counts
            The dimension's counts; a model of the same shape is reused if cached.
        seed
            Sampler seed (stored with the fit; top-up runs use :func:`top_up_seed`).
        draws, tune, chains, target_accept
            NUTS settings; draws are per chain. 2000 rather than 1000 draws per chain
            keeps the folded R-hat below 1.01 (see :func:`diagnose`) for ~0.3 s more.
        ess_top_ups
            At most this many ESS top-ups (0: never, the behaviour before they existed).

        ESS top-up
        ----------
        When the first run fails the diagnostics on bulk ESS alone — R-hat not far off and
        no more than a handful of divergences, the rule of
        :func:`~calibration.bayes.posterior.ess_top_up_chains` — the compiled model is
        sampled again with more chains (same ``draws`` and ``tune``, a seed derived from
        ``seed``), sized from the ESS shortfall so that the expected min bulk ESS is
        ``TOP_UP_ESS_MARGIN · ESS_MIN``. They are appended as extra chains and the
        diagnostics, and ``ok``, are computed again over all chains together. At most
        ``ess_top_ups`` runs, and never beyond ``TOP_UP_MAX_FACTOR`` times the requested
        chains, so a fit's sampling time stays within about that multiple. A fit that
        fails on R-hat or divergences is not topped up: more draws would only dilute the
        evidence of a real problem. This is aimed at the ordered-logit model at millions
        of responses (``bench/bayes_ordinal.py``), whose chains mix slowly along the
        ``J = 3`` ridge but agree. A top-up can also fail and then costs time for
        nothing: in ``bench/bayes_fit_time.py``, before the binary model sampled small
        cells in non-centred coordinates (:mod:`calibration.bayes.model`), one binary fit
        at 10k (min bulk ESS 171, R-hat 1.008, 1 divergence) was taken to 6 chains in 23 s
        more and still failed (ESS 336, R-hat 1.023, 2 divergences): the new chains
        showed the disagreement.

        Returns
        -------
        DimensionFit
            ``theta`` and ``confusion`` with chains concatenated. After a top-up the draws
            are thinned evenly (over all chains) back to ``S = chains·draws`` as
            requested, so whatever reads a fit — summaries, selection, the stored blob
            (itself thinned to ``services.DRAWS_STORED``) — sees the usual size and memory
            stays bounded. Little is lost: a fit is topped up only when its integrated
            autocorrelation time is above ``chains·draws / ESS_MIN`` draws (10 at the
            defaults), and thinning such chains by a factor of at most
            ``TOP_UP_MAX_FACTOR`` (3) keeps nearly all of their effective draws.
            The diagnostics describe all the draws sampled (``diagnostics["chains"]`` is
            the total); ``top_ups``, ``top_up_seconds`` and the first run's own
            ``max_rhat_first``, ``min_ess_bulk_first`` and ``divergences_first`` say what
            the top-up did (see :class:`DimensionFit`).
        """
        if ess_top_ups < 0:
            raise ValueError("ess_top_ups must be >= 0")
        entry, compile_s = self._compiled(counts)
        names = ("theta", "confusion")
        ta = target_accept
        t0 = time.perf_counter()
        model = self._swap(entry, counts)
        swap_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        posterior, diverging = self._sample(
            model, counts, seed=seed, draws=draws, tune=tune, chains=chains, target_accept=ta
        )
        sample_s = time.perf_counter() - t0
        diag = diagnose(posterior, diverging)
        first = {f"{k}_first": diag[k] for k in ("max_rhat", "min_ess_bulk", "divergences")}

        total_chains, top_ups, top_up_s = chains, 0, 0.0
        while top_ups < ess_top_ups:
            extra = ess_top_up_chains(
                diag, chains=total_chains, max_chains=TOP_UP_MAX_FACTOR * chains
            )
            if extra == 0:
                break
            top_ups += 1
            t0 = time.perf_counter()
            more, more_div = self._sample(
                model,
                counts,
                seed=top_up_seed(seed, top_ups),
                draws=draws,
                tune=tune,
                chains=extra,
                target_accept=ta,
            )
            top_up_s += time.perf_counter() - t0
            posterior = {k: np.concatenate([v, more[k]], axis=0) for k, v in posterior.items()}
            diverging = np.concatenate([diverging, more_div], axis=0)
            total_chains += extra
            diag = diagnose(posterior, diverging)
        sample_s += top_up_s

        diag.update(
            chains=float(total_chains),
            draws=float(draws),
            tune=float(tune),
            top_ups=float(top_ups),
            top_up_seconds=top_up_s,
            **first,
            compile_seconds=compile_s,
            swap_seconds=swap_s,
            sample_seconds=sample_s,
        )
        self.last_timings = {
            "compile_seconds": compile_s,
            "swap_seconds": swap_s,
            "sample_seconds": sample_s,
        }
        m, r, j = counts.shape
        theta, confusion = (posterior[n] for n in names)
        fit = DimensionFit(
            arms=counts.arms,
            regions=counts.regions,
            n_bins=counts.n_bins,
            theta=theta.reshape(-1, m, r),
            confusion=confusion.reshape(-1, m, 2, j),
            diagnostics=diag,
            ok=DimensionFit.is_ok(diag),
            seed=int(seed),
            counts_digest=counts.digest(),
        )
        return fit.thinned(chains * draws)
