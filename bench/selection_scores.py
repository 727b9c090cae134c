"""CPU time of the selection rule: scoring every cell of a study from its posterior draws.

Each next item scores the study's cells (:meth:`calibration.bayes.select.Selector.scores`)
and draws one (:func:`~calibration.bayes.select.choose_cell`). The score tables are cached
between picks and rebuilt when labels come in (:meth:`Selector.observe`), so the cost that
matters is a rebuild plus one scoring pass. This measures it, without Django or a database,
on fits of the calibration curve with random parameters of the stored shape
(:class:`~calibration.bayes.posterior.DimensionFit`, format 2), over a few study sizes:

* ``fit draws``: draws a fit stores (2 chains × 2,000); the selector keeps
  ``--keep`` of them (:data:`~calibration.bayes.select.SELECTION_DRAWS`, evenly spaced),
  and ``--keep 0`` keeps them all, for comparison;
* ``arms × regions``: the incumbent and its candidates, and the regions served;
* ``bins``: judge bins per dimension. The curve conditions on every dimension's bin, so a
  dimension's table has one column per bin *combination*: cells = arms × regions × Π bins.

BLAS runs one thread, as in the app (``config/__init__.py``). Times are CPU milliseconds
of this process (``time.process_time``), best and median of
``--repeats``, so a busy machine inflates them less than wall time would:

* ``first_pick_of_a_fit``: a new fit's draws wrapped for selection (the curve evaluated at
  every cell for the kept draws, then kept with them) and scored for the first time;
* ``rebuild_and_pick``: the tables rebuilt under new weights, scored, one cell picked;
* ``observe_1_label_and_rescore``: one new label folded in, then the tables rebuilt (what
  the next pick after a grade costs);
* ``observe_20_labels_and_rescore``: the same with 20 labels.

Results go to ``bench/results/selection_scores.json``::

    .venv/bin/python bench/selection_scores.py
    .venv/bin/python bench/selection_scores.py --keep 0   # every draw, for comparison
"""

# ruff: noqa: E402
from __future__ import annotations

import os

# As in every Django process (config/__init__.py): one BLAS thread, set before NumPy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_common import machine_info  # noqa: E402
from results_io import RESULTS, add_variant_argument, header, write_results  # noqa: E402

from calibration.bayes.curve import design_for  # noqa: E402
from calibration.bayes.posterior import DimensionFit  # noqa: E402
from calibration.bayes.select import (  # noqa: E402
    SELECTION_DRAWS,
    DimensionDraws,
    Selector,
    choose_cell,
)

FIT_DRAWS = 4000
# (arms, regions, bins per dimension)
SIZES: list[tuple[int, int, tuple[int, ...]]] = [
    (2, 1, (2, 2, 2)),
    (3, 6, (2, 2, 2)),
    (3, 6, (2, 5, 10)),
    (5, 20, (2, 5, 10)),
]
NEW_LABELS = 20


def random_fit(
    *, s: int, m: int, r: int, bins: tuple[int, ...], d: int, rng: np.random.Generator
) -> DimensionFit:
    """A curve fit of dimension ``d`` with random parameters of the stored shapes."""
    combos = np.array(list(itertools.product(*(range(j) for j in bins))), dtype=np.int64)
    design = design_for(combos, bins, bins, d)
    n_other = design.n_other
    j = bins[d]
    params = {
        "intercept": rng.normal(1.5, 0.3, size=(s, m)),
        "bin_effect": rng.normal(0.0, 1.0, size=(s, m, j)),
        "region_effect": rng.normal(0.0, 0.3, size=(s, m, r)),
        "region_bin_effect": rng.normal(0.0, 0.2, size=(s, m, r, j)),
        "other_effect": rng.normal(0.0, 0.3, size=(s, m, n_other)),
    }
    return DimensionFit(
        arms=tuple(f"arm{i}" for i in range(m)),
        regions=tuple(f"r{i}" for i in range(r)),
        n_bins=j,
        theta=rng.beta(20, 4, size=(s, m, r)),
        confusion=np.zeros((s, m, 2, j)),
        diagnostics={},
        ok=True,
        seed=0,
        counts_digest="bench",
        params=params,
        design=design,
        combos=combos,
    )


