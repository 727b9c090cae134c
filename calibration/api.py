"""REST API of fits: the latest posterior, the fit history, and a trigger (leads and admins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from annotate.permissions import LEAD_OR_ADMIN, IsStudyMember
from calibration import services
from calibration.models import Fit
from calibration.serializers import FitSerializer, PosteriorSerializer, posterior_payload

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from annotate.models import Study

# Annotators must never see verdicts or judge behaviour: leads and admins only.
LEADS = [IsStudyMember(roles=LEAD_OR_ADMIN)]


class PosteriorView(generics.GenericAPIView):
    """Verdicts of the latest succeeded fit, per candidate × dimension and per region."""

    permission_classes = LEADS  # type: ignore[assignment]  # an instance: see IsStudyMember
    serializer_class = PosteriorSerializer
    study: Study  # set by IsStudyMember

    @extend_schema(
        responses={200: PosteriorSerializer, 404: OpenApiResponse(description="No fit yet.")}
    )
    def get(self, request: Request, slug: str) -> Response:
        fit = services.latest_fit(self.study)
        if fit is None:
            in_flight = self.study.fits.filter(status__in=["queued", "running"]).exists()
            raise NotFound(
                "No posterior yet: "
                + (
                    "a fit is on its way."
                    if in_flight
                    else "no fit has succeeded; POST fits/ to start one."
                )
            )
        return Response(self.get_serializer(posterior_payload(fit)).data)


# The 202 is set in create(); drf-spectacular reads the schema of post(), not of create().
@extend_schema_view(post=extend_schema(request=None, responses={202: FitSerializer}))
class FitListCreateView(generics.ListCreateAPIView):
    """GET: the study's fits, newest first. POST: ask for a fit (coalesced; 202)."""

    permission_classes = LEADS  # type: ignore[assignment]  # an instance: see IsStudyMember
    serializer_class = FitSerializer
    study: Study  # set by IsStudyMember

    def get_queryset(self) -> QuerySet[Fit]:
        return (
            Fit.objects.filter(study=self.study)
            .select_related("requested_by")
            .defer("draws", "summary")
            .order_by("-created_at", "-id")
        )

    def perform_create(self, serializer: BaseSerializer) -> None:
        serializer.instance = services.request_fit(
            study=self.study,
            trigger=Fit.Trigger.MANUAL,
            requested_by=cast("User", self.request.user),  # authenticated: IsStudyMember
        )

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        # 202, not 201: the fit is queued (or an existing queued fit is returned).
        response = super().create(request, *args, **kwargs)
        response.status_code = status.HTTP_202_ACCEPTED
        return response
