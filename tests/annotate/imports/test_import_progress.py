"""import_file's progress callback: how far into the file the importer has read."""

from __future__ import annotations

import pytest

from annotate.imports import importing
from annotate.imports.importing import ImportFailed, import_file
from annotate.models import Prompt
from tests.annotate.imports.import_helpers import interaction, jsonl

pytestmark = pytest.mark.django_db


def test_progress_is_reported_every_so_many_interactions_and_at_the_end(
    study, tmp_path, monkeypatch
):
    monkeypatch.setattr(importing, "PROGRESS_EVERY", 4)
    path = tmp_path / "ten.jsonl"
    path.write_bytes(jsonl(*(interaction(n) for n in range(10))).getvalue())
    size = path.stat().st_size
    calls: list[tuple[int, int]] = []

    report = import_file(
        path, study=study, progress=lambda done, total: calls.append((done, total))
    )

    assert report.lines == 10
    # After interactions 4 and 8, then once at the end of the file.
    assert len(calls) == 3
    assert all(total == size for _, total in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and 0 < done[0] < done[1] < size
    assert done[-1] == size


def test_progress_takes_the_size_of_an_uploaded_file(study):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = jsonl(interaction(1), interaction(2)).getvalue()
    upload = SimpleUploadedFile("a.jsonl", data)
    calls: list[tuple[int, int]] = []
    import_file(upload, study=study, filename="a.jsonl", progress=lambda *a: calls.append(a))
    assert calls == [(len(data), len(data))]


def test_progress_is_reported_up_to_the_refusal_of_a_bad_file(study):
    calls: list[tuple[int, int]] = []
    with pytest.raises(ImportFailed):
        import_file(
            jsonl(interaction(1), interaction(2, region="mars")),
            study=study,
            filename="bad.jsonl",
            progress=lambda *a: calls.append(a),
        )
    # A BytesIO has no size to tell: total 0, but the bytes read still count.
    assert calls and calls[-1][1] == 0 and calls[-1][0] > 0
    assert not Prompt.objects.exists()
