"""Is the calibration curve's posterior calibrated under a flattering judge, outside the loop?

The adversarial runs (``bench/adversarial.py``) found ``z = (mean − truth) / sd`` with an sd
of about 1.1 at the looks of the flattering scenarios, where 1.0 is calibrated. This bench
takes the loop away: each study draws every human grade i.i.d. (the adversarial scenario's
models, regions, traffic and pass rates, 6,000 responses per model), the judge from its
sensitivity and specificity, grades ``--labels`` responses per model uniformly at random,
and fits the curve once with the app's fitter (2 chains × 1,000 draws, 500 tuning). The
truth is the traffic-weighted Δ of the study's own responses.

    python bench/curve_calibration.py --judges flatter_50 identical --labels 75 150 \\
        --studies 200 --out bench/results/curve_calibration.json

With ``--exact`` (exact pass counts per model and region) the run is the file's variant
``exact`` (``bench/results_io.py``).
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

from adversarial import SCENARIOS  # noqa: E402
from results_io import add_variant_argument, header, write_results  # noqa: E402

from calibration.bayes.data import joint_cells_from_arrays  # noqa: E402
from calibration.bayes.decision import delta_draws  # noqa: E402
from calibration.bayes.fit import Fitter  # noqa: E402

#: The adversarial scenarios whose judge, pass rates and traffic are simulated here.
NAMES = ("flatter_50", "flatter_demo", "identical")
N_PER_ARM = 6000


def one_study(
    judge: str, labels: int, seed: int, fitter: Fitter, exact: bool = False
) -> tuple[float, float, bool]:
    """``(mean − truth, sd)`` of Δ and whether the fit passed its diagnostics."""
    sc = SCENARIOS[judge]
    traffic = np.asarray(sc.traffic)
    theta = np.asarray(sc.theta)  # (model, region)
    rng = np.random.default_rng(seed)
    arm = np.repeat([0, 1], N_PER_ARM)
    per_region = (traffic * N_PER_ARM).astype(int)
    region = np.concatenate([np.repeat(np.arange(3), per_region)] * 2)
    y = (rng.random(arm.size) < theta[arm, region]).astype(int)
    if exact:  # as bench/adversarial.py: round(θ·n) passes in every (model, region)
        for a in (0, 1):
            for r in range(3):
                idx = np.flatnonzero((arm == a) & (region == r))
                y[idx] = 0
                y[rng.permutation(idx)[: int(round(theta[a, r] * idx.size))]] = 1
    (se0, sp0), (se1, sp1) = sc.judge
    se = np.where(arm == 0, se0, se1)
    sp = np.where(arm == 0, sp0, sp1)
    u = rng.random(arm.size)
    bins = np.where(y == 1, u < se, u < 1 - sp).astype(int)
    human = np.full((arm.size, 1), -1)
    for a in (0, 1):
        chosen = rng.choice(np.flatnonzero(arm == a), labels, replace=False)
        human[chosen, 0] = y[chosen]
    truth = sum(
        traffic[r] * (y[(arm == 1) & (region == r)].mean() - y[(arm == 0) & (region == r)].mean())
        for r in range(3)
    )
    cells = joint_cells_from_arrays(
        arms=("inc", "cand"),
        regions=("r0", "r1", "r2"),
        n_bins=(2,),
        arm_idx=arm,
        region_idx=region,
        bins=bins[:, None],
        human=human,
    )
    fit = fitter.fit(cells, 0, seed=seed, draws=1000, tune=500)
    delta = delta_draws(fit.theta, traffic, 1)
    return float(delta.mean() - truth), float(delta.std()), bool(fit.ok)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judges", nargs="*", default=["flatter_50", "identical"], choices=NAMES)
    ap.add_argument("--labels", nargs="*", type=int, default=[75, 150])
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument(
        "--exact", action="store_true", help="exact pass counts per (model, region), as the loop"
    )
    ap.add_argument("--out", type=Path)
    add_variant_argument(ap, "default with --exact: exact")
    args = ap.parse_args(argv)
    variant = args.variant or ("exact" if args.exact else None)
    head = header("curve_calibration", argv=argv)
    result: dict[str, object] = {
        "settings": {
            "chains": 2,
            "draws": 1000,
            "tune": 500,
            "traffic": {n: SCENARIOS[n].traffic for n in args.judges},
            "exact_counts": args.exact,
        },
        "cases": {},
    }
    fitter = Fitter(cores=1)
    for judge in args.judges:
        for labels in args.labels:
            start = time.perf_counter()
            rows = [
                one_study(judge, labels, args.seed + i, fitter, args.exact)
                for i in range(args.studies)
            ]
            err = np.array([r[0] for r in rows])
            sd = np.array([r[1] for r in rows])
            z = err / sd
            n = len(rows)
            case = {
                "judge": SCENARIOS[judge].judge,
                "labels_per_model": labels,
                "studies": n,
                "z_mean": round(float(z.mean()), 4),
                "z_mean_se": round(float(z.std(ddof=1) / math.sqrt(n)), 4),
                "z_sd": round(float(z.std(ddof=1)), 4),
                "z_sd_se": round(float(z.std(ddof=1) / math.sqrt(2 * (n - 1))), 4),
                "coverage_95": round(float(np.mean(np.abs(z) <= 1.959964)), 4),
                "bias_points": round(100 * float(err.mean()), 3),
                "bias_se_points": round(100 * float(err.std(ddof=1)) / math.sqrt(n), 3),
                "fits_ok": int(sum(r[2] for r in rows)),
                "seconds": round(time.perf_counter() - start, 1),
            }
            key = f"{judge}@{labels}" + ("+exact" if args.exact else "")
            result["cases"][key] = case  # type: ignore[index]
            print(f"{judge}@{labels}: {case}", flush=True)
            if args.out:
                write_results(head, result, variant=variant, path=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
