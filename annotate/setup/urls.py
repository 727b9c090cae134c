"""The study setup flow (admins). Included from ``config.urls``."""

from __future__ import annotations

from django.urls import path

from . import views as v

S = "studies/<slug:slug>/setup/"

urlpatterns = [
    path("setup/new/", v.setup_create, name="annotate-setup-create"),
    path(S, v.setup_checklist, name="annotate-setup"),
    path(f"{S}study/", v.setup_study, name="annotate-setup-study"),
    path(f"{S}arms/", v.setup_arms, name="annotate-setup-arms"),
    path(f"{S}arms/<int:arm_id>/", v.setup_arm, name="annotate-setup-arm"),
    path(f"{S}arms/<int:arm_id>/delete/", v.setup_arm_delete, name="annotate-setup-arm-delete"),
    path(f"{S}dimensions/", v.setup_dimensions, name="annotate-setup-dimensions"),
    path(f"{S}dimensions/new/", v.setup_dimension, name="annotate-setup-dimension-new"),
    path(f"{S}dimensions/<int:dimension_id>/", v.setup_dimension, name="annotate-setup-dimension"),
    path(
        f"{S}dimensions/<int:dimension_id>/delete/",
        v.setup_dimension_delete,
        name="annotate-setup-dimension-delete",
    ),
    path(f"{S}regions/", v.setup_regions, name="annotate-setup-regions"),
    path(f"{S}data/", v.setup_data, name="annotate-setup-data"),
    path(f"{S}people/", v.setup_members, name="annotate-setup-members"),
    path(
        f"{S}people/<int:membership_id>/remove/",
        v.setup_member_remove,
        name="annotate-setup-member-remove",
    ),
    path(f"{S}activate/", v.setup_activate, name="annotate-setup-activate"),
]
