"""Operations: readiness for load balancers, metrics for Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import (
    CollectorRegistry,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from kinema.api.deps import services
from kinema.api.errors import envelope
from kinema.api.openapi_docs import METRICS, READY, v2_responses
from kinema.service import JobService
from kinema.store_protocol import STAGE_BUCKETS, StageHistogram

router = APIRouter(tags=["ops"])


@router.get("/readyz", summary="Readiness", responses=v2_responses(READY, 503))
def readyz(request: Request) -> Any:
    app = services(request)
    readiness = app.jobs.readiness(app.settings.worker_liveness_seconds)
    if not readiness.ready:
        failing = ", ".join(f"{k}: {v}" for k, v in readiness.checks.items() if v != "ok")
        return envelope(request, 503, f"not ready: {failing}")
    return JSONResponse({"status": "ready", "checks": readiness.checks})


class StoreCollector:
    """Reads the shared store at scrape time, so every API replica reports the same numbers."""

    def __init__(self, jobs: JobService, liveness_seconds: float) -> None:
        self._jobs = jobs
        self._liveness = liveness_seconds

    def collect(self) -> Iterator[Metric]:
        stats = self._jobs.stats()
        yield _gauge("kinema_queue_depth", "Queued jobs per model", "model", stats.queued)
        yield _gauge("kinema_running_jobs", "Running jobs per model", "model", stats.running)
        yield _gauge("kinema_jobs", "Jobs per status", "status", stats.by_status)
        live = self._jobs.live_workers(self._liveness)
        workers = {model: live.get(model, 0) for model in self._jobs.served.served}
        yield _gauge("kinema_live_workers", "Workers seen recently per model", "model", workers)
        yield _stage_histogram(self._jobs.stage_histograms())


def _stage_histogram(histograms: list[StageHistogram]) -> Metric:
    """Over every completed job in the shared store, so every replica reports the same; the
    store keeps the counts as jobs complete, so a scrape costs the same at any number of jobs."""
    family = HistogramMetricFamily(
        "kinema_stage_seconds", "Seconds per stage of completed jobs", labels=["model", "stage"]
    )
    for histogram in histograms:
        cumulative = list(accumulate(histogram.counts))
        buckets = [(_bucket_label(le), n) for le, n in zip(STAGE_BUCKETS, cumulative, strict=False)]
        family.add_metric(
            [histogram.model, histogram.stage],
            [*buckets, ("+Inf", cumulative[-1])],
            histogram.total_seconds,
        )
    return family


def _bucket_label(bound: float) -> str:
    return repr(float(bound))


def _gauge(name: str, documentation: str, label: str, values: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,  # documentation only: the route sets its own media type
    responses=METRICS,
)
def metrics(request: Request) -> Response:
    app = services(request)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(app.jobs, app.settings.worker_liveness_seconds))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
