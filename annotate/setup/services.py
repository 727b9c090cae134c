"""Study setup: create and configure a study, its arms, dimensions, regions and people,
and activate it.

Every change is recorded in the audit log with its old → new values. On an active study,
a change to something a fit depends on (``FIT_FIELDS``) asks for confirmation first (the
view's job, through :func:`needs_confirmation`) and requests a refit once committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.db.models import FloatField
from django.db.models.expressions import RawSQL

from accounts.services import create_account, record

from .. import hooks
from ..models import Arm, Dimension, Membership, Region, Response, Study, score_value_sql
from . import blindness

# What a fit reads: changing one of these on an active study changes its verdicts.
FIT_FIELDS: dict[type[models.Model], tuple[str, ...]] = {
    Study: ("confidence",),
    Dimension: (
        "scale",
        "scale_max",
        "pass_threshold",
        "margin",
        "judge_score_type",
        "judge_min",
        "judge_max",
        "judge_bins",
        "judge_cuts",
    ),
    Region: ("traffic_share",),
}
# The plan the sequential rule's guarantee rests on: frozen once the study has a grade,
# changed only by an audited re-plan (calibration.replans).
PLAN_FIELDS: dict[type[models.Model], tuple[str, ...]] = {
    Study: ("label_budget", "confidence", "audit_share"),
    Dimension: ("margin",),
}
PLAN_FROZEN = (
    "The plan (label budget, margins, confidence, audit share) is frozen since grading "
    "started: change it with a re-plan, from the study's overview."
)
# How judge scores are cut into bins: changing one re-bins the scores already imported.
BINNING_FIELDS = ("judge_score_type", "judge_min", "judge_max", "judge_bins", "judge_cuts")
AUDITED_FIELDS: dict[type[models.Model], tuple[str, ...]] = {
    Study: (
        "name",
        "description",
        "instructions",
        "confidence",
        "label_budget",
        "exploration_share",
        "overlap_share",
        "lease_seconds",
        "refit_every",
        "side_by_side",
        "audit_share",
    ),
    Arm: ("key", "model_name", "role", "position"),
    Dimension: (
        "key",
        "title",
        "rubric",
        "point_descriptions",
        "position",
        *FIT_FIELDS[Dimension],
    ),
    Region: ("key", "name", "traffic_share", "position"),
}


class SetupError(Exception):
    """A setup operation refused, with a message fit for the admin."""


class ActivationRefused(SetupError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Change:
    """One field of one object going from ``old`` to ``new`` (None for created/removed)."""

    label: str
    field: str
    old: Any
    new: Any
    fit: bool

    def as_pair(self) -> list[Any]:
        return [self.old, self.new]


def _changes(instance: models.Model, *, label: str | None = None) -> list[Change]:
    """What saving ``instance`` (an edited, unsaved copy) would change in the database."""
    model = type(instance)
    fields = AUDITED_FIELDS[model]
    fit_fields = FIT_FIELDS.get(model, ())
    label = label or f"{model._meta.verbose_name} {getattr(instance, 'key', instance)}"
    if instance.pk is None:
        return [
            Change(label, name, None, getattr(instance, name), name in fit_fields)
            for name in fields
        ]
    old = model._default_manager.get(pk=instance.pk)
    return [
        Change(label, name, getattr(old, name), getattr(instance, name), name in fit_fields)
        for name in fields
        if getattr(old, name) != getattr(instance, name)
    ]


def _refuse_plan_changes(study: Study, instance: models.Model, changes: Iterable[Change]) -> None:
    """Raise when an edit of an existing row touches the frozen plan."""
    fields = PLAN_FIELDS.get(type(instance), ())
    if instance.pk is None or not fields:
        return
    if any(c.field in fields for c in changes) and study.plan_frozen():
        raise SetupError(PLAN_FROZEN)


def needs_confirmation(study: Study, changes: Iterable[Change]) -> bool:
    """An active study's fit-relevant changes are confirmed by the admin first."""
    return study.status == Study.Status.ACTIVE and any(c.fit for c in changes)


def _details(changes: Iterable[Change], **extra: Any) -> dict[str, Any]:
    return {"changes": {c.field: c.as_pair() for c in changes}, **extra}


def _refit_if_needed(*, user: Any, study: Study, changes: Sequence[Change]) -> bool:
    """On an active study, ask for a refit once the change has committed."""
    if study.status != Study.Status.ACTIVE or not any(c.fit for c in changes):
        return False
    transaction.on_commit(lambda: request_refit(study=study, user=user))
    return True


def request_refit(*, study: Study, user: Any) -> None:
    """Ask calibration for a fit triggered by a configuration change."""
    hooks.request_fit(study=study, trigger="config", requested_by=user)


