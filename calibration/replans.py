"""The study's plan, frozen once grading starts, and the audited re-plans that change it.

The *plan* is what the sequential rule's guarantee rests on: the label budget, each
dimension's margin, the confidence and the audit share. Once the study has a grade it is
frozen (``annotate.setup.services`` refuses edits); a change is a re-plan: explicit (a
reason and a confirmation), written to the audit log and to a :class:`Replan` row, and
statistically accounted for. The new boundaries keep each verdict's conditional wrong-go
probability (:func:`calibration.bayes.decision.replan_design`, derivation in that module's
docstring), starting from the verdicts of the latest fit.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.services import record
from annotate.models import Study
from calibration.models import Fit, Replan

__all__ = ["PlanError", "current_designs", "current_plan", "latest_replan", "replan"]


class PlanError(Exception):
    """A re-plan refused, with a message fit for the admin."""


def current_plan(study: Study) -> dict[str, Any]:
    return {
        "label_budget": study.label_budget,
        "confidence": study.confidence,
        "audit_share": study.audit_share,
        "margins": {d.key: d.margin for d in study.dimensions.order_by("position", "id")},
    }


def latest_replan(study: Study) -> Replan | None:
    return Replan.objects.filter(study=study).order_by("-number").first()


def current_designs(study: Study) -> tuple[int, dict[tuple[str, str], Any] | None]:
    """``(plan number, {(candidate, dimension): (go Design, no-go Design)})`` in force.

    Plan 0 (no re-plan) has no stored designs: the original boundary applies.
    """
    from calibration.bayes.decision import Design

    last = latest_replan(study)
    if last is None:
        return 0, None
    designs = {
        (cand, dim): (Design.from_list(sides["go"]), Design.from_list(sides["no-go"]))
        for cand, dims in last.designs.items()
        for dim, sides in dims.items()
    }
    return last.number, designs


def _where_verdicts_stand(study: Study) -> tuple[Fit | None, dict[tuple[str, str], dict]]:
    fit = (
        Fit.objects.filter(study=study, status=Fit.Status.SUCCEEDED)
        .defer("draws")
        .order_by("-finished_at", "-id")
        .first()
    )
    cells: dict[tuple[str, str], dict] = {}
    for cand in (fit.summary if fit else {}).get("candidates", []):
        for d in cand.get("dimensions", []):
            cells[(cand["arm"], d["dimension"])] = d
    return fit, cells


def replan(
    *,
    study: Study,
    user: Any,
    label_budget: int,
    confidence: float,
    audit_share: float,
    margins: dict[str, float],
    reason: str,
) -> Replan:
    """Change the plan of a study that has grades, keeping the error guarantee.

    For each (candidate, dimension) the latest fit's information fraction and ``z`` (at the
    new margin: ``(mean + δ')/sd``) anchor the new boundary. Without a fit, no posterior
    was ever shown, so the re-plan starts from ``z = 0`` at the current fraction.
    """
    from calibration.bayes.decision import Design, information_fraction, replan_cell
    from calibration.services import graded_per_arm, request_fit

    if not reason.strip():
        raise PlanError("Say why the plan changes: the reason goes into the report.")
    if label_budget < 1:
        raise PlanError("The label budget must be at least 1.")
    if not 0.5 < confidence < 1:
        raise PlanError("Confidence must be above 0.5 and below 1.")
    if not 0 <= audit_share < 1:
        raise PlanError("The audit share must be from 0 up to (not including) 1.")
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        before = current_plan(study)
        dims = list(study.dimensions.order_by("position", "id"))
        new_margins = {d.key: float(margins.get(d.key, d.margin)) for d in dims}
        if any(not 0 <= m < 1 for m in new_margins.values()):
            raise PlanError("Margins are shares from 0 up to (not including) 1.")
        new_budget, new_confidence = int(label_budget), float(confidence)
        after: dict[str, Any] = {
            "label_budget": new_budget,
            "confidence": new_confidence,
            "audit_share": float(audit_share),
            "margins": new_margins,
        }
        if after == before:
            raise PlanError("Nothing changes: the new plan is the current one.")
        number, old = current_designs(study)
        fit, cells = _where_verdicts_stand(study)
        counts = graded_per_arm(study=study)
        inc = study.incumbent.key
        designs: dict[str, dict[str, dict[str, list[float]]]] = {}
        spent: dict[str, dict[str, dict[str, float]]] = {}
        for cand in study.candidates().order_by("position", "id"):
            for d in dims:
                go, nogo = (old or {}).get(
                    (cand.key, d.key),
                    (Design.initial(study.confidence), Design.initial(study.confidence)),
                )
                new_go, new_nogo, spent_cell = replan_cell(
                    go,
                    nogo,
                    cell=cells.get((cand.key, d.key)),
                    fit_budget=(fit.summary if fit else {}).get("label_budget"),
                    budget=study.label_budget,
                    new_budget=new_budget,
                    confidence=study.confidence,
                    new_confidence=new_confidence,
                    new_margin=new_margins[d.key],
                    fallback_fraction=information_fraction(
                        counts.get(inc, 0), counts.get(cand.key, 0), study.label_budget
                    ),
                    labels=sum(counts.values()),
                )
                designs.setdefault(cand.key, {})[d.key] = {
                    "go": new_go.to_list(),
                    "no-go": new_nogo.to_list(),
                }
                spent.setdefault(cand.key, {})[d.key] = spent_cell
        row = Replan.objects.create(
            study=study,
            number=number + 1,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            reason=reason.strip(),
            before=before,
            after=after,
            labels_at=sum(counts.values()),
            fit=fit,
            designs=_json_safe(designs),
            spent=_json_safe(spent),
        )
        study.label_budget = new_budget
        study.confidence = new_confidence
        study.audit_share = float(audit_share)
        study.save(update_fields=["label_budget", "confidence", "audit_share", "updated_at"])
        for d in dims:
            if d.margin != new_margins[d.key]:
                d.margin = new_margins[d.key]
                d.save(update_fields=["margin"])
        record(
            actor=user,
            action="study.replan",
            study=study,
            target=row,
            details={
                "number": row.number,
                "reason": row.reason,
                "labels_at": row.labels_at,
                "fit": fit.pk if fit else None,
                "changes": {k: [before[k], after[k]] for k in before if before[k] != after[k]},
            },
        )
        transaction.on_commit(lambda: request_fit(study=study, trigger="config", requested_by=user))
    return row


def _json_safe(x: Any) -> Any:
    """inf (a boundary that can no longer be crossed) as a string JSON can hold."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return x
