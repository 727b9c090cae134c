"""Fit time of a 3 arms × 6 regions × 3 dimensions study at 10k and 5M judge-only responses.

* **warm** — one long-lived :class:`~calibration.bayes.fit.Fitter` (what a db_worker keeps):
  the model is compiled once, then each refit swaps the new counts in and samples. Timed for
  the 3 dimensions together ("labels changed" → "new posterior"), ``--repeats`` times.
* **cold** — a fresh Python process (subprocess) that imports, builds counts, compiles and
  fits the 3 dimensions; timed from before ``python`` starts. Run twice: with the PyTensor
  compile cache as it is (``~/.pytensor``, as on a machine that has fitted before), and
  with an empty compile dir (``PYTENSOR_FLAGS=compiledir=<tmp>``: a fresh CI machine).

Each dimension is fitted as the worker fits it (``FIT_SETTINGS``) on the study's joint
cells (arm, region and every dimension's judge bin; binary judges here). Only graded
responses enter the likelihood, so 5M responses should cost what 10k do; this measures it.
``joint_cells_from_arrays`` time on the raw rows is reported separately (the app aggregates
in SQL instead).

Run: ``/work/main/.venv/bin/python bench/bayes_fit_time.py`` (``--quick``: 1 repeat, no
empty-cache cold run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bayes_common import ROOT, machine_info  # noqa: E402
from results_io import add_variant_argument, header, write_results  # noqa: E402

from calibration.bayes.data import JointCells, joint_cells_from_arrays  # noqa: E402
from calibration.bayes.fit import Fitter  # noqa: E402
from calibration.bayes.posterior import FIT_SETTINGS  # noqa: E402

WEIGHTS = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
LABELS_PER_ARM = 300
DIMENSIONS = {
    # name: (mu per arm, sensitivity, specificity)
    "correctness": ([0.9, 0.8, 1.0], 0.90, 0.85),
    "refusal": ([2.0, 2.2, 1.9], 0.85, 0.90),
    "style": ([0.2, 0.3, 0.0], 0.80, 0.75),
}


def study_counts(total_responses: int, seed: int = 0) -> tuple[JointCells, float]:
    """The study's joint cells (every dimension's judge bin in each cell, as the app counts
    them) for ``total_responses`` over 3 arms, ``LABELS_PER_ARM`` graded uniformly per arm
    on every dimension, and the seconds spent aggregating the raw rows."""
    rng = np.random.default_rng(seed)
    region_fx = rng.normal(0, 0.4, size=WEIGHTS.size)
    n = total_responses // 3 * 3
    arm = np.repeat(np.arange(3), n // 3)
    region = rng.choice(WEIGHTS.size, size=n, p=WEIGHTS)
    bins = np.empty((n, len(DIMENSIONS)), dtype=np.int64)
    truth = np.empty((n, len(DIMENSIONS)), dtype=np.int64)
    for d, (mu, se, sp) in enumerate(DIMENSIONS.values()):
        p = 1 / (1 + np.exp(-(np.asarray(mu)[arm] + region_fx[region])))
        truth[:, d] = rng.random(n) < p
        u = rng.random(n)
        bins[:, d] = np.where(truth[:, d] == 1, u < se, u < 1 - sp)
    human = np.full((n, len(DIMENSIONS)), -1, dtype=np.int64)
    for a in range(3):
        chosen = rng.choice(np.flatnonzero(arm == a), size=LABELS_PER_ARM, replace=False)
        human[chosen] = truth[chosen]
    t0 = time.perf_counter()
    cells = joint_cells_from_arrays(
        arms=("inc", "cand1", "cand2"),
        regions=tuple(f"r{i}" for i in range(WEIGHTS.size)),
        n_bins=(2,) * len(DIMENSIONS),
        arm_idx=arm,
        region_idx=region,
        bins=bins,
        human=human,
    )
    return cells, time.perf_counter() - t0


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def fit_all(fitter: Fitter, cells: JointCells, seed: int) -> dict[str, Any]:
    # CPU seconds (all threads) are reported beside wall time: on this shared, overloaded
    # machine wall time mostly measures the other tenants.
    c0 = _cpu()
    t0 = time.perf_counter()
    per_dim = {}
    for i, name in enumerate(DIMENSIONS):
        fit = fitter.fit(cells, i, seed=seed + i, **FIT_SETTINGS)
        d = fit.diagnostics
        per_dim[name] = {
            k: d[k]
            for k in (
                "max_rhat",
                "min_ess_bulk",
                "min_ess_tail",
                "divergences",
                "compile_seconds",
                "swap_seconds",
                "sample_seconds",
                "top_ups",
                "chains",
                "max_rhat_first",
                "min_ess_bulk_first",
                "divergences_first",
                "top_up_seconds",
            )
        }
        per_dim[name]["ok"] = fit.ok
    total = time.perf_counter() - t0
    return {
        "total_seconds": total,
        "cpu_seconds": _cpu() - c0,
        "loadavg_1min": os.getloadavg()[0],
        "dimensions": per_dim,
    }


def cold_child(n: int) -> None:
    """Body of the cold subprocess: prints one JSON line."""
    t_import = time.perf_counter()
    fitter = Fitter()
    counts, agg = study_counts(n)
    t_counts = time.perf_counter()
    res = fit_all(fitter, counts, seed=1)
    res["counts_seconds_incl_simulation"] = t_counts - t_import
    res["aggregate_seconds"] = agg
    print("RESULT " + json.dumps(res))


def cold_run(n: int, empty_cache: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    tmp = None
    if empty_cache:
        tmp = tempfile.mkdtemp(prefix="pytensor-cold-")
        env["PYTENSOR_FLAGS"] = f"compiledir={tmp}"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--cold-child", str(n)]
    c0 = _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    cpu = _cpu(resource.RUSAGE_CHILDREN) - c0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return {"error": proc.stderr[-2000:], "wall_seconds": wall}
    res = json.loads(line[len("RESULT ") :])
    res["wall_seconds_process"] = wall
    res["cpu_seconds_process"] = cpu
    # Fit part only: wall minus interpreter start-up/imports and simulating the data.
    res["empty_compile_cache"] = empty_cache
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 5_000_000])
    ap.add_argument("--cold-child", type=int, default=None, help=argparse.SUPPRESS)
    add_variant_argument(ap)
    args = ap.parse_args()
    if args.cold_child is not None:
        cold_child(args.cold_child)
        return
    repeats = 1 if args.quick else args.repeats

    head = header("bayes_fit_time")
    info = machine_info()
    out: dict[str, Any] = {"cold": {}, "warm": {}}

    for n in args.sizes:
        out["cold"][str(n)] = cold_run(n, empty_cache=False)
        print("cold", n, out["cold"][str(n)].get("total_seconds"), flush=True)
    if not args.quick:
        n0 = args.sizes[0]
        out["cold_empty_cache"] = {str(n0): cold_run(n0, empty_cache=True)}
        print("cold empty cache", out["cold_empty_cache"][str(n0)].get("total_seconds"))

    fitter = Fitter()
    counts_by_n = {n: study_counts(n, seed=7) for n in args.sizes}
    c0 = _cpu()
    # Every model the warm runs need: small and large cells sample in other coordinates
    # (calibration.bayes.model.model_key), so each size may bring its own compiled model.
    compile_s = sum(fitter.compile(cells, d) for cells, _ in counts_by_n.values() for d in range(3))
    out["warm_compile_seconds"] = compile_s
    out["warm_compile_cpu_seconds"] = _cpu() - c0
    for n, (counts, agg) in counts_by_n.items():
        runs = [fit_all(fitter, counts, seed=100 * r) for r in range(repeats)]
        totals = [r["total_seconds"] for r in runs]
        cpus = [r["cpu_seconds"] for r in runs]
        out["warm"][str(n)] = {
            "judge_only_responses": int(counts.totals.sum() - counts.labelled[0].sum()),
            "aggregate_seconds_3_dims": agg,
            "total_seconds_3_dims": totals,
            "median_total_seconds_3_dims": float(np.median(totals)),
            "cpu_seconds_3_dims": cpus,
            "median_cpu_seconds_3_dims": float(np.median(cpus)),
            "runs": runs,
        }
        print("warm", n, totals, flush=True)
    if len(args.sizes) >= 2:
        lo, hi = str(args.sizes[0]), str(args.sizes[-1])
        med_lo = out["warm"][lo]["median_total_seconds_3_dims"]
        med_hi = out["warm"][hi]["median_total_seconds_3_dims"]
        samp = {
            k: float(
                np.median(
                    [
                        sum(d["sample_seconds"] for d in r["dimensions"].values())
                        for r in out["warm"][k]["runs"]
                    ]
                )
            )
            for k in (lo, hi)
        }
        all_diag = [
            d for k in (lo, hi) for r in out["warm"][k]["runs"] for d in r["dimensions"].values()
        ]
        out["summary"] = {
            "warm_ratio_large_over_small": med_hi / med_lo,
            "warm_ratio_target": 1.2,
            "warm_sampling_ratio_large_over_small": samp[hi] / samp[lo],
            "warm_total_3_dims_small": med_lo,
            "warm_total_3_dims_large": med_hi,
            "warm_cpu_3_dims": {k: out["warm"][k]["median_cpu_seconds_3_dims"] for k in (lo, hi)},
            "cold_cpu_process": {k: v.get("cpu_seconds_process") for k, v in out["cold"].items()},
            "warm_target_seconds": 10.0,
            "cold_total_3_dims": {k: v.get("total_seconds") for k, v in out["cold"].items()},
            "cold_process_wall": {k: v.get("wall_seconds_process") for k, v in out["cold"].items()},
            "cold_target_seconds": 40.0,
            "max_rhat": max(d["max_rhat"] for d in all_diag),
            "min_ess_bulk": min(d["min_ess_bulk"] for d in all_diag),
            "divergences_max_per_fit": max(d["divergences"] for d in all_diag),
            "fits_ok": sum(d["ok"] for d in all_diag),
            "fits_topped_up": sum(d["top_ups"] > 0 for d in all_diag),
            "fits": len(all_diag),
            # The cold runs fit other counts (seed 0) than the warm ones (seed 7).
            "cold_fits_ok": {
                k: sum(d["ok"] for d in v.get("dimensions", {}).values())
                for k, v in out["cold"].items()
            },
            "cold_fits_topped_up": {
                k: sum(d["top_ups"] > 0 for d in v.get("dimensions", {}).values())
                for k, v in out["cold"].items()
            },
        }
    path = write_results(
        head,
        {
            "parameters": {
                "arms": 3,
                "regions": WEIGHTS.size,
                "dimensions": list(DIMENSIONS),
                "labels_per_arm": LABELS_PER_ARM,
                "sizes_total_responses": args.sizes,
                "repeats": repeats,
                "fit": {**FIT_SETTINGS, "ess_top_ups": 2},
                "sampler": "nutpie (numba backend), chains as threads",
            },
            "machine": info,
            **out,
        },
        variant=args.variant,
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
