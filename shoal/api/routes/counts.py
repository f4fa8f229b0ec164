"""Counts and top values: POST /count (the body of POST /query, answered
with how many records match) and POST /group_count (a PSF's values, largest
count first). Both run on a worker thread; a client that goes away, or a
server shutting down, stops a count that scans (cancel.py), and a count cut
short is never answered as if complete.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from ...engine import Store
from ...errors import InvalidArgument
from .. import cancel, deps
from ..schemas import CountOut, GroupCountIn, GroupCountOut, QueryIn, errors_doc

router = APIRouter(tags=["queries"])


async def _answer(request: Request, kind: str, fn: Callable[[cancel.Cancel], Any]) -> Any:
    t0 = time.perf_counter()
    c = cancel.Cancel()
    streams = cancel.cancellables(request)
    streams.add(c)
    try:
        out = await cancel.run(lambda: fn(c), c, request)
    finally:
        streams.discard(c)
    if c.is_set():
        raise c.error()
    deps.metrics(request).queried(kind, 1, time.perf_counter() - t0)
    return out


@router.post("/count", summary="How many records match (exact)", response_model=CountOut,
             responses=errors_doc(400, 404, 409, 422, 503),
             description="The body of `POST /query`; the answer is `{\"count\": N}`: how many records that "
                         "query would return over the same range, exactly (`order` and `with_address` do not "
                         "apply; `limit`, when given, caps the count). Over the whole log a count is read from "
                         "the value tally in O(1); a window walks the value's chain without reading records.")
async def count(body: QueryIn, request: Request, store: Annotated[Store, Depends(deps.store)]) -> dict:
    mode, conditions = body.conditions()
    kw = {"from_address": body.from_address, "to_address": body.to_address,
          "include_superseded": body.include_superseded}
    if body.since is not None or body.until is not None:
        if body.range is not None:
            raise InvalidArgument("a range count takes no since/until: the range is its window")
        kw.update(since=body.since, until=body.until)

    def run(c: cancel.Cancel) -> int:
        if body.range is not None:
            return store.count_range(body.psf, *body.range, cancel=c, **kw)
        if mode == "one":
            (psf, value), = conditions
            return store.count(psf, value, cancel=c, **kw)
        counter = store.count_any if mode == "any" else store.count_all
        return counter(conditions, cancel=c, **kw)

    n = await _answer(request, "count", run)
    return {"count": n if body.limit is None else min(n, body.limit)}


@router.post("/group_count", summary="A PSF's values and how many records have each", response_model=GroupCountOut,
             responses=errors_doc(400, 404, 409, 422, 503),
             description="`{\"groups\": [{\"value\": v, \"count\": n}, ...]}`, largest count first (ties in the "
                         "order of the values' canonical bytes), at most `limit`. Values are JSON values. Over "
                         "the whole log no record is read (the value tally); past the tally's bound on distinct "
                         "values, or over a window, the log's key pointers are counted instead.")
async def group_count(body: GroupCountIn, request: Request, store: Annotated[Store, Depends(deps.store)]) -> dict:
    def run(c: cancel.Cancel) -> list:
        return store.group_count(body.psf, limit=body.limit, from_address=body.from_address,
                                 to_address=body.to_address, include_superseded=body.include_superseded, cancel=c,
                                 since=body.since, until=body.until)

    groups = await _answer(request, "group_count", run)
    return {"groups": [{"value": v, "count": n} for v, n in groups]}
