"""``manage.py makedemo``: create the seeded demo study and one user per role."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.demo import DEMO_SLUG, DEMO_URL, DemoOutcome, make_demo


class Command(BaseCommand):
    help = (
        "Create a realistic demo study (a support assistant: 3 arms, 3 dimensions, 6 regions, "
        "simulated judge scores, true grades kept in response metadata) and demo logins."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=7, help="Random seed (default 7).")
        parser.add_argument(
            "--prompts", type=int, default=3000, help="Prompts to generate (default 3000)."
        )
        parser.add_argument("--slug", default=DEMO_SLUG, help=f"Study slug (default {DEMO_SLUG}).")
        parser.add_argument(
            "--url",
            default=DEMO_URL,
            help=f"Where the app is served, to print (default {DEMO_URL}).",
        )
        parser.add_argument(
            "--if-absent",
            action="store_true",
            help="Do nothing (but print the logins) when the study exists already.",
        )

    def handle(self, *args: object, **options: object) -> None:
        prompts = int(options["prompts"])  # type: ignore[call-overload]
        if prompts < 1:
            raise CommandError("--prompts must be at least 1")
        try:
            outcome = make_demo(
                seed=int(options["seed"]),  # type: ignore[call-overload]
                prompts=prompts,
                slug=str(options["slug"]),
                if_absent=bool(options["if_absent"]),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(describe(outcome, url=str(options["url"])))


def describe(outcome: DemoOutcome, *, url: str = DEMO_URL) -> str:
    """What the command prints: what happened, the URL and the logins."""
    study = outcome.study
    if outcome.created:
        n_prompts = len(outcome.data.records) if outcome.data else 0
        head = (
            f"Created demo study {study.slug!r} ({study.name}): {n_prompts} prompts, "
            f"{study.responses.count()} responses, in {outcome.seconds:.1f} s."
        )
    else:
        head = (
            f"Demo study {study.slug!r} exists already; nothing changed "
            "(passwords as makedemo set them, unless changed since)."
        )
    lines = [head, "", f"Open {url} and log in as:"]
    for login in outcome.logins:
        password = login.password or "(existing user, password unchanged)"
        lines.append(f"  {login.username:<11} {password:<12}  {login.role}")
    return "\n".join(lines)
