"""API shapes of fits and of the posterior they serve (read-only: fits are made by services)."""

from __future__ import annotations

from rest_framework import serializers

from calibration.models import Fit

# "held": a go the audit sample does not confirm (calibration.bayes.audit).
VERDICTS = ["go", "no-go", "undecided", "held"]


class FitSerializer(serializers.ModelSerializer):
    """One fit: its state, what it saw, and whether its diagnostics passed."""

    requested_by = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True
    )
    seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Fit
        fields = [
            "id",
            "status",
            "trigger",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "seconds",
            "n_labels",
            "n_responses",
            "trustworthy",
            "seed",
            "counts_hash",
            "model_version",
            "bins",
            "diagnostics",
            "error",
        ]
        read_only_fields = fields


class DeltaSerializer(serializers.Serializer):
    """Posterior of Δ = candidate pass rate − incumbent pass rate (traffic-weighted)."""

    mean = serializers.FloatField()
    lower = serializers.FloatField(help_text="2.5% posterior quantile.")
    upper = serializers.FloatField(help_text="97.5% posterior quantile.")
    p_noninferior = serializers.FloatField(help_text="P(Δ > −margin).")
    p_inferior = serializers.FloatField(help_text="P(Δ < −margin).")
    verdict = serializers.ChoiceField(choices=VERDICTS)


class RegionDeltaSerializer(DeltaSerializer):
    region = serializers.CharField()


class JudgeArmSerializer(serializers.Serializer):
    arm = serializers.CharField()
    sensitivity = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="[mean, lower, upper] of P(judge passes | human pass); binary judges only.",
    )
    specificity = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="[mean, lower, upper] of P(judge fails | human fail); binary judges only.",
    )
    confusion_mean = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="Posterior mean of P(judge bin | true class), rows fail then pass.",
    )


class JudgeSerializer(serializers.Serializer):
    p_differs = serializers.FloatField(
        help_text="P(the judge treats the candidate differently from the incumbent)."
    )
    tol = serializers.FloatField(help_text="Difference (total variation) counted as different.")
    differs = serializers.BooleanField(
        allow_null=True,
        required=False,
        help_text="The 95% interval of the judge's difference between the two models lies "
        "wholly above tol, for failures or for passes (null for fits before model v2).",
    )
    difference = serializers.DictField(
        child=serializers.DictField(child=serializers.FloatField()),
        allow_null=True,
        required=False,
        help_text="Per human class (fail, pass): mean and 95% interval of the total variation "
        "between the judge's bin distributions on the two models.",
    )
    arms = JudgeArmSerializer(many=True)


class AuditSerializer(serializers.Serializer):
    """Δ from the audit sample alone (uniform draws, PPI++: calibration.bayes.audit)."""

    mean = serializers.FloatField()
    se = serializers.FloatField()
    lower = serializers.FloatField()
    upper = serializers.FloatField()
    n = serializers.IntegerField(help_text="Audit grades of the two arms.")


class CandidateDimensionSerializer(DeltaSerializer):
    dimension = serializers.CharField()
    margin = serializers.FloatField()
    audit = AuditSerializer(
        allow_null=True, help_text="Null when an arm has fewer than two audit grades."
    )
    audit_agrees = serializers.BooleanField(
        allow_null=True, help_text="A go stands only when the model and the audit agree."
    )
    fit_ok = serializers.BooleanField()
    naive_judge_delta = serializers.FloatField(
        allow_null=True, help_text="Δ if the judge's verdicts were taken at face value."
    )
    regions = RegionDeltaSerializer(many=True)
    judge = JudgeSerializer()


class CandidateSerializer(serializers.Serializer):
    arm = serializers.CharField()
    model_name = serializers.CharField()
    verdict = serializers.ChoiceField(
        choices=VERDICTS, help_text="go when every dimension is a go (and the fit is sound)."
    )
    dimensions = CandidateDimensionSerializer(many=True)


class PassRateSerializer(serializers.Serializer):
    arm = serializers.CharField()
    mean = serializers.FloatField()
    lower = serializers.FloatField()
    upper = serializers.FloatField()


class DimensionDiagnosticsSerializer(serializers.Serializer):
    max_rhat = serializers.FloatField(allow_null=True)
    min_ess_bulk = serializers.FloatField(allow_null=True)
    divergences = serializers.IntegerField()
    seconds = serializers.FloatField()
    ok = serializers.BooleanField()


class PosteriorDimensionSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    margin = serializers.FloatField()
    n_bins = serializers.IntegerField()
    pass_rates = PassRateSerializer(many=True, help_text="Traffic-weighted pass rate per arm.")
    diagnostics = DimensionDiagnosticsSerializer()


class RegionSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    traffic_share = serializers.FloatField()


class ArmSerializer(serializers.Serializer):
    arm = serializers.CharField()
    model_name = serializers.CharField()


class PosteriorSerializer(serializers.Serializer):
    """The latest succeeded fit's verdicts; ``trustworthy`` false means diagnostics failed."""

    fit = FitSerializer()
    trustworthy = serializers.BooleanField()
    confidence = serializers.FloatField()
    incumbent = ArmSerializer()
    regions = RegionSerializer(many=True)
    dimensions = PosteriorDimensionSerializer(many=True)
    candidates = CandidateSerializer(many=True)


def posterior_payload(fit: Fit) -> dict:
    """What PosteriorSerializer renders: the fit's summary with its record and diagnostics."""
    summary = fit.summary
    dims = [{**d, "diagnostics": fit.diagnostics.get(d["key"], {})} for d in summary["dimensions"]]
    return {**summary, "dimensions": dims, "fit": fit, "trustworthy": fit.trustworthy}
