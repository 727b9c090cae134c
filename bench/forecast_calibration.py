r"""Is the dashboard's forecast calibrated? Pool the looks ``bench/adversarial.py`` recorded.

``python bench/adversarial.py --forecast PATH`` calls the dashboard's own forecast
(:func:`calibration.dashboards.honest_forecast`) at every look of every simulated study where
the page would show one, and records it beside whether the model's verdict did settle by
the budget (``cases`` in ``PATH``, one per scenario, with every look). This script pools
scenarios into the two cases the issue asks about, a close call (identical judges,
``Δ = −margin``) and a clear one (``Δ = 0`` or ``+margin``), and, with ``--population``, a
population of studies whose Δ is spread (``forecast_spread``), and writes their reliability
tables by decile of the forecast (forecast mean, observed share, looks, trajectories,
Wilson 95%) into the same file under ``pooled``. Target: within 10 points in each decile.

The forecast is a posterior predictive probability: it can come true as often as it says
over a population of studies, not for each fixed truth (the same data arise at a Δ on the
margin, where few settle, and at a clear Δ, where most do). The population's table is the
claim; the fixed cases show how far a single truth strays from it.

Looks of one study are correlated (a study that does not settle contributes several
misses), so the Wilson intervals, computed on looks, are too narrow by an unknown factor;
``trajectories`` says how many studies a decile's looks come from.

Usage::

    python bench/forecast_calibration.py bench/results/forecast_calibration.json \
        --close audit_identical game_past_budget \
        --clear audit_identical_go audit_identical_plus --population forecast_spread
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adversarial import by_truth, close_tables, reliability  # noqa: E402


def pool(doc: dict[str, Any], names: list[str]) -> dict[str, Any]:
    cases = doc["cases"]
    missing = [n for n in names if n not in cases]
    if missing:
        raise SystemExit(f"no such case(s) in the file: {missing}")
    looks = [
        {**x, "study": f"{n}:{x['study']}:{x.get('candidate', '')}"}
        for n in names
        for x in cases[n]["looks_detail"]
    ]
    table = reliability(looks)
    filled = [row for row in table if row["n"]]
    return {
        "scenarios": names,
        "trajectories": sum(cases[n]["trajectories"] for n in names),
        "trajectories_with_a_forecast": len({x["study"] for x in looks}),
        "looks": len(looks),
        "settled_by_the_budget": sum(cases[n]["settled_by_the_budget"] for n in names),
        "deciles_within_10_points": f"{sum(r['within_10_points'] for r in filled)}/{len(filled)}",
        "table": table,
        "table_by_truth": by_truth(looks),
        **close_tables(looks),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--close", nargs="+", required=True)
    parser.add_argument("--clear", nargs="+", required=True)
    parser.add_argument("--population", nargs="+", default=[])
    args = parser.parse_args(argv)
    doc = json.loads(args.path.read_text())
    doc["pooled"] = {"close": pool(doc, args.close), "clear": pool(doc, args.clear)}
    if args.population:
        doc["pooled"]["population"] = pool(doc, args.population)
    doc["pooled_command"] = "python bench/forecast_calibration.py " + " ".join(argv or sys.argv[1:])
    args.path.write_text(json.dumps(doc, indent=1) + "\n")
    for case, res in doc["pooled"].items():
        print(case, res["trajectories"], "trajectories,", res["looks"], "looks")
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
