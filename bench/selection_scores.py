"""CPU time of the selection rule: scoring every cell of a study from its posterior draws.

Each next item scores the study's cells (:meth:`calibration.bayes.select.Selector.scores`)
and draws one (:func:`~calibration.bayes.select.choose_cell`). The score tables are cached
between picks and rebuilt when labels come in (:meth:`Selector.observe`), so the cost that
matters is a rebuild plus one scoring pass. This measures it, without Django or a database,
on random draws of the shape a fit stores, over a few study sizes:

* ``draws``: posterior draws per dimension (the app keeps 1,000);
* ``arms × regions``: the incumbent and its candidates, and the regions served;
* ``bins``: judge bins per dimension, one entry per dimension (a cell is one bin of each).

Times are CPU milliseconds of this process (``time.process_time``), best and median of
``--repeats``, so a busy machine inflates them less than wall time would:

* ``first_pick_of_a_fit``: a new fit's draws, scored for the first time (this computes
  P(pass | judge bin) per draw and cell, which is then kept with the draws);
* ``rebuild_and_pick``: the tables rebuilt under new weights, scored, one cell picked;
* ``observe_20_labels_and_rescore``: 20 new labels folded in, then the tables rebuilt.

Results go to ``bench/results/selection_scores.json``::

    .venv/bin/python bench/selection_scores.py
"""

from __future__ import annotations

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

from bayes_common import git_head, machine_info, write_result  # noqa: E402

from calibration.bayes.select import DimensionDraws, Selector, choose_cell  # noqa: E402

# (draws, arms, regions, bins per dimension)
SIZES: list[tuple[int, int, int, tuple[int, ...]]] = [
    (1000, 2, 1, (2, 2, 2)),
    (1000, 3, 6, (2, 2, 2)),
    (1000, 3, 6, (2, 5, 10)),
    (2000, 3, 6, (2, 5, 10)),
    (1000, 5, 20, (2, 5, 10)),
]
NEW_LABELS = 20


def random_draws(*, s: int, m: int, r: int, j: int, rng: np.random.Generator) -> DimensionDraws:
    """Draws of the stored shape: pass rates (S, M, R) and judge confusion (S, M, 2, J)."""
    theta = rng.beta(20, 8, size=(s, m, r))
    confusion = rng.dirichlet(np.ones(j) * 2, size=(s, m, 2))
    return DimensionDraws(theta=theta, confusion=confusion, margin=0.02)


def measure(
    *, s: int, m: int, r: int, bins: tuple[int, ...], repeats: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    dims = [random_draws(s=s, m=m, r=r, j=j, rng=rng) for j in bins]
    # A confidence no random draw reaches: every verdict stays open, as early in a study.
    selector = Selector(dimensions=dims, traffic=np.full(r, 1 / r), confidence=0.9999)
    axes = [range(m), range(r), *(range(j) for j in bins)]
    cells = np.array(list(itertools.product(*axes)))
    counts = rng.integers(1, 50, size=len(cells))

    def pick() -> tuple[float, Any]:
        start = time.process_time()
        selector._tables = None  # what observe() does: rebuild under the current weights
        scores = selector.scores(arm=cells[:, 0], region=cells[:, 1], bins=cells[:, 2:])
        chosen = choose_cell(scores, counts, 0.15, rng)
        return time.process_time() - start, (scores, chosen)

    def first_pick() -> float:
        """A new fit's first pick: fresh draws, so nothing derived from them is cached yet."""
        fresh = [
            DimensionDraws(theta=d.theta, confusion=d.confusion, margin=d.margin) for d in dims
        ]
        start = time.process_time()
        first = Selector(dimensions=fresh, traffic=selector.traffic, confidence=0.9999)
        scores = first.scores(arm=cells[:, 0], region=cells[:, 1], bins=cells[:, 2:])
        choose_cell(scores, counts, 0.15, rng)
        return time.process_time() - start

    pick()  # warm-up: first-call allocations
    first = [first_pick() * 1000 for _ in range(repeats)]
    rebuild = []
    for _ in range(repeats):
        seconds, (scores, chosen) = pick()
        rebuild.append(seconds * 1000)
    if not (np.isfinite(scores).all() and (scores >= 0).all() and chosen.probability > 0):
        raise SystemExit(f"bad scores for draws={s} arms={m} regions={r} bins={bins}")

    observe = []
    for _ in range(repeats):
        idx = rng.integers(0, len(cells), size=NEW_LABELS)
        y = rng.integers(0, 2, size=(NEW_LABELS, len(bins)))
        start = time.process_time()
        selector.observe(arm=cells[idx, 0], region=cells[idx, 1], bins=cells[idx, 2:], y=y)
        selector.scores(arm=cells[:, 0], region=cells[:, 1], bins=cells[:, 2:])
        observe.append((time.process_time() - start) * 1000)
    return {
        "draws": s,
        "arms": m,
        "regions": r,
        "bins": list(bins),
        "cells": len(cells),
        "first_pick_of_a_fit_ms": {
            "best": round(min(first), 2),
            "median": round(statistics.median(first), 2),
        },
        "rebuild_and_pick_ms": {
            "best": round(min(rebuild), 2),
            "median": round(statistics.median(rebuild), 2),
        },
        "observe_20_labels_and_rescore_ms": {
            "best": round(min(observe), 2),
            "median": round(statistics.median(observe), 2),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    head = git_head()
    rows = []
    for i, (s, m, r, bins) in enumerate(SIZES):
        row = measure(s=s, m=m, r=r, bins=bins, repeats=args.repeats, seed=args.seed + i)
        rows.append(row)
        print(
            f"draws {s:5d}  arms {m}  regions {r:2d}  bins {bins}  cells {row['cells']:6d}: "
            f"first pick {row['first_pick_of_a_fit_ms']['median']:6.1f} ms, "
            f"rebuild+pick {row['rebuild_and_pick_ms']['median']:6.1f} ms, "
            f"observe+rescore {row['observe_20_labels_and_rescore_ms']['median']:6.1f} ms "
            "(CPU, median)"
        )
    path = write_result(
        "selection_scores",
        {
            "what": "CPU ms for a new fit's first pick, to rebuild the selection score tables and "
            f"pick a cell, and to fold in {NEW_LABELS} labels and rescore, on random draws of "
            "the stored shape",
            "command": "python " + " ".join(["bench/selection_scores.py", *sys.argv[1:]]),
            "settings": {"repeats": args.repeats, "seed": args.seed, "exploration": 0.15},
            "git_head": head,
            "machine": machine_info(),
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
