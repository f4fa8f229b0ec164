"""What routes get from the app: the store, the metrics and, for an ingest,
its slot (app.state).

`store` and `ingest_slot` are async, though they do not wait: FastAPI runs a
sync dependency on a worker thread, and these must work when every thread
is busy (/healthz) or touch state only the event loop may (the slots)."""
from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request

from ..engine import Store
from .limits import IngestSlots
from .metrics import Metrics


async def store(request: Request) -> Store:
    return request.app.state.store


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def ingest_slot(request: Request) -> AsyncIterator[IngestSlots]:
    """Hold one of the ingest slots for the request (503 when none is free)."""
    slots: IngestSlots = request.app.state.ingest_slots
    with slots.take():
        yield slots
