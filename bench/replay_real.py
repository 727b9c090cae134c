r"""Replay on real human-vs-judge tables: many distinct (pair, dimension) comparisons.

Tables and judges: HANNA (judge ``chatgpt_p1``, pass = mean human rating ≥ 3, its 6
dimensions) and SummEval (judge ``rouge1_maxref``, pass ≥ 4, its 4 dimensions); judge scores
cut at their median over the two replayed systems (2 quantile bins), as in
``manage.py replay``.

Which comparisons (fixed by a rule, written into the results' settings)
------------------------------------------------------------------------
For each table the systems are ranked by their mean human pass rate over the table's
dimensions (all labels, ascending; HANNA's human-written ``Human`` stories are left out:
they are a reference, not a model, and beat every model by 40–60 points). The incumbent is
the median system, rank ``(n − 1) // 2`` (0-based); the candidates are the systems at rank
offsets ``OFFSETS`` from it, so that the set holds near ties (±1) and clear gaps (±3, +5) on
both sides. Each (incumbent, candidate) pair is one population with a single candidate
(``population_from_table(candidates=[cand])``) holding all the table's dimensions; one run of
the loop answers every dimension at once (a grade answers every dimension), so the
comparisons of one pair and seed share their labels. With the default offsets:

* HANNA, incumbent TD-VAE: Fusion, CTRL, BertGeneration, RoBERTa, GPT-2 (5 pairs × 6
  dimensions = 30 comparisons);
* SummEval, incumbent M1: M8, M15, M2, M12, M17 (5 pairs × 4 dimensions = 20).

What each run does and which methods are compared
-------------------------------------------------
For each pair and seed, :func:`calibration.bayes.replay.run_loop` hides the human labels and spends
the same budget twice, with the app's active rule and with uniform labelling (refit every
``--batch``; it does not stop when verdicts settle, so both use the whole budget). Each
method's Δ estimate and 95% interval (candidate pass rate − incumbent pass rate) is
compared with the Δ that all human labels of the pair give
(:func:`calibration.bayes.replay.all_labels_delta`):

* ``active``: the model's credible interval after the active labels;
* ``uniform``: the model's credible interval after the uniform labels;
* ``ppi_uniform``: PPI++ (:func:`calibration.bayes.replay.ppi_delta`: ``ppi_py.ppi_mean_ci`` per
  arm, power-tuned λ, raw judge score, arms combined as independent) on the uniform labels,
  with equal selection probabilities (a uniform sample without replacement);
* ``human_uniform``: the Wald interval on the uniform labels alone
  (:func:`calibration.bayes.replay.human_only_delta`, λ = 0);
* ``cje_uniform``: CJE (``cje-eval``, "causal judge evaluation"), its array API
  ``cje.calibrated_mean_ci`` per arm: the judge score of every response of the arm, the
  arm's uniform human labels (NaN elsewhere), defaults otherwise (cross-fitted judge→label
  calibrator, monotone/isotonic or two-stage by CJE's own ``auto`` choice, 5 folds;
  ``inference="cluster_robust"``: CRV1 SE of the augmented (residual-corrected) calibrated
  mean, each response its own cluster, plus the oracle-jackknife calibration variance). The
  two arms are independent samples: ``Δ̂ = μ̂_c − μ̂_inc``, ``se = √(se_c² + se_inc²)``,
  interval ``Δ̂ ± t·se`` with ``t`` the 97.5% Student quantile at the Welch–Satterthwaite
  combination of the two arms' degrees of freedom as CJE reports them (CJE's own per-arm
  intervals are t-based). ``cje_uniform_z`` (a diagnostic) is the same with ``t = 1.96``.
  CJE's array API assumes the labelled rows are an equal-probability sample of the arm,
  which the uniform labels are and the active ones are not, so CJE is run on the uniform
  labels only. When every uniform label of both arms is the same (e.g. all pass), CJE
  returns ``se = 0`` and a zero-width interval with a warning that it is provisional; the
  bench records ``cje_uniform`` as unavailable there (``None``, counted under
  ``unavailable``, the arms' output kept in ``cje_detail``), whereas PPI++ and the Wald
  interval, given the same labels, return their zero-width interval and it is scored (a miss
  unless the all-labels Δ is exactly that value).

Diagnostic only, not a cross-check: ``ppi_ipw_active``, PPI++ on the *active* labels,
inverse-probability weighted by the logged pick probabilities; its variance ignores that the
picks are adaptive and without replacement (``calibration/bayes/replay.py``), so its coverage says
nothing about the model's.

Reported per table and method, and per comparison: coverage of the all-labels Δ
(count/total and the Wilson 95% interval of that proportion; the Wilson interval treats the
runs as independent, which they are not quite: the dimensions of one pair and seed share
their labels, and the seeds of one comparison share its population), mean interval width,
mean absolute error of the point estimate.

The loop is ordered seed-major (every comparison's seed 0, then every comparison's seed 1,
…) and the results file is rewritten after every (pair, seed), so an interrupted run leaves
balanced partial results (``complete: false``).

Every run (one comparison and seed: each method's interval, the labels, CJE's detail) is one
line of ``bench/raw/replay_real.jsonl`` (``replay_real_<variant>.jsonl`` for a variant;
``--raw FILE`` for another; git does not keep ``bench/raw/``), rewritten with the results
file; the results (``bench/results/replay_real.json``) keep the summaries, and ``raw``
names the lines' file, their number and the command that wrote them.

    python bench/replay_real.py [DATA_DIR] [--seeds 2] [--budget 80] [--batch 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_common import ROOT, machine_info  # noqa: E402
from results_io import (  # noqa: E402
    RAW,
    add_variant_argument,
    header,
    raw_record,
    shown,
    write_lines,
    write_results,
)

from calibration.bayes.fit import Fitter  # noqa: E402
from calibration.bayes.posterior import MODEL_VERSION  # noqa: E402
from calibration.bayes.replay import (  # noqa: E402
    Population,
    all_labels_delta,
    human_only_delta,
    load_table,
    population_from_table,
    ppi_delta,
    run_loop,
)

Z95 = 1.959963984540054

#: Rank offsets of the candidates from the median system (see the module docstring).
OFFSETS = (-3, -1, 1, 3, 5)

CONFIGS = [
    {
        "table": "hanna.csv.gz",
        "judge": "chatgpt_p1",
        "pass_threshold": 3,
        "exclude_systems": ["Human"],
    },
    {
        "table": "summeval.csv.gz",
        "judge": "rouge1_maxref",
        "pass_threshold": 4,
        "exclude_systems": [],
    },
]

METHODS = ("active", "uniform", "ppi_uniform", "human_uniform", "cje_uniform")
DIAGNOSTICS = ("cje_uniform_z", "ppi_ipw_active")


# ---------------------------------------------------------------------------------------
# Which comparisons


def choose_pairs(table: Any, cfg: dict[str, Any], offsets: tuple[int, ...]) -> dict[str, Any]:
    """The incumbent (median system by mean human pass rate) and the candidates at
    ``offsets`` ranks from it, with the ranking they come from."""
    df = table[(table["judge"] == cfg["judge"]) & ~table["system"].isin(cfg["exclude_systems"])]
    df = df.assign(passed=(df["human_label"] >= cfg["pass_threshold"]).astype(float))
    rate = df.groupby(["system", "dimension"])["passed"].mean().unstack().mean(axis=1)
    ranked = sorted(rate.index, key=lambda s: (float(rate[s]), str(s)))
    mid = (len(ranked) - 1) // 2
    candidates = [ranked[mid + o] for o in offsets if 0 <= mid + o < len(ranked)]
    return {
        "incumbent": ranked[mid],
        "candidates": candidates,
        "dimensions": sorted(df["dimension"].unique()),
        "ranking": [[s, round(float(rate[s]), 4)] for s in ranked],
        "excluded_systems": list(cfg["exclude_systems"]),
    }


# ---------------------------------------------------------------------------------------
# CJE


def _cje_arm(
    pop: Population, a: int, d: int, labelled: np.ndarray, seed: int
) -> dict[str, Any] | None:
    """CJE's calibrated mean of arm ``a`` on dimension ``d`` from the labels ``labelled``."""
    from cje import calibrated_mean_ci

    pool = np.flatnonzero((pop.arm == a) & ~np.isnan(pop.score[:, d]))
    y = np.full(pool.size, np.nan)
    is_lab = np.isin(pool, labelled) & (pop.truth[pool, d] >= 0)
    y[is_lab] = pop.truth[pool[is_lab], d].astype(np.float64)
    if is_lab.sum() < 4:
        return None
    messages: list[str] = []
    handler = _ListHandler(messages)
    cje_logger = logging.getLogger("cje")
    cje_logger.addHandler(handler)
    cje_logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = calibrated_mean_ci(pop.score[pool, d], y, seed=seed)
    finally:
        cje_logger.removeHandler(handler)
    messages += [str(w.message) for w in caught]
    cr = res.diagnostics.get("cluster_robust", {})
    cal = res.diagnostics.get("calibration", {})
    return {
        "estimate": float(res.estimate),
        "se": float(res.se),
        "df": float(cr.get("df", float("nan"))),
        "ci": [float(res.ci[0]), float(res.ci[1])],
        "n_labels": int(is_lab.sum()),
        "method": res.method,
        "calibration_mode": cal.get("selected_mode"),
        "labels_constant": bool(np.ptp(y[is_lab]) == 0),
        # CJE's own warnings (first 60 characters each, deduplicated).
        "warnings": sorted({m[:60] for m in messages}),
    }


