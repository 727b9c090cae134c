"""Fitting: a cache of compiled models, data swapping, sampling and diagnostics.

Compiling the model (PyTensor graph → numba) costs 10–30 s; sampling it costs a few
seconds. A long-lived worker therefore keeps one :class:`Fitter`, which compiles each model
shape (:func:`calibration.bayes.model.model_key`) once and, for every refit, only swaps the
labelled counts and the cells' design into the compiled model (nutpie's
``CompiledPyMCModel.with_data``, the counterpart of ``pm.set_data``) before sampling.
Chains run as threads inside nutpie, so no multiprocessing is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from calibration.bayes.curve import design_for, expected_confusion, pass_probability, post_stratify
from calibration.bayes.data import CellCounts, JointCells

# Re-exported: the data classes live in the light module so that readers of stored draws
# never import PyMC; this module imports PyMC only when a model is first compiled.
from calibration.bayes.posterior import (
    DIVERGENCES_MAX,
    ESS_MIN,
    MODEL_VERSION,
    RETRY_TARGET_ACCEPT,
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
    "RETRY_TARGET_ACCEPT",
    "RHAT_MAX",
    "TOP_UP_ESS_MARGIN",
    "TOP_UP_MAX_FACTOR",
    "TOP_UP_RHAT_MAX",
    "DimensionFit",
    "Fitter",
    "diagnose",
    "ess_top_up_chains",
    "retry_seed",
    "top_up_seed",
]

_Posterior = dict[str, NDArray[np.float64]]


def top_up_seed(seed: int, top_up: int) -> int:
    """Sampler seed of the ``top_up``-th extra run (1, 2, …) of a fit seeded ``seed``:
    derived, so a fit stays reproducible from its one stored seed, and its extra chains
    are not copies of the first run's."""
    state = np.random.SeedSequence([int(seed), 0x70B, int(top_up)]).generate_state(1)
    return int(state[0] >> 1)