def _lock(study: Study) -> Study:
    """Serialize configuration changes of one study (PostgreSQL row lock)."""
    return Study.objects.select_for_update().get(pk=study.pk)


# --- Study -----------------------------------------------------------------------------


def create_study(*, user: Any, study: Study) -> Study:
    """Save a new (draft) study and make its creator its admin."""
    with transaction.atomic():
        study.status = Study.Status.DRAFT
        changes = _changes(study, label="study")
        study.save()
        Membership.objects.get_or_create(
            study=study, user=user, defaults={"role": Membership.Role.ADMIN}
        )
        record(
            actor=user, action="study.create", study=study, target=study, details=_details(changes)
        )
    return study


def preview_study(*, study: Study) -> list[Change]:
    return _changes(study, label="study")


def update_study(*, user: Any, study: Study) -> list[Change]:
    with transaction.atomic():
        _lock(study)
        changes = _changes(study, label="study")
        if not changes:
            return []
        _refuse_plan_changes(study, study, changes)
        study.save()
        refit = _refit_if_needed(user=user, study=study, changes=changes)
        record(
            actor=user,
            action="study.update",
            study=study,
            target=study,
            details=_details(changes, refit=refit),
        )
    return changes


# --- Arms ------------------------------------------------------------------------------


def save_arm(*, user: Any, study: Study, arm: Arm) -> list[Change]:
    with transaction.atomic():
        _lock(study)
        created = arm.pk is None
        arm.study = study
        changes = _changes(arm)
        if not changes:
            return []
        arm.save()
        record(
            actor=user,
            action="arm.create" if created else "arm.update",
            study=study,
            target=arm,
            details=_details(changes),
        )
    return changes


def delete_arm(*, user: Any, study: Study, arm: Arm) -> None:
    with transaction.atomic():
        _lock(study)
        if n := response_counts(study).by_arm.get(arm.pk, 0):
            raise SetupError(f"Arm “{arm.key}” has {n} responses: it cannot be removed.")
        if study.status == Study.Status.ACTIVE:
            raise SetupError("Arms of an active study cannot be removed.")
        record(
            actor=user,
            action="arm.delete",
            study=study,
            target=arm,
            details={"key": arm.key, "model_name": arm.model_name, "role": arm.role},
        )
        arm.delete()


@dataclass(frozen=True)
class ResponseCounts:
    """How many responses a study holds, by arm and by region (ids as keys)."""

    by_arm: dict[int, int]
    by_region: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.by_arm.values())

    @property
    def prompts(self) -> int:
        # Every imported interaction has a response from every arm.
        return max(self.by_arm.values(), default=0)


def response_counts(study: Study) -> ResponseCounts:
    """The study's responses by arm and by region, from the selection's stored per-cell totals:
    a page that counted the responses would scan the study on every request."""
    by_arm: dict[int, int] = dict.fromkeys(study.arms.values_list("pk", flat=True), 0)
    by_region: dict[int, int] = dict.fromkeys(study.regions.values_list("pk", flat=True), 0)
    if study.pk is not None:
        for (arm, region, _), n in hooks.cell_totals(study=study).items():
            by_arm[arm] = by_arm.get(arm, 0) + n
            by_region[region] = by_region.get(region, 0) + n
    return ResponseCounts(by_arm, by_region)


# --- Dimensions ------------------------------------------------------------------------


def _rebins(dimension: Dimension, changes: Sequence[Change]) -> int:
    """How many imported judge scores a change of binning would re-bin (0 if none)."""
    if dimension.pk is None or not any(c.field in BINNING_FIELDS for c in changes):
        return 0
    return _scored(dimension).count()


def _scored(dimension: Dimension) -> Any:
    """The study's responses with a judge score on ``dimension``, annotated with it (``v``)."""
    table = Response._meta.db_table
    value = RawSQL(score_value_sql(table, dimension.pk), [], output_field=FloatField())
    return (
        Response.objects.filter(study_id=dimension.study_id)
        .annotate(v=value)
        .filter(v__isnull=False)
    )


def preview_dimension(*, dimension: Dimension) -> list[Change]:
    changes = _changes(dimension)
    if n := _rebins(dimension, changes):
        label = f"dimension {dimension.key}"
        changes.append(
            Change(label, "bins of imported judge scores", f"{n} scores", "re-binned", True)
        )
    return changes


def save_dimension(*, user: Any, study: Study, dimension: Dimension) -> list[Change]:
    with transaction.atomic():
        _lock(study)
        created = dimension.pk is None
        dimension.study = study
        changes = _changes(dimension)
        if not changes:
            return []
        _refuse_plan_changes(study, dimension, changes)
        rebins = _rebins(dimension, changes)
        dimension.save()
        if rebins:
            rebin_dimension(study=study, dimension=dimension)
        refit = _refit_if_needed(user=user, study=study, changes=changes)
        record(
            actor=user,
            action="dimension.create" if created else "dimension.update",
            study=study,
            target=dimension,
            details=_details(changes, refit=refit, rebinned_scores=rebins),
        )
    return changes


