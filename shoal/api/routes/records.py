"""POST /records (streamed ingest) and GET /records/{address}."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from ...engine import Store
from .. import deps
from ..errors import MAX_ERRORS_SHOWN, ApiError
from ..limits import IngestSlots, limited_body
from ..metrics import Metrics
from ..schemas import INGEST_BODY, RECORD_SCHEMA, IngestOut, errors_doc
from ..streaming import feed_thread

router = APIRouter(tags=["records"])

_GZIP_MAGIC = b"\x1f\x8b"
TOO_LARGE = "record too large"  # how the reason of a record over the size limit starts
# on_error=reject holds the whole body (spooled to the data directory) before
# storing any of it, so its body is bounded even when --max-body is not set.
REJECT_BODY_BYTES = 1 << 30

# Content-Type (without parameters) -> input format. Types not listed here
# and not in _AUTO_TYPES are refused (415).
_FORMAT_BY_TYPE = {
    "application/x-ndjson": "ndjson", "application/ndjson": "ndjson", "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson", "application/jsonlines": "ndjson",
    "application/json": "document",
}
# Types that say nothing about the framing (curl's default form type among
# them): the library detects NDJSON or array, and gzip by its magic bytes.
_AUTO_TYPES = {"", "application/octet-stream", "application/gzip", "application/x-gzip", "text/plain",
               "application/x-www-form-urlencoded"}
_ENCODINGS = {"", "identity", "gzip", "x-gzip"}


def _format_for(content_type: str | None) -> str:
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype in _FORMAT_BY_TYPE:
        return _FORMAT_BY_TYPE[ctype]
    if ctype in _AUTO_TYPES:
        return "auto"
    raise ApiError(415, "unsupported_media_type",
                   f"Content-Type {ctype!r} is not accepted; send application/x-ndjson or application/json")


async def _checked_body(request: Request, gzip: bool, limit: int | None) -> AsyncIterator[bytes]:
    """The request body, checked against the size limit and, when the client
    declared gzip, against the gzip magic (the library detects gzip by it)."""
    seen = 0
    head = b""
    async for chunk in request.stream():
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise ApiError(413, "body_too_large", f"the body is larger than the limit of {limit} bytes",
                           limit_bytes=limit)
        if gzip and len(head) < 2:
            head += chunk[:2 - len(head)]
            if len(head) == 2 and head != _GZIP_MAGIC:
                raise ApiError(400, "bad_request", "Content-Encoding is gzip but the body is not gzip data")
        yield chunk
    if gzip and seen and len(head) < 2:
        raise ApiError(400, "bad_request", "Content-Encoding is gzip but the body is not gzip data")


@router.post(
    "/records", response_model=IngestOut, summary="Ingest records (streamed)",
    responses=errors_doc(400, 408, 413, 415, 422, 503, 507), openapi_extra=INGEST_BODY,
    description="Stores every valid record of the body, streamed in bounded memory. The format comes from "
                "`format`, else from Content-Type (application/x-ndjson: NDJSON; application/json: one JSON "
                "document, whose elements are the records if it is an array; other or none: detected). A gzip body (Content-Encoding: gzip, or just "
                "gzip bytes) is decompressed by the store. `on_error=skip` stores the valid records and lists "
                "the bad ones (the first 100; `errors_total` counts all); `on_error=reject` stores nothing if "
                "any record is bad and answers 422 (its body is held before storing: at most `--max-body`, or 1 GiB "
                "when that is not set). A body with no records answers 400 `empty_body`; one whose "
                "every record is bad, 422 `no_valid_records`, or 413 `record_too_large` when each is over the "
                "record size limit (all with the same fields; `max_record_bytes` gives the limit whenever a "
                "record broke it). An ingest that fails partway "
                "(a truncated gzip body, a cut upload) keeps the records framed before the failure, and its "
                "error answer says how many (`ingested`, `first_address`, `last_address`). `durable=true` answers once the records are fsynced; concurrent "
                "durable requests share fsyncs (group commit). When the disk is full: 507 `disk_full`. At most "
                "`--max-ingests` ingests run at once: one more answers 503 `too_many_ingests` with Retry-After, "
                "before its body is read. A body that stops arriving (no byte for `--body-idle-timeout` s) or "
                "arrives slower than `--body-min-rate` bytes/s ends with 408 `body_timeout`.")
async def ingest(
    request: Request,
    store: Annotated[Store, Depends(deps.store)],
    metrics: Annotated[Metrics, Depends(deps.metrics)],
    slots: Annotated[IngestSlots, Depends(deps.ingest_slot)],
    on_error: Literal["skip", "reject"] = "skip",
    durable: Annotated[bool, Query(description="answer only once the records are on disk")] = False,
    format: Annotated[Literal["auto", "ndjson", "array", "json", "document"] | None,
                      Query(description="input format; overrides Content-Type")] = None,
    content_encoding: Annotated[str | None, Header(description="gzip or identity")] = None,
) -> dict:
    encoding = (content_encoding or "").strip().lower()
    if encoding not in _ENCODINGS:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Encoding {content_encoding!r} is not supported; use gzip or none")
    fmt = format or _format_for(request.headers.get("content-type"))
    limit = request.app.state.max_body_bytes
    if on_error == "reject" and limit is None:
        # bounds what is received (and spooled), not what it gunzips to,
        # which is checked record by record and never held
        limit = REJECT_BODY_BYTES
        expanded_limit = None
    else:
        expanded_limit = limit
    length = request.headers.get("content-length")
    if limit is not None and length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, "body_too_large", f"the body ({length} bytes) is larger than the limit of "
                                              f"{limit} bytes", limit_bytes=limit)
    body = limited_body(_checked_body(request, encoding in ("gzip", "x-gzip"), limit), slots.limits)
    try:
        # The limit holds for the bytes received and for what they gunzip to.
        threads = request.app.state.ingest_threads
        result = await feed_thread(body, lambda chunks: store.ingest(chunks, on_error=on_error, durable=durable,
                                                                     format=fmt, max_input_bytes=expanded_limit,
                                                                     threads=threads),
                                   limiter=slots.limiter)
    except BaseException as exc:
        # Records stored before the failure count here as in the store.
        partial = getattr(exc, "ingest_result", None)
        if partial is not None:
            metrics.ingested(partial.ingested, partial.rejected, partial.input_bytes)
        raise
    metrics.ingested(result.ingested, result.rejected, result.input_bytes)
    out = result.to_dict()
    out["errors"] = out["errors"][:MAX_ERRORS_SHOWN]
    out.update(input_bytes=result.input_bytes, stored_bytes=result.stored_bytes, durable=result.durable)
    too_large = [e for e in result.errors if e.reason.startswith(TOO_LARGE)]
    if too_large:  # the limit they broke, and the page size it comes from
        out["max_record_bytes"] = store.config.effective_max_record_bytes
        out["page_size_bytes"] = store.config.page_size_bytes
    if not result.ingested:
        # A body that stored nothing is not a success a client could miss.
        if not result.rejected:
            raise ApiError(400, "empty_body", "the body holds no records (empty, or only whitespace); send "
                                              "NDJSON or a JSON array", **out)
        if len(too_large) == result.rejected:
            raise ApiError(413, "record_too_large", f"nothing stored: every record of the body is too large. "
                                                    f"{store.config.record_too_large()}", **out)
        raise ApiError(422, "no_valid_records", f"none of the body's {result.rejected:,} record(s) is valid; "
                                                f"nothing stored", **out)
    return out


@router.get(
    "/records/{address}", summary="One record by address", response_class=Response,
    responses={200: {"description": "the record, byte for byte as ingested",
                     "content": {"application/json": {"schema": RECORD_SCHEMA}}},
               **errors_doc(404, 422, 503)})
def get_record(address: Annotated[int, Path(ge=0, description="a record's log address")],
               store: Annotated[Store, Depends(deps.store)]) -> Response:
    rec = store.get(address)
    if rec is None:
        begin, tail = store.begin_address, store.tail_address
        where = "" if begin <= address < tail else f" (the log holds addresses {begin} to {tail})"
        raise ApiError(404, "record_not_found", f"no record starts at address {address}{where}", address=address,
                       begin_address=begin, tail_address=tail)
    return Response(rec.raw, media_type="application/json")
