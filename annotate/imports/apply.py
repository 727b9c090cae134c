"""Applying the staged rows to the study (:func:`apply`): set-based ``UPDATE … FROM`` of
what changed, then ``INSERT … SELECT`` of what is new, checking that no graded text changes.
Into a fresh study, here or on the fresh path, PostgreSQL's per-row foreign-key checks are
skipped (:func:`trust_foreign_keys`)."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, connection, transaction

from ..models import Arm, Dimension, Prompt, Region, Response, Study
from .binning import bin_sql, fix_cuts
from .parsing import Problems
from .report import ImportFailed, ImportProblem, ImportReport
from .schema import Schema
from .staging import Stager


def apply(
    cursor: Any,
    stager: Stager,
    study: Study,
    schema: Schema,
    report: ImportReport,
    sink: Problems,
) -> None:
    """Check the staged rows against the file and the database, then write them."""
    pg = connection.vendor == "postgresql"
    jsonb = "::jsonb" if pg else ""
    P, R = Prompt._meta.db_table, Response._meta.db_table  # noqa: N806
    sp, sr = stager.prompt_table, stager.response_table
    sid = study.pk

    cuts = fix_cuts(schema, stager.cuts, report)
    bins = [bin_sql(f"x.v{i}", c) for i, c in enumerate(cuts)]
    cell = " || '.' || ".join(f"CAST({b} AS TEXT)" for b in bins) if bins else "''"

    # 1. Ids repeated within the file (for CSV: the rows of an id were not contiguous).
    cursor.execute(
        f"SELECT s.line, s.ext_id, f.first FROM {sp} s JOIN (SELECT ext_id, MIN(line) AS first "
        f"FROM {sp} GROUP BY ext_id HAVING COUNT(*) > 1) f ON f.ext_id = s.ext_id "
        f"WHERE s.line > f.first ORDER BY s.line LIMIT %s",
        [sink.limit],
    )
    for line, ext_id, first in cursor.fetchall():
        if report.format == "csv":
            sink.add(
                line,
                "id",
                f"id {ext_id!r} appears again after other ids (first on line {first})",
                "the rows of one id to be contiguous",
            )
        else:
            sink.add(
                line,
                "id",
                f"duplicate id {ext_id!r} (first on line {first})",
                "each id once per file",
            )
    sink.raise_if_any()

    existed = Prompt.objects.filter(study=study).exists()
    n_prompts = report.lines
    n_responses = n_prompts * len(schema.arms)
    n_scores = n_responses * len(schema.rules)
    if not existed:
        # A fresh study: nothing to compare with, everything is created.
        trusted = pg and trust_foreign_keys(cursor, study, schema, report)
        cursor.execute(
            f"INSERT INTO {P} (study_id, region_id, external_id, text, metadata) "
            f"SELECT %s, s.region_id, s.ext_id, s.text, s.metadata{jsonb} FROM {sp} s",
            [sid],
        )
        _insert_responses(cursor, sp, sr, P, R, sid, cell, jsonb, existed=False)
        if trusted:
            cursor.execute("SET LOCAL session_replication_role = origin")
        report.prompts.created = n_prompts
        report.responses.created = n_responses
        report.scores.created = n_scores
        return

    # 2. Known ids whose prompt text or region differ from the file: refused.
    cursor.execute(
        f"SELECT s.line, s.ext_id, p.text = s.text, p.region_id, s.region_id FROM {sp} s "
        f"JOIN {P} p ON p.study_id = %s AND p.external_id = s.ext_id "
        f"WHERE p.text <> s.text OR p.region_id <> s.region_id ORDER BY s.line LIMIT %s",
        [sid, sink.limit],
    )
    region_key = {v: k for k, v in schema.regions.items()}
    for line, ext_id, same_text, old_region, new_region in cursor.fetchall():
        if not same_text:
            sink.add(
                line,
                "prompt",
                f"the text of prompt {ext_id!r} differs from the one already imported",
                "the same text: known prompts are never changed; "
                "import a changed prompt under a new id",
            )
        else:
            sink.add(
                line,
                "region",
                f"prompt {ext_id!r} was imported in region "
                f"{region_key.get(old_region, old_region)!r}, not "
                f"{region_key.get(new_region, new_region)!r}",
                "the same region: known prompts never move",
            )
    cursor.execute(
        f"SELECT s.line, s.ext_id, s.arm_id FROM {sr} s "
        f"JOIN {P} p ON p.study_id = %s AND p.external_id = s.ext_id "
        f"JOIN {R} r ON r.prompt_id = p.id AND r.arm_id = s.arm_id "
        f"WHERE r.text <> s.text ORDER BY s.line LIMIT %s",
        [sid, sink.limit],
    )
    for line, ext_id, arm_id in cursor.fetchall():
        arm = schema.arm_key_of[arm_id]
        sink.add(
            line,
            f"responses.{arm}.text" if report.format == "jsonl" else "response",
            f"the text of arm {arm!r}'s response to {ext_id!r} differs from the one "
            "already imported",
            "the same text: graded responses are never changed; "
            "import a changed response under a new id",
        )
    sink.raise_if_any()

    # 3. Prompts: update changed metadata, create the new ones.
    cursor.execute(
        f"UPDATE {P} SET metadata = x.metadata{jsonb} FROM {sp} x "
        f"WHERE {P}.study_id = %s AND {P}.external_id = x.ext_id "
        f"AND {P}.metadata <> x.metadata{jsonb}",
        [sid],
    )
    report.prompts.updated = cursor.rowcount
    cursor.execute(
        f"INSERT INTO {P} (study_id, region_id, external_id, text, metadata) "
        f"SELECT %s, s.region_id, s.ext_id, s.text, s.metadata{jsonb} FROM {sp} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {P} p WHERE p.study_id = %s "
        f"AND p.external_id = s.ext_id) ON CONFLICT (study_id, external_id) DO NOTHING",
        [sid, sid],
    )
    report.prompts.created = cursor.rowcount
    report.prompts.unchanged = n_prompts - report.prompts.created - report.prompts.updated

    # 4. Scores of known responses, counted a score at a time before they are written:
    # absent (a dimension added since), changed in value or judge, or the same.
    if schema.rules:
        tallies = ", ".join(
            f"COALESCE(SUM(CASE WHEN {old} IS NULL THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN {old} IS NOT NULL AND {differs} THEN 1 ELSE 0 END), 0)"
            for old, differs in (
                (
                    _entry_sql("r.scores", rule.id, pg),
                    _entry_differs("r.scores", f"x.scores{jsonb}", rule.id, pg),
                )
                for rule in schema.rules
            )
        )
        cursor.execute(
            f"SELECT {tallies} FROM {sr} x "
            f"JOIN {P} p ON p.study_id = %s AND p.external_id = x.ext_id "
            f"JOIN {R} r ON r.prompt_id = p.id AND r.arm_id = x.arm_id",
            [sid],
        )
        counts = cursor.fetchone()
        report.scores.created = sum(counts[0::2])
        report.scores.updated = sum(counts[1::2])

    # 5. Responses: update metadata, cells and scores that changed, create the new ones.
    if pg or not schema.rules:
        scores_differ = f"{R}.scores <> x.scores{jsonb}"  # jsonb compares by content
    else:
        # SQLite would compare the JSON text, whose spacing, key order and escapes depend on
        # the writer (the ORM, this import, migration 0008): compare the entries instead.
        scores_differ = " OR ".join(
            _entry_differs(f"{R}.scores", "x.scores", rule.id, pg) for rule in schema.rules
        )
    cursor.execute(
        # A plain join in FROM (not a subquery): SQLite then walks the staging rows and finds
        # each target through the unique indexes; a subquery made it scan, quadratically.
        f"UPDATE {R} SET metadata = x.metadata{jsonb}, cell = {cell}, scores = x.scores{jsonb} "
        f"FROM {sr} x JOIN {P} p ON p.study_id = %s AND p.external_id = x.ext_id "
        f"WHERE {R}.prompt_id = p.id AND {R}.arm_id = x.arm_id "
        f"AND ({R}.metadata <> x.metadata{jsonb} OR {R}.cell <> {cell} "
        f"OR {scores_differ})",
        [sid],
    )
    report.responses.updated = cursor.rowcount
    report.responses.created = _insert_responses(
        cursor, sp, sr, P, R, sid, cell, jsonb, existed=True
    )
    report.responses.unchanged = n_responses - report.responses.created - report.responses.updated
    report.scores.created += report.responses.created * len(schema.rules)
    report.scores.unchanged = n_scores - report.scores.created - report.scores.updated


def trust_foreign_keys(cursor: Any, study: Study, schema: Schema, report: ImportReport) -> bool:
    """Skip PostgreSQL's per-row foreign-key checks for the inserts of a fresh import.

    Django's foreign keys are ``DEFERRABLE INITIALLY DEFERRED``: every inserted row queues
    one check per key, run at commit (about 10 million for a million responses, measured as
    60% of the import's time). In a fresh import every key is right by construction: study,
    arm, region and dimension ids come from the study's own rows, prompt and response ids
    from joins with rows this transaction has just inserted (invisible to anyone else). What
    the checks would add is a ``FOR KEY SHARE`` lock on each parent row, so that nobody
    deletes it before commit; the study's rows are locked here instead (the study itself is
    already locked ``FOR UPDATE``).

    Turning the triggers off needs a role allowed to set ``session_replication_role``
    (a superuser, or ``GRANT SET ON PARAMETER session_replication_role`` on PostgreSQL 15+);
    without it the import runs with the checks, only slower. The caller sets the role back
    to ``origin`` right after its inserts.
    """
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        return False
    for model, ids in (
        (Arm, {pk for _, pk in schema.arms}),
        (Region, set(schema.regions.values())),
        (Dimension, {r.id for r in schema.rules}),
    ):
        cursor.execute(
            f"SELECT id FROM {model._meta.db_table} WHERE study_id = %s FOR KEY SHARE",
            [study.pk],
        )
        if {row[0] for row in cursor.fetchall()} != ids:
            # Read at the start, changed since: the ids staged may point at deleted rows.
            raise ImportFailed(
                [
                    ImportProblem(
                        report.file,
                        1,
                        "study",
                        f"the study's {model._meta.verbose_name_plural} changed during the "
                        "import; nothing was written",
                        "no changes to the study while it imports; try again",
                    )
                ]
            )
    return True


def _insert_responses(
    cursor: Any,
    sp: str,
    sr: str,
    P: str,
    R: str,
    sid: int,
    cell: str,
    jsonb: str,  # noqa: N803
    *,
    existed: bool,
) -> int:
    guard = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {R} r WHERE r.prompt_id = x.prompt_id "
        f"AND r.arm_id = x.arm_id) ON CONFLICT (prompt_id, arm_id) DO NOTHING"
        if existed
        else ""
    )
    cursor.execute(
        f"INSERT INTO {R} (prompt_id, arm_id, study_id, region_id, text, metadata, cell, "
        "scores) "
        f"SELECT x.prompt_id, x.arm_id, %s, x.region_id, x.text, x.metadata{jsonb}, {cell}, "
        f"x.scores{jsonb} "
        f"FROM (SELECT s.*, p.id AS prompt_id, p.region_id FROM {sr} s JOIN {P} p "
        f"ON p.study_id = %s AND p.external_id = s.ext_id) x {guard}",
        [sid, sid],
    )
    return cursor.rowcount


def _entry_sql(scores: str, dimension_id: int, pg: bool) -> str:
    """SQL for the ``[value, judge]`` entry of ``dimension_id`` in the JSON ``scores``."""
    if pg:
        return f"({scores} -> '{int(dimension_id)}')"
    return f"json_extract({scores}, '$.\"{int(dimension_id)}\"')"


def _entry_differs(old: str, new: str, dimension_id: int, pg: bool) -> str:
    """SQL: the entries of ``dimension_id`` in the JSON ``old`` and ``new`` differ (one of
    them absent counts as a difference)."""
    pk = int(dimension_id)
    if pg:
        return f"(({old} -> '{pk}') IS DISTINCT FROM ({new} -> '{pk}'))"
    # SQLite returns an array as JSON text, which keeps its writer's spacing and escapes
    # ("é" or "\u00e9"): compare the value and the judge as SQL values.
    differs = (
        f"json_extract({old}, '$.\"{pk}\"[{k}]') IS NOT json_extract({new}, '$.\"{pk}\"[{k}]')"
        for k in (0, 1)
    )
    return f"({' OR '.join(differs)})"
