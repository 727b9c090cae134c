"""The migration study and everything graded in it.

Invariants the data must keep live in the database (unique, check and foreign-key
constraints), so that no import path, form or API call can break them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

SHARE_TOLERANCE = Decimal("0.0001")


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        DECIDED = "decided", "Decided"
        ARCHIVED = "archived", "Archived"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(
        blank=True,
        help_text="For leads and admins only (what is compared and why); annotators never see it.",
    )
    instructions = models.TextField(
        blank=True,
        help_text="What annotators read before and while grading. Never name the models: "
        "activation is refused while it, the study name or a rubric does.",
    )
    status = models.CharField(max_length=12, choices=Status, default=Status.DRAFT)
    confidence = models.FloatField(
        default=0.95, help_text="Posterior probability required for a go or no-go verdict."
    )
    label_budget = models.PositiveIntegerField(
        default=1000, help_text="Human grades to spend at most (graded responses)."
    )
    exploration_share = models.FloatField(
        default=0.15, help_text="Share of picks made uniformly at random."
    )
    overlap_share = models.FloatField(
        default=0.10, help_text="Share of picks that give a graded response a second annotator."
    )
    lease_seconds = models.PositiveIntegerField(
        default=600,
        help_text="How long a response stays reserved for the annotator it was given to.",
    )
    refit_every = models.PositiveIntegerField(
        default=20, help_text="Refit the calibration after this many new grades."
    )
    side_by_side = models.BooleanField(
        default=False, help_text="Show two arms' responses to the same prompt together."
    )
    audit_share = models.FloatField(
        default=0.10,
        help_text="Share of picks drawn uniformly over all responses for the model-free audit "
        "(fixed once grading starts).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gt=0.5, confidence__lt=1),
                name="study_confidence_between_half_and_one",
            ),
            models.CheckConstraint(
                condition=Q(exploration_share__gte=0, exploration_share__lte=1),
                name="study_exploration_share_is_a_share",
            ),
            models.CheckConstraint(
                condition=Q(overlap_share__gte=0, overlap_share__lt=1),
                name="study_overlap_share_is_a_share",
            ),
            models.CheckConstraint(
                condition=Q(audit_share__gte=0, audit_share__lt=1),
                name="study_audit_share_is_a_share",
            ),
            models.CheckConstraint(
                condition=Q(lease_seconds__gte=10), name="study_lease_at_least_10s"
            ),
            models.CheckConstraint(
                condition=Q(refit_every__gte=1), name="study_refit_every_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("calibration-study", kwargs={"slug": self.slug})

    @property
    def incumbent(self) -> Arm:
        return self.arms.get(role=Arm.Role.INCUMBENT)

    def candidates(self) -> models.QuerySet[Arm]:
        return self.arms.filter(role=Arm.Role.CANDIDATE)

    def plan_frozen(self) -> bool:
        """The plan (budget, margins, confidence, audit share) is frozen once a grade exists.

        From then on it changes only through an audited re-plan
        (:mod:`calibration.replans`), which keeps the sequential rule's error guarantee.
        An undone grade counts here too (so not ``live_grades()``): it was given.
        """
        return self.annotations.filter(status=Annotation.Status.GRADED).exists()

    def traffic_share_error(self) -> str | None:
        """Say what is wrong with the regions' traffic shares, or None when they sum to 1."""
        shares = [r.traffic_share for r in self.regions.all()]
        if not shares:
            return "the study has no regions"
        total = sum(shares, Decimal(0))
        if abs(total - 1) > SHARE_TOLERANCE:
            return f"traffic shares sum to {total}, expected 1"
        return None

    def role_of(self, user: Any) -> str | None:
        """The user's role in this study (admin, lead, annotator), or None."""
        if getattr(user, "is_superuser", False):
            return Membership.Role.ADMIN
        if not getattr(user, "is_authenticated", False):
            return None
        membership = self.memberships.filter(user=user).first()
        return membership.role if membership else None


