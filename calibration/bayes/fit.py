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

from calibration.bayes.data import CellCounts

# Re-exported: the data classes live in the light module so that readers of stored draws
# never import PyMC; this module imports PyMC only when a model is first compiled.
from calibration.bayes.posterior import (
    DIVERGENCES_MAX,
    ESS_MIN,
    MODEL_VERSION,
    RHAT_MAX,
    DimensionFit,
    diagnose,
)

__all__ = [
    "DIVERGENCES_MAX",
    "ESS_MIN",
    "MODEL_VERSION",
    "RHAT_MAX",
    "DimensionFit",
    "Fitter",
    "adaptation_for",
    "diagnose",
]


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


@dataclass
class _Compiled:
    model: Any  # pm.Model
    nutpie_model: Any | None
    compile_seconds: float


class Fitter:
    """Fits :class:`CellCounts` with compiled models cached by shape ``(M, R, J)``.

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
        self._cache: dict[tuple[int, int, int], _Compiled] = {}
        self.last_timings: dict[str, float] = {}

    @property
    def cached_shapes(self) -> list[tuple[int, int, int]]:
        return list(self._cache)

    def _compiled(self, counts: CellCounts) -> tuple[_Compiled, float]:
        key = counts.shape
        hit = self._cache.get(key)
        if hit is not None:
            return hit, 0.0
        from calibration.bayes.model import create_calibration_model

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
        """Compile (or reuse) the model for ``counts.shape``; returns seconds spent."""
        return self._compiled(counts)[1]

    def fit(
        self,
        counts: CellCounts,
        *,
        seed: int,
        draws: int = 2000,
        tune: int = 1000,
        chains: int = 2,
        target_accept: float = 0.95,
    ) -> DimensionFit:
        """Sample the posterior of one dimension.

        Parameters
        ----------
        counts
            The dimension's counts; a model of the same shape is reused if cached.
        seed
            Sampler seed (stored with the fit).
        draws, tune, chains, target_accept
            NUTS settings; draws are per chain. 2000 rather than 1000 draws per chain
            keeps the folded R-hat below 1.01 (see :func:`diagnose`) for ~0.3 s more.

        Returns
        -------
        DimensionFit
            ``theta`` and ``confusion`` with chains concatenated (``S = chains·draws``).
        """
        entry, compile_s = self._compiled(counts)
        names = ("theta", "confusion")
        if self.backend == "nutpie":
            import nutpie

            assert entry.nutpie_model is not None
            t0 = time.perf_counter()
            compiled = entry.nutpie_model.with_data(
                judge_only=counts.judge_only, labelled=counts.labelled
            )
            swap_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            trace = nutpie.sample(
                compiled,
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
            sample_s = time.perf_counter() - t0
            post_ds = trace["posterior"]
            diverging = np.asarray(trace["sample_stats"]["diverging"])
        else:
            import pymc as pm

            t0 = time.perf_counter()
            with entry.model:
                pm.set_data({"judge_only": counts.judge_only, "labelled": counts.labelled})
            swap_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            with entry.model:
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
            sample_s = time.perf_counter() - t0
            post_ds = trace["posterior"]
            diverging = np.asarray(trace["sample_stats"]["diverging"])

        posterior = {
            str(k): np.asarray(post_ds[k].values, dtype=np.float64) for k in post_ds.data_vars
        }
        diag = diagnose(posterior, diverging)
        diag.update(
            chains=float(chains),
            draws=float(draws),
            tune=float(tune),
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
        return DimensionFit(
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
