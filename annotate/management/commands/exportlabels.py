"""manage.py exportlabels --study SLUG --format csv|jsonl [-o FILE]: one row per human label."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import record
from annotate.imports.exporting import EXPORT_FORMATS, write_labels
from annotate.models import Study


class Command(BaseCommand):
    help = "Export a study's human labels, one row per label (see docs/importing.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--study", required=True, help="slug of the study")
        parser.add_argument("--format", choices=EXPORT_FORMATS, default="csv")
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")

    def handle(self, *args: object, **options: object) -> None:
        slug = str(options["study"])
        try:
            study = Study.objects.get(slug=slug)
        except Study.DoesNotExist:
            raise CommandError(f"no study with slug {slug!r}") from None
        fmt = str(options["format"])
        output = options["output"]
        details = {"format": fmt, "via": "manage.py exportlabels", "output": output or "stdout"}
        record(actor=None, action="export.labels", study=study, details=details)
        if output:
            with open(str(output), "w", encoding="utf-8", newline="") as out:
                rows = write_labels(study=study, fmt=fmt, out=out)
            self.stderr.write(f"{rows} labels written to {output}")
        else:
            # Every chunk ends with a newline, so OutputWrapper adds none of its own.
            write_labels(study=study, fmt=fmt, out=self.stdout)
