"""Checkpoints, compaction, stats, health and metrics."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from ...errors import StoreClosed
from ...engine import Store
from .. import deps
from ..metrics import Metrics
from ..errors import ApiError
from ..schemas import (CheckpointList, CheckpointOut, ClusterMap, CompactIn, CompactionOut, Health, Stats,
                       errors_doc)

router = APIRouter(tags=["admin"])
StoreDep = Annotated[Store, Depends(deps.store)]


@router.post("/checkpoints", response_model=CheckpointOut, summary="Write a checkpoint",
             responses=errors_doc(503, 507),
             description="Flushes and fsyncs the log, then writes the index and the PSF registry atomically: "
                         "a restart recovers from here and replays the log after it.")
def checkpoint(store: StoreDep) -> dict:
    return store.checkpoint().to_dict()


@router.get("/checkpoints", response_model=CheckpointList, summary="Checkpoints on disk",
            responses=errors_doc(503))
def checkpoints(store: StoreDep) -> dict:
    ids = store.checkpoints()
    return {"checkpoints": ids, "latest": ids[-1] if ids else None}


@router.post("/compact", response_model=CompactionOut, summary="Compact the log",
             responses=errors_doc(400, 422, 503, 507),
             description="Reclaims the log below a cut: `until_address`, or the newest `retain_bytes` bytes of log "
                         "kept (exactly one). The cut is rounded down to a page start and never passes the tail "
                         "page. Live records below it (keyed stores: the newest version of each key) are copied "
                         "to the tail first; then the begin address moves and whole segment files below it are "
                         "deleted. Ingest and queries go on meanwhile. Answers with what was reclaimed.")
def compact(body: CompactIn, store: StoreDep) -> dict:
    return store.compact(body.until_address, retain_bytes=body.retain_bytes).to_dict()


@router.get("/stats", response_model=Stats, summary="Store statistics", responses=errors_doc(503))
def stats(store: StoreDep, metrics: Annotated[Metrics, Depends(deps.metrics)]) -> dict:
    return dict(store.stats(), http_ingest=dict(metrics.ingest))


# async: answered on the event loop, so it needs no worker thread and
# answers even when every thread is busy.
@router.get("/cluster", response_model=ClusterMap, summary="The shard map (shoal cluster serve)",
            responses=errors_doc(404, 503),
            description="How a cluster routes records: its Ray address, directory, shards (Ray actor names, "
                        "nodes) and virtual shard -> shard map, for a client that posts to the shards itself "
                        "(README: Cluster). 404 `not_a_cluster` from `shoal serve`.")
def cluster_map(store: StoreDep) -> dict:
    shard_map = getattr(store, "shard_map", None)
    if shard_map is None:
        raise ApiError(404, "not_a_cluster", "this server serves one store, not a cluster (shoal cluster serve "
                                             "serves one)")
    return shard_map()


@router.get("/healthz", response_model=Health, summary="Liveness", responses=errors_doc(503))
async def healthz(store: StoreDep) -> dict:
    if store.closed:
        raise StoreClosed("the store is closed")
    return {"status": "ok", "tail_address": store.tail_address}


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
def metrics_text(store: StoreDep, metrics: Annotated[Metrics, Depends(deps.metrics)]) -> PlainTextResponse:
    stats = None if store.closed else store.stats()
    return PlainTextResponse(metrics.render(stats), media_type="text/plain; version=0.0.4; charset=utf-8")