class _TimedFitter:
    """The real :class:`Fitter`, adding up its compile and sampling seconds."""

    def __init__(self, fitter: Fitter) -> None:
        self.fitter = fitter
        self.compile_seconds = 0.0
        self.fit_seconds = 0.0
        self.fits = 0

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = self.fitter.fit(*args, **kwargs)
        self.fit_seconds += time.perf_counter() - t0
        self.compile_seconds += float(self.fitter.last_timings.get("compile_seconds", 0.0))
        self.fits += 1
        return out


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def cje_delta(
    pop: Population, c: int, d: int, labelled: list[int], seed: int
) -> tuple[dict[str, float] | None, dict[str, float] | None, dict[str, Any]]:
    """(Welch-t interval, z interval, per-arm details) of CJE's Δ for candidate ``c``."""
    lab = np.asarray(labelled, dtype=np.int64)
    inc = _cje_arm(pop, 0, d, lab, seed)
    cand = _cje_arm(pop, c, d, lab, seed)
    detail = {"incumbent": inc, "candidate": cand}
    if inc is None or cand is None:
        detail["unavailable"] = "fewer than 4 labels in an arm"
        return None, None, detail
    se = math.hypot(cand["se"], inc["se"])
    if not math.isfinite(se) or se <= 0:
        detail["unavailable"] = f"combined se {se!r}"
        return None, None, detail
    est = cand["estimate"] - inc["estimate"]
    from scipy import stats

    num = se**4
    den = sum(arm["se"] ** 4 / arm["df"] for arm in (inc, cand) if arm["se"] > 0 and arm["df"] > 0)
    df = num / den if den > 0 else float("inf")
    t = float(stats.t.ppf(0.975, df)) if math.isfinite(df) else Z95
    detail["welch_df"] = round(df, 2)
    detail["t"] = round(t, 4)
    return (
        {"mean": est, "lower": est - t * se, "upper": est + t * se},
        {"mean": est, "lower": est - Z95 * se, "upper": est + Z95 * se},
        detail,
    )


