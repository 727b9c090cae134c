"""Replay on real human-vs-judge tables: active vs uniform vs PPI++ against all labels.

For each (table, incumbent, candidate) and seed, :func:`calibration.replay.run_loop` hides
the human labels and spends the same budget twice, with the app's active rule and with
uniform labelling (refit every ``--batch``; it does not stop when verdicts settle, so both
use the whole budget). At the end of each run, every method's Δ estimate and 95% interval
are compared with the Δ that all human labels of the table give:

* ``active``: the model's credible interval after active labelling;
* ``uniform``: the model's credible interval after uniform labelling;
* ``ppi_uniform``: PPI++ (``ppi_mean_ci``, ``alpha=0.05``, raw judge score) on the uniform
  labels;
* ``ppi_active``: PPI++ on the active labels, inverse-probability weighted by the logged
  pick probabilities (approximate: see ``calibration/replay.py``);
* ``human_uniform``: the Wald interval on the uniform labels alone.

Reported per table and method: mean absolute error, coverage of the all-labels Δ, mean
interval width. Tables: HANNA (judge ``chatgpt_p1``, pass = mean rating ≥ 3) and SummEval
(judge ``rouge1_maxref``, pass ≥ 4), judge scores cut at their median (2 quantile bins).

    python bench/replay_real.py [DATA_DIR] [--seeds 5] [--budget 80] [--batch 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_common import git_head, machine_info  # noqa: E402

from calibration.bayes.fit import Fitter  # noqa: E402
from calibration.replay import (  # noqa: E402
    all_labels_delta,
    human_only_delta,
    load_table,
    population_from_table,
    ppi_delta,
    run_loop,
)

CONFIGS = [
    {
        "table": "hanna.csv.gz",
        "judge": "chatgpt_p1",
        "pass_threshold": 3,
        "dimensions": ["Relevance", "Coherence"],
        "pairs": [("GPT-2", "GPT-2 (tag)"), ("GPT-2", "Fusion")],
    },
    {
        "table": "summeval.csv.gz",
        "judge": "rouge1_maxref",
        "pass_threshold": 4,
        "dimensions": ["coherence", "relevance"],
        "pairs": [("M22", "M23"), ("M17", "M5")],
    },
]
METHODS = ("active", "uniform", "ppi_uniform", "ppi_active", "human_uniform")


def _row(est: dict[str, float] | None, truth: float) -> dict[str, Any] | None:
    if est is None:
        return None
    return {
        "mean": round(est["mean"], 4),
        "lower": round(est["lower"], 4),
        "upper": round(est["upper"], 4),
        "error": round(abs(est["mean"] - truth), 4),
        "covers": bool(est["lower"] <= truth <= est["upper"]),
        "width": round(est["upper"] - est["lower"], 4),
    }


def main() -> None:
    default_dir = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", nargs="?", default=str(default_dir))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=80)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="1 seed, first pair of each table")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "replay_real.json")
    )
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    fitter = Fitter(cores=1)
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "settings": {
            "budget": args.budget,
            "batch": args.batch,
            "seeds": seeds,
            "draws_per_chain": args.draws,
            "chains": 2,
            "margin": 0.02,
            "confidence": 0.95,
            "exploration_share": 0.15,
            "judge_bins": 2,
        },
        "command": " ".join(sys.argv),
        "git_head": git_head(),
        "machine": machine_info(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    for cfg in CONFIGS:
        table = load_table(Path(args.data_dir) / cfg["table"])
        pairs = cfg["pairs"][:1] if args.quick else cfg["pairs"]
        for inc, cand in pairs:
            pop = population_from_table(
                table,
                incumbent=inc,
                candidates=[cand],
                judge=cfg["judge"],
                pass_threshold=cfg["pass_threshold"],
                dimensions=cfg["dimensions"],
            )
            truth = all_labels_delta(pop)[0]
            for seed in range(seeds):
                res = {}
                for policy in ("active", "uniform"):
                    res[policy] = run_loop(
                        pop,
                        policy=policy,
                        budget=args.budget,
                        batch=args.batch,
                        seed=seed,
                        fitter=fitter,
                        draws=args.draws,
                        tune=args.draws,
                        stop_when_settled=False,
                        with_ppi=False,
                    )
                for d, dim in enumerate(pop.dimensions):
                    t = float(truth[d])
                    methods = {}
                    for policy in ("active", "uniform"):
                        final = res[policy].batches[-1].deltas[d]
                        methods[policy] = _row(final, t)
                        methods[policy]["verdict"] = final["verdict"]
                    ua, up = res["uniform"].picks, res["uniform"].probabilities
                    aa, ap = res["active"].picks, res["active"].probabilities
                    methods["ppi_uniform"] = _row(ppi_delta(pop, 1, d, ua, up), t)
                    methods["ppi_active"] = _row(ppi_delta(pop, 1, d, aa, ap), t)
                    methods["human_uniform"] = _row(human_only_delta(pop, 1, d, ua, up), t)
                    run = {
                        "table": cfg["table"],
                        "incumbent": inc,
                        "candidate": cand,
                        "dimension": dim,
                        "seed": seed,
                        "responses": pop.size,
                        "all_labels_delta": round(t, 4),
                        "methods": methods,
                    }
                    runs.append(run)
                    print(json.dumps(run), flush=True)
                results["runs"] = runs
                results["summary"] = summarise(runs)
                results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
                out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results["summary"], indent=1))


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table in sorted({r["table"] for r in runs}):
        rows = [r for r in runs if r["table"] == table]
        per: dict[str, Any] = {"runs": len(rows)}
        for m in METHODS:
            vals = [r["methods"][m] for r in rows if r["methods"][m] is not None]
            if not vals:
                continue
            per[m] = {
                "mean_abs_error": round(float(np.mean([v["error"] for v in vals])), 4),
                "coverage": round(float(np.mean([v["covers"] for v in vals])), 3),
                "mean_width": round(float(np.mean([v["width"] for v in vals])), 4),
                "n": len(vals),
            }
        out[table] = per
    return out


if __name__ == "__main__":
    main()
