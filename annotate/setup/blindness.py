"""Blindness by construction: find arm keys and model names in what annotators read.

Annotators see the study's name, its instructions, and each dimension's title, rubric and
scale point descriptions. None of them may name a model or an arm (nor the words
"incumbent"/"candidate", which are arm roles): setup warns on every save and activation is
refused while one does. The description is for leads and admins and is never shown to
annotators, so it may name the models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..models import Study

# A trailing release date or version stamp: orion-large-2024-06, nova-1.5-0125.
_DATE_SUFFIX = re.compile(r"[-_ @]?(\d{4}([-_.]\d{1,2}){0,2}|\d{4,8})$")
ROLE_WORDS = ("incumbent", "candidate")


@dataclass(frozen=True)
class Leak:
    where: str
    term: str

    def __str__(self) -> str:
        return f"{self.where} contains “{self.term}”"


def model_terms(arms: Iterable[tuple[str, str]]) -> list[str]:
    """The words that would identify an arm: its key, its model name, the name without its
    date suffix and the family (first word of four letters or more), longest first."""
    terms: set[str] = set(ROLE_WORDS)
    for key, model_name in arms:
        for term in (key, model_name):
            term = term.strip()
            if not term:
                continue
            terms.add(term)
            stem = _DATE_SUFFIX.sub("", term)
            if len(stem) >= 3:
                terms.add(stem)
            family = re.split(r"[-_ .:/]", term)[0]
            if len(family) >= 4 and not family.isdigit():
                terms.add(family)
    return sorted(terms, key=lambda t: (-len(t), t.lower()))


def find_terms(text: str, terms: Iterable[str]) -> list[str]:
    """The terms found in ``text``, case-insensitive, as whole words (a term followed by
    ``-large`` still counts: ``orion`` is found in ``orion-large``)."""
    found = []
    for term in terms:
        pattern = rf"(?<![A-Za-z0-9]){re.escape(term)}(?![A-Za-z0-9])"
        if re.search(pattern, text, flags=re.IGNORECASE):
            found.append(term)
    return found


def annotator_texts(study: Study) -> list[tuple[str, str]]:
    """Everything an annotator reads about the study, with where it comes from."""
    texts = [("The study name", study.name), ("The instructions", study.instructions)]
    for d in study.dimensions.order_by("position", "id"):
        texts.append((f"Dimension “{d.key}”: title", d.title))
        texts.append((f"Dimension “{d.key}”: rubric", d.rubric))
        for i, point in enumerate(d.point_descriptions or [], start=1):
            texts.append((f"Dimension “{d.key}”: scale point {i}", point))
    return texts


def leaks(study: Study) -> list[Leak]:
    """Each place annotators would read a model's name or an arm's key (first term each)."""
    terms = model_terms(study.arms.values_list("key", "model_name"))
    out = []
    for where, text in annotator_texts(study):
        if found := find_terms(text or "", terms):
            out.append(Leak(where, found[0]))
    return out
