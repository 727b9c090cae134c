"""The adversarial bench's raw lines: seed sets pooled into one summary, a re-run seed set
replacing its own lines, and the scripts that read them (bench/efficiency.py,
bench/forecast_calibration.py) saying how to make them when they are missing.

Fast: made-up study records written under ``tmp_path``, no fit and no loop.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import adversarial as adv  # noqa: E402
import efficiency  # noqa: E402
import forecast_calibration  # noqa: E402

SETTINGS = {"draws": 400, "tune": 400, "chains": 2, "margin": 0.02}


def _study(seed: int, verdict: str, covers: bool = True) -> dict[str, Any]:
    """A study record as :func:`adversarial.run_study` makes it (the fields read)."""
    go = verdict == "go"
    row = {
        "candidate": "arm1",
        "dimension": "correct",
        "truth": -0.02,
        "mean": -0.01,
        "lower": -0.07 if covers else -0.01,
        "upper": 0.05,
        "verdict": verdict,
        "verdict_at_budget": verdict,
        "ever_go": go,
        "go_at": 150 if go else None,
        "shown_verdict": verdict,
        "shown_go_at": 150 if go else None,
        "ever_held": False,
        "held_at_end": False,
        "audit_at_end": None,
        "covers": covers,
        "judge": {"differs": False},
        "looks": [[50, -0.01, 0.03, 0.2]],
    }
    return {"seed": seed, "labels": 300, "fits": 6, "fits_ok": 6, "audit_sample": 30,
            "seconds": 1.5, "rows": [row]}  # fmt: skip


def _lines(seed_set: int, verdicts: list[str], **tags: Any) -> list[dict[str, Any]]:
    base = {
        "scenario": "identical",
        "seed_set": seed_set,
        "commit": "a" * 40,
        "code_digest": "d1",
        "model_version": "v",
        "criterion": "standardised",
        "settings": SETTINGS,
        "command": "python bench/adversarial.py",
        **tags,
    }
    return adv._tagged(base, [_study(seed_set + 1000 * i, v) for i, v in enumerate(verdicts)])


def _summarise(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "adversarial.json"
    argv = ["--summarise-only", "--raw", str(tmp_path / "raw"), "--out", str(out)]
    assert adv.main(argv) == 0
    return json.loads(out.read_text())


def test_summarise_only_pools_every_seed_set_and_a_rerun_set_replaces_its_lines(tmp_path):
    raw = adv.raw_path(tmp_path / "raw", "adversarial", "identical")
    adv.write_raw(raw, 100, _lines(100, ["go", "undecided"]))
    adv.write_raw(raw, 200, _lines(200, ["no-go", "undecided", "undecided"], commit="b" * 40))
    # The file's other entries (earlier summaries, the note) stay.
    out = tmp_path / "adversarial.json"
    head = adv.results_io.header("adversarial", argv=[])
    adv.results_io.write_results(head, {"scenarios": {"weak": {"x": 1}}, "note": "n"}, path=out)

    doc = _summarise(tmp_path)
    got = doc["results"]["scenarios"]["identical"]
    assert doc["results"]["scenarios"]["weak"] == {"x": 1} and doc["results"]["note"] == "n"
    assert (got["studies"], got["wrong_go"], got["no_go"], got["studies_run"]) == (5, 1, 1, 5)
    assert got["seed_sets"] == [100, 200]
    assert [(s["seed_set"], s["studies"]) for s in got["by_seed_set"]] == [(100, 2), (200, 3)]
    assert got["commit"] == ["a" * 40, "b" * 40] and got["code_digest"] == "d1"
    assert got["settings"] == SETTINGS and got["study_seconds"] == 7.5
    assert doc["header"]["benchmark"] == "adversarial"

    # Seed set 100 again: its lines are replaced where they stood, the other set's kept.
    adv.write_raw(raw, 100, _lines(100, ["undecided"], code_digest="d2"))
    assert [line["seed"] for line in adv.read_raw(raw)] == [100, 200, 1200, 2200]
    got = _summarise(tmp_path)["results"]["scenarios"]["identical"]
    assert (got["studies"], got["wrong_go"], got["no_go"]) == (4, 0, 1)
    assert got["seed_sets"] == [100, 200] and got["code_digest"] == ["d2", "d1"]


def test_seed_sets_with_other_chain_settings_are_not_pooled(tmp_path):
    raw = adv.raw_path(tmp_path / "raw", "adversarial", "identical")
    adv.write_raw(raw, 100, _lines(100, ["undecided"]))
    adv.write_raw(raw, 200, _lines(200, ["undecided"], settings={**SETTINGS, "draws": 2000}))
    with pytest.raises(SystemExit, match="different settings"):
        _summarise(tmp_path)


def test_a_file_in_the_earlier_layout_becomes_raw_lines(tmp_path):
    studies = [_study(100 + 1000 * i, "undecided") for i in range(3)]
    studies[0]["rows"][0]["forecast"] = [
        {"labels": 50, "budget": 300, "p": 0.2, "close": True, "p_at_margin": 0.05,
         "truth": -0.02, "settled": False}
    ]  # fmt: skip
    old = {"commit": "c" * 40, "code_digest": "d3", "settings": SETTINGS, "command": "x",
           "scenarios": {"identical": {"summary": {}, "runs": studies}}}  # fmt: skip
    adv.import_legacy(old, tmp_path / "raw", echo=False)
    lines = adv.read_raw(adv.raw_path(tmp_path / "raw", "adversarial", "identical"))
    assert [(x["seed_set"], x["seed"], x["commit"]) for x in lines] == [
        (100, 100, "c" * 40),
        (100, 1100, "c" * 40),
        (100, 2100, "c" * 40),
    ]
    assert "forecast" not in lines[0]["rows"][0]  # the looks have their own file
    fc = adv.read_raw(adv.raw_path(tmp_path / "raw", "forecast", "identical"))
    assert [len(x["looks"]) for x in fc] == [1, 0, 0]
    pooled = forecast_calibration.pool({"identical": fc}, ["identical"])
    assert (pooled["trajectories"], pooled["looks"]) == (3, 1)


def test_efficiency_without_raw_lines_says_which_runs_make_them(tmp_path):
    raw = adv.raw_path(tmp_path / "raw", "adversarial", "identical")
    adv.write_raw(raw, 100, _lines(100, ["undecided", "undecided"]))
    adv.write_raw(raw, 200, _lines(200, ["undecided"]))
    _summarise(tmp_path)
    argv = ["--raw", str(tmp_path / "none"), "--adversarial", str(tmp_path / "adversarial.json")]
    with pytest.raises(SystemExit) as stop:
        efficiency.main([*argv, "--out", str(tmp_path / "efficiency.json")])
    message = str(stop.value)
    assert "no raw lines" in message
    assert "python bench/adversarial.py --scenarios identical --seed 100 --studies 2" in message
    assert "--seed 200 --studies 1 --draws 400 --tune 400" in message
    assert not (tmp_path / "efficiency.json").exists()
    out = ["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "forecast.json")]
    with pytest.raises(SystemExit, match="--scenarios weak --forecast"):
        forecast_calibration.main([*out, "--close", "weak", "--clear", "weak"])
    assert not (tmp_path / "forecast.json").exists()
