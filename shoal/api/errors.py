"""The one table from exceptions to HTTP answers, and the handlers that use it.

Every error answer has one shape:

    {"error": "<code>", "detail": "<message>", ...extra fields}

Routes never catch library errors: they propagate here. `ERRORS` lists
(exception class, status, code), most specific first; the first class an
exception is an instance of decides. Errors that only HTTP knows (a body over
the size limit, an unknown Content-Encoding, a missing record) are `ApiError`s
carrying their own status and code. Anything else is a 500 with a generic
body and the traceback in the log.

`shoal.client` maps codes back to the same exception classes (a test checks
it knows every code here).
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import errors as E

log = logging.getLogger("shoal.api")

# Rejected records listed in a 422 ingest answer (all are counted).
MAX_ERRORS_SHOWN = 100
# Characters of an over-long expression echoed in its 422 answer.
_ECHO_CHARS = 200


class ApiError(Exception):
    """An error only the HTTP face knows, with its status and code (and
    response headers, e.g. Retry-After)."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra


# (exception class, HTTP status, error code): most specific first.
ERRORS: list[tuple[type[BaseException], int, str]] = [
    (E.PSFNotFound, 404, "psf_not_found"),
    (E.PSFExists, 409, "psf_exists"),
    (E.ExpressionTooLong, 422, "expression_too_long"),
    (E.ExpressionTooDeep, 422, "expression_too_deep"),
    (E.PSFDefinitionError, 422, "psf_definition_error"),
    (E.EvaluationBudgetExceeded, 422, "evaluation_budget_exceeded"),
    (E.TooManyPSFs, 409, "too_many_psfs"),
    (E.PSFError, 409, "psf_error"),
    (E.IngestRejected, 422, "ingest_rejected"),
    (E.InputTooLarge, 413, "input_too_large"),
    (E.ParseError, 400, "parse_error"),
    (E.InvalidArgument, 400, "invalid_argument"),
    (E.RecordTooLarge, 413, "record_too_large"),
    (E.StoreClosed, 503, "store_closed"),
    (E.StoreLocked, 503, "store_locked"),
    (E.ShardUnavailable, 503, "shard_unavailable"),
    (E.TailGap, 410, "tail_gap"),  # GET /tail goes on past a gap (a marker line); a library caller's own
    (E.CorruptionError, 500, "corruption"),
    (E.DiskFull, 507, "disk_full"),
    (E.NativeIOError, 500, "io_error"),
    (E.StorageError, 500, "storage_error"),
    (E.ShoalError, 400, "shoal_error"),
    (ClientDisconnect, 400, "client_disconnected"),
]

# Codes the HTTP layer itself answers with (ApiError, validation, routing).
HTTP_CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
    415: "unsupported_media_type", 422: "validation_error", 501: "not_implemented",
}


def classify(exc: BaseException) -> tuple[int, str] | None:
    for cls, status, code in ERRORS:
        if isinstance(exc, cls):
            return status, code
    return None


def stored_fields(exc: BaseException) -> dict[str, Any]:
    """What an ingest stored before the error that ended it (records framed
    before a cut or damaged body stay stored; see ingest.py): the counts
    and addresses a client needs to resume without storing duplicates."""
    r = getattr(exc, "ingest_result", None)
    if r is None:
        return {}
    return {"ingested": r.ingested, "rejected": r.rejected, "first_address": r.first_address,
            "last_address": r.last_address, "errors": [e.to_dict() for e in r.errors[:MAX_ERRORS_SHOWN]],
            "errors_total": r.rejected}


def extra_fields(exc: BaseException) -> dict[str, Any]:
    """Fields beside error/detail that say where or what."""
    if getattr(exc, "ingest_result", None) is not None:
        fields = stored_fields(exc)
        if isinstance(exc, E.InputTooLarge):
            fields["limit_bytes"] = exc.limit_bytes
        if isinstance(exc, E.ParseError):
            fields.update(line=exc.line, offset=exc.offset, reason=exc.reason)
        if isinstance(exc, E.ShardUnavailable):
            fields["shards"] = exc.shards
        return fields
    if isinstance(exc, E.ShardUnavailable):
        return {"shards": exc.shards}
    if isinstance(exc, E.ExpressionTooLong):  # not echoed whole: it is too long
        head = exc.expression[:_ECHO_CHARS] if exc.expression is not None else None
        return {"position": exc.position, "expression": head, "length": exc.length, "limit": exc.limit}
    if isinstance(exc, E.ExpressionTooDeep):
        return {"position": exc.position, "expression": exc.expression, "depth": exc.depth, "limit": exc.limit}
    if isinstance(exc, E.PSFDefinitionError):
        return {"position": exc.position, "expression": exc.expression}
    if isinstance(exc, E.TooManyPSFs):
        return {"limit": exc.limit}
    if isinstance(exc, E.PSFExists):
        return {"name": exc.name, "definition": exc.definition}
    if isinstance(exc, E.EvaluationBudgetExceeded):
        return {"limit": exc.limit, "address": exc.address}
    if isinstance(exc, E.ParseError):
        return {"line": exc.line, "offset": exc.offset, "reason": exc.reason}
    if isinstance(exc, E.IngestRejected):
        r = exc.result
        return {"ingested": 0, "rejected": r.rejected,
                "errors": [e.to_dict() for e in r.errors[:MAX_ERRORS_SHOWN]], "errors_total": r.rejected}
    return {}


def body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def _answer(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=headers)


async def _shoal_error(request: Request, exc: Exception) -> JSONResponse:
    status, code = classify(exc) or (500, "internal_error")
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    elif isinstance(exc, ClientDisconnect):
        log.info("%s %s: client disconnected", request.method, request.url.path)
    return _answer(status, body(code, str(exc) or code, **extra_fields(exc)))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _answer(exc.status, body(exc.code, exc.detail, **exc.extra, **stored_fields(exc)), headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errs = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()]
    first = errs[0] if errs else None
    detail = (f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}" if first else "invalid request")
    return _answer(422, body("validation_error", detail, errors=errs))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return _answer(exc.status_code, body(code, str(exc.detail)), headers=getattr(exc, "headers", None))


async def _unknown_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed with an unexpected error", request.method, request.url.path, exc_info=exc)
    return _answer(500, body("internal_error", "internal server error; see the server log"))


def install(app: FastAPI) -> None:
    """Route every error through the table."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for cls in {cls for cls, _, _ in ERRORS}:
        app.add_exception_handler(cls, _shoal_error)
    app.add_exception_handler(Exception, _unknown_error)
