"""GET /tail: records as they are ingested, streamed as NDJSON (chunked) or
server-sent events, until the client goes away, the server shuts down or
`timeout` seconds pass without a record.

The stream reads the log one round at a time as the client takes it (a
round: the matching records found at once, at most 4,096), so a slow
client holds the server to one round, never more; one too slow for the
log's retention gets a gap marker line (`{"gap": {"from": a, "to": b}}`;
SSE: an `event: gap`) and the stream goes on from the log's begin. Idle
streams carry a heartbeat each second (SSE: a comment line; NDJSON:
nothing), so a client or proxy can tell a quiet tail from a dead one.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from ...engine import Store
from ...errors import TailGap
from ...psf import parse_query_value
from .. import cancel, deps
from ..schemas import RECORD_SCHEMA, WITH_ADDRESS_SCHEMA, errors_doc

router = APIRouter(tags=["queries"])

_GAP_SCHEMA = {"type": "object", "required": ["gap"], "properties": {"gap": {"type": "object"}}}
_TAIL_RESPONSE = {200: {
    "description": "records as they are ingested: NDJSON (one record per line; with `with_address=true` "
                   "`{\"address\": a, \"record\": <record>}`; a gap `{\"gap\": {\"from\": a, \"to\": b}}`), "
                   "or server-sent events (`id: <address>`, `data: <record>`; `event: gap`)",
    "content": {"application/x-ndjson": {"schema": {"anyOf": [RECORD_SCHEMA, WITH_ADDRESS_SCHEMA, _GAP_SCHEMA]}},
                "text/event-stream": {"schema": {"type": "string"}}},
}}


@router.get("/tail", summary="Follow records as they are ingested (NDJSON or SSE stream)",
            response_class=StreamingResponse, responses={**_TAIL_RESPONSE, **errors_doc(400, 404, 422, 503)},
            description="One condition (`psf`, `value`), or none (every record). Starts at the tail, or at "
                        "`since_address`. `format=sse` (or `Accept: text/event-stream`) sends server-sent events "
                        "(`data: <record>`, `id: <address>`).")
async def tail(
    request: Request, store: Annotated[Store, Depends(deps.store)],
    psf: Annotated[str | None, Query(description="a PSF name; omitted: every record")] = None,
    value: Annotated[str | None, Query(description="a JSON literal or a bare word; omitted: true")] = None,
    since_address: Annotated[int | None, Query(ge=0, description="start here instead of at the tail")] = None,
    timeout: Annotated[float | None, Query(ge=0, description="end the stream after this many seconds without "
                                                             "a record (default: never)")] = None,
    with_address: Annotated[bool, Query(description='NDJSON: {"address": a, "record": <record>} lines')] = False,
    fields: Annotated[list[str] | None, Query(description="as in POST /query")] = None,
    format: Annotated[str | None, Query(pattern="^(ndjson|sse)$", description="ndjson (default) or sse")] = None,
) -> StreamingResponse:
    sse = format == "sse" or (format is None and "text/event-stream" in request.headers.get("accept", ""))
    conditions = [] if psf is None else [(psf, True if value is None else parse_query_value(value))]
    c = cancel.Cancel()
    rounds = store.follow_rounds(conditions, since_address=since_address, on_gap="skip", fields=fields,
                                 cancel=c, timeout=timeout)  # arguments checked here: errors get their codes
    streams = cancel.cancellables(request)
    streams.add(c)

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                item = await cancel.run(lambda: next(rounds, None), c)
                if item is None or c.is_set():
                    return
                chunk = _encode(item, sse, with_address)
                if chunk:
                    yield chunk
        finally:
            streams.discard(c)
            c.cancel(cancel.DISCONNECTED)

    media = "text/event-stream" if sse else "application/x-ndjson"
    return StreamingResponse(body(), media_type=media, headers={"Cache-Control": "no-cache"})


def _encode(item: Any, sse: bool, with_address: bool) -> bytes:
    if isinstance(item, TailGap):
        gap = b'{"gap":{"from":%d,"to":%d}}' % item.missed
        return b"event: gap\ndata: " + gap + b"\n\n" if sse else gap + b"\n"
    if not item:
        return b": idle\n\n" if sse else b""
    parts = []
    for r in item:
        raw = r.raw.replace(b"\r", b" ").replace(b"\n", b" ")
        if sse:
            parts.append(b"id: %d\ndata: %s\n\n" % (r.address, raw))
        elif with_address:
            parts.append(b'{"address":%d,"record":%s}\n' % (r.address, raw))
        else:
            parts.append(raw + b"\n")
    return b"".join(parts)