# ---------------------------------------------------------------------------------------
# Summaries


def wilson(k: int, n: int, z: float = Z95) -> list[float] | None:
    if n == 0:
        return None
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [round(centre - half, 4), round(centre + half, 4)]


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


def _stats(rows: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
    vals = [r["methods"].get(method) for r in rows]
    missing = sum(v is None for v in vals)
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    k = sum(v["covers"] for v in vals)
    out = {
        "covered": k,
        "total": len(vals),
        "coverage": round(k / len(vals), 4),
        "coverage_wilson95": wilson(k, len(vals)),
        "mean_width": round(float(np.mean([v["width"] for v in vals])), 4),
        "mean_abs_error": round(float(np.mean([v["error"] for v in vals])), 4),
    }
    if missing:
        out["unavailable"] = missing
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_table: dict[str, Any] = {}
    tables = sorted({r["table"] for r in runs})
    for table in [*tables, "all"]:
        rows = runs if table == "all" else [r for r in runs if r["table"] == table]
        per: dict[str, Any] = {
            "runs": len(rows),
            "comparisons": len({(r["table"], r["candidate"], r["dimension"]) for r in rows}),
        }
        for m in METHODS:
            per[m] = _stats(rows, m)
        per["diagnostics"] = {m: _stats(rows, m) for m in DIAGNOSTICS}
        by_table[table] = per
    by_comp: list[dict[str, Any]] = []
    keys = sorted(
        {(r["table"], r["incumbent"], r["candidate"], r["dimension"]) for r in runs},
    )
    for key in keys:
        rows = [
            r for r in runs if (r["table"], r["incumbent"], r["candidate"], r["dimension"]) == key
        ]
        entry: dict[str, Any] = {
            "table": key[0],
            "incumbent": key[1],
            "candidate": key[2],
            "dimension": key[3],
            "all_labels_delta": rows[0]["all_labels_delta"],
            "seeds": len(rows),
        }
        for m in (*METHODS, *DIAGNOSTICS):
            entry[m] = _stats(rows, m)
        entry["verdicts"] = {
            p: sorted(r["methods"][p]["verdict"] for r in rows) for p in ("active", "uniform")
        }
        by_comp.append(entry)
    return {"by_table": by_table, "by_comparison": by_comp}


# ---------------------------------------------------------------------------------------


def _git_dirty() -> list[str] | None:
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [line[3:] for line in out.splitlines() if line.strip()]


def main() -> None:
    default_dir = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", nargs="?", default=str(default_dir))
    parser.add_argument("--seeds", type=int, default=None, help="default 2 (1 with --quick)")
    parser.add_argument(
        "--tables", nargs="+", default=None, help="only these tables (e.g. summeval.csv.gz)"
    )
    parser.add_argument("--budget", type=int, default=80)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--draws", type=int, default=500, help="draws (and tune) per chain")
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, first candidate of each table"
    )
    parser.add_argument(
        "--deadline",
        default=None,
        help="UTC HH:MM: start a further seed only if the last seed's duration ends before it",
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "replay_real.json")
    )
    parser.add_argument(
        "--raw",
        type=Path,
        default=None,
        help="the runs, one JSON line each (default bench/raw/replay_real.jsonl, or "
        "replay_real_<variant>.jsonl)",
    )
    add_variant_argument(parser)
    args = parser.parse_args()
    if args.raw is None:
        args.raw = RAW / ("replay_real" + (f"_{args.variant}" if args.variant else "") + ".jsonl")
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 2)
    fitter = _TimedFitter(Fitter(cores=1))
    started = time.perf_counter()

    plans = []
    for cfg in CONFIGS:
        if args.tables and cfg["table"] not in args.tables:
            continue
        table = load_table(Path(args.data_dir) / cfg["table"])
        choice = choose_pairs(table, cfg, OFFSETS)
        cands = choice["candidates"][:1] if args.quick else choice["candidates"]
        pops = {}
        for cand in cands:
            pop = population_from_table(
                table,
                incumbent=choice["incumbent"],
                candidates=[cand],
                judge=cfg["judge"],
                pass_threshold=cfg["pass_threshold"],
                dimensions=choice["dimensions"],
            )
            pops[cand] = (pop, all_labels_delta(pop)[0])
        plans.append((cfg, choice, pops))

    comparisons = [
        {
            "table": cfg["table"],
            "incumbent": choice["incumbent"],
            "candidate": cand,
            "dimension": dim,
            "responses": pop.size,
            "all_labels_delta": round(float(truth[d]), 4),
        }
        for cfg, choice, pops in plans
        for cand, (pop, truth) in pops.items()
        for d, dim in enumerate(pop.dimensions)
    ]
    head = header("replay_real")
    results: dict[str, Any] = {
        "git_dirty_files": _git_dirty(),
        "model_version": MODEL_VERSION,
        "machine": machine_info(),
        "settings": {
            "budget": args.budget,
            "batch": args.batch,
            "seeds": seeds,
            "draws_per_chain": args.draws,
            "tune_per_chain": args.draws,
            "chains": 2,
            "margin": 0.02,
            "confidence": 0.95,
            "exploration_share": 0.15,
            "judge_bins": 2,
            "stop_when_settled": False,
            "deadline_utc": args.deadline,
            "rank_offsets": list(OFFSETS),
            "tables": [
                {
                    "table": cfg["table"],
                    "judge": cfg["judge"],
                    "pass_threshold": cfg["pass_threshold"],
                    **choice,
                    "replayed_candidates": list(pops),
                }
                for cfg, choice, pops in plans
            ],
            "cje": _cje_version(),
            "methods": list(METHODS),
            "diagnostics": list(DIAGNOSTICS),
        },
        "distinct_comparisons": len(comparisons),
        "comparisons": comparisons,
        "complete": False,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    timings: list[dict[str, Any]] = []
    print(f"{len(comparisons)} distinct comparisons, {seeds} seed(s)", flush=True)

    seed_seconds: list[float] = []
    results["stopped_by_deadline"] = False
    for seed in range(seeds):
        if seed_seconds and args.deadline and not _fits_before(seed_seconds[-1], args.deadline):
            results["stopped_by_deadline"] = True
            print(f"deadline {args.deadline}: not starting seed {seed}", flush=True)
            break
        seed_started = time.perf_counter()
        for cfg, choice, pops in plans:
            inc = choice["incumbent"]
            for cand, (pop, truth) in pops.items():
                t0 = time.perf_counter()
                c0, f0, n0 = fitter.compile_seconds, fitter.fit_seconds, fitter.fits
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
                loop_seconds = time.perf_counter() - t0
                ua = res["uniform"].picks
                # A uniform sample without replacement: every response has the same
                # inclusion probability, so equal weights (the logged 1/N_available of each
                # pick would tilt them slightly for no reason).
                up = [len(ua) / pop.size] * len(ua)
                aa, ap = res["active"].picks, res["active"].probabilities
                for d, dim in enumerate(pop.dimensions):
                    t = float(truth[d])
                    methods: dict[str, Any] = {}
                    for policy in ("active", "uniform"):
                        final = res[policy].batches[-1].deltas[d]
                        methods[policy] = _row(final, t)
                        methods[policy]["verdict"] = final["verdict"]
                        methods[policy]["fit_ok"] = final["fit_ok"]
                    methods["ppi_uniform"] = _row(ppi_delta(pop, 1, d, ua, up), t)
                    methods["human_uniform"] = _row(human_only_delta(pop, 1, d, ua, up), t)
                    cje_t, cje_z, cje_detail = cje_delta(pop, 1, d, ua, seed)
                    methods["cje_uniform"] = _row(cje_t, t)
                    methods["cje_uniform_z"] = _row(cje_z, t)
                    methods["ppi_ipw_active"] = _row(ppi_delta(pop, 1, d, aa, ap), t)
                    lab_u = np.asarray(ua)
                    run = {
                        "table": cfg["table"],
                        "incumbent": inc,
                        "candidate": cand,
                        "dimension": dim,
                        "seed": seed,
                        "responses": pop.size,
                        "all_labels_delta": round(t, 4),
                        "uniform_labels_per_arm": [
                            int((pop.arm[lab_u] == a).sum()) for a in range(2)
                        ],
                        "active_labels_per_arm": [
                            int((pop.arm[np.asarray(aa)] == a).sum()) for a in range(2)
                        ],
                        "methods": methods,
                        "cje_detail": cje_detail,
                    }
                    runs.append(run)
                    print(
                        json.dumps(
                            {k: run[k] for k in ("table", "candidate", "dimension", "seed")}
                            | {"truth": run["all_labels_delta"]}
                            | {
                                m: None if v is None else [v["lower"], v["upper"], v["covers"]]
                                for m, v in methods.items()
                            }
                        ),
                        flush=True,
                    )
                timings.append(
                    {
                        "table": cfg["table"],
                        "candidate": cand,
                        "seed": seed,
                        "seconds": round(time.perf_counter() - t0, 1),
                        "loop_seconds": round(loop_seconds, 1),
                        "fit_seconds": round(fitter.fit_seconds - f0, 1),
                        "compile_seconds": round(fitter.compile_seconds - c0, 1),
                        "fits": fitter.fits - n0,
                    }
                )
                print(f"  pair done in {timings[-1]['seconds']} s", flush=True)
                write_lines(args.raw, runs)
                results["raw"] = raw_record(shown(args.raw), head["command"], lines=len(runs))
                results["timings"] = timings
                results["summary"] = summarise(runs)
                results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
                results["seeds_done"] = len(seed_seconds)
                write_results(head, results, variant=args.variant, path=out)
        seed_seconds.append(time.perf_counter() - seed_started)
        results["seeds_done"] = len(seed_seconds)
        results["seed_seconds"] = [round(x, 1) for x in seed_seconds]
        write_results(head, results, variant=args.variant, path=out)
    results["complete"] = not results["stopped_by_deadline"]
    results["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    write_results(head, results, variant=args.variant, path=out)
    print(json.dumps(results["summary"]["by_table"], indent=1))


def _fits_before(seconds: float, deadline: str) -> bool:
    """Whether ``seconds`` from now is before today's UTC ``HH:MM``."""
    hh, mm = (int(x) for x in deadline.split(":"))
    now = time.gmtime()
    left = (hh * 60 + mm) * 60 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
    return seconds <= left


def _cje_version() -> str | None:
    try:
        from importlib.metadata import version

        return f"cje-eval {version('cje-eval')}"
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    main()