class Arm(models.Model):
    """A model under comparison: the incumbent or one candidate."""

    class Role(models.TextChoices):
        INCUMBENT = "incumbent", "Incumbent"
        CANDIDATE = "candidate", "Candidate"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="arms")
    key = models.SlugField(max_length=80, help_text="Identifier used in imported files.")
    model_name = models.CharField(max_length=200)
    role = models.CharField(max_length=10, choices=Role)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "key"], name="arm_key_unique_in_study"),
            models.UniqueConstraint(
                fields=["study"],
                condition=Q(role="incumbent"),
                name="one_incumbent_per_study",
            ),
            models.CheckConstraint(
                condition=Q(role__in=["incumbent", "candidate"]), name="arm_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} ({self.role})"


class Dimension(models.Model):
    """What is graded: a rubric on a binary or ordinal scale, with its decision margin."""

    class Scale(models.TextChoices):
        BINARY = "binary", "Pass / fail"
        ORDINAL = "ordinal", "Ordinal 1..K"

    class JudgeScoreType(models.TextChoices):
        BINARY = "binary", "Binary (0 or 1)"
        LIKERT = "likert", "Likert (whole numbers in a range)"
        CONTINUOUS = "continuous", "Continuous"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="dimensions")
    key = models.SlugField(max_length=80)
    title = models.CharField(max_length=200)
    rubric = models.TextField(blank=True, help_text="What graders should look for.")
    scale = models.CharField(max_length=8, choices=Scale, default=Scale.BINARY)
    scale_max = models.PositiveSmallIntegerField(
        default=1, help_text="K for an ordinal scale 1..K; 1 for binary."
    )
    point_descriptions = models.JSONField(
        default=list, blank=True, help_text="One description per scale point, lowest first."
    )
    pass_threshold = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Ordinal grades at or above this pass."
    )
    margin = models.FloatField(
        default=0.02, help_text="Non-inferiority margin δ on the pass rate (0.02 = 2 points)."
    )
    judge_score_type = models.CharField(
        max_length=10, choices=JudgeScoreType, default=JudgeScoreType.BINARY
    )
    judge_min = models.FloatField(null=True, blank=True)
    judge_max = models.FloatField(null=True, blank=True)
    judge_bins = models.PositiveSmallIntegerField(
        default=2, help_text="How many bins the judge's score is cut into for calibration."
    )
    judge_cuts = models.JSONField(
        null=True,
        blank=True,
        help_text="Interior cut points of the judge score, fixed at first import.",
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "key"], name="dimension_key_unique_in_study"),
            models.CheckConstraint(
                condition=(
                    Q(scale="binary", scale_max=1, pass_threshold__isnull=True)
                    | Q(
                        scale="ordinal",
                        scale_max__gte=2,
                        scale_max__lte=10,
                        pass_threshold__gte=1,
                        pass_threshold__lte=F("scale_max"),
                    )
                ),
                name="dimension_scale_consistent",
            ),
            models.CheckConstraint(
                condition=Q(margin__gte=0, margin__lt=1), name="dimension_margin_is_a_share"
            ),
            models.CheckConstraint(
                condition=Q(judge_bins__gte=2, judge_bins__lte=10),
                name="dimension_judge_bins_2_to_10",
            ),
            models.CheckConstraint(
                condition=Q(judge_min__isnull=True)
                | Q(judge_max__isnull=True)
                | Q(judge_min__lt=F("judge_max")),
                name="dimension_judge_range_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_binary(self) -> bool:
        return self.scale == self.Scale.BINARY

    def scale_values(self) -> list[int]:
        """The grades a label may take: 0/1 for binary, 1..K for ordinal."""
        return [0, 1] if self.is_binary else list(range(1, self.scale_max + 1))

    def passes(self, value: int) -> bool:
        """Map a stored grade to pass/fail for the decision."""
        if self.is_binary:
            return value == 1
        assert self.pass_threshold is not None
        return value >= self.pass_threshold


class Region(models.Model):
    """A segment of traffic with its share."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="regions")
    key = models.SlugField(max_length=80)
    name = models.CharField(max_length=200)
    traffic_share = models.DecimalField(max_digits=7, decimal_places=6)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "key"], name="region_key_unique_in_study"),
            models.CheckConstraint(
                condition=Q(traffic_share__gt=0, traffic_share__lte=1),
                name="region_traffic_share_in_0_1",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        LEAD = "lead", "ML lead"
        ANNOTATOR = "annotator", "Annotator"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "user"], name="one_membership_per_user_and_study"
            ),
            models.CheckConstraint(
                condition=Q(role__in=["admin", "lead", "annotator"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.study}"


class Prompt(models.Model):
    # No index of its own on study: the unique (study, external_id) index leads with it, and
    # every index on these bulk tables is paid on each imported row.
    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, related_name="prompts", db_index=False
    )
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="prompts")
    external_id = models.CharField(max_length=200)
    text = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "external_id"], name="prompt_external_id_unique_in_study"
            ),
        ]

    def __str__(self) -> str:
        return self.external_id


class Response(models.Model):
    """One arm's answer to one prompt.

    ``study`` and ``region`` repeat the prompt's so that picking the next item is one
    indexed query; ``cell`` is the judge bins of every dimension (``"1.0.3"``, in
    dimension order), set when the judge scores are binned.

    ``scores`` holds the automatic judges' scores, ``{"<dimension id>": [value, judge]}``:
    one response row carries them instead of a row per score, because the scores are only
    ever read whole (the bins, which selection and the counts query, are in ``cell``) and a
    row per score made an import write four rows and nine index entries per response.
    """

    # No foreign key has an index of its own: prompt and study lead the unique (prompt, arm)
    # index and response_pick_idx, and every query by arm or region names the study too
    # (the pick index then serves it). Each index costs every imported row its upkeep: the
    # arm and region ones were a quarter of an import's database time (measured). What they
    # served alone, the PROTECT check when an arm or region is deleted, scans instead.
    prompt = models.ForeignKey(
        Prompt, on_delete=models.CASCADE, related_name="responses", db_index=False
    )
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="responses", db_index=False)
    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, related_name="responses", db_index=False
    )
    region = models.ForeignKey(
        Region, on_delete=models.PROTECT, related_name="responses", db_index=False
    )
    text = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    cell = models.CharField(max_length=64, blank=True, default="")
    scores = models.JSONField(
        default=dict,
        blank=True,
        help_text='The judges\' scores: {"<dimension id>": [value, judge]}.',
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "arm"], name="one_response_per_prompt_and_arm"
            ),
        ]
        indexes = [
            # Also serves every query on (study), (study, arm), … (study, arm, region, cell).
            # The queue draws a uniform offset inside a cell: with id in the key that is an
            # index-only scan on PostgreSQL (no heap visit per skipped row).
            models.Index(fields=["study", "arm", "region", "cell", "id"], name="response_pick_idx"),
        ]

    def __str__(self) -> str:
        return f"response {self.pk}"

    def score(self, dimension: Dimension | int) -> tuple[float, str] | None:
        """``(value, judge)`` of the judge's score on ``dimension``, or None if it has none."""
        pk = dimension if isinstance(dimension, int) else dimension.pk
        entry = self.scores.get(str(pk))
        return None if entry is None else (float(entry[0]), str(entry[1]))

    def set_score(self, dimension: Dimension | int, value: float, judge: str) -> None:
        """Set the judge's score on ``dimension`` (saved with the response)."""
        pk = dimension if isinstance(dimension, int) else dimension.pk
        self.scores = {**self.scores, str(pk): [float(value), judge]}


MAX_JUDGE_LENGTH = 200  # the longest judge name an import accepts


def score_value_sql(alias: str, dimension_id: int) -> str:
    """SQL for the judge's value on ``dimension_id`` in ``alias.scores`` (NULL if absent)."""
    pk = int(dimension_id)
    if connection.vendor == "postgresql":
        return f"CAST(({alias}.scores -> '{pk}' ->> 0) AS double precision)"
    return f"json_extract({alias}.scores, '$.\"{pk}\"[0]')"


# What counts: the one definition of a live annotation and a live grade.
#
# An annotation is *live* until it is undone. Undo and a correction both set ``undone_at``
# and keep the row with its labels for the audit (a correction supersedes: the old answer
# is marked undone and a new one is created), so there is no other flag to read. A *live
# grade* is a live annotation with status graded: a skip is live (the annotator has answered
# the response) but gives no grade. The budget, the calibration counts, the queue and the
# export all read these helpers; plain SQL reads ``live_sql``/``live_grade_sql``, the same
# rule (tests/annotate/test_live.py checks that both select the same rows).


def live_q(prefix: str = "") -> Q:
    """Live annotations (not undone), optionally across a relation (``"annotation__"``)."""
    return Q(**{f"{prefix}undone_at__isnull": True})


def live_grade_q(prefix: str = "") -> Q:
    """Live graded annotations (not undone, not skipped); ``prefix`` as in :func:`live_q`."""
    return live_q(prefix) & Q(**{f"{prefix}status": Annotation.Status.GRADED})


def live_sql(alias: str) -> str:
    """:func:`live_q` as a SQL condition on the annotation table named ``alias``."""
    return f"{alias}.undone_at IS NULL"


def live_grade_sql(alias: str) -> str:
    """:func:`live_grade_q` as a SQL condition on the annotation table named ``alias``."""
    return f"{live_sql(alias)} AND {alias}.status = '{Annotation.Status.GRADED.value}'"


class AnnotationQuerySet(models.QuerySet["Annotation"]):
    def live(self) -> AnnotationQuerySet:
        """Answers that count: graded or skipped, not undone (nor corrected since)."""
        return self.filter(live_q())

    def live_grades(self) -> AnnotationQuerySet:
        """Grades that count: live and graded (what the budget and the model read)."""
        return self.filter(live_grade_q())

    def count_graded_responses(self) -> int:
        """Distinct responses with a live grade among these annotations: for a study's, its
        graded responses (what the label budget, the queue and the model's ``n_labels``
        count)."""
        return self.live_grades().values("response_id").distinct().count()


class Annotation(models.Model):
    """One annotator's verdict on one response: graded (with labels) or skipped.

    A submission is idempotent through ``client_key``: the same key twice is one
    annotation. An undone annotation keeps its row (``undone_at``) and stops counting.
    """

    class Status(models.TextChoices):
        GRADED = "graded", "Graded"
        SKIPPED = "skipped", "Skipped"

    response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="annotations")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations"
    )
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="annotations")
    client_key = models.UUIDField(default=uuid.uuid4)
    status = models.CharField(max_length=8, choices=Status, default=Status.GRADED)
    skip_reason = models.CharField(max_length=200, blank=True)
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)

    objects = AnnotationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "client_key"], name="annotation_client_key_unique"
            ),
            # The conditions below spell out live_q and live_grade_q (the class is not
            # defined yet here); a change to the rule must change them too, by migration.
            models.UniqueConstraint(
                fields=["response", "annotator"],
                condition=Q(undone_at__isnull=True),
                name="one_live_annotation_per_response_and_annotator",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["graded", "skipped"]), name="annotation_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="skipped") | ~Q(skip_reason=""),
                name="skip_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(flagged=False) | ~Q(flag_reason=""), name="flag_has_reason"
            ),
        ]
        indexes = [
            models.Index(fields=["study", "created_at"], name="annotation_study_time_idx"),
            # The queue's budget and availability checks read only live grades.
            models.Index(
                fields=["study", "response"],
                condition=Q(status="graded", undone_at__isnull=True),
                name="annotation_live_graded_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} {self.status} response {self.response_id}"


class LabelQuerySet(models.QuerySet["Label"]):
    def of_live(self) -> LabelQuerySet:
        """Labels of live annotations (``AnnotationQuerySet.live``)."""
        return self.filter(live_q("annotation__"))

    def of_live_grades(self) -> LabelQuerySet:
        """Labels of live grades (``AnnotationQuerySet.live_grades``)."""
        return self.filter(live_grade_q("annotation__"))


class Label(models.Model):
    """The grade one annotation gives on one dimension (0/1 binary, 1..K ordinal)."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="labels")
    dimension = models.ForeignKey(Dimension, on_delete=models.PROTECT, related_name="labels")
    value = models.PositiveSmallIntegerField()

    objects = LabelQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotation", "dimension"], name="one_label_per_annotation_and_dimension"
            ),
            models.CheckConstraint(condition=Q(value__lte=10), name="label_value_at_most_10"),
        ]

    def __str__(self) -> str:
        return f"{self.dimension_id}={self.value}"


class Assignment(models.Model):
    """A pick of the selection rule, leased to one annotator for a while.

    ``policy`` and ``probability`` record how and with what chance the response was
    chosen, so that design-based estimators (PPI++) can be run on the same labels.

    In a side-by-side study two assignments of one prompt are leased together: they share
    a ``pair_key`` and ``side`` records where each response was shown (0 left, 1 right,
    drawn at random), so that position bias can be analysed. The second one of a pair has
    policy ``partner`` (``overlap`` when the first is an overlap pick); its ``probability``
    is conditional on the first pick.
    """

    class Policy(models.TextChoices):
        ACTIVE = "active", "Active (information)"
        EXPLORE = "explore", "Exploration (uniform)"
        OVERLAP = "overlap", "Overlap (second annotator)"
        UNIFORM = "uniform", "Uniform (no posterior yet)"
        PARTNER = "partner", "Partner (side-by-side, given the first pick)"
        AUDIT = "audit", "Audit (uniform over all responses)"

    class Side(models.IntegerChoices):
        LEFT = 0, "Left"
        RIGHT = 1, "Right"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    policy = models.CharField(max_length=8, choices=Policy)
    probability = models.FloatField(help_text="Probability that this response was the pick.")
    score = models.FloatField(null=True, blank=True, help_text="Expected information of the cell.")
    fit_id = models.BigIntegerField(null=True, blank=True, help_text="Fit whose draws scored it.")
    leased_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    pair_key = models.UUIDField(
        null=True, blank=True, help_text="Shared by the two assignments of a side-by-side pair."
    )
    side = models.PositiveSmallIntegerField(
        choices=Side, null=True, blank=True, help_text="Where the response was shown in its pair."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(probability__gt=0, probability__lte=1),
                name="assignment_probability_in_0_1",
            ),
            models.CheckConstraint(
                condition=Q(pair_key__isnull=True, side__isnull=True)
                | Q(pair_key__isnull=False, side__in=[0, 1]),
                name="assignment_pair_has_a_side",
            ),
            # One left and one right per pair; also the index that finds a pair's halves.
            models.UniqueConstraint(
                fields=["pair_key", "side"],
                condition=Q(pair_key__isnull=False),
                name="assignment_pair_side_unique",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("leased_at")), name="assignment_expires_after_lease"
            ),
        ]
        indexes = [
            models.Index(fields=["study", "annotator", "completed_at"], name="assignment_open_idx"),
            models.Index(fields=["response", "expires_at"], name="assignment_response_idx"),
            models.Index(
                fields=["study", "expires_at"],
                condition=Q(completed_at__isnull=True),
                name="assignment_open_lease_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"response {self.response_id} to {self.annotator} ({self.policy})"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.completed_at is None and self.expires_at <= (now or timezone.now())


def _import_upload_path(job: ImportJob, filename: str) -> str:
    # The uploader's file name is kept in ImportJob.filename; the stored name only needs
    # to be unique and harmless.
    return f"imports/{job.study_id}/{uuid.uuid4().hex}.upload"


class ImportJob(models.Model):
    """One uploaded file being imported by the worker (``annotate.tasks.run_import``).

    The file waits in the default storage (``MEDIA_ROOT``, never served) and is deleted
    when the job ends, whatever the outcome: a failed job keeps its problems, not the data.
    ``errors`` holds the first problems as ``{"file", "line", "field", "message",
    "expected"}``; ``error_count`` how many the importer found before it stopped looking.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="import_jobs")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    file = models.FileField(upload_to=_import_upload_path, max_length=255, blank=True)
    filename = models.CharField(max_length=255, help_text="The file's name on upload.")
    format = models.CharField(
        max_length=8, blank=True, help_text="jsonl or csv; empty: from the file name."
    )
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    bytes_total = models.BigIntegerField(default=0)
    bytes_processed = models.BigIntegerField(default=0)
    lines = models.PositiveIntegerField(default=0, help_text="Interactions read.")
    prompts_created = models.PositiveIntegerField(default=0)
    prompts_updated = models.PositiveIntegerField(default=0)
    responses_created = models.PositiveIntegerField(default=0)
    responses_updated = models.PositiveIntegerField(default=0)
    scores_created = models.PositiveIntegerField(default=0)
    scores_updated = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True, help_text="The importer's full report.")
    errors = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    error_message = models.TextField(blank=True, help_text="A failure that is not the file's.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the worker."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed"]),
                name="importjob_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(bytes_processed__gte=0, bytes_total__gte=0),
                name="importjob_bytes_not_negative",
            ),
        ]

    def __str__(self) -> str:
        # Named by its study's slug: the audit log shows this to people, not ids.
        return f"import {self.pk} of {self.filename} into {self.study.slug} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("annotate-upload-job", kwargs={"slug": self.study.slug, "job_id": self.pk})

    @property
    def is_done(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def percent(self) -> int | None:
        """Share of the file read, 0–100, or None when the size is unknown."""
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.bytes_total:
            return None
        return min(100, int(100 * self.bytes_processed / self.bytes_total))

    @property
    def errors_not_shown(self) -> int:
        return max(0, self.error_count - len(self.errors))

    def problem_lines(self) -> list[str]:
        """The problems as ``file:line: field: message (expected …)``."""
        out = []
        for p in self.errors:
            text = f"{p['file']}:{p['line']}: {p['field']}: {p['message']}"
            out.append(f"{text} (expected {p['expected']})" if p.get("expected") else text)
        return out