def rebin_dimension(*, study: Study, dimension: Dimension) -> None:
    """Re-cut a dimension's imported judge scores into its (new) bins, and rebuild the cells.

    Without explicit cuts they are set from the scores, as the import would
    (``annotate.imports.importing.judge_cuts_for``). A score's bin is the number of cuts at or
    below it.
    """
    if dimension.judge_cuts is None:
        from ..imports.importing import judge_cuts_for

        values = _scored(dimension).values_list("v", flat=True).iterator()
        cuts = judge_cuts_for(dimension, values) or []
        dimension.judge_cuts = cuts
        Dimension.objects.filter(pk=dimension.pk).update(judge_cuts=cuts)
    rebuild_cells(study=study)


def rebuild_cells(*, study: Study) -> None:
    """Recompute ``Response.cell`` (judge bins of every dimension, in dimension order).

    Each bin is the number of the dimension's cuts at or below the judge's value; a response
    with no score on a dimension has an empty part there.
    """
    from ..imports.binning import bin_sql, judge_cuts_for

    table = Response._meta.db_table
    parts = []
    for dim in study.dimensions.order_by("position", "id"):
        cuts = dim.judge_cuts if dim.judge_cuts is not None else judge_cuts_for(dim, None)
        value = score_value_sql(table, dim.pk)
        bin_ = bin_sql(value, [float(c) for c in cuts or []])
        parts.append(f"(CASE WHEN {value} IS NULL THEN '' ELSE CAST({bin_} AS TEXT) END)")
    if not parts:
        return
    cell = " || '.' || ".join(parts)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET cell = {cell} WHERE study_id = %s", [study.pk])
    transaction.on_commit(lambda: hooks.forget_cell_totals(study_id=study.pk))


def delete_dimension(*, user: Any, study: Study, dimension: Dimension) -> None:
    with transaction.atomic():
        _lock(study)
        if n := dimension.labels.count():
            raise SetupError(
                f"Dimension “{dimension.key}” has {n} human grades: it cannot be removed."
            )
        if study.status == Study.Status.ACTIVE:
            raise SetupError("Dimensions of an active study cannot be removed.")
        record(
            actor=user,
            action="dimension.delete",
            study=study,
            target=dimension,
            details={"key": dimension.key, "title": dimension.title},
        )
        dimension.delete()


# --- Regions ---------------------------------------------------------------------------


def preview_regions(*, saved: Sequence[Region], deleted: Sequence[Region]) -> list[Change]:
    changes: list[Change] = []
    for region in saved:
        changes += [
            Change(c.label, f"{region.key}.{c.field}", c.old, c.new, c.fit)
            for c in _changes(region)
        ]
    for region in deleted:
        changes.append(
            Change(
                f"region {region.key}",
                f"{region.key}.traffic_share",
                region.traffic_share,
                None,
                True,
            )
        )
    return changes


def save_regions(
    *, user: Any, study: Study, saved: Sequence[Region], deleted: Sequence[Region]
) -> list[Change]:
    """Apply a whole edit of the regions; the shares must still sum to 1 afterwards."""
    with transaction.atomic():
        _lock(study)
        changes = preview_regions(saved=saved, deleted=deleted)
        for region in deleted:
            if region.prompts.exists():
                raise SetupError(f"Region “{region.key}” has prompts: it cannot be removed.")
            region.delete()
        for region in saved:
            region.study = study
            region.save()
        if error := study.traffic_share_error():
            raise SetupError(f"Not saved: {error}.")
        if changes:
            refit = _refit_if_needed(user=user, study=study, changes=changes)
            record(
                actor=user,
                action="regions.update",
                study=study,
                target=study,
                details=_details(changes, refit=refit),
            )
    return changes


# --- People ----------------------------------------------------------------------------


def _admin_count(study: Study) -> int:
    return study.memberships.filter(role=Membership.Role.ADMIN).count()


def assign_member(*, user: Any, study: Study, member: Any, role: str) -> Membership:
    """Give ``member`` ``role`` in the study (adding them, or changing their role)."""
    with transaction.atomic():
        _lock(study)
        membership = Membership.objects.filter(study=study, user=member).first()
        if membership is None:
            membership = Membership.objects.create(study=study, user=member, role=role)
            record(
                actor=user,
                action="membership.create",
                study=study,
                target=membership,
                details={"username": member.get_username(), "role": role},
            )
        elif membership.role != role:
            if membership.role == Membership.Role.ADMIN and _admin_count(study) == 1:
                raise SetupError(f"{member.get_username()} is the study's only admin.")
            old = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            record(
                actor=user,
                action="membership.update",
                study=study,
                target=membership,
                details={"username": member.get_username(), "changes": {"role": [old, role]}},
            )
    return membership


