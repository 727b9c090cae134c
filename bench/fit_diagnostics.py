"""Do fits pass their diagnostics from the first labels? The app's fit settings, few labels.

For each study shape and label count (20, 40, 100 human-graded responses drawn uniformly),
every dimension is fitted exactly as the worker fits it (``calibration.services.FIT_SETTINGS``
and the default ESS top-ups) and the fit is judged by the app's rule (R-hat ≤ 1.01, bulk ESS
≥ 400, ≤ 5 divergences; ``DimensionFit.is_ok``). Shapes:

* ``demo``: the demo study's generator (3 models, 6 regions, correctness and refusal judged
  pass/fail, style by a 1–5 judge in 5 bins; 3,000 prompts);
* ``hanna`` / ``summeval``: real tables (HANNA: ``chatgpt_p1`` judge, pass = rating ≥ 3;
  SummEval: ``rouge1_maxref``, pass ≥ 4), one pair of systems, two dimensions, the judge
  cut at its median, one region; read from ``DATA_DIR`` (default ``../shared/data``, never
  committed).

    python bench/fit_diagnostics.py [DATA_DIR] [--seeds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bayes_common import machine_info  # noqa: E402
from results_io import add_variant_argument, header, write_results  # noqa: E402

LABELS = (20, 40, 100)


def _django() -> None:
    # The demo generator and the fit settings live in Django apps (no database is used).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("BATON_INSECURE_DEV_KEY", "1")
    import django

    django.setup()


def demo_population(seed: int) -> Any:
    from annotate.demo import ARMS, DIMENSIONS, REGIONS, generate_demo_data
    from calibration.bayes.replay import Population

    data = generate_demo_data(seed=seed, prompts=3000)
    arms = [key for key, _, _ in ARMS]
    regions = [key for key, _, _ in REGIONS]
    dims = [key for key, _, _, _ in DIMENSIONS]
    arm, region, bins, truth = [], [], [], []
    for record in data.records:
        for a, key in enumerate(arms):
            resp = record["responses"][key]  # type: ignore[index]
            scores = resp["scores"]
            grades = data.truth[record["id"]][key]  # type: ignore[index]
            arm.append(a)
            region.append(regions.index(record["region"]))  # type: ignore[arg-type]
            bins.append([scores["correctness"], scores["refusal"], scores["style"] - 1])
            truth.append([grades["correctness"], grades["refusal"], int(grades["style"] >= 4)])
    shares = np.array([float(share) for _, _, share in REGIONS])
    b = np.asarray(bins, dtype=np.int64)
    return Population(
        arms=tuple(arms),
        regions=tuple(regions),
        traffic=shares / shares.sum(),
        dimensions=tuple(dims),
        margins=tuple(float(m) for _, _, _, m in DIMENSIONS),
        n_bins=(2, 2, 5),
        arm=np.asarray(arm, dtype=np.int64),
        region=np.asarray(region, dtype=np.int64),
        bins=b,
        truth=np.asarray(truth, dtype=np.int64),
        score=b.astype(np.float64),
    )


TABLES = {
    "hanna": {
        "table": "hanna.csv.gz",
        "judge": "chatgpt_p1",
        "pass_threshold": 3,
        "dimensions": ["Relevance", "Coherence"],
        "pair": ("GPT-2", "Fusion"),
    },
    "summeval": {
        "table": "summeval.csv.gz",
        "judge": "rouge1_maxref",
        "pass_threshold": 4,
        "dimensions": ["coherence", "relevance"],
        "pair": ("M22", "M23"),
    },
}


def table_population(name: str, data_dir: Path) -> Any:
    from calibration.bayes.replay import load_table, population_from_table

    cfg = TABLES[name]
    inc, cand = cfg["pair"]
    return population_from_table(
        load_table(data_dir / cfg["table"]),
        incumbent=inc,
        candidates=[cand],
        judge=cfg["judge"],
        pass_threshold=cfg["pass_threshold"],
        dimensions=cfg["dimensions"],
    )


def run(pop: Any, *, shape: str, seed: int, fitter: Any) -> list[dict[str, Any]]:
    from calibration.services import FIT_SETTINGS

    rng = np.random.default_rng(seed)
    order = rng.permutation(pop.size)
    out = []
    for n in LABELS:
        labelled = np.zeros(pop.size, dtype=bool)
        labelled[order[:n]] = True
        cells = pop.cells(labelled)
        for d, dim in enumerate(pop.dimensions):
            t0 = time.perf_counter()
            fit = fitter.fit(cells, d, seed=seed * 100 + n + d, **FIT_SETTINGS)
            diag = fit.diagnostics
            out.append(
                {
                    "shape": shape,
                    "seed": seed,
                    "labels": n,
                    "dimension": dim,
                    "ok": bool(fit.ok),
                    "ok_first_run": bool(
                        diag["max_rhat_first"] <= 1.01
                        and diag["min_ess_bulk_first"] >= 400
                        and diag["divergences_first"] <= 5
                    ),
                    "max_rhat": round(diag["max_rhat"], 4),
                    "min_ess_bulk": round(diag["min_ess_bulk"], 1),
                    "divergences": int(diag["divergences"]),
                    "top_ups": int(diag["top_ups"]),
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape in sorted({r["shape"] for r in rows}):
        for n in LABELS:
            sel = [r for r in rows if r["shape"] == shape and r["labels"] == n]
            if not sel:
                continue
            out[f"{shape}@{n}"] = {
                "fits": len(sel),
                "ok": sum(r["ok"] for r in sel),
                "ok_share": round(sum(r["ok"] for r in sel) / len(sel), 4),
                "ok_first_run": sum(r["ok_first_run"] for r in sel),
                "max_rhat": max(r["max_rhat"] for r in sel),
                "min_ess_bulk": min(r["min_ess_bulk"] for r in sel),
                "max_divergences": max(r["divergences"] for r in sel),
                "median_seconds": float(np.median([r["seconds"] for r in sel])),
            }
    every = len(rows)
    out["all"] = {"fits": every, "ok": sum(r["ok"] for r in rows)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shapes", nargs="*", default=["demo", "hanna", "summeval"])
    default_out = ROOT / "bench" / "results" / "fit_diagnostics.json"
    parser.add_argument("--out", type=Path, default=default_out)
    add_variant_argument(parser)
    args = parser.parse_args(argv)
    _django()

    from calibration.bayes.fit import Fitter
    from calibration.bayes.posterior import MODEL_VERSION
    from calibration.services import FIT_SETTINGS

    head = header("fit_diagnostics", argv=argv)  # at the start: the code that runs
    fitter = Fitter()
    rows: list[dict[str, Any]] = []
    started = time.time()
    for shape in args.shapes:
        for seed in range(args.seeds):
            pop = (
                demo_population(seed)
                if shape == "demo"
                else table_population(shape, Path(args.data_dir))
            )
            rows += run(pop, shape=shape, seed=seed, fitter=fitter)
            print(json.dumps(summarise(rows)), flush=True)
    result = {
        "model_version": MODEL_VERSION,
        "machine": machine_info(),
        "settings": {**FIT_SETTINGS, "ess_top_ups": 2, "labels": list(LABELS)},
        "seconds": round(time.time() - started, 1),
        "summary": summarise(rows),
        "fits": rows,
    }
    write_results(head, result, variant=args.variant, path=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
