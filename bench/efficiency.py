"""Label efficiency where the model's assumptions are false: the adversarial studies again.

``bench/adversarial.py`` runs each study through the app's loop (active labels, the curve,
the sequential rule) to its budget and stores, per study, its seed and the model's 95%
interval of ``Δ`` at the budget. This bench regenerates every one of those studies from its
seed (:func:`adversarial.simulate` is deterministic) and spends the same budget on
**uniformly drawn** labels (``--orders`` independent draws per study), which three
estimators that need no model use:

* ``human``: the traffic-weighted Wald interval on the labels alone
  (:func:`calibration.bayes.replay.human_only_delta`, λ = 0);
* ``ppi``: PPI++ (:func:`calibration.bayes.replay.ppi_delta`, ``ppi_py``, power-tuned λ), the judge
  score of every response of the arm as the unlabelled set;
* ``cje``: CJE (``cje-eval``'s ``calibrated_mean_ci`` per arm, as ``bench/replay_real.py``
  calls it; Welch-t interval of the difference).

**Labels for an equally wide interval.** Widths shrink as ``1/√n`` for all four, so a method
of width ``w`` at ``n`` labels needs ``n (w / w')²`` for width ``w'``. The efficiency of the
model against a method is the ratio of labels for equal width at the budget,
``E[w_model²] / E[w_method²]`` over the studies (below 1: the model needs fewer labels), with
a 95% bootstrap interval over studies. It counts only beside coverage, so each method's
coverage of the true ``Δ`` (the study's own pass rates, as in the adversarial bench) is
reported with its Wilson interval; the model's comes from the adversarial run itself.

The first dimension is compared (correctness). No fit runs here: the model's side is the
adversarial bench's raw lines, ``bench/raw/adversarial/<scenario>.jsonl`` (git ignores
``bench/raw/``; ``--raw DIR`` for another root), one per study with its seed and interval.
Without them this stops and says which ``bench/adversarial.py`` commands make them again
(the seed sets are in the summaries of ``bench/results/adversarial.json``). Each scenario
records where its model side came from (``model_side``: seed sets, commits, code digests of
the lines), so keep the two current together.

The results (``bench/results/efficiency.json``, through ``bench/results_io.py``)::

    "results": {
     "scenarios": {"<scenario>": {…per method: width, coverage, labels for equal width…,
                                  "model_side": {…}}},
     "what": "…",
     "model_side": {…},     # the adversarial runs behind scenarios without their own
     "not_measured": {…}    # scenarios left out, and why
    }

A run replaces the scenarios it measures and keeps the others.

    python bench/efficiency.py                      # every scenario with raw lines
    python bench/efficiency.py --scenarios identical weak --orders 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_io  # noqa: E402
from adversarial import RAW, SCENARIOS, provenance, raw_path, read_raw, simulate, wilson  # noqa: E402
from results_io import ROOT  # noqa: E402

from calibration.bayes.replay import all_labels_delta, human_only_delta, ppi_delta  # noqa: E402

METHODS = ("human", "ppi", "cje")


def uniform_intervals(
    name: str, seed: int, budget: int, orders: int
) -> list[dict[str, dict[str, float] | None]]:
    """The three methods' intervals of Δ (first candidate, first dimension) on ``orders``
    uniform label draws of size ``budget`` from the study of ``name`` with ``seed``."""
    from replay_real import cje_delta

    pop = simulate(SCENARIOS[name], seed)
    rng = np.random.default_rng([seed, 7])
    out = []
    for _ in range(orders):
        labelled = rng.choice(pop.size, size=budget, replace=False).tolist()
        prob = [budget / pop.size] * budget
        cje, _, _ = cje_delta(pop, 1, 0, labelled, seed)
        out.append(
            {
                "human": human_only_delta(pop, 1, 0, labelled, prob),
                "ppi": ppi_delta(pop, 1, 0, labelled, prob),
                "cje": cje,
            }
        )
    return out


def _ratio(model_sq: np.ndarray, other_sq: np.ndarray, rng: np.random.Generator) -> dict:
    """``E[w_model²] / E[w_other²]`` with a 95% bootstrap interval over studies."""
    point = float(model_sq.mean() / other_sq.mean())
    n = model_sq.size
    boots = []
    for _ in range(2000):
        i = rng.integers(0, n, n)
        boots.append(model_sq[i].mean() / other_sq[i].mean())
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"ratio": round(point, 3), "ci95": [round(float(lo), 3), round(float(hi), 3)]}


def scenario(name: str, lines: list[dict[str, Any]], orders: int) -> dict[str, Any]:
    """The three methods against the model on the studies of ``lines`` (raw lines of
    ``bench/raw/adversarial/<name>.jsonl``)."""
    sc = SCENARIOS[name]
    first_dim = None
    model_w, covers, truths = [], [], []
    per_method: dict[str, list[float]] = {m: [] for m in METHODS}
    per_cover: dict[str, list[bool]] = {m: [] for m in METHODS}
    unavailable = dict.fromkeys(METHODS, 0)
    t0 = time.process_time()
    for run in lines:
        rows = run["rows"]
        first_dim = first_dim or rows[0]["dimension"]
        row = next(r for r in rows if r["dimension"] == first_dim)
        pop_truth = float(all_labels_delta(simulate(sc, run["seed"]))[0, 0])
        if abs(pop_truth - row["truth"]) > 1e-4:
            raise SystemExit(f"{name} seed {run['seed']}: the regenerated study differs")
        widths = {m: [] for m in METHODS}
        for draw in uniform_intervals(name, run["seed"], sc.budget, orders):
            for m in METHODS:
                est = draw[m]
                if est is None:
                    unavailable[m] += 1
                    continue
                widths[m].append(est["upper"] - est["lower"])
                per_cover[m].append(bool(est["lower"] <= pop_truth <= est["upper"]))
        if any(not widths[m] for m in METHODS):
            continue  # a study only counts when every method gave an interval
        model_w.append(row["upper"] - row["lower"])
        covers.append(bool(row["covers"]))
        truths.append(pop_truth)
        for m in METHODS:
            per_method[m].append(float(np.mean(np.square(widths[m]))))
    model_sq = np.square(np.asarray(model_w))
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {
        "scenario": name,
        "what": sc.what,
        "budget": sc.budget,
        "studies": len(model_w),
        "orders_per_study": orders,
        "model": {
            "mean_width_points": round(100 * float(np.mean(model_w)), 2),
            "coverage": round(float(np.mean(covers)), 4),
            "coverage_wilson": wilson(int(sum(covers)), len(covers)),
        },
        "cpu_seconds": round(time.process_time() - t0, 1),
    }
    for m in METHODS:
        sq = np.asarray(per_method[m])
        k, n = int(sum(per_cover[m])), len(per_cover[m])
        out[m] = {
            "mean_width_points": round(100 * float(np.mean(np.sqrt(sq))), 2),
            "coverage": round(k / n, 4) if n else None,
            "coverage_wilson": wilson(k, n),
            "unavailable": unavailable[m],
            "model_labels_for_equal_width": _ratio(model_sq, sq, rng),
        }
    return out


def regenerate(name: str, summary: dict[str, Any] | None) -> str:
    """The ``bench/adversarial.py`` commands that make a scenario's raw lines again."""
    base = f"python bench/adversarial.py --scenarios {name}"
    if summary and summary.get("by_seed_set"):
        s = summary["settings"]
        return "\n".join(
            f"  {base} --seed {run['seed_set']} --studies {run['studies']} "
            f"--draws {s['draws']} --tune {s['tune']}"
            for run in summary["by_seed_set"]
        )
    if summary:  # a summary from before the raw lines (all ran 2 × 400 draws)
        sets = [int(x) for x in summary.get("seed_sets") or [20261207]]
        studies = summary.get("studies_run") or summary["studies"]
        if len(sets) == 1:
            return f"  {base} --seed {sets[0]} --studies {studies} --draws 400 --tune 400"
        return (
            f"  {base} --seed SEED --studies N --draws 400 --tune 400\n"
            f"  for each of its seed sets {sets} ({studies} studies in all; each set's "
            "--studies is in the command that ran it, results.runs of "
            "bench/results/adversarial.json)"
        )
    return f"  {base} --studies 60 --draws 400 --tune 400"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--raw",
        type=Path,
        default=RAW,
        help="root of the adversarial bench's raw lines, <raw>/adversarial/ (default bench/raw)",
    )
    parser.add_argument(
        "--adversarial",
        type=Path,
        default=results_io.path_of("adversarial"),
        help="the adversarial results, for the seed sets when raw lines are missing",
    )
    parser.add_argument("--scenarios", nargs="*", default=None)
    parser.add_argument("--orders", type=int, default=3)
    parser.add_argument("--out", type=Path, default=results_io.path_of("efficiency"))
    args = parser.parse_args(argv)
    head = results_io.header("efficiency", argv=argv)
    got = results_io.section(args.out)
    names = args.scenarios or [
        n for n in SCENARIOS if raw_path(args.raw, "adversarial", n).exists()
    ]
    adversarial = results_io.section(args.adversarial) if args.adversarial.exists() else None
    summaries = (adversarial or {}).get("results", {}).get("scenarios", {})
    missing = [n for n in names if not read_raw(raw_path(args.raw, "adversarial", n))]
    if not names:  # no raw lines at all: every scenario the adversarial results hold
        missing = list(summaries) or ["identical"]
    if missing:
        raise SystemExit(
            f"{args.raw / 'adversarial'} has no raw lines of the adversarial studies for "
            f"{', '.join(missing)}: this bench regenerates each study from its seed and reads "
            "the model's interval from those lines. bench/adversarial.py makes them (on other "
            "code than the summary's commit and code_digest, with other figures):\n"
            + "\n".join(regenerate(n, summaries.get(n)) for n in missing)
        )
    result: dict[str, Any] = dict(got["results"]) if got else {}
    result["scenarios"] = dict(result.get("scenarios") or {})
    result["what"] = (
        "labels the model needs for an interval as wide as each uniform-label "
        "method's at the same budget (E[w_model²] / E[w_method²]; below 1 the model needs "
        "fewer), beside every method's coverage"
    )
    for name in names:
        lines = read_raw(raw_path(args.raw, "adversarial", name))
        row = scenario(name, lines, args.orders)
        where = provenance(lines)
        raw = raw_path(args.raw, "adversarial", name).resolve()
        row["model_side"] = {
            "raw": str(raw.relative_to(ROOT) if raw.is_relative_to(ROOT) else raw),
            **{k: where[k] for k in ("seed_sets", "by_seed_set", "settings")},
        }
        result["scenarios"][name] = row
        (result.get("not_measured") or {}).pop(name, None)
        print(
            f"{name:16s} model {row['model']['mean_width_points']:6.2f} pts "
            f"cov {row['model']['coverage']:.3f} | "
            + " | ".join(
                f"{m} {row[m]['mean_width_points']:6.2f} cov {row[m]['coverage']:.3f} "
                f"ratio {row[m]['model_labels_for_equal_width']['ratio']:.2f}"
                for m in METHODS
            ),
            flush=True,
        )
        results_io.write_results(head, result, path=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
