"""Does "the judge treats the candidate differently" hold for a binned judge?

The adversarial run ``binned_5M`` (a continuous judge, the same for both models, cut into
5 bins) had the pair page say the judge differs in 21 of 30 studies. This bench fits the
calibration curve once per simulated study (the app's fitter, 2 chains × 1,000 draws, 500
tuning) and asks both measures on the same draws:

* ``tv``: the total variation between the two models' bin distributions given the human
  class (the measure before);
* ``cut``: the difference in the judge's pass rate at its pass cut ``J // 2`` given the
  human class (:func:`calibration.bayes.curve.judge_pass_difference`, the measure now).

Each says "differs" when its 95% lower bound for a class clears the 5-point band. Cases:
``same`` (fails ~N(0, 1.6²), passes ~N(2, 0.6²) for both models) and ``flatter`` (the
candidate's failures score 1.5 higher). 6,000 responses per model, 3 regions, pass rate
0.85, ``--labels`` uniform grades per model; bins at the quintiles of all scores.

    python bench/judge_differs.py --studies 100 --out bench/results/judge_differs.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adversarial import wilson  # noqa: E402
from results_io import add_variant_argument, header, write_results  # noqa: E402

from calibration.bayes.curve import JUDGE_BAND, judge_pass_difference  # noqa: E402
from calibration.bayes.data import joint_cells_from_arrays  # noqa: E402
from calibration.bayes.fit import Fitter  # noqa: E402

N_PER_ARM = 6000
TRAFFIC = (0.5, 0.3, 0.2)
SHIFT = {"same": 0.0, "flatter": 1.5}


def one_study(case: str, labels: int, seed: int, fitter: Fitter) -> dict[str, bool]:
    rng = np.random.default_rng(seed)
    arm = np.repeat([0, 1], N_PER_ARM)
    per_region = (np.asarray(TRAFFIC) * N_PER_ARM).astype(int)
    region = np.concatenate([np.repeat(np.arange(3), per_region)] * 2)
    y = (rng.random(arm.size) < 0.85).astype(int)
    score = np.where(y == 1, rng.normal(2.0, 0.6, arm.size), rng.normal(0.0, 1.6, arm.size))
    score = score + np.where((arm == 1) & (y == 0), SHIFT[case], 0.0)
    bins = np.searchsorted(np.quantile(score, [0.2, 0.4, 0.6, 0.8]), score)
    human = np.full((arm.size, 1), -1)
    for a in (0, 1):
        chosen = rng.choice(np.flatnonzero(arm == a), labels, replace=False)
        human[chosen, 0] = y[chosen]
    cells = joint_cells_from_arrays(
        arms=("inc", "cand"),
        regions=("r0", "r1", "r2"),
        n_bins=(5,),
        arm_idx=arm,
        region_idx=region,
        bins=bins[:, None],
        human=human,
    )
    fit = fitter.fit(cells, 0, seed=seed, draws=1000, tune=500)
    conf = np.asarray(fit.confusion, dtype=np.float64)
    tv = 0.5 * np.abs(conf[:, 1] - conf[:, 0]).sum(axis=-1)
    cut = judge_pass_difference(conf, candidate=1)
    return {
        "tv": bool((np.quantile(tv, 0.025, axis=0) > JUDGE_BAND).any()),
        "cut": bool((np.quantile(cut, 0.025, axis=0) > JUDGE_BAND).any()),
        "ok": bool(fit.ok),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=["same", "flatter"], choices=list(SHIFT))
    ap.add_argument("--labels", type=int, default=150)
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--out", type=Path)
    add_variant_argument(ap)
    args = ap.parse_args(argv)
    head = header("judge_differs", argv=argv)
    result: dict[str, object] = {
        "settings": {"chains": 2, "draws": 1000, "tune": 500, "labels_per_model": args.labels},
        "cases": {},
    }
    fitter = Fitter(cores=1)
    for case in args.cases:
        start = time.perf_counter()
        rows = [one_study(case, args.labels, args.seed + i, fitter) for i in range(args.studies)]
        said = {}
        for measure in ("tv", "cut"):
            k = sum(r[measure] for r in rows)
            said[measure] = {
                "said": k,
                "rate": round(k / len(rows), 4),
                "wilson": wilson(k, len(rows)),
            }
        result["cases"][case] = {  # type: ignore[index]
            "candidate_failure_shift": SHIFT[case],
            "studies": len(rows),
            "differs_said": said,
            "fits_ok": sum(r["ok"] for r in rows),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(case, json.dumps(result["cases"][case]), flush=True)  # type: ignore[index]
        if args.out:
            write_results(head, result, variant=args.variant, path=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
