"""``manage.py runfits --study SLUG [--wait]``: fit a study now, in this process."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.models import Study
from calibration import services


class Command(BaseCommand):
    help = "Fit a study's calibration model now, in this process (no worker needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--study", required=True, help="Slug of the study to fit.")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="If a fit of the study is running, wait for it and then fit.",
        )

    def handle(self, *args: object, **options: object) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study {options['study']!r}")
        try:
            fit = services.fit_now(study=study, wait=bool(options["wait"]))
        except services.FitBusy as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(describe(fit))
        if fit.status != fit.Status.SUCCEEDED:
            raise CommandError(
                f"fit {fit.pk} {fit.status}: {fit.error.splitlines()[0] if fit.error else ''}"
            )


def describe(fit) -> str:
    lines = [f"fit {fit.pk} of {fit.study.slug}: {fit.status} in {fit.seconds or 0:.1f} s"]
    if fit.status == fit.Status.SUCCEEDED:
        trust = "trustworthy" if fit.trustworthy else "UNTRUSTWORTHY (diagnostics failed)"
        lines.append(f"  {fit.n_labels} graded responses of {fit.n_responses}; {trust}")
        for key, d in fit.diagnostics.items():
            lines.append(
                f"  {key}: r-hat {d['max_rhat']}, ESS {d['min_ess_bulk']}, "
                f"divergences {d['divergences']}, {d['seconds']} s"
            )
        for cand in fit.summary.get("candidates", []):
            verdicts = ", ".join(f"{d['dimension']} {d['verdict']}" for d in cand["dimensions"])
            lines.append(f"  {cand['model_name']}: {cand['verdict']} ({verdicts})")
    return "\n".join(lines)
