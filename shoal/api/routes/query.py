"""Queries and scans, answered as NDJSON streams of records.

Each route validates the whole request and starts the library's lazy
iterator (which raises PSFNotFound, InvalidArgument, PSFDefinitionError
eagerly) and reads the first chunk before the response starts, so errors get
their status codes; the rest streams from worker threads, a RecordBatch (up
to 1 MiB of records) per chunk. A scan stops when its client goes away or
the server shuts down (cancel.py).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from ...errors import InvalidArgument
from ...psf import parse_query_value
from ...results import RecordBatch
from ...engine import Store
from .. import cancel, deps
from ..schemas import Order, QueryIn, ScanIn, errors_doc, ndjson_response
from ..streaming import ndjson_chunks

router = APIRouter(tags=["queries"])

WithAddress = Annotated[bool, Query(description='wrap each record as {"address": a, "record": <record>}')]
# POST /query and /scan take with_address in the body, like limit and order;
# the query parameter still works there (None: not given).
WithAddressParam = Annotated[bool | None, Query(description='as the body field `with_address` (kept for '
                                                            'compatibility; given both ways, they must agree)')]


async def _stream(request: Request, kind: str, with_address: bool,
                  start: Callable[[cancel.Cancel], Iterator[RecordBatch]]) -> StreamingResponse:
    """`start(c)` makes the batches, which stop once `c` is set (a scan, or
    a query's scan of ranges where a PSF was not active; chains are walked a
    batch per chunk)."""
    t0 = time.perf_counter()
    metrics = deps.metrics(request)

    def on_end(n: int) -> None:
        metrics.queried(kind, n, time.perf_counter() - t0)

    def until_cancelled(c: cancel.Cancel) -> Iterator[RecordBatch]:
        for batch in start(c):
            if c.is_set():
                return  # _body then cuts the answer: it must not look complete
            yield batch

    body, _ = await cancel.start(
        request, lambda c: ndjson_chunks(until_cancelled(c), with_address=with_address, on_end=on_end),
        cancellable=True)
    return StreamingResponse(body, media_type="application/x-ndjson")


@router.post("/query", summary="Query by PSF values (NDJSON stream)", response_class=StreamingResponse,
             responses={**ndjson_response("the matching records, newest first by default"),
                        **errors_doc(400, 404, 409, 422, 503)},
             description="One condition (`psf`, `value`), or `all` / `any` of several. Values are JSON values "
                         "compared by JSON semantics (1 equals 1.0); `value` defaults to true (what a "
                         "predicate PSF indexes).")
async def query(body: QueryIn, request: Request, store: Annotated[Store, Depends(deps.store)],
                with_address: WithAddressParam = None) -> Response:
    mode, conditions = body.conditions()
    address_lines = _address_lines(body, with_address)

    def run(c: cancel.Cancel, **kw: Any) -> Iterator[RecordBatch]:
        if body.range is not None:
            return store.query_range_batches(body.psf, *body.range, cancel=c, **(kw or _range(body)))
        return store.query_batches(conditions, mode="any" if mode == "any" else "all", cancel=c,
                                   **(kw or _range(body)))

    if body.page_size is not None:
        return await _page(request, mode, body, address_lines, run)
    return await _stream(request, mode, address_lines, run)


@router.get("/psfs/{name:rest}/records", summary="Query one PSF (NDJSON stream)", tags=["psfs"],
            response_class=StreamingResponse,
            responses={**ndjson_response("records whose PSF has this value"), **errors_doc(400, 404, 409, 422, 503)})
async def query_psf(
    name: str, request: Request, store: Annotated[Store, Depends(deps.store)],
    value: Annotated[str | None, Query(description="a JSON literal (\"PushEvent\", 42, true); a bare word that "
                                                   "is not JSON is a string; omitted: true")] = None,
    limit: Annotated[int | None, Query(ge=0)] = None,
    order: Order = "newest",
    from_address: Annotated[int | None, Query(ge=0)] = None,
    to_address: Annotated[int | None, Query(ge=0)] = None,
    include_superseded: Annotated[bool, Query(description="keyed stores: also older and deleted versions")] = False,
    with_address: WithAddress = False,
    fields: Annotated[list[str] | None, Query(description="as the body field of POST /query; repeat it for "
                                                          "each field (fields=type&fields=repo.name)")] = None,
    since: Annotated[str | None, Query(description="as in POST /query: a time (epoch seconds or ms, ISO-8601)")] = None,
    until: Annotated[str | None, Query(description="as in POST /query")] = None,
) -> StreamingResponse:
    v: Any = True if value is None else parse_query_value(value)
    window = {k: _time_param(t) for k, t in (("since", since), ("until", until)) if t is not None}
    return await _stream(request, "one", with_address, lambda c: store.query_batches(
        [(name, v)], limit=limit, order=order, from_address=from_address, to_address=to_address,
        include_superseded=include_superseded, cancel=c, fields=fields, **window))


def _time_param(text: str) -> Any:
    """A time from a query string: a number when it reads as one, else text (ISO-8601)."""
    v = parse_query_value(text)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else text


@router.post("/scan", summary="Full scan with any JMESPath expression (NDJSON stream)",
             response_class=StreamingResponse,
             responses={**ndjson_response("records for which the expression is truthy"),
                        **errors_doc(400, 422, 503)},
             description="422 when the expression is over the server's limits (`expression_too_long`, "
                         "`expression_too_deep`) or goes over its evaluation budget on a record "
                         "(`evaluation_budget_exceeded`, with the record's `address`; once records have "
                         "streamed, the stream is cut instead). The scan stops when the client goes away.")
async def scan(body: ScanIn, request: Request, store: Annotated[Store, Depends(deps.store)],
               with_address: WithAddressParam = None) -> Response:
    def run(c: cancel.Cancel, **kw: Any) -> Iterator[RecordBatch]:
        return store.scan_batches(body.expr, cancel=c, **(kw or _range(body)))

    if body.page_size is not None:
        return await _page(request, "scan", body, _address_lines(body, with_address), run)
    return await _stream(request, "scan", _address_lines(body, with_address), run)


async def _page(request: Request, kind: str, body: Any, with_address: bool,
                run: Callable[..., Iterator[RecordBatch]]) -> Response:
    """One page: up to page_size records of the answer (one more is read, to
    know whether more follow), with the cursor of the next in a header."""
    kw = _range(body)
    kw["limit"] = body.page_size + 1
    if body.cursor is not None:
        order, at = _parse_cursor(body.cursor)
        if order != body.order:
            raise InvalidArgument(f"this cursor continues an answer in {order!r} order, not {body.order!r}")
        if order == "newest":
            kw["to_address"] = at if body.to_address is None else min(at, body.to_address)
        else:
            kw["from_address"] = at if body.from_address is None else max(at, body.from_address)
    t0 = time.perf_counter()
    c = cancel.Cancel()

    def collect() -> tuple[list[RecordBatch], int | None]:
        out: list[RecordBatch] = []
        left = body.page_size
        more_at = None
        for batch in run(c, **kw):
            n = len(batch.addresses)
            if n > left:
                more_at = batch.addresses[left - 1] if left else out[-1].addresses[-1]
                if left:
                    out.append(batch.head(left))
                break
            out.append(batch)
            left -= n
        return out, more_at

    batches, more_at = await cancel.run(collect, c, request)
    if c.is_set():
        raise c.error()
    n = sum(len(b.addresses) for b in batches)
    deps.metrics(request).queried(kind, n, time.perf_counter() - t0)
    content = b"".join(ndjson_chunks(iter(batches), with_address=with_address))
    headers = {}
    if more_at is not None:
        nxt = more_at if body.order == "newest" else more_at + 1
        headers[NEXT_CURSOR] = f"{body.order[0]}{nxt}"
    return Response(content, media_type="application/x-ndjson", headers=headers)


NEXT_CURSOR = "X-Shoal-Next-Cursor"


def _parse_cursor(cursor: str) -> tuple[str, int]:
    order = {"n": "newest", "o": "oldest"}.get(cursor[:1])
    if order is None or not cursor[1:].isdigit():
        raise InvalidArgument(f"malformed cursor {cursor!r}: pass the {NEXT_CURSOR} header of the previous page")
    return order, int(cursor[1:])


def _address_lines(body: QueryIn | ScanIn, query_value: bool | None) -> bool:
    """with_address from the body or the query parameter (kept for clients
    written before it was a body field): either may be given; two that
    differ are a mistake, not something to pick between."""
    if "with_address" not in body.model_fields_set:
        return bool(query_value)
    if query_value is not None and query_value != body.with_address:
        raise InvalidArgument(f"with_address is {str(body.with_address).lower()} in the body but "
                              f"{str(query_value).lower()} in the query string; give it once")
    return body.with_address


def _range(body: Any) -> dict[str, Any]:
    kw = {"limit": body.limit, "order": body.order, "from_address": body.from_address,
          "to_address": body.to_address, "include_superseded": body.include_superseded, "fields": body.fields}
    if body.since is not None or body.until is not None:
        if getattr(body, "range", None) is not None:
            raise InvalidArgument("a range query takes no since/until: the range is its window")
        kw.update(since=body.since, until=body.until)
    return kw
