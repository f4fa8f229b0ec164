"""What routes get from the app: the store and the metrics (app.state)."""
from __future__ import annotations

from fastapi import Request

from ..store.store import Store
from .metrics import Metrics


def store(request: Request) -> Store:
    return request.app.state.store


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics
