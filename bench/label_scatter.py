"""How much one run's label count scatters, and whether the selection causes it.

On given weak-judge studies of ``bench/label_efficiency.py`` (same populations, same target:
a 95% interval of half-width ≤ 0.03 on Δ), run the model's loop ``--runs`` times with
active selection (15% exploration) and as many times with uniform picks (exploration share
1: every pick uniform, same model, same fit schedule), and human-only on ``--orders`` label
orders. Per study: mean, sd and relative sd of the labels each needs, the labels of every
run, and each policy's expected labels over human-only's with a one-sided 95% upper bound
(``label_efficiency.ratio_of_means``). If uniform picks scatter as much as active ones, the
scatter comes from the model's interval, not from where the labels went.

    nice -n 5 python bench/label_scatter.py [--seeds 100000,100001] [--runs 8]
    python bench/label_scatter.py --summarise-only --out bench/results/label_scatter.json

Other seeds are a variant of the results file (``--variant worst``: the ten weak-judge
studies with the highest upper bound; ``bench/results_io.py``).
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
from results_io import add_variant_argument, header, section, write_results  # noqa: E402

from calibration.bayes.replay import human_only_delta  # noqa: E402


def spread(values: list[int | None]) -> dict[str, Any]:
    got = np.array([v for v in values if v is not None], float)
    return {
        "labels": values,
        "mean": round(float(got.mean()), 1),
        "sd": round(float(got.std(ddof=1)), 1),
        "relative_sd": round(float(got.std(ddof=1) / got.mean()), 4),
    }


#: The two ways of picking, by exploration share (1: every pick uniform).
POLICIES = {"active": 0.15, "uniform_picks": 1.0}


def summarise(studies: list[dict[str, Any]]) -> dict[str, Any]:
    """Scatter per method, and per study the ratios of expected labels to human-only's."""

    def labels(study: dict[str, Any], name: str) -> list[int]:
        return [v for v in study[name]["labels"] if v is not None]

    per_study = [
        {
            "seed": st["seed"],
            **{
                f"{name}_to_human_only": le.ratio_of_means(
                    labels(st, name), labels(st, "human_only")
                )
                for name in POLICIES
            },
        }
        for st in studies
    ]
    ratios = {n: [x[f"{n}_to_human_only"]["ratio"] for x in per_study] for n in POLICIES}
    return {
        **{
            name: {
                "median_relative_sd": round(
                    float(np.median([st[name]["relative_sd"] for st in studies])), 4
                ),
                "pooled_relative_sd": round(
                    float(np.sqrt(np.mean([st[name]["relative_sd"] ** 2 for st in studies]))), 4
                ),
            }
            for name in (*POLICIES, "human_only")
        },
        "active_ratio_range": [min(ratios["active"]), max(ratios["active"])],
        "active_max_upper_95": max(x["active_to_human_only"]["upper_95"] for x in per_study),
        "active_below_uniform_picks": sum(
            a < u for a, u in zip(ratios["active"], ratios["uniform_picks"], strict=True)
        ),
        "mean_labels": {
            name: round(float(np.mean([st[name]["mean"] for st in studies])), 1)
            for name in (*POLICIES, "human_only")
        },
        "per_study": per_study,
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
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="rebuild the summary of --out from the runs stored in it and exit",
    )
    add_variant_argument(parser)
    args = parser.parse_args()
    out = Path(args.out)
    if args.summarise_only:
        stored = section(out, args.variant)
        if stored is None:
            parser.error(f"{out} holds no such run to summarise")
        doc = stored["results"]
        doc["summary"] = summarise(doc["studies"])
        write_results(stored["header"], doc, variant=args.variant, path=out)
        return
    if args.runs < 2 or args.orders < 2:
        parser.error("--runs and --orders need at least 2 (a spread of one is undefined)")
    fitter = le._ShortChainFitter(cores=1)
    started, load_before, head = time.perf_counter(), os.getloadavg(), header("label_scatter")
    studies = []
    for seed in (int(s) for s in args.seeds.split(",")):
        pop, truth = le.make_population(seed, se=0.70, sp=0.65, delta=None)
        study: dict[str, Any] = {"seed": seed, "true_delta": round(truth, 5)}
        for name, eps in POLICIES.items():
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
            "exploration_share": POLICIES,
            "draws_per_chain": args.draws,
            "chains": 2,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "seconds": round(time.perf_counter() - started, 1),
        },
        "summary": summarise(studies),
        "studies": studies,
    }
    write_results(head, doc, variant=args.variant, path=out)


if __name__ == "__main__":
    main()
