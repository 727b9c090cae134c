r"""Is the dashboard's forecast calibrated? Pool the looks ``bench/adversarial.py`` recorded.

``python bench/adversarial.py --forecast`` calls the dashboard's own forecast
(:func:`calibration.dashboards.settle_forecast`) at every look of every simulated study where
the page would show one, and records it beside whether the model's verdict did settle by
the budget: one line per study in ``bench/raw/forecast/<scenario>.jsonl`` (git ignores
``bench/raw/``; ``--raw DIR`` for another root), with every look. This script makes each
scenario's case from those lines, and pools scenarios into the two cases the issue asks
about, a close call (identical judges, ``Δ = −margin``) and a clear one (``Δ = 0`` or
``+margin``), and, with ``--population``, a population of studies whose Δ is spread
(``forecast_spread``): reliability tables by decile of the forecast (forecast mean, observed
share, looks, trajectories, Wilson 95%), within bands of the truth, and for the close calls'
looks (:func:`adversarial.reliability`, :func:`adversarial.by_truth`,
:func:`adversarial.close_tables`). Target: within 10 points in each decile.

The forecast is a posterior predictive probability: it can come true as often as it says
over a population of studies, not for each fixed truth (the same data arise at a Δ on the
margin, where few settle, and at a clear Δ, where most do). The population's table is the
claim; the fixed cases show how far a single truth strays from it.

Looks of one study are correlated (a study that does not settle contributes several
misses), so the Wilson intervals, computed on looks, are too narrow by an unknown factor;
``trajectories`` says how many studies a decile's looks come from.

The results (``bench/results/forecast_calibration.json``, through ``bench/results_io.py``)::

    "results": {
     "cases": {"<scenario>": {"what", "budget", "refit_every", "trajectories",
                              "trajectories_with_a_forecast", "looks",
                              "settled_by_the_budget", "table", "table_by_truth",
                              "close_looks", "table_close_predictive",
                              "table_close_at_margin", "seed_sets", "commit",
                              "code_digest"}},   # each scenario pooled, and --cases
     "pooled": {"close": {…}, "clear": {…}, "population": {…}},  # the same tables, pooled
     "target": "…",
     "note": "…"
    }

A run writes the whole plain section: a case for each scenario it pools or names with
``--cases``, and the pools asked for. The per-look detail stays in ``bench/raw/forecast/``.

Usage::

    python bench/adversarial.py --scenarios audit_identical game_past_budget \
        game_lower_budget audit_identical_go audit_identical_plus forecast_spread \
        --studies 60 --draws 400 --tune 400 --forecast
    python bench/forecast_calibration.py \
        --close audit_identical game_past_budget game_lower_budget \
        --clear audit_identical_go audit_identical_plus --population forecast_spread \
        --cases game_divert
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adversarial import (  # noqa: E402
    RAW,
    SCENARIOS,
    by_truth,
    close_tables,
    one_or_list,
    raw_path,
    read_raw,
    reliability,
)
from results_io import header, path_of, write_results  # noqa: E402

TARGET = "forecast and observed share within 10 points in each decile"
NOTE = (
    "Every look is in bench/raw/forecast/<scenario>.jsonl. Looks of one study are "
    "correlated: the Wilson intervals are too narrow by an unknown factor."
)


def looks_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every look of a scenario's raw lines, ``study`` its seed (as the tables count them)."""
    return [{**look, "study": line["seed"]} for line in lines for look in line["looks"]]


def case(name: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's tables from its raw lines."""
    sc = SCENARIOS[name]
    looks = looks_of(lines)
    return {
        "what": sc.what,
        "budget": sc.budget,
        "refit_every": sc.batch,
        "trajectories": sum(len(line["candidates"]) for line in lines),
        "trajectories_with_a_forecast": len({(x["study"], x["candidate"]) for x in looks}),
        "looks": len(looks),
        "settled_by_the_budget": sum(line["settled_by_the_budget"] for line in lines),
        "table": reliability(looks),
        "table_by_truth": by_truth(looks),
        **close_tables(looks),
        "seed_sets": list(dict.fromkeys(line["seed_set"] for line in lines)),
        "commit": one_or_list([line["commit"] for line in lines]),
        "code_digest": one_or_list([line["code_digest"] for line in lines]),
    }


def pool(raw: dict[str, list[dict[str, Any]]], names: list[str]) -> dict[str, Any]:
    """The tables over the looks of several scenarios (a study: scenario, seed, candidate)."""
    missing = [n for n in names if not raw.get(n)]
    if missing:
        raise SystemExit(
            f"no raw forecast looks for {missing}: run python bench/adversarial.py "
            f"--scenarios {' '.join(missing)} --forecast (with the seed sets and settings "
            "of the adversarial results)"
        )
    looks = [
        {**x, "study": f"{n}:{x['study']}:{x.get('candidate', '')}"}
        for n in names
        for x in looks_of(raw[n])
    ]
    studies = [line for n in names for line in raw[n]]
    table = reliability(looks)
    filled = [row for row in table if row["n"]]
    return {
        "scenarios": names,
        "trajectories": sum(len(line["candidates"]) for line in studies),
        "trajectories_with_a_forecast": len({x["study"] for x in looks}),
        "looks": len(looks),
        "settled_by_the_budget": sum(
            line["settled_by_the_budget"] for n in names for line in raw[n]
        ),
        "deciles_within_10_points": f"{sum(r['within_10_points'] for r in filled)}/{len(filled)}",
        "table": table,
        "table_by_truth": by_truth(looks),
        **close_tables(looks),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--close", nargs="+", required=True)
    parser.add_argument("--clear", nargs="+", required=True)
    parser.add_argument("--population", nargs="+", default=[])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=[],
        help="more scenarios to tabulate on their own (the pooled ones always are)",
    )
    parser.add_argument(
        "--raw",
        type=Path,
        default=RAW,
        help="root of the raw lines, <raw>/forecast/ (default bench/raw)",
    )
    parser.add_argument("--out", type=Path, default=path_of("forecast_calibration"))
    args = parser.parse_args(argv)
    head = header("forecast_calibration", argv=argv)
    names = list(dict.fromkeys([*args.close, *args.clear, *args.population, *args.cases]))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}")
    raw = {n: read_raw(raw_path(args.raw, "forecast", n)) for n in names}
    pool(raw, names)  # stops, saying how to make them, if a scenario has no looks
    pooled = {"close": pool(raw, args.close), "clear": pool(raw, args.clear)}
    if args.population:
        pooled["population"] = pool(raw, args.population)
    results = {
        "cases": {n: case(n, raw[n]) for n in names},
        "pooled": pooled,
        "target": TARGET,
        "note": NOTE,
    }
    write_results(head, results, path=args.out)
    for name, res in pooled.items():
        print(name, res["trajectories"], "trajectories,", res["looks"], "looks")
        for row in res["table"]:
            if row["n"]:
                print(
                    f"  {row['decile'][0]:.1f}-{row['decile'][1]:.1f}: forecast "
                    f"{row['forecast_mean']:.3f} observed {row['observed']:.3f} "
                    f"n={row['n']} ({row['trajectories']} studies) {row['observed_wilson']}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
