"""Elasticsearch's door, for the shippers and clients users already run:
POST (or PUT) /_bulk and /{index}/_bulk, and what those clients call
around it: GET / and HEAD / (cluster info with a version), GET
/_cluster/health. The same routes answer under /es/ (ES_PREFIX), for a
proxy or a shipper configured with a path. bulk.py says what a bulk does
to the store.

Every answer here carries `X-Elastic-Product: Elasticsearch`, which the
official clients check on their first successful answer, and is JSON
(they also accept their compatibility media types, which they send). A
body may be gzip (Content-Encoding: gzip). A body over the limit
(--max-body, else BULK_BODY_BYTES as Elasticsearch's default) answers 413
before it is read whole. The routes are left out of the OpenAPI
description (/docs), whose error shapes are shoal's: the README documents
them.
"""
from __future__ import annotations

import socket
import zlib
from typing import Annotated

import anyio
import orjson
from fastapi import APIRouter, Depends, Request, Response

from ..._version import __version__
from ...engine import Store
from .. import deps
from ..bulk import Bulk, BulkError, check_index
from ..limits import IngestSlots, limited_body
from ..metrics import Metrics

router = APIRouter(tags=["elasticsearch"], include_in_schema=False)

ES_PREFIX = "/es"
ES_VERSION = "8.17.0"  # what GET / reports: shippers choose their protocol by its major version
BULK_BODY_BYTES = 100 << 20
HEADERS = {"X-Elastic-Product": "Elasticsearch"}
_GZIP = {"gzip", "x-gzip"}


def _answer(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=HEADERS)


def _refused(err: BulkError) -> Response:
    return _answer(err.body(), err.status)


@router.get("/")
async def info(request: Request) -> Response:
    return _answer({
        "name": socket.gethostname(), "cluster_name": "shoal", "cluster_uuid": "_na_",
        "version": {"number": ES_VERSION, "build_flavor": "default", "build_type": "shoal",
                    "build_hash": "shoal-" + __version__, "lucene_version": "9.12.0",
                    "minimum_wire_compatibility_version": "7.17.0",
                    "minimum_index_compatibility_version": "7.0.0"},
        "shoal_version": __version__,
    })


@router.head("/")
async def info_head() -> Response:
    return Response(status_code=200, headers=HEADERS)


@router.get("/_cluster/health")
async def health() -> Response:
    return _answer({"cluster_name": "shoal", "status": "green", "timed_out": False, "number_of_nodes": 1,
                    "number_of_data_nodes": 1, "active_primary_shards": 1, "active_shards": 1,
                    "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0,
                    "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
                    "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
                    "active_shards_percent_as_number": 100.0})


async def _body(request: Request, limit: int, slots: IngestSlots) -> bytes:
    """The whole body, gunzipped when the client says so, at most `limit`
    bytes either way (BulkError 413 beyond)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BulkError(413, "content_too_long_exception",
                        f"the body ({length} bytes) is larger than the limit of {limit} bytes (--max-body)")
    parts, seen = [], 0
    async for chunk in limited_body(request.stream(), slots.limits):
        seen += len(chunk)
        if seen > limit:
            raise BulkError(413, "content_too_long_exception",
                            f"the body is larger than the limit of {limit} bytes (--max-body)")
        parts.append(chunk)
    body = b"".join(parts)
    encoding = (request.headers.get("content-encoding") or "").strip().lower()
    if encoding in _GZIP:
        d = zlib.decompressobj(wbits=31)
        try:
            body = d.decompress(body, limit + 1)
        except zlib.error as exc:
            raise BulkError(400, "parse_exception", f"Content-Encoding is gzip but the body is not: {exc}") from None
        if len(body) > limit or d.unconsumed_tail:
            raise BulkError(413, "content_too_long_exception",
                            f"the body gunzips to more than the limit of {limit} bytes (--max-body)")
        if not d.eof:
            raise BulkError(400, "parse_exception", "the gzip body is truncated")
    elif encoding not in ("", "identity"):
        raise BulkError(415, "illegal_argument_exception",
                        f"Content-Encoding {encoding!r} is not supported; send gzip or none")
    return body


async def _bulk(request: Request, store: Store, metrics: Metrics, slots: IngestSlots,
                index: str | None) -> Response:
    if index is not None:
        why = check_index(index)
        if why:
            return _refused(BulkError(400, "invalid_index_name_exception", f"Invalid index name [{index}], {why}"))
    q = request.query_params
    durable = q.get("durable", "false").lower() in ("1", "true", "yes")
    limit = request.app.state.max_body_bytes or BULK_BODY_BYTES
    try:
        body = await _body(request, limit, slots)
        if not body.strip():
            raise BulkError(400, "action_request_validation_exception",
                            "Validation Failed: 1: no requests added;")
        bulk = Bulk(store, index=index, index_field=request.app.state.es_index_field, durable=durable)
        try:
            out = await anyio.to_thread.run_sync(bulk.apply, body, limiter=slots.limiter)
        finally:
            if bulk.ingested or bulk.rejected:
                metrics.ingested(bulk.ingested, bulk.rejected, bulk.input_bytes)
    except BulkError as err:
        return _refused(err)
    return _answer(out)


@router.post("/_bulk")
@router.put("/_bulk")
async def bulk(request: Request, store: Annotated[Store, Depends(deps.store)],
               metrics: Annotated[Metrics, Depends(deps.metrics)],
               slots: Annotated[IngestSlots, Depends(deps.ingest_slot)]) -> Response:
    return await _bulk(request, store, metrics, slots, None)


@router.post("/{index}/_bulk")
@router.put("/{index}/_bulk")
async def bulk_index(index: str, request: Request, store: Annotated[Store, Depends(deps.store)],
                     metrics: Annotated[Metrics, Depends(deps.metrics)],
                     slots: Annotated[IngestSlots, Depends(deps.ingest_slot)]) -> Response:
    return await _bulk(request, store, metrics, slots, index)
