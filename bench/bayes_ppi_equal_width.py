"""Labels saved against PPI++ at equal width: check the 1/√n conversion empirically.

``bench/bayes_coverage.py`` turns widths into labels with ``n_ppi = n · (w_ppi / w_bayes)²``,
which assumes PPI++'s interval narrows as 1/√n. With a finite unlabelled set its variance
is ``a/n + b/N``, so it narrows a little *slower* and the conversion would then favour
PPI++. This script needs no MCMC: it rebuilds the same simulated studies (same seeds as
``bayes_coverage.py``), keeps the Bayesian intervals of its per-study lines
(``bench/raw/bayes_coverage/strong_judge.jsonl``, named in
``bench/results/bayes_coverage.json``; without them it stops and names the command that
makes them), and runs ``ppi_mean_ci(..., alpha=0.05)`` with more and more uniformly chosen
labels per arm until PPI++'s mean width reaches the Bayesian mean width. It reports that
label count, the ratio, and, for comparison, the squared-width ratio with a bootstrap
interval over studies (the Monte Carlo error of "x% fewer labels").

Run: ``.venv/bin/python bench/bayes_ppi_equal_width.py`` (reads the coverage JSON and lines).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bayes_common import machine_info, ppi_diff  # noqa: E402
from bayes_coverage import SCENARIOS, WEIGHTS, true_theta  # noqa: E402
from results_io import ROOT, header, path_of, require_raw, section, write_results  # noqa: E402

from calibration.bayes.simulate import reveal_uniform, simulate_study  # noqa: E402

GRID = (300, 320, 340, 360, 380, 400, 430)


def _ppi_widths(study_idx: int, scenario: dict[str, Any], n_per_arm: int, labels: int):
    rng = np.random.default_rng(10_000 + study_idx)
    study = simulate_study(
        theta=true_theta(rng),
        weights=WEIGHTS,
        sensitivity=scenario["se"],
        specificity=scenario["sp"],
        n_per_arm=n_per_arm,
        seed=20_000 + study_idx,
    )
    human = reveal_uniform(study, labels, seed=30_000 + study_idx)
    lab = human >= 0

    def arm(a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        in_arm = study.arm_idx == a
        return human[in_arm & lab], study.judge_bin[in_arm & lab], study.judge_bin[in_arm & ~lab]

    out = []
    for c in (1, 2):
        _, lo, hi = ppi_diff(arm(c), arm(0))
        out.append(hi - lo)
    return out


def main() -> None:
    head = header("bayes_ppi_equal_width")
    coverage = section(path_of("bayes_coverage"))
    if coverage is None:
        raise SystemExit("no bench/results/bayes_coverage.json: run bench/bayes_coverage.py first")
    source = coverage["results"]
    params = source["parameters"]
    labels, n_per_arm = params["labels_per_arm"], params["n_per_arm"]
    name = "strong_judge"
    raw = source.get("raw") or {}
    if name not in raw.get("files", {}):
        raise SystemExit(
            "bench/results/bayes_coverage.json names no per-study lines of strong_judge: "
            "run bench/bayes_coverage.py first"
        )
    lines = ROOT / raw["files"][name]  # relative to the checkout, or absolute
    studies = require_raw(lines, raw["command"], expected=source["results"][name]["n_studies"])
    scenario = SCENARIOS[name]
    bayes_w = np.array([c["bayes"][2] - c["bayes"][1] for s in studies for c in s["candidates"]])
    stored_ppi_w = np.array([c["ppi"][2] - c["ppi"][1] for s in studies for c in s["candidates"]])
    t0 = time.perf_counter()
    by_n: dict[int, np.ndarray] = {}
    for n in GRID:
        by_n[n] = np.array(
            [w for s in studies for w in _ppi_widths(s["study"], scenario, n_per_arm, n)]
        )
        print(n, by_n[n].mean(), flush=True)
    # Same seeds at the coverage run's label count must give the same PPI++ intervals.
    max_rebuild_error = float(np.abs(by_n[labels] - stored_ppi_w).max())
    means = np.array([by_n[n].mean() for n in GRID])
    target = float(bayes_w.mean())
    # PPI++'s mean width decreases with n: interpolate n at the Bayesian mean width.
    n_equal = float(np.interp(-target, -means, np.array(GRID, dtype=float)))
    ratio_sq = (bayes_w.mean() / stored_ppi_w.mean()) ** 2
    rng = np.random.default_rng(0)
    k = len(studies)
    boots = []
    for _ in range(2000):
        pick = rng.integers(0, k, size=k)
        idx = np.concatenate([2 * pick, 2 * pick + 1])
        boots.append((bayes_w[idx].mean() / stored_ppi_w[idx].mean()) ** 2)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    ru = resource.getrusage(resource.RUSAGE_SELF)
    write_results(
        head,
        {
            "source": {
                "file": "bench/results/bayes_coverage.json",
                "raw": raw["files"][name],
                **{key: coverage["header"][key] for key in ("commit", "created", "command")},
                "scenario": name,
                "studies": k,
                "labels_per_arm": labels,
                "n_per_arm": n_per_arm,
            },
            "machine": {
                **machine_info(),
                "cpu_seconds": ru.ru_utime + ru.ru_stime,
                "wall_seconds": time.perf_counter() - t0,
            },
            "rebuild_check_max_abs_width_error": max_rebuild_error,
            "bayes_mean_width": target,
            "ppi_mean_width_by_labels_per_arm": {
                str(n): float(m) for n, m in zip(GRID, means, strict=True)
            },
            "ppi_labels_for_bayes_width_empirical": n_equal,
            "bayes_labels_over_ppi_empirical": labels / n_equal,
            "fewer_labels_than_ppi_empirical": 1 - labels / n_equal,
            "bayes_labels_over_ppi_width_ratio": float(ratio_sq),
            "fewer_labels_than_ppi_width_ratio": float(1 - ratio_sq),
            "fewer_labels_than_ppi_width_ratio_bootstrap_95": [float(1 - hi), float(1 - lo)],
        },
    )


if __name__ == "__main__":
    main()
