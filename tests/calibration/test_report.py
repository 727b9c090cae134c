"""Exports: the self-contained report and the posterior draws (leads and admins, audited)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.cache import cache
from django.urls import reverse

from accounts.models import AuditEvent
from calibration import services
from tests.calibration.helpers import populate

pytestmark = pytest.mark.django_db


@pytest.fixture
def fitted(study, fake_fitter):
    # Both caches are keyed by fit id, and ids repeat across tests (each rolls back).
    cache.clear()
    services._draws_cache.clear()
    populate(study, prompts_per_region=8, graded_share=0.5)
    return services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)


def url(study, name):
    return reverse(name, kwargs={"slug": study.slug})


def test_report_is_self_contained_and_audited(client, study, lead, fitted):
    client.force_login(lead)
    r = client.get(url(study, "calibration-report"))
    assert r.status_code == 200
    assert r["Content-Disposition"].startswith("attachment;")
    html = r.content.decode()
    import gzip

    from plotly.offline import get_plotlyjs

    from calibration.report import b85decode, plotly_js_packed

    blob, pad = plotly_js_packed()
    assert html.count(blob) == 1  # plotly.js inline, once, gzipped
    assert gzip.decompress(b85decode(blob, pad)).decode() == get_plotlyjs()
    assert len(r.content) <= 2_000_000
    page = html.replace(blob, "")
    # Nothing is fetched: no src/href pointing anywhere, no <link>, no external script.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, flags=re.I)
    assert not re.search(r"<link\b", page, flags=re.I)
    assert not re.search(r"<script\b[^>]*\bsrc=", page, flags=re.I)
    assert not re.search(r"@import|url\(", page)
    # One chart per (candidate, dimension, kind): density, forest, judge.
    assert page.count("Plotly.newPlot(") == 2 * 3 * 3
    for words in ("The decision", "Method", "Diagnostics", "Reproducibility", fitted.counts_hash,
                  str(fitted.seed), fitted.model_version, "nova-1", "nova-2"):  # fmt: skip
        assert words in html, words
    event = AuditEvent.objects.get(action="report.export")
    assert event.actor == lead and event.study_id == study.pk and event.details["fit"] == fitted.pk


def test_annotator_gets_no_report_and_nothing_is_audited(client, study, annotator, fitted):
    client.force_login(annotator)
    assert client.get(url(study, "calibration-report")).status_code == 403
    assert client.get(url(study, "calibration-draws")).status_code == 403
    assert not AuditEvent.objects.filter(action__in=["report.export", "draws.export"]).exists()


def test_no_report_before_the_first_fit(client, study, lead):
    client.force_login(lead)
    r = client.get(url(study, "calibration-report"))
    assert r.status_code == 404 and b"No posterior yet" in r.content


def test_draws_export_as_netcdf_with_named_dims(client, study, admin_user, fitted):
    import xarray as xr

    client.force_login(admin_user)
    r = client.get(url(study, "calibration-draws"))
    assert r.status_code == 200 and r["Content-Type"] == "application/x-netcdf"
    ds = xr.open_dataset(io.BytesIO(r.content), engine="scipy")
    assert ds["theta_correctness"].dims == ("draw", "arm", "region")
    assert ds["confusion_style"].dims == ("draw", "arm", "y", "bin_style")
    assert ds.sizes["bin_style"] == 5 and ds.sizes["bin_correctness"] == 2
    assert list(ds["arm"].values) == ["inc", "cand1", "cand2"]
    assert list(ds["region"].values) == ["eu", "us"]
    assert ds.attrs["seed"] == fitted.seed and ds.attrs["counts_hash"] == fitted.counts_hash
    draws = services.load_draws(fitted)
    assert float(ds["theta_refusal"].values.mean()) == pytest.approx(
        float(draws["refusal"].theta.mean()), rel=1e-5
    )
    assert AuditEvent.objects.filter(action="draws.export", actor=admin_user).count() == 1


def test_overview_links_every_export(client, study, lead, fitted):
    client.force_login(lead)
    html = client.get(url(study, "calibration-study")).content.decode()
    for href in (url(study, "calibration-report"), url(study, "calibration-draws"),
                 f"/api/studies/{study.slug}/labels.csv",
                 f"/api/studies/{study.slug}/labels.jsonl"):  # fmt: skip
        assert f'href="{href}"' in html