def measure(
    *, m: int, r: int, bins: tuple[int, ...], keep: int | None, repeats: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    fits = [random_fit(s=FIT_DRAWS, m=m, r=r, bins=bins, d=d, rng=rng) for d in range(len(bins))]
    k = int(np.prod(bins))

    def wrap() -> list[DimensionDraws]:
        return [DimensionDraws.from_fit(f, margin=0.02, max_draws=keep) for f in fits]

    dims = wrap()
    # A confidence no random draw reaches: every verdict stays open, as early in a study.
    selector = Selector(dimensions=dims, traffic=np.full(r, 1 / r), confidence=0.9999)
    cells = np.array(list(itertools.product(range(m), range(r), range(k))))
    # Every dimension's table shares the combination's column.
    columns = np.repeat(cells[:, 2:3], len(bins), axis=1)
    counts = rng.integers(1, 50, size=len(cells))

    def pick() -> tuple[float, Any]:
        start = time.process_time()
        selector._tables = None  # what observe() does: rebuild under the current weights
        scores = selector.scores(arm=cells[:, 0], region=cells[:, 1], bins=columns)
        chosen = choose_cell(scores, counts, 0.15, rng)
        return time.process_time() - start, (scores, chosen)

    def first_pick() -> float:
        """A new fit's first pick: its draws wrapped, so nothing derived is cached yet."""
        start = time.process_time()
        first = Selector(dimensions=wrap(), traffic=selector.traffic, confidence=0.9999)
        scores = first.scores(arm=cells[:, 0], region=cells[:, 1], bins=columns)
        choose_cell(scores, counts, 0.15, rng)
        return time.process_time() - start

    def observe(n_labels: int) -> float:
        idx = rng.integers(0, len(cells), size=n_labels)
        y = rng.integers(0, 2, size=(n_labels, len(bins)))
        start = time.process_time()
        selector.observe(arm=cells[idx, 0], region=cells[idx, 1], bins=columns[idx], y=y)
        selector.scores(arm=cells[:, 0], region=cells[:, 1], bins=columns)
        return (time.process_time() - start) * 1000

    pick()  # warm-up: first-call allocations
    first = [first_pick() * 1000 for _ in range(repeats)]
    rebuild = []
    for _ in range(repeats):
        seconds, (scores, chosen) = pick()
        rebuild.append(seconds * 1000)
    if not (np.isfinite(scores).all() and (scores >= 0).all() and chosen.probability > 0):
        raise SystemExit(f"bad scores for draws={keep} arms={m} regions={r} bins={bins}")

    one = [observe(1) for _ in range(repeats)]
    twenty = [observe(NEW_LABELS) for _ in range(repeats)]

    def stats(values: list[float]) -> dict[str, float]:
        return {"best": round(min(values), 2), "median": round(statistics.median(values), 2)}

    return {
        "fit_draws": FIT_DRAWS,
        "draws_kept": dims[0].n_draws,
        "arms": m,
        "regions": r,
        "bins": list(bins),
        "cells": len(cells),
        "first_pick_of_a_fit_ms": stats(first),
        "rebuild_and_pick_ms": stats(rebuild),
        "observe_1_label_and_rescore_ms": stats(one),
        "observe_20_labels_and_rescore_ms": stats(twenty),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--keep",
        type=int,
        default=SELECTION_DRAWS,
        help="draws the selector keeps (0: all of the fit's)",
    )
    p.add_argument("--out", default="selection_scores", help="bench/results/<OUT>.json")
    add_variant_argument(p)
    args = p.parse_args()
    keep = args.keep or None
    head = header("selection_scores")
    rows = []
    for i, (m, r, bins) in enumerate(SIZES):
        row = measure(m=m, r=r, bins=bins, keep=keep, repeats=args.repeats, seed=args.seed + i)
        rows.append(row)
        print(
            f"draws {row['draws_kept']:5d}  arms {m}  regions {r:2d}  bins {bins}  "
            f"cells {row['cells']:6d}: "
            f"first pick {row['first_pick_of_a_fit_ms']['median']:7.1f} ms, "
            f"rebuild+pick {row['rebuild_and_pick_ms']['median']:6.1f} ms, "
            f"1 label+rescore {row['observe_1_label_and_rescore_ms']['median']:6.1f} ms, "
            f"20 labels+rescore {row['observe_20_labels_and_rescore_ms']['median']:6.1f} ms "
            "(CPU, median)"
        )
    path = write_results(
        head,
        {
            "what": "CPU ms for a new fit's first pick, to rebuild the selection score tables and "
            f"pick a cell, and to fold in 1 or {NEW_LABELS} labels and rescore, on curve fits "
            "with random parameters of the stored shape",
            "settings": {
                "repeats": args.repeats,
                "seed": args.seed,
                "exploration": 0.15,
                "fit_draws": FIT_DRAWS,
                "draws_kept": keep or FIT_DRAWS,
            },
            "machine": machine_info(),
            "rows": rows,
        },
        variant=args.variant,
        path=RESULTS / f"{args.out}.json",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
