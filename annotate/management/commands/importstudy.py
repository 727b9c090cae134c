"""manage.py importstudy FILE --study SLUG: import responses and judge scores into a study."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.imports.importing import FORMATS, ImportFailed, import_file
from annotate.models import Study


class Command(BaseCommand):
    help = (
        "Import a JSONL or long-CSV file of prompts, responses and judge scores into a study "
        "(all or nothing; see docs/importing.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the .jsonl/.ndjson or .csv file")
        parser.add_argument("--study", required=True, help="slug of the study")
        parser.add_argument(
            "--format", choices=FORMATS, default=None, help="default: from the file extension"
        )
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args: object, **options: object) -> None:
        slug = str(options["study"])
        try:
            study = Study.objects.get(slug=slug)
        except Study.DoesNotExist:
            raise CommandError(f"no study with slug {slug!r}") from None
        try:
            report = import_file(
                str(options["file"]),
                study=study,
                fmt=options["format"],  # type: ignore[arg-type]
                batch_size=int(options["batch_size"]),  # type: ignore[call-overload]
            )
        except FileNotFoundError as e:
            raise CommandError(f"{options['file']}: {e.strerror}") from None
        except ImportFailed as failed:
            for problem in failed.problems:
                self.stderr.write(str(problem))
            raise CommandError(
                f"import refused ({len(failed.problems)} problem(s) shown); nothing was written"
            ) from None
        self.stdout.write(str(report))
