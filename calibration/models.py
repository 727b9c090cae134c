"""Fits of the calibration model, and what they concluded."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.functional import cached_property


class Fit(models.Model):
    """One run of the calibration model on a study's counts.

    Everything needed to reproduce it is stored beside the result: the seed, a hash of
    the counts, the model version and the judge bins. The newest succeeded fit is what
    dashboards and selection read; a queued, running or failed fit never hides it.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        LABELS = "labels", "New labels"
        MANUAL = "manual", "On demand"
        CONFIG = "config", "Configuration change"
        IMPORT = "import", "Import"

    study = models.ForeignKey("annotate.Study", on_delete=models.CASCADE, related_name="fits")
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    trigger = models.CharField(max_length=8, choices=Trigger, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    seed = models.BigIntegerField(default=0)
    counts_hash = models.CharField(max_length=64, blank=True)
    model_version = models.CharField(max_length=40, blank=True)
    bins = models.JSONField(default=dict, blank=True)
    n_labels = models.PositiveIntegerField(default=0, help_text="Graded responses the fit saw.")
    n_responses = models.PositiveIntegerField(default=0)
    diagnostics = models.JSONField(default=dict, blank=True)
    trustworthy = models.BooleanField(
        default=False, help_text="Diagnostics passed (r-hat, ESS, divergences)."
    )
    summary = models.JSONField(default=dict, blank=True)
    draws = models.BinaryField(null=True, blank=True, editable=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed"]),
                name="fit_status_valid",
            ),
            # Bursts coalesce: at most one fit of a study runs, and at most one more waits
            # behind it (a follow-up that will see the labels that came in meanwhile).
            models.UniqueConstraint(
                fields=["study"], condition=Q(status="running"), name="one_running_fit_per_study"
            ),
            models.UniqueConstraint(
                fields=["study"], condition=Q(status="queued"), name="one_queued_fit_per_study"
            ),
        ]
        indexes = [models.Index(fields=["study", "status", "-finished_at"], name="fit_latest_idx")]

    def __str__(self) -> str:
        # The study's own fit number, as the pages say it; the id for the logs.
        return f"fit {self.number} of {self.study} (id {self.pk}, {self.status})"

    @cached_property
    def number(self) -> int:
        """This fit's number within its study (1 for its first fit), which is what people
        read; ``pk`` counts every study's fits and stays for URLs and the logs."""
        return Fit.objects.filter(study_id=self.study_id, pk__lte=self.pk).count()

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class CellTotal(models.Model):
    """How many responses a study holds in one cell (arm, region, judge bins of every dimension).

    Selection needs the size of every cell on every pick. Counting them from the responses
    costs a scan of the study (1.4 s of database time at a million responses), and they only
    change when responses do. :func:`calibration.selection.refresh_cell_totals` rewrites a
    study's rows; a pick recounts when the rows are missing (re-binning deletes them) or
    when a response was added since (one with an id above ``last_response_id``, found in
    the primary key index at no cost). ``refreshed_at`` (the same on every row of one
    refresh) tells each server process when its own per-response cache of cells is stale.
    ``min_id`` and ``max_id`` bound the study's ids for the queue's uniform draw over a
    large study, and its size is the sum of ``responses``: so no request counts a study's
    responses (:func:`calibration.totals.study_extent`). ``fences`` let the queue's uniform
    draw inside the cell start from the id at a known rank instead of scanning from the
    cell's first (:func:`calibration.totals.refresh_cell_totals`).
    """

    study = models.ForeignKey(
        "annotate.Study", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    arm = models.ForeignKey("annotate.Arm", on_delete=models.CASCADE, related_name="+")
    region = models.ForeignKey("annotate.Region", on_delete=models.CASCADE, related_name="+")
    cell = models.CharField(max_length=64, blank=True)
    responses = models.PositiveIntegerField()
    refreshed_at = models.DateTimeField()
    last_response_id = models.BigIntegerField(
        help_text="The highest response id of the whole table when counted."
    )
    min_id = models.BigIntegerField(null=True, help_text="The lowest response id in the cell.")
    max_id = models.BigIntegerField(null=True, help_text="The highest response id in the cell.")
    fences = models.JSONField(
        null=True,
        help_text='{"every": F, "ids": the ids at ranks 0, F, 2F, … of the cell in id order}.',
    )

    class Meta:
        constraints = [
            # Also the index every pick reads the study's rows through.
            models.UniqueConstraint(
                fields=["study", "arm", "region", "cell"], name="cell_total_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.responses} responses in cell {self.cell!r} of study {self.study_id}"


class Replan(models.Model):
    """An explicit, audited change of a study's plan after grading started.

    The plan is the label budget, the margins, the confidence and the audit share. Each
    re-plan stores the plan before and after, where the study stood (graded responses, the
    fit it was computed from) and, per candidate and dimension, the sequential boundary it
    leaves (``designs``: ``{candidate: {dimension: {"go": [q, t, w], "no-go": [...]}}}``,
    :class:`calibration.bayes.decision.Design`) with the conditional wrong-go probability
    it carried over (``spent``). Fits read the latest one's designs.
    """

    study = models.ForeignKey("annotate.Study", on_delete=models.CASCADE, related_name="replans")
    number = models.PositiveIntegerField(help_text="1 for the first re-plan of the study, …")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    reason = models.TextField()
    before = models.JSONField(help_text="The plan before: label_budget, confidence, …")
    after = models.JSONField(help_text="The plan after.")
    labels_at = models.PositiveIntegerField(help_text="Graded responses when it was made.")
    fit = models.ForeignKey(
        Fit, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The fit whose verdicts the new boundaries start from.",
    )  # fmt: skip
    designs = models.JSONField(default=dict, blank=True)
    spent = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["study", "number"]
        constraints = [
            models.UniqueConstraint(fields=["study", "number"], name="replan_number_unique"),
        ]

    def __str__(self) -> str:
        return f"re-plan {self.number} of {self.study}"
