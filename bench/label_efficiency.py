"""Label efficiency of active selection on simulated studies with a known truth.

Four parts, each on its own simulated studies (``calibration.bayes.simulate``: two arms,
three regions with traffic 0.5/0.3/0.2, 6000 responses per arm, incumbent pass rates drawn
in 0.80–0.92 per region, a binary judge with the same sensitivity/specificity on both arms):

``efficiency`` (judge se 0.90 / sp 0.85) and ``weak`` (se 0.70 / sp 0.65)
    Human labels needed for a 95% interval of half-width ≤ 0.03 on Δ (true Δ drawn in
    ±0.04), by three methods on the same study:

    * **active**: the app's loop (:func:`calibration.replay.run_loop`: 100 uniform labels,
      then ``choose_cell`` with 15% exploration on the reweighted draws of the real
      Fitter, refitting on a schedule that shrinks as the interval nears the target, and
      early when the reweighted draws collapse); the model's 95% credible interval, read
      at each fit; the label count of the first fit that meets the target;
    * **human-only**: uniform random labels, traffic-weighted Wald interval on the
      labelled pass rates (``ppi_mean_ci`` with ``lam=0``), checked every 10 labels;
    * **PPI++**: the same uniform labels, ``ppi_mean_ci`` (power-tuned λ, ``alpha=0.05``),
      the judge output as prediction, every response as the unlabelled set.

    Coverage: whether the interval at the stopping point covers the true Δ.

``verdict`` (se 0.90 / sp 0.85, margin 0.02, confidence 0.95)
    True Δ = +0.02 (go is right) or −0.06 (no-go is right), alternating. Labels until the
    first settled verdict (refit every 50), active vs uniform labelling with the same model;
    median labels, and how often the first settled verdict is wrong.

``boundary``
    True Δ = −0.02 = −margin exactly; active labelling until settled or 1500 labels. A
    go there is a wrong verdict (non-inferiority claimed at the margin); the rate is
    reported with its Wilson interval.

Run ``python bench/label_efficiency.py`` (``--quick`` for a small smoke run). Each part
stops adding studies when its time allowance runs out, and the JSON records exactly how
many studies each part ran.
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

from calibration.bayes.fit import Fitter  # noqa: E402
from calibration.bayes.simulate import simulate_study  # noqa: E402
from calibration.replay import (  # noqa: E402
    BatchRecord,
    Population,
    human_only_delta,
    ppi_delta,
    run_loop,
)

TARGET_HALF_WIDTH = 0.03
MARGIN = 0.02
WEIGHTS = np.array([0.5, 0.3, 0.2])
N_PER_ARM = 6000
MAX_LABELS = 6000
#: Refit early when the reweighted draws collapse (the app's "refit needed"). Off by default
#: here to bound compute: fits only on the schedule, reweighting in between. Selection then
#: works from fewer effective draws late in a batch, which can only make active *less*
#: efficient; the intervals (read at fits) are unaffected.
REFIT_ON_COLLAPSE = False


def make_population(
    seed: int, *, se: float, sp: float, delta: float | None
) -> tuple[Population, float]:
    rng = np.random.default_rng(10_000 + seed)
    inc = rng.uniform(0.80, 0.92, size=3)
    d = rng.uniform(-0.04, 0.04) if delta is None else delta
    cand = inc + d + rng.normal(0, 0.01, size=3)
    cand += d - (cand - inc) @ WEIGHTS  # exact traffic-weighted Δ = d
    theta = np.clip(np.stack([inc, cand]), 0.01, 0.99)
    study = simulate_study(
        theta=theta,
        weights=WEIGHTS,
        sensitivity=se,
        specificity=sp,
        n_per_arm=N_PER_ARM,
        seed=seed,
    )
    return Population.from_simulated(study, margin=MARGIN), float(study.true_delta()[1])


def half_width(row: dict[str, float]) -> float:
    return (row["upper"] - row["lower"]) / 2.0


def uniform_methods(pop: Population, truth: float, seed: int) -> dict[str, Any]:
    """Labels needed by human-only and PPI++ under uniform labelling (same label order)."""
    order = np.random.default_rng(20_000 + seed).permutation(pop.size)
    out: dict[str, Any] = {}
    for name, fn in (("human_only", human_only_delta), ("ppi", ppi_delta)):
        n_hit, row_hit = None, None
        # Coarse then fine: the half-width shrinks like 1/sqrt(n).
        n = 50
        while n <= MAX_LABELS:
            row = fn(pop, 1, 0, order[:n], np.full(n, 1.0 / pop.size))
            if row is not None and half_width(row) <= TARGET_HALF_WIDTH:
                break
            n += 100
        lo = max(n - 100, 40)
        for m in range(lo, min(n, MAX_LABELS) + 1, 10):
            row = fn(pop, 1, 0, order[:m], np.full(m, 1.0 / pop.size))
            if row is not None and half_width(row) <= TARGET_HALF_WIDTH:
                n_hit, row_hit = m, row
                break
        out[name] = {
            "labels": n_hit,
            "covers": None
            if row_hit is None
            else bool(row_hit["lower"] <= truth <= row_hit["upper"]),
        }
    return out


def active_labels_to_width(
    pop: Population, truth: float, seed: int, fitter: Fitter, draws: int
) -> dict[str, Any]:
    def next_fit(n: int, rec: BatchRecord | None) -> int:
        if rec is None:
            return 100
        hw = half_width(rec.deltas[0])
        want = n * (hw / TARGET_HALF_WIDTH) ** 2
        step = int(np.clip(0.8 * (want - n), 20, 250))
        return n + step

    def stop(rec: BatchRecord) -> bool:
        return half_width(rec.deltas[0]) <= TARGET_HALF_WIDTH

    t0 = time.perf_counter()
    res = run_loop(
        pop,
        policy="active",
        budget=MAX_LABELS,
        batch=100,
        seed=seed,
        fitter=fitter,
        draws=draws,
        tune=draws,
        chains=2,
        stop_when_settled=False,
        refit_on_collapse=REFIT_ON_COLLAPSE,
        with_ppi=False,
        next_fit=next_fit,
        stop=stop,
    )
    last = res.batches[-1]
    row = last.deltas[0]
    hit = half_width(row) <= TARGET_HALF_WIDTH
    return {
        "labels": last.labels if hit else None,
        "covers": bool(row["lower"] <= truth <= row["upper"]),
        "fits": len(res.batches),
        "explore_share": res.policies.count("explore") / max(res.labels, 1),
        "fit_ok": bool(row["fit_ok"]),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def labels_to_verdict(
    pop: Population,
    truth: float,
    seed: int,
    fitter: Fitter,
    draws: int,
    policy: str,
    budget: int,
    batch: int,
) -> dict[str, Any]:
    res = run_loop(
        pop,
        policy=policy,
        budget=budget,
        batch=batch,
        seed=seed,
        fitter=fitter,
        draws=draws,
        tune=draws,
        chains=2,
        stop_when_settled=True,
        refit_on_collapse=REFIT_ON_COLLAPSE,
        with_ppi=False,
    )
    row = res.batches[-1].deltas[0]
    verdict = row["verdict"]
    # At the margin itself (up to float noise) neither verdict is right: see the boundary part.
    at_margin = abs(truth + MARGIN) < 1e-9
    right = None if at_margin else ("go" if truth > -MARGIN else "no-go")
    return {
        "labels": res.batches[-1].labels,
        "verdict": verdict,
        "wrong": verdict != "undecided" and right is not None and verdict != right,
        "go": verdict == "go",
        "settled": verdict != "undecided",
    }


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def summarise_widths(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def labels(method: str) -> np.ndarray:
        return np.array(
            [r[method]["labels"] for r in rows if r[method]["labels"] is not None], float
        )

    out: dict[str, Any] = {"studies": len(rows)}
    for method in ("active", "human_only", "ppi"):
        lab = labels(method)
        cov = [r[method]["covers"] for r in rows if r[method]["covers"] is not None]
        out[method] = {
            "reached_target": int(lab.size),
            "mean_labels": round(float(lab.mean()), 1) if lab.size else None,
            "median_labels": float(np.median(lab)) if lab.size else None,
            "coverage": round(float(np.mean(cov)), 4) if cov else None,
            "coverage_wilson95": wilson(int(np.sum(cov)), len(cov)),
        }
    both = [
        r for r in rows if all(r[m]["labels"] is not None for m in ("active", "human_only", "ppi"))
    ]
    if both:
        a = np.array([r["active"]["labels"] for r in both], float)
        h = np.array([r["human_only"]["labels"] for r in both], float)
        p = np.array([r["ppi"]["labels"] for r in both], float)
        out["ratio_active_to_human_only"] = round(float(a.sum() / h.sum()), 4)
        out["ratio_active_to_ppi"] = round(float(a.sum() / p.sum()), 4)
        out["ratio_ppi_to_human_only"] = round(float(p.sum() / h.sum()), 4)
        out["median_per_study_ratio_active_to_human_only"] = round(float(np.median(a / h)), 4)
        out["median_per_study_ratio_active_to_ppi"] = round(float(np.median(a / p)), 4)
        out["studies_compared"] = len(both)
    return out


def summarise_verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"studies": len(rows)}
    for policy in ("active", "uniform"):
        settled = [r[policy] for r in rows if r[policy]["settled"]]
        lab = np.array([s["labels"] for s in settled if not s["wrong"]], float)
        summary[policy] = {
            "settled": len(settled),
            "median_labels_to_correct_verdict": float(np.median(lab)) if lab.size else None,
            "wrong_verdicts": int(sum(s["wrong"] for s in settled)),
        }
    return summary


def summarise_boundary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    go = sum(r["active"]["go"] for r in rows)
    nogo = sum(r["active"]["verdict"] == "no-go" for r in rows)
    return {
        "studies": n,
        "go_rate": round(go / n, 4),
        "go_rate_wilson95": wilson(go, n),
        "no_go_rate": round(nogo / n, 4),
        "undecided_at_budget": n - go - nogo,
    }


SUMMARIES = {
    "efficiency": summarise_widths,
    "weak": summarise_widths,
    "verdict": summarise_verdicts,
    "boundary": summarise_boundary,
}


def merge(paths: list[str], out: Path) -> None:
    """Pool the studies of several runs (distinct seeds) into one results file."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    merged: dict[str, Any] = {
        "settings": docs[0]["settings"],
        "merged_from": [
            {"file": p, "command": d.get("command"), "elapsed_seconds": d.get("elapsed_seconds")}
            for p, d in zip(paths, docs, strict=True)
        ],
    }
    for part, fn in SUMMARIES.items():
        runs = [d[part] for d in docs if part in d]
        if not runs:
            continue
        rows = [row for r in runs for row in r["per_study"]]
        if part == "boundary":
            # Early runs judged "wrong" against a float-noisy truth; at the margin the
            # error that matters is a go (the summary counts go and no-go separately).
            for row in rows:
                row["active"]["wrong"] = row["active"]["go"]
        seeds = [row["seed"] for row in rows]
        if len(set(seeds)) != len(seeds):
            raise SystemExit(f"{part}: the runs share seeds; use --seed-offset")
        merged[part] = {
            **{k: v for k, v in runs[0].items() if k not in ("summary", "per_study")},
            "studies_wanted": sum(r["studies_wanted"] for r in runs),
            "summary": fn(rows),
            "per_study": rows,
        }
    out.write_text(json.dumps(merged, indent=1))
    print(
        json.dumps(
            {k: v["summary"] for k, v in merged.items() if isinstance(v, dict) and "summary" in v},
            indent=1,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=200, help="efficiency part")
    parser.add_argument("--weak-studies", type=int, default=200)
    parser.add_argument("--verdict-studies", type=int, default=100)
    parser.add_argument("--boundary-studies", type=int, default=100)
    parser.add_argument(
        "--minutes",
        type=float,
        nargs=4,
        default=[28, 8, 10, 10],
        help="time allowance of each part (efficiency weak verdict boundary)",
    )
    parser.add_argument("--draws", type=int, default=400, help="draws (and tune) per chain")
    parser.add_argument("--parts", default="efficiency,weak,verdict,boundary")
    parser.add_argument("--quick", action="store_true", help="3 studies per part")
    parser.add_argument("--seed-offset", type=int, default=0, help="added to every study seed")
    parser.add_argument("--merge", nargs="+", help="pool these results files into --out and exit")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "label_efficiency.json")
    )
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, Path(args.out))
        return
    if args.quick:
        args.studies = args.weak_studies = args.verdict_studies = args.boundary_studies = 3
    parts = args.parts.split(",")
    fitter = Fitter(cores=1)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "settings": {
            "target_half_width": TARGET_HALF_WIDTH,
            "margin": MARGIN,
            "confidence": 0.95,
            "exploration_share": 0.15,
            "regions_traffic": WEIGHTS.tolist(),
            "responses_per_arm": N_PER_ARM,
            "draws_per_chain": args.draws,
            "tune_per_chain": args.draws,
            "chains": 2,
            "fitter_cores": 1,
            "refit_on_collapse": REFIT_ON_COLLAPSE,
            "quick": args.quick,
            "time_allowance_minutes": dict(
                zip(["efficiency", "weak", "verdict", "boundary"], args.minutes, strict=True)
            ),
        },
        "command": " ".join(sys.argv),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(results, indent=1))

    allowance = dict(zip(["efficiency", "weak", "verdict", "boundary"], args.minutes, strict=True))
    for part, (se, sp) in (("efficiency", (0.90, 0.85)), ("weak", (0.70, 0.65))):
        if part not in parts:
            continue
        n_wanted = args.studies if part == "efficiency" else args.weak_studies
        rows: list[dict[str, Any]] = []
        t_part = time.perf_counter()
        for i in range(n_wanted):
            if time.perf_counter() - t_part > 60 * allowance[part]:
                break
            seed = args.seed_offset + i + (0 if part == "efficiency" else 100_000)
            pop, truth = make_population(seed, se=se, sp=sp, delta=None)
            row = {"seed": seed, "true_delta": truth}
            row.update(uniform_methods(pop, truth, seed))
            row["active"] = active_labels_to_width(pop, truth, seed, fitter, args.draws)
            rows.append(row)
            print(part, i, row, flush=True)
            results[part] = {
                "judge": {"sensitivity": se, "specificity": sp},
                "studies_wanted": n_wanted,
                "summary": summarise_widths(rows),
                "per_study": rows,
            }
            save()

    if "verdict" in parts:
        rows = []
        t_part = time.perf_counter()
        for i in range(args.verdict_studies):
            if time.perf_counter() - t_part > 60 * allowance["verdict"]:
                break
            seed = args.seed_offset + 200_000 + i
            delta = 0.02 if i % 2 == 0 else -0.06
            pop, truth = make_population(seed, se=0.90, sp=0.85, delta=delta)
            row = {"seed": seed, "true_delta": truth}
            for policy in ("active", "uniform"):
                row[policy] = labels_to_verdict(
                    pop, truth, seed, fitter, args.draws, policy, 2000, 50
                )
            rows.append(row)
            print("verdict", i, row, flush=True)
            results["verdict"] = {
                "judge": {"sensitivity": 0.9, "specificity": 0.85},
                "budget": 2000,
                "refit_every": 50,
                "studies_wanted": args.verdict_studies,
                "summary": summarise_verdicts(rows),
                "per_study": rows,
            }
            save()

    if "boundary" in parts:
        rows = []
        t_part = time.perf_counter()
        for i in range(args.boundary_studies):
            if time.perf_counter() - t_part > 60 * allowance["boundary"]:
                break
            seed = args.seed_offset + 300_000 + i
            pop, truth = make_population(seed, se=0.90, sp=0.85, delta=-MARGIN)
            row = {"seed": seed, "true_delta": truth}
            row["active"] = labels_to_verdict(
                pop, truth, seed, fitter, args.draws, "active", 1500, 100
            )
            rows.append(row)
            print("boundary", i, row, flush=True)
            results["boundary"] = {
                "judge": {"sensitivity": 0.9, "specificity": 0.85},
                "budget": 1500,
                "refit_every": 100,
                "studies_wanted": args.boundary_studies,
                "summary": summarise_boundary(rows),
                "per_study": rows,
            }
            save()
    save()
    print(
        json.dumps(
            {
                k: v.get("summary")
                for k, v in results.items()
                if isinstance(v, dict) and "summary" in v
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
