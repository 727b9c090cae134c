"""Adaptive-sampling bias of the selector's criteria, on a model simple enough to run by the
thousand.

The selector (:mod:`calibration.bayes.select`) picks the cell where a grade tells most about
``Δ``. If how much a grade tells depends on the cell's own grades so far, the picks depend on
the outcomes, and the posterior mean at a fixed truth is biased (a cell whose estimate
drifts away from ½ looks better known, gets fewer labels, and keeps its drift). This bench
measures that bias for each criterion with the app's own selection code (:class:`Selector`,
its reweighting between fits, :func:`choose_cell` with the exploration share) and, in place
of the calibration curve, an independent Beta(1, 1) per cell, "refitted" every
``--refit`` labels by drawing from the exact posterior. The curve's own fits run in
``bench/adversarial.py``; this isolates the selector.

Two models, one region, a binary judge: the cells are (model, judge bin). A study grades up
to ``--budget`` responses; at every look the posterior mean and sd of ``Δ`` are compared
with the truth: ``z = (mean − Δ) / sd``. Without adaptive bias ``z`` has mean 0.

    python bench/adaptive_bias.py --studies 2000 --out bench/results/adaptive_bias.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adversarial import MARGIN, SCENARIOS  # noqa: E402
from results_io import add_variant_argument, header, write_results  # noqa: E402

from calibration.bayes.select import DimensionDraws, Selector, choose_cell  # noqa: E402

#: The adversarial scenarios whose judge and pass rates (one region) are simulated here.
NAMES = ("flatter_50", "flatter_demo", "identical", "weak")
LOOKS = (50, 100, 150, 200, 250, 300)


def cells_of(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``w[m, j]`` the share of model ``m``'s responses in judge bin ``j`` (0 fail, 1 pass)
    and ``p[m, j]`` P(human pass | bin), from the adversarial scenario ``name`` (its judge
    per model and its first region's pass rates)."""
    sc = SCENARIOS[name]
    w = np.zeros((2, 2))
    p = np.zeros((2, 2))
    for m, ((se, sp), theta) in enumerate(zip(sc.judge, sc.theta, strict=True)):
        th = theta[0]
        w[m, 1] = th * se + (1 - th) * (1 - sp)
        w[m, 0] = 1 - w[m, 1]
        p[m, 1] = th * se / w[m, 1]
        p[m, 0] = th * (1 - se) / w[m, 0]
    return w, p


def posterior(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Exact mean and sd of ``Δ = Σ_j w[1, j] p[1, j] − Σ_j w[0, j] p[0, j]``."""
    mean = a / (a + b)
    var = mean * (1 - mean) / (a + b + 1)
    est = (w * mean).sum(axis=1)
    return float(est[1] - est[0]), float(np.sqrt((w**2 * var).sum()))


def run_study(
    w: np.ndarray,
    p: np.ndarray,
    criterion: str,
    exploration: float,
    budget: int,
    refit: int,
    draws: int,
    rng: np.random.Generator,
) -> list[tuple[float, float]]:
    truth = float((w * p).sum(axis=1) @ np.array([-1.0, 1.0]))
    a = np.ones((2, 2))
    b = np.ones((2, 2))
    # The responses available per cell: a large study (6,000 per model), never exhausted.
    counts = np.rint(6000 * w).astype(np.int64).ravel()
    arm = np.repeat(np.arange(2), 2)
    bins = np.tile(np.arange(2), 2)[:, None]
    region = np.zeros(4, dtype=np.int64)
    out = []
    selector = None
    for t in range(1, budget + 1):
        if selector is None or (t - 1) % refit == 0:
            cells = rng.beta(a, b, size=(draws, 2, 2))  # (S, M, J)
            theta = (cells * w[None]).sum(axis=2)[:, :, None]  # (S, M, R=1)
            dim = DimensionDraws(theta=theta, cells=cells[:, :, None, :], margin=MARGIN)
            selector = Selector(
                dimensions=[dim],
                traffic=np.array([1.0]),
                confidence=0.9999,  # nothing settles: the bias at fixed looks
                criterion=criterion,  # type: ignore[arg-type]
            )
        scores = selector.scores(arm=arm, region=region, bins=bins)
        k = choose_cell(scores, counts, exploration, rng).cell
        m, j = divmod(k, 2)
        y = int(rng.random() < p[m, j])
        a[m, j] += y
        b[m, j] += 1 - y
        selector.observe(arm=[m], region=[0], bins=[[j]], y=[[y]])
        if t in LOOKS:
            mean, sd = posterior(a, b, w)
            out.append((mean - truth, sd))
    return out


def summarise(rows: np.ndarray) -> list[dict[str, float]]:
    err, sd = rows[..., 0], rows[..., 1]
    z = err / sd
    n = rows.shape[0]
    return [
        {
            "labels": look,
            "bias_points": round(100 * float(err[:, i].mean()), 3),
            "bias_se_points": round(100 * float(err[:, i].std(ddof=1)) / math.sqrt(n), 3),
            "z_mean": round(float(z[:, i].mean()), 4),
            "z_se": round(float(z[:, i].std(ddof=1)) / math.sqrt(n), 4),
            "z_sd": round(float(z[:, i].std(ddof=1)), 4),
            "mean_sd_points": round(100 * float(sd[:, i].mean()), 3),
        }
        for i, look in enumerate(LOOKS)
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--refit", type=int, default=50)
    ap.add_argument("--exploration", type=float, default=0.15)
    ap.add_argument("--scenarios", nargs="*", default=list(NAMES))
    ap.add_argument("--criteria", nargs="*", default=["standardised", "variance"])
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--out", type=Path)
    add_variant_argument(ap)
    args = ap.parse_args(argv)
    head = header("adaptive_bias", argv=argv)
    results: dict[str, object] = {
        "budget": max(LOOKS),
        "refit_every": args.refit,
        "draws": args.draws,
        "exploration_share": args.exploration,
        "studies": args.studies,
        "scenarios": {},
    }
    for name in args.scenarios:
        sc = SCENARIOS[name]
        w, p = cells_of(name)
        block: dict[str, object] = {
            "judge": sc.judge,
            "theta": [t[0] for t in sc.theta],
            "description": sc.what,
        }
        for criterion in args.criteria:
            rng = np.random.default_rng(args.seed)  # the same seed: the same studies' luck
            start = time.perf_counter()
            rows = np.array(
                [
                    run_study(
                        w, p, criterion, args.exploration, max(LOOKS), args.refit, args.draws, rng
                    )
                    for _ in range(args.studies)
                ]
            )
            looks = summarise(rows)
            block[criterion] = {"looks": looks, "seconds": round(time.perf_counter() - start, 1)}
            last = looks[-1]
            print(
                f"{name:13s} {criterion:12s} z at looks "
                + " ".join(f"{lk['z_mean']:+.3f}" for lk in looks)
                + f"  sd at {last['labels']}: {last['mean_sd_points']:.2f} pts",
                flush=True,
            )
        results["scenarios"][name] = block  # type: ignore[index]
    if args.out:
        write_results(head, results, variant=args.variant, path=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
