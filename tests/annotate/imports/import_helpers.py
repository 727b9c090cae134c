"""Builders of import files and a snapshot of what an import may touch."""

from __future__ import annotations

import io
import json
from typing import Any

from annotate.models import Dimension, Prompt, Response, Study
from tests.scores import score_rows

ARMS = ("inc", "cand1", "cand2")


def interaction(
    n: int, *, region: str = "eu", scores: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """One valid interaction for ``make_study()`` (arms inc/cand1/cand2, three dimensions)."""
    line: dict[str, Any] = {
        "id": f"q-{n:06d}",
        "region": region,
        "prompt": f"Question {n}?",
        "responses": {
            arm: {
                "text": f"Answer of {arm} to {n}.",
                "scores": dict(scores or {"correctness": n % 2, "refusal": 0, "style": 1 + n % 5}),
            }
            for arm in ARMS
        },
    }
    line.update(extra)
    return line


def jsonl(*lines: dict[str, Any] | str) -> io.BytesIO:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    return io.BytesIO(text.encode())


def csv_file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def csv_rows(*numbers: int) -> str:
    """The long-CSV equivalent of ``interaction(n)`` for each n, with a header."""
    out = ["id,region,prompt,arm,response,dimension,score"]
    for n in numbers:
        line = interaction(n)
        for arm, resp in line["responses"].items():
            for dim, score in resp["scores"].items():
                out.append(
                    f'{line["id"]},{line["region"]},"{line["prompt"]}",{arm},'
                    f'"{resp["text"]}",{dim},{score}'
                )
    return "\n".join(out) + "\n"


def snapshot(study: Study) -> dict[str, list[tuple[Any, ...]]]:
    """Every row an import of ``study`` may write, for before/after comparisons."""
    return {
        "prompts": sorted(
            Prompt.objects.filter(study=study).values_list(
                "id", "external_id", "region_id", "text", "metadata"
            )
        ),
        "responses": sorted(
            Response.objects.filter(study=study).values_list(
                "id", "prompt_id", "arm_id", "study_id", "region_id", "text", "metadata", "cell"
            )
        ),
        "scores": score_rows(study),
        "cuts": sorted(Dimension.objects.filter(study=study).values_list("key", "judge_cuts")),
    }
