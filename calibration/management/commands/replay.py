"""``manage.py replay FILE``: run a study against a table whose human labels are known.

The work is in :mod:`calibration.bayes.replay` (no database); this command parses arguments,
runs the loop and writes the JSON report. The file format is in docs/replay.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


def _traffic(values: list[str] | None) -> dict[str, float] | None:
    if not values:
        return None
    out = {}
    for item in values:
        key, sep, share = item.partition("=")
        if not sep:
            raise CommandError(f"--traffic takes REGION=SHARE, got {item!r}")
        try:
            out[key] = float(share)
        except ValueError as exc:
            raise CommandError(f"--traffic {item!r}: {share!r} is not a number") from exc
    return out


def replay(
    path: str | Path,
    *,
    incumbent: str,
    candidates: list[str],
    judge: str,
    pass_threshold: float,
    dimensions: list[str] | None = None,
    judge_bins: int = 2,
    judge_threshold: float | None = None,
    margin: float = 0.02,
    confidence: float = 0.95,
    traffic: dict[str, float] | None = None,
    policy: str = "active",
    budget: int = 200,
    batch: int = 20,
    seed: int = 0,
    exploration_share: float = 0.15,
    audit_share: float = 0.10,
    draws: int = 500,
    stop_when_settled: bool = True,
    progress: Any = None,
) -> dict[str, Any]:
    """Load the table, run the loop and return the report (what ``--out`` receives)."""
    from calibration.bayes.fit import Fitter
    from calibration.bayes.replay import load_table, population_from_table, replay_report, run_loop

    pop = population_from_table(
        load_table(path),
        incumbent=incumbent,
        candidates=candidates,
        judge=judge,
        pass_threshold=pass_threshold,
        dimensions=dimensions,
        judge_bins=judge_bins,
        judge_threshold=judge_threshold,
        margin=margin,
        traffic=traffic,
    )
    result = run_loop(
        pop,
        policy=policy,
        budget=budget,
        batch=batch,
        seed=seed,
        fitter=Fitter(),
        exploration_share=exploration_share,
        audit_share=audit_share,
        confidence=confidence,
        draws=draws,
        tune=draws,
        stop_when_settled=stop_when_settled,
        progress=progress,
    )
    settings = {
        "file": str(path),
        "incumbent": incumbent,
        "candidates": candidates,
        "judge": judge,
        "pass_threshold": pass_threshold,
        "judge_bins": judge_bins,
        "judge_threshold": judge_threshold,
        "margin": margin,
        "confidence": confidence,
        "policy": policy,
        "budget": budget,
        "batch": batch,
        "seed": seed,
        "exploration_share": exploration_share,
        "audit_share": audit_share,
        "draws_per_chain": draws,
        "stop_when_settled": stop_when_settled,
    }
    return replay_report(pop, result, settings=settings)


class Command(BaseCommand):
    help = (
        "Replay a study on a flat table whose human labels are known (docs/replay.md): "
        "hide the labels, let the selection rule ask for them, refit every --batch labels, "
        "and report Δ per batch, PPI++ on the same labels, and the all-labels Δ."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV or CSV.GZ table (docs/replay.md)")
        parser.add_argument("--incumbent", required=True, help="system running today")
        parser.add_argument(
            "--candidate", action="append", required=True, help="candidate system (repeatable)"
        )
        parser.add_argument("--dimension", action="append", help="dimension (repeatable; all)")
        parser.add_argument("--judge", required=True, help="value of the judge column to use")
        parser.add_argument(
            "--pass-threshold", type=float, required=True, help="human_label ≥ X passes"
        )
        parser.add_argument("--judge-bins", type=int, default=2, help="quantile bins (2)")
        parser.add_argument(
            "--judge-threshold", type=float, help="cut the judge score at X instead (2 bins)"
        )
        parser.add_argument("--margin", type=float, default=0.02, help="non-inferiority δ")
        parser.add_argument("--confidence", type=float, default=0.95)
        parser.add_argument(
            "--traffic", action="append", help="REGION=SHARE (repeatable; default: data shares)"
        )
        parser.add_argument("--policy", choices=["active", "uniform"], default="active")
        parser.add_argument("--budget", type=int, default=200, help="human labels at most")
        parser.add_argument("--batch", type=int, default=20, help="refit every N labels")
        parser.add_argument("--exploration-share", type=float, default=0.15)
        parser.add_argument(
            "--audit-share",
            type=float,
            default=0.10,
            help="share of picks drawn uniformly for the audit, as the study's (0: none)",
        )
        parser.add_argument("--draws", type=int, default=500, help="draws (and tune) per chain")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--no-stop",
            action="store_true",
            help="keep labelling to the budget when every verdict is settled",
        )
        parser.add_argument("--out", help="write the JSON report here (default: stdout)")

    def handle(self, *args: Any, **opts: Any) -> None:
        path = Path(opts["file"])
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        if opts["budget"] < 1 or opts["batch"] < 1:
            raise CommandError("--budget and --batch must be positive")

        def progress(record: Any) -> None:
            parts = [
                f"{r['candidate']}/{r['dimension']} Δ={r['mean']:+.3f} "
                f"[{r['lower']:+.3f}, {r['upper']:+.3f}] {r['verdict']}"
                for r in record.deltas
            ]
            self.stderr.write(f"{record.labels:5d} labels: " + "; ".join(parts))

        try:
            report = replay(
                path,
                incumbent=opts["incumbent"],
                candidates=opts["candidate"],
                judge=opts["judge"],
                pass_threshold=opts["pass_threshold"],
                dimensions=opts["dimension"],
                judge_bins=opts["judge_bins"],
                judge_threshold=opts["judge_threshold"],
                margin=opts["margin"],
                confidence=opts["confidence"],
                traffic=_traffic(opts["traffic"]),
                policy=opts["policy"],
                budget=opts["budget"],
                batch=opts["batch"],
                seed=opts["seed"],
                exploration_share=opts["exploration_share"],
                audit_share=opts["audit_share"],
                draws=opts["draws"],
                stop_when_settled=not opts["no_stop"],
                progress=progress if opts["verbosity"] >= 1 else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        text = json.dumps(report, indent=1)
        if opts["out"]:
            Path(opts["out"]).write_text(text)
            self.stderr.write(f"wrote {opts['out']}")
        else:
            sys.stdout.write(text + "\n")
