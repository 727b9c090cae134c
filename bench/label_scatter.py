"""How much one run's label count scatters, and whether the selection causes it.

On given weak-judge studies of ``bench/label_efficiency.py`` (same populations, same target:
a 95% interval of half-width ≤ 0.03 on Δ), run the model's loop ``--runs`` times with
active selection (15% exploration) and as many times with uniform picks (exploration share
1: every pick uniform, same model, same fit schedule), and human-only on ``--orders`` label
orders. Per study: mean, sd and relative sd of the labels each needs, and the labels of
every run. If uniform picks scatter as much as active ones, the scatter comes from the
model's interval, not from where the labels went.

    nice -n 5 python bench/label_scatter.py [--seeds 100000,100001] [--runs 8]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import label_efficiency as le  # noqa: E402
from bayes_common import git_head  # noqa: E402

from calibration.replay import human_only_delta  # noqa: E402


def spread(values: list[int | None]) -> dict[str, Any]:
    got = np.array([v for v in values if v is not None], float)
    return {
        "labels": values,
        "mean": round(float(got.mean()), 1),
        "sd": round(float(got.std(ddof=1)), 1),
        "relative_sd": round(float(got.std(ddof=1) / got.mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seeds",
        default=",".join(str(100_000 + i) for i in range(10)) + ",100192,100020",
        help="weak-part study seeds (default: the first 10, and the two worst single runs)",
    )
    parser.add_argument("--runs", type=int, default=8, help="runs per study and policy")
    parser.add_argument("--orders", type=int, default=30, help="human-only label orders")
    parser.add_argument("--draws", type=int, default=200, help="draws (and tune) per chain")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "label_scatter.json")
    )
    args = parser.parse_args()
    if args.runs < 2 or args.orders < 2:
        parser.error("--runs and --orders need at least 2 (a spread of one is undefined)")
    fitter = le._ShortChainFitter(cores=1)
    started, load_before, head = time.perf_counter(), os.getloadavg(), git_head()
    studies = []
    for seed in (int(s) for s in args.seeds.split(",")):
        pop, truth = le.make_population(seed, se=0.70, sp=0.65, delta=None)
        study: dict[str, Any] = {"seed": seed, "true_delta": round(truth, 5)}
        for name, eps in (("active", 0.15), ("uniform_picks", 1.0)):
            runs = [
                le.active_labels_to_width(
                    pop,
                    truth,
                    seed + le.REPLICATE_STRIDE * k,
                    fitter,
                    args.draws,
                    exploration_share=eps,
                )["labels"]
                for k in range(args.runs)
            ]
            study[name] = spread(runs)
        study["human_only"] = spread(
            [
                le.uniform_labels_to_width(
                    pop,
                    truth,
                    human_only_delta,
                    le.uniform_order(pop, seed + le.REPLICATE_STRIDE * k),
                )["labels"]
                for k in range(args.orders)
            ]
        )
        print(json.dumps(study), flush=True)
        studies.append(study)
    doc = {
        "settings": {
            "judge": {"sensitivity": 0.7, "specificity": 0.65},
            "target_half_width": le.TARGET_HALF_WIDTH,
            "runs": args.runs,
            "orders": args.orders,
            "draws_per_chain": args.draws,
            "chains": 2,
        },
        "command": " ".join(sys.argv),
        "git_head": head,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "seconds": round(time.perf_counter() - started, 1),
        },
        "summary": {
            name: {
                "median_relative_sd": round(
                    float(np.median([st[name]["relative_sd"] for st in studies])), 4
                ),
                "pooled_relative_sd": round(
                    float(np.sqrt(np.mean([st[name]["relative_sd"] ** 2 for st in studies]))), 4
                ),
            }
            for name in ("active", "uniform_picks", "human_only")
        },
        "studies": studies,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
