"""The re-plan form: the whole plan at once, a reason, and an explicit confirmation."""

from __future__ import annotations

from typing import Any

from django import forms

from annotate.models import Study


class ReplanForm(forms.Form):
    label_budget = forms.IntegerField(min_value=1, help_text="Graded responses to spend at most.")
    confidence = forms.FloatField(help_text="Above 0.5 and below 1 (e.g. 0.95).")
    audit_share = forms.FloatField(
        min_value=0, help_text="Share of picks drawn uniformly for the audit (below 1)."
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why the plan changes. It is listed in the report.",
    )
    confirm = forms.BooleanField(
        required=True,
        label="I understand that this re-plan is recorded in the audit log and the report, and "
        "that verdicts from now on are held to the error the current plan has left.",
        error_messages={"required": "Confirm the re-plan: it cannot be undone."},
    )

    def __init__(self, *args: Any, study: Study, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.study = study
        self.dimensions = list(study.dimensions.order_by("position", "id"))
        self.fields["label_budget"].initial = study.label_budget
        self.fields["confidence"].initial = study.confidence
        self.fields["audit_share"].initial = study.audit_share
        for d in self.dimensions:
            self.fields[f"margin_{d.key}"] = forms.FloatField(
                label=f"Margin of {d.title}",
                initial=d.margin,
                min_value=0,
                help_text="On the pass-rate scale (0.02 = 2 points). Set it from what the product "
                "can bear, not from the Δ you have seen.",
            )
        # The confirmation last, after the margins.
        self.order_fields([*[f for f in self.fields if f != "confirm"], "confirm"])

    def clean_confidence(self) -> float:
        value = self.cleaned_data["confidence"]
        if not 0.5 < value < 1:
            raise forms.ValidationError("Confidence must be above 0.5 and below 1 (e.g. 0.95).")
        return value

    def clean_audit_share(self) -> float:
        value = self.cleaned_data["audit_share"]
        if not 0 <= value < 1:
            raise forms.ValidationError("A share from 0 up to (not including) 1 (e.g. 0.10).")
        return value

    def margins(self) -> dict[str, float]:
        return {d.key: self.cleaned_data[f"margin_{d.key}"] for d in self.dimensions}
