"""Checkpoints, compaction, stats, health and metrics."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from ...errors import StoreClosed
from ...store.store import Store
from .. import deps
from ..errors import ApiError
from ..metrics import Metrics
from ..schemas import CheckpointList, CheckpointOut, Health, Stats, errors_doc

router = APIRouter(tags=["admin"])
StoreDep = Annotated[Store, Depends(deps.store)]


@router.post("/checkpoints", response_model=CheckpointOut, summary="Write a checkpoint",
             responses=errors_doc(503),
             description="Flushes and fsyncs the log, then writes the index and the PSF registry atomically: "
                         "a restart recovers from here and replays the log after it.")
def checkpoint(store: StoreDep) -> dict:
    return store.checkpoint().to_dict()


@router.get("/checkpoints", response_model=CheckpointList, summary="Checkpoints on disk",
            responses=errors_doc(503))
def checkpoints(store: StoreDep) -> dict:
    ids = store.checkpoints()
    return {"checkpoints": ids, "latest": ids[-1] if ids else None}


@router.post("/compact", status_code=501, summary="Compact the log (not implemented yet)",
             responses=errors_doc(501))
def compact() -> None:
    raise ApiError(501, "not_implemented", "compaction arrives with the durability work")


@router.get("/stats", response_model=Stats, summary="Store statistics", responses=errors_doc(503))
def stats(store: StoreDep, metrics: Annotated[Metrics, Depends(deps.metrics)]) -> dict:
    return dict(store.stats(), http_ingest=dict(metrics.ingest))


@router.get("/healthz", response_model=Health, summary="Liveness", responses=errors_doc(503))
def healthz(store: StoreDep) -> dict:
    if store.closed:
        raise StoreClosed("the store is closed")
    return {"status": "ok", "tail_address": store.tail_address}


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
def metrics_text(store: StoreDep, metrics: Annotated[Metrics, Depends(deps.metrics)]) -> PlainTextResponse:
    stats = None if store.closed else store.stats()
    return PlainTextResponse(metrics.render(stats), media_type="text/plain; version=0.0.4; charset=utf-8")
