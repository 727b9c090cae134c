"""Forms of the study setup flow. Field-level messages say what is wrong in plain words;
the database constraints stay the last line of defence."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.utils.text import slugify

from ..models import SHARE_TOLERANCE, Arm, Dimension, Membership, Region, Study
from ..numbers import FiniteDecimalField, parse_decimal, parse_finite_floats

STUDY_FIELDS = [
    "name",
    "slug",
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
]
#: Shown read-only once grading started (annotate.setup.services.PLAN_FIELDS).
FROZEN_HELP = "Frozen since grading started: change it with a re-plan (study overview)."


class StudyForm(forms.ModelForm):
    class Meta:
        model = Study
        fields = STUDY_FIELDS
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "instructions": forms.Textarea(attrs={"rows": 6}),
        }
        labels = {
            "description": "Description (leads and admins only)",
            "instructions": "Instructions for annotators",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["audit_share"].required = False
        if self.instance.pk:
            # URLs, bookmarks and API clients use the slug: it is fixed once created.
            self.fields["slug"].disabled = True
            if self.instance.plan_frozen():
                for name in ("label_budget", "confidence", "audit_share"):
                    self.fields[name].disabled = True
                    self.fields[name].help_text = FROZEN_HELP
        else:
            self.fields["slug"].required = False
            self.fields["slug"].label = "Slug (optional)"
            self.fields[
                "slug"
            ].help_text = "Its address: /studies/<slug>/. Leave empty to derive it from the name."

    def clean_slug(self) -> str:
        slug = self.cleaned_data.get("slug") or ""
        if self.instance.pk or slug:
            return slug
        return unique_slug(self.data.get("name", ""))

    def clean_audit_share(self) -> float:
        value = self.cleaned_data["audit_share"]
        if value is None:  # left empty (or a client that predates the field): the default
            return float(Study._meta.get_field("audit_share").get_default())
        if not 0 <= value < 1:
            raise forms.ValidationError("A share from 0 up to (not including) 1 (e.g. 0.10).")
        return value

    def clean_confidence(self) -> float:
        value = self.cleaned_data["confidence"]
        if not 0.5 < value < 1:
            raise forms.ValidationError("Confidence must be above 0.5 and below 1 (e.g. 0.95).")
        return value

    def clean_exploration_share(self) -> float:
        value = self.cleaned_data["exploration_share"]
        if not 0 <= value <= 1:
            raise forms.ValidationError("A share between 0 and 1 (e.g. 0.15).")
        return value

    def clean_overlap_share(self) -> float:
        value = self.cleaned_data["overlap_share"]
        if not 0 <= value < 1:
            raise forms.ValidationError("A share from 0 up to (not including) 1 (e.g. 0.10).")
        return value

    def clean_lease_seconds(self) -> int:
        value = self.cleaned_data["lease_seconds"]
        if value < 10:
            raise forms.ValidationError("At least 10 seconds.")
        return value

    def clean_refit_every(self) -> int:
        value = self.cleaned_data["refit_every"]
        if value < 1:
            raise forms.ValidationError("At least 1 grade.")
        return value


def unique_slug(name: str) -> str:
    """A slug from the study name, numbered when taken: ``support-bot``, ``support-bot-2``."""
    base = slugify(name)[:70].strip("-") or "study"
    slug, n = base, 1
    while Study.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


class ArmForm(forms.ModelForm):
    class Meta:
        model = Arm
        fields = ["key", "model_name", "role", "position"]

    def __init__(self, *args: Any, study: Study, **kwargs: Any) -> None:
        self.study = study
        super().__init__(*args, **kwargs)

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        others = self.study.arms.exclude(pk=self.instance.pk)
        if others.filter(key=key).exists():
            raise forms.ValidationError(f"This study already has an arm with key “{key}”.")
        return key

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        if role == Arm.Role.INCUMBENT:
            other = self.study.arms.filter(role=role).exclude(pk=self.instance.pk).first()
            if other is not None:
                raise forms.ValidationError(
                    f"This study already has an incumbent ({other.key}: {other.model_name}); "
                    "make it a candidate first."
                )
        return role


class DimensionForm(forms.ModelForm):
    point_descriptions_text = forms.CharField(
        label="Scale point descriptions",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="One line per scale point, lowest first (binary: fail, then pass).",
    )
    judge_cuts_text = forms.CharField(
        label="Judge cut points",
        required=False,
        help_text="Interior cut points, comma-separated and increasing (bins − 1 of them). "
        "Leave empty to have them set from the data at import.",
    )

    class Meta:
        model = Dimension
        fields = [
            "key",
            "title",
            "rubric",
            "scale",
            "scale_max",
            "pass_threshold",
            "margin",
            "judge_score_type",
            "judge_min",
            "judge_max",
            "judge_bins",
            "position",
        ]
        widgets = {"rubric": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args: Any, study: Study, **kwargs: Any) -> None:
        self.study = study
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.fields["point_descriptions_text"].initial = "\n".join(
                self.instance.point_descriptions or []
            )
            cuts = self.instance.judge_cuts
            self.fields["judge_cuts_text"].initial = ", ".join(f"{c:g}" for c in cuts or [])
        self.fields[
            "scale_max"
        ].help_text = "K for an ordinal scale 1..K (2 to 10); ignored for binary."
        self.fields["pass_threshold"].help_text = "Ordinal only: grades at or above this pass."
        if self.instance.pk and study.plan_frozen():
            self.fields["margin"].disabled = True
            self.fields["margin"].help_text = FROZEN_HELP

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        if self.study.dimensions.exclude(pk=self.instance.pk).filter(key=key).exists():
            raise forms.ValidationError(f"This study already has a dimension with key “{key}”.")
        return key

    def clean_margin(self) -> float:
        value = self.cleaned_data["margin"]
        if not 0 <= value < 1:
            raise forms.ValidationError("A margin on the pass rate, from 0 up to 1 (e.g. 0.02).")
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        scale = data.get("scale")
        if scale == Dimension.Scale.BINARY:
            data["scale_max"], data["pass_threshold"] = 1, None
            points = 2
        elif scale == Dimension.Scale.ORDINAL:
            k, threshold = data.get("scale_max"), data.get("pass_threshold")
            if k is None or not 2 <= k <= 10:
                self.add_error("scale_max", "An ordinal scale has 2 to 10 points.")
                k = None
            if threshold is None:
                self.add_error("pass_threshold", "An ordinal scale needs a pass threshold.")
            elif k is not None and not 1 <= threshold <= k:
                self.add_error("pass_threshold", f"The pass threshold must be between 1 and {k}.")
            points = k or 0
        else:
            points = 0
        self._clean_points(data, points)
        self._clean_judge(data)
        self._clean_against_data(data)
        if self.instance.pk and self.instance.labels.exists():
            old = Dimension.objects.get(pk=self.instance.pk)
            if (old.scale, old.scale_max) != (data.get("scale"), data.get("scale_max")):
                self.add_error(
                    "scale",
                    f"This dimension already has {self.instance.labels.count()} human grades; "
                    "its scale cannot change. Add a new dimension instead.",
                )
        return data

    def _clean_against_data(self, data: dict[str, Any]) -> None:
        # Imported responses carry one judge bin per dimension, in dimension order (their
        # cell): a new dimension would have no scores, a new order would scramble the cells.
        from .services import response_counts

        n = response_counts(self.study).total if self.study.pk else 0
        if not n:
            return
        if self.instance.pk is None:
            self.add_error(
                None,
                f"This study already has {n} responses, imported without judge scores for a "
                "new dimension: set up every dimension before uploading data.",
            )
        elif data.get("position") != Dimension.objects.get(pk=self.instance.pk).position:
            self.add_error(
                "position",
                f"The order of dimensions is fixed once data is imported ({n} responses).",
            )

    def _clean_points(self, data: dict[str, Any], points: int) -> None:
        lines = [ln.strip() for ln in data.get("point_descriptions_text", "").splitlines()]
        lines = [ln for ln in lines if ln]
        if lines and points and len(lines) != points:
            self.add_error(
                "point_descriptions_text",
                f"{len(lines)} descriptions for {points} scale points: give one per point.",
            )
        data["point_descriptions"] = lines

    def _clean_judge(self, data: dict[str, Any]) -> None:
        kind, bins = data.get("judge_score_type"), data.get("judge_bins")
        low, high = data.get("judge_min"), data.get("judge_max")
        if bins is not None and not 2 <= bins <= 10:
            self.add_error("judge_bins", "Between 2 and 10 bins.")
            bins = None
        if kind == Dimension.JudgeScoreType.BINARY and bins not in (None, 2):
            self.add_error("judge_bins", "A binary judge has exactly 2 bins.")
        if kind == Dimension.JudgeScoreType.LIKERT:
            if low is None or high is None:
                self.add_error("judge_min", "A Likert judge needs its range (min and max).")
            elif low != int(low) or high != int(high):
                self.add_error("judge_min", "A Likert range is whole numbers.")
        if low is not None and high is not None and low >= high:
            self.add_error("judge_max", "The judge's max must be above its min.")
        try:
            cuts = parse_finite_floats(data.get("judge_cuts_text", ""))
        except forms.ValidationError as e:
            self.add_error("judge_cuts_text", e)
            return
        if cuts:
            if bins is not None and len(cuts) != bins - 1:
                self.add_error(
                    "judge_cuts_text", f"{bins} bins need {bins - 1} cut points, not {len(cuts)}."
                )
            elif any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
                self.add_error("judge_cuts_text", "Cut points must be strictly increasing.")
            elif (low is not None and cuts[0] <= low) or (high is not None and cuts[-1] >= high):
                self.add_error("judge_cuts_text", "Cut points must lie inside the judge's range.")
        data["judge_cuts"] = cuts or None

    def _post_clean(self) -> None:  # type: ignore[misc]
        super()._post_clean()  # type: ignore[misc]
        # Not form fields, so construct_instance leaves them alone: set them here so that
        # the unsaved instance is complete for the change preview.
        self.instance.point_descriptions = self.cleaned_data.get("point_descriptions", [])
        self.instance.judge_cuts = self.cleaned_data.get("judge_cuts")


class RegionForm(forms.ModelForm):
    class Meta:
        model = Region
        fields = ["key", "name", "traffic_share", "position"]
        field_classes = {"traffic_share": FiniteDecimalField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Rows are ordered as shown; a number typed here overrides that.
        self.fields["position"].required = False

    def clean_traffic_share(self) -> Decimal:
        value = self.cleaned_data["traffic_share"]
        if not 0 < value <= 1:
            raise forms.ValidationError("A share above 0 and at most 1 (e.g. 0.25).")
        return value


# The live sum adds shares as typed: a share beyond this is not shown in a sum (it is
# refused as a share anyway), and Decimal("9e9999999") + 0 would raise decimal.Overflow.
MAX_SHARE_TYPED = Decimal(1000)


class BaseRegionFormSet(forms.BaseModelFormSet):
    """All of a study's regions at once, so that their shares can be checked to sum to 1."""

    def __init__(self, *args: Any, study: Study, extra_rows: int = 0, **kwargs: Any) -> None:
        self.study = study
        self.extra = extra_rows  # blank rows shown; the page adds more without a round trip
        kwargs.setdefault("queryset", study.regions.all())
        super().__init__(*args, **kwargs)

    def kept_forms(self) -> list[forms.ModelForm]:
        return [
            f
            for f in self.forms
            if f.has_changed() or f.instance.pk
            if not (self.can_delete and self._should_delete_form(f))  # type: ignore[attr-defined]
        ]

    def share_total(self) -> Decimal | None:
        """The sum of the shares as typed (None while one is not a number)."""
        if not self.is_bound:
            return sum((r.traffic_share for r in self.get_queryset()), Decimal(0))
        total = Decimal(0)
        for form in self.forms:
            raw = str(form.data.get(form.add_prefix("traffic_share"), "")).strip()
            if form.data.get(form.add_prefix("DELETE")) or not raw:
                continue
            value = parse_decimal(raw, max_abs=MAX_SHARE_TYPED)
            if value is None:
                return None
            total += value
        return total

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        kept = self.kept_forms()
        keys = [str(f.cleaned_data.get("key")) for f in kept]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise forms.ValidationError(f"Region keys must be unique: {', '.join(duplicates)}.")
        for form in self.deleted_forms:
            # exists(), not count(): a region may hold millions of prompts.
            if form.instance.pk and form.instance.prompts.exists():
                raise forms.ValidationError(
                    f"Region “{form.instance.key}” has prompts: it cannot be removed."
                )
        if not kept:
            raise forms.ValidationError("A study needs at least one region.")
        for i, form in enumerate(kept):
            if form.cleaned_data.get("position") is None:
                form.instance.position = i
        total = sum((f.cleaned_data["traffic_share"] for f in kept), Decimal(0))
        if abs(total - 1) > SHARE_TOLERANCE:
            raise forms.ValidationError(
                f"Traffic shares sum to {total.normalize():f}; they must sum to 1 "
                f"(off by {(total - 1).normalize():+f})."
            )


RegionFormSet = forms.modelformset_factory(
    Region, form=RegionForm, formset=BaseRegionFormSet, extra=0, can_delete=True
)


def suggested_shares(counts: list[int]) -> list[Decimal]:
    """Shares proportional to ``counts`` (prompts per region), rounded to 6 decimals, the
    largest absorbing the rounding so that they sum to exactly 1."""
    total = sum(counts)
    if not total:
        return []
    q = Decimal("0.000001")
    shares = [(Decimal(n) / total).quantize(q) for n in counts]
    biggest = max(range(len(shares)), key=lambda i: shares[i])
    shares[biggest] += Decimal(1) - sum(shares)
    return shares


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)

    def clean_username(self) -> Any:
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(f"No active user is called “{username}”.")
        return user


class NewAccountForm(forms.Form):
    """An account created from the study (no Django admin): its owner sets the password
    through a one-time link."""

    new_username = forms.CharField(
        label="Username",
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
    )
    email = forms.EmailField(required=False, help_text="Optional: for your records.")
    new_role = forms.ChoiceField(
        label="Role", choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR
    )

    def clean_new_username(self) -> str:
        username = self.cleaned_data["new_username"].strip()
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(
                f"“{username}” already has an account: add them with the form above."
            )
        return username