def retry_seed(seed: int) -> int:
    """Sampler seed of a fit's divergence retry (:meth:`Fitter.fit`): derived, like
    :func:`top_up_seed`, and distinct from every top-up's."""
    state = np.random.SeedSequence([int(seed), 0xD1B]).generate_state(1)
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
        self._cache: dict[tuple[int, ...], _Compiled] = {}
        self.last_timings: dict[str, float] = {}

    @property
    def cached_models(self) -> list[tuple[int, ...]]:
        """Keys of the compiled models (:func:`calibration.bayes.model.model_key`)."""
        return list(self._cache)

    def _compiled(self, cells: JointCells, dimension: int) -> tuple[_Compiled, float, Any]:
        from calibration.bayes.model import create_calibration_model, model_key

        design = design_for(cells.level_index(), cells.levels(), cells.n_bins, dimension)
        key = model_key(cells, design)
        hit = self._cache.get(key)
        if hit is not None:
            return hit, 0.0, design
        t0 = time.perf_counter()
        model = create_calibration_model(cells, design)
        nutpie_model = None
        if self.backend == "nutpie":
            import nutpie

            nutpie_model = nutpie.compile_pymc_model(model)
        elapsed = time.perf_counter() - t0
        entry = _Compiled(model=model, nutpie_model=nutpie_model, compile_seconds=elapsed)
        self._cache[key] = entry
        return entry, elapsed, design

    def compile(self, cells: JointCells, dimension: int = 0) -> float:
        """Compile (or reuse) the model of ``dimension`` of ``cells``; returns seconds."""
        return self._compiled(cells, dimension)[1]

    def _swap(self, entry: _Compiled, cells: JointCells, design: Any) -> Any:
        """The model with the study's data swapped in: nutpie's compiled model, or the
        pm.Model."""
        data = {
            "labelled": cells.labelled[design.dimension],
            "passes": cells.passes[design.dimension],
            "own": design.own,
        }
        if design.other.shape[1]:
            data["other"] = design.other
        if self.backend == "nutpie":
            assert entry.nutpie_model is not None
            return entry.nutpie_model.with_data(**data)
        import pymc as pm

        with entry.model:
            pm.set_data(data)
        return entry.model

    def _sample(
        self,
        model: Any,
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
        cells: JointCells | CellCounts,
        dimension: int = 0,
        *,
        seed: int,
        draws: int = 2000,
        tune: int = 1000,
        chains: int = 2,
        target_accept: float = 0.95,
        ess_top_ups: int = 2,
        divergence_retry: bool = True,
    ) -> DimensionFit:
        """Sample the posterior of one dimension.

        Parameters
        ----------
        cells, dimension
            The study's cells and the dimension to fit (a compiled model of the same
            :func:`~calibration.bayes.model.model_key` is reused); a single dimension's
            per-bin :class:`CellCounts` is accepted too (its bins are its cells).
        seed
            Sampler seed (stored with the fit; top-up runs use :func:`top_up_seed`).
        draws, tune, chains, target_accept
            NUTS settings; draws are per chain. 2000 rather than 1000 draws per chain
            keeps the folded R-hat below 1.01 (see :func:`diagnose`) for ~0.3 s more.
        ess_top_ups
            At most this many ESS top-ups (0: never, the behaviour before they existed).
        divergence_retry
            Whether a first run with too many divergences is sampled again (below).

        Divergence retry
        ----------------
        When the first run has more than ``DIVERGENCES_MAX`` divergent transitions and
        ``target_accept`` is below :data:`RETRY_TARGET_ACCEPT`, the compiled model is sampled
        once more, from scratch, at ``RETRY_TARGET_ACCEPT`` (same draws, tune and chains, the
        seed :func:`retry_seed`), and that run replaces the first: divergences mean the steps
        were too long for the posterior's curvature somewhere, and smaller steps are the
        remedy (a large study's warm fits: 12 of 18 passing at 0.9, 18 of 18 at 0.97,
        ``bench/bayes_fit_time.py``). The retry is judged by the same rule on its own draws,
        and ESS top-ups, if any, run at its setting. The first run's diagnostics stay in
        ``max_rhat_first``, ``min_ess_bulk_first`` and ``divergences_first``; ``retries``
        (0 or 1), ``retry_seconds`` (included in ``sample_seconds``) and ``target_accept``
        (the one the served draws were sampled at) say what happened. Only fits that need
        the smaller steps pay for them: sampling every fit at 0.97 cost 2.3x on a 720-cell
        study at 20-80 grades, where 0.9 passes (``bench/scale_month.py``).

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
        of responses (the model before the calibration curve, ``bench/bayes_ordinal.py`` in
        git history), whose chains mix slowly along the
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
            (itself thinned to ``posterior.DRAWS_STORED``) — sees the usual size and memory
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
        if isinstance(cells, CellCounts):  # one dimension's per-bin tables
            cells = JointCells.from_counts(cells)
        entry, compile_s, design = self._compiled(cells, dimension)
        ta = target_accept
        t0 = time.perf_counter()
        model = self._swap(entry, cells, design)
        swap_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        posterior, diverging = self._sample(
            model, seed=seed, draws=draws, tune=tune, chains=chains, target_accept=ta
        )
        sample_s = time.perf_counter() - t0
        derive = _Derive(cells, design, seed)
        diag = diagnose(derive(posterior), diverging)
        first = {f"{k}_first": diag[k] for k in ("max_rhat", "min_ess_bulk", "divergences")}

        retries, retry_s = 0, 0.0
        if divergence_retry and diag["divergences"] > DIVERGENCES_MAX and ta < RETRY_TARGET_ACCEPT:
            ta = RETRY_TARGET_ACCEPT
            t0 = time.perf_counter()
            posterior, diverging = self._sample(
                model,
                seed=retry_seed(seed),
                draws=draws,
                tune=tune,
                chains=chains,
                target_accept=ta,
            )
            retry_s = time.perf_counter() - t0
            retries = 1
            diag = diagnose(derive(posterior), diverging)

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
            diag = diagnose(derive(posterior), diverging)
        sample_s += top_up_s + retry_s

        diag.update(
            chains=float(total_chains),
            draws=float(draws),
            tune=float(tune),
            target_accept=float(ta),
            retries=float(retries),
            retry_seconds=retry_s,
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
        from calibration.bayes.model import numpy_params

        params = numpy_params(posterior)
        p = pass_probability(params, design)
        d = design.dimension
        theta = derive.theta if derive.theta is not None else derive(posterior)["theta"]
        m, r, _ = cells.shape
        fit = DimensionFit(
            arms=cells.arms,
            regions=cells.regions,
            n_bins=cells.n_bins[d],
            theta=theta.reshape(-1, m, r),
            confusion=expected_confusion(
                p,
                design,
                totals=cells.totals,
                labelled=cells.labelled[d],
                passes=cells.passes[d],
            ),
            diagnostics=diag,
            ok=DimensionFit.is_ok(diag),
            seed=int(seed),
            counts_digest=cells.digest(),
            params=params,
            design=design,
            combos=np.asarray(cells.combos),
        )
        return fit.thinned(chains * draws)


class _Derive:
    """Adds the post-stratified ``theta`` ``(chain, draw, M, R)`` to a posterior, so that
    the diagnostics cover the quantity the verdict reads; keeps the latest for the fit.

    The unlabelled responses' binomial noise comes from a generator seeded afresh from the
    fit's seed at every call, so the first chains get the same ``θ`` draws before and after
    an ESS top-up appends more (numpy fills the draws in order), and a fit is reproducible.
    """

    def __init__(self, cells: JointCells, design: Any, seed: int) -> None:
        self.cells, self.design, self.seed = cells, design, int(seed)
        self.theta: NDArray[np.float64] | None = None

    def __call__(self, posterior: _Posterior) -> _Posterior:
        from calibration.bayes.model import numpy_params

        c, n = next(iter(posterior.values())).shape[:2]
        p = pass_probability(numpy_params(posterior), self.design)
        d = self.design.dimension
        theta = post_stratify(
            p,
            totals=self.cells.totals,
            labelled=self.cells.labelled[d],
            passes=self.cells.passes[d],
            rng=np.random.default_rng([self.seed, 0x7E7A]),
        )
        self.theta = theta
        return {**posterior, "theta": theta.reshape(c, n, *theta.shape[1:])}