def create_member(*, user: Any, study: Study, username: str, email: str, role: str) -> Any:
    """A new account, without a password yet, made a member of the study in ``role``."""
    with transaction.atomic():
        member = create_account(actor=user, username=username, email=email, study=study)
        assign_member(user=user, study=study, member=member, role=role)
    return member


def remove_member(*, user: Any, study: Study, membership: Membership) -> None:
    with transaction.atomic():
        _lock(study)
        if membership.role == Membership.Role.ADMIN and _admin_count(study) == 1:
            raise SetupError(
                f"{membership.user.get_username()} is the study's only admin: add another first."
            )
        record(
            actor=user,
            action="membership.delete",
            study=study,
            target=membership,
            details={"username": membership.user.get_username(), "role": membership.role},
        )
        membership.delete()


# --- Activation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    done: bool
    detail: str
    url_name: str


def activation_problems(study: Study) -> list[str]:
    """Why the study cannot be activated yet (empty when it can)."""
    problems = []
    roles = list(study.arms.values_list("role", flat=True))
    if Arm.Role.INCUMBENT not in roles:
        problems.append("No incumbent: add the model you run today as the incumbent arm.")
    if Arm.Role.CANDIDATE not in roles:
        problems.append("No candidate: add at least one candidate arm.")
    if not study.dimensions.exists():
        problems.append("No dimension: define at least one graded dimension.")
    if error := study.traffic_share_error():
        problems.append(f"Regions: {error}.")
    if not response_counts(study).total:
        problems.append("No data: upload the responses with their judge scores.")
    for leak in blindness.leaks(study):
        problems.append(
            f"Not blind: {leak}, which annotators read. Name no model, arm or role there."
        )
    return problems


def checklist(study: Study) -> list[Step]:
    arms = list(study.arms.all())
    incumbents = [a for a in arms if a.role == Arm.Role.INCUMBENT]
    candidates = [a for a in arms if a.role == Arm.Role.CANDIDATE]
    dimensions = study.dimensions.count()
    share_error = study.traffic_share_error()
    responses = response_counts(study).total
    leaks = blindness.leaks(study)
    people = dict(study.memberships.values_list("role").annotate(n=models.Count("id")).order_by())
    return [
        Step(
            "study",
            "Study settings",
            True,
            f"confidence {study.confidence:g}, budget {study.label_budget} grades",
            "annotate-setup-study",
        ),
        Step(
            "arms",
            "Incumbent and candidates",
            bool(incumbents and candidates),
            f"{len(incumbents)} incumbent, {len(candidates)} candidate(s)",
            "annotate-setup-arms",
        ),
        Step(
            "dimensions",
            "Dimensions",
            dimensions > 0,
            f"{dimensions} defined",
            "annotate-setup-dimensions",
        ),
        Step(
            "regions",
            "Regions and traffic shares",
            share_error is None,
            share_error or f"{study.regions.count()} region(s), shares sum to 1",
            "annotate-setup-regions",
        ),
        Step("data", "Data", responses > 0, f"{responses} responses", "annotate-setup-data"),
        Step(
            "blind",
            "Blind to annotators",
            not leaks,
            "; ".join(str(leak) for leak in leaks)
            or "no model name, arm key or role in what annotators read",
            "annotate-setup-study",
        ),
        Step(
            "people",
            "Annotators and leads",
            people.get(Membership.Role.ANNOTATOR, 0) > 0,
            f"{people.get('admin', 0)} admin(s), {people.get('lead', 0)} lead(s), "
            f"{people.get('annotator', 0)} annotator(s)",
            "annotate-setup-members",
        ),
        Step(
            "activate",
            "Activate",
            study.status != Study.Status.DRAFT,
            study.get_status_display(),
            "annotate-setup-activate",
        ),
    ]


def activate(*, user: Any, study: Study) -> Study:
    with transaction.atomic():
        study = _lock(study)
        if study.status != Study.Status.DRAFT:
            raise SetupError(f"The study is {study.get_status_display().lower()}, not a draft.")
        if problems := activation_problems(study):
            raise ActivationRefused(problems)
        study.status = Study.Status.ACTIVE
        study.save(update_fields=["status", "updated_at"])
        record(
            actor=user,
            action="study.activate",
            study=study,
            target=study,
            details={"changes": {"status": ["draft", "active"]}},
        )
    return study
