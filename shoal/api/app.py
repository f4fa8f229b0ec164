"""The FastAPI app factory: routers, the error table, metrics, lifespan.

`create_app(store)` serves an open Store. With `close_store=True` (what
`serve()` passes) the app owns the store: at shutdown, after uvicorn has
stopped accepting and the in-flight requests have finished, it writes a
checkpoint (which flushes and fsyncs the log) and closes the store.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..config import MAX_INGEST_THREADS, default_ingest_threads
from ..errors import InvalidArgument
from ..engine import Store
from . import docs, errors
from .auth import Authenticate, Role, Tokens, required_role
from .limits import IngestSlots, SendTimeout, ServerLimits
from .metrics import Metrics
from .bulk import INDEX_FIELD
from .routes import admin, counts, elastic, keys, psfs, query, records, tail

log = logging.getLogger("shoal.api")

API_DESCRIPTION = """\
HTTP API (v1) of a shoal store: ingest raw JSON records (NDJSON or arrays,
optionally gzipped, streamed), register PSFs (JMESPath expressions) that index
them, and query by PSF values or scan. Records come back byte for byte as
ingested, as NDJSON streams. Errors are `{"error": code, "detail": message}`.
"""


def create_app(store: Store, *, max_body_bytes: int | None = None, close_store: bool = False,
               limits: ServerLimits | None = None, tokens: Tokens | None = None,
               es_index_field: str | None = INDEX_FIELD, ingest_threads: int | None = None) -> FastAPI:
    """An app serving `store`. `max_body_bytes` limits POST /records bodies
    (413 beyond it; None: no limit); `limits` bounds what slow clients may
    hold (limits.py; None: the defaults); `tokens` are the bearer tokens it
    accepts (auth.py; None or no write token: every request may write);
    `es_index_field` is the field the Elasticsearch bulk endpoint adds to a
    record for its index (bulk.py; None: none, the source kept as sent);
    `ingest_threads` the threads one ingest's body is prepared on (None: one
    per core, at most 8)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_store:
            await run_in_threadpool(_shut_down, store)

    # /docs with Swagger UI served from a package, not a CDN (docs.py); no /redoc
    app = FastAPI(title="shoal", version=__version__, description=API_DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    docs.install(app)
    app.state.store = store
    app.state.metrics = Metrics()
    app.state.max_body_bytes = max_body_bytes
    if ingest_threads is not None and not 1 <= ingest_threads <= MAX_INGEST_THREADS:
        raise InvalidArgument(f"ingest threads must be from 1 to {MAX_INGEST_THREADS}, not {ingest_threads}")
    app.state.ingest_threads = ingest_threads or default_ingest_threads()
    app.state.limits = limits = limits or ServerLimits()
    app.state.ingest_slots = IngestSlots(limits)
    errors.install(app)
    # query before psfs: GET /psfs/{name}/records must not be taken for
    # GET /psfs/{name} of a PSF named "<name>/records" (names may hold "/").
    for module in (records, keys, query, counts, tail, psfs, admin):
        app.include_router(module.router)
    # Last: /{index}/_bulk must not take a path of shoal's own routes.
    app.state.es_index_field = es_index_field
    app.include_router(elastic.router)
    app.include_router(elastic.router, prefix=elastic.ES_PREFIX)
    app.add_middleware(SendTimeout, timeout_s=limits.send_timeout_s)
    app.state.tokens = tokens = tokens or Tokens()
    if tokens.enabled:
        # Outside everything but the counting: a refused request reaches no
        # route and no body is read (auth.py).
        app.add_middleware(Authenticate, tokens=tokens)
        _describe_security(app)
    app.add_middleware(_CountResponses, metrics=app.state.metrics)
    return app


def _describe_security(app: FastAPI) -> None:
    """The OpenAPI description says which routes need which token, so /docs
    offers an Authorize button and clients generated from it send one."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a write token, or a read token for routes that change nothing"}}
        for path, ops in schema.get("paths", {}).items():
            for method, op in ops.items():
                role = required_role(method.upper(), path)
                if role is Role.NONE:
                    op["security"] = []
                else:
                    op["security"] = [{"bearer": []}]
                    op["x-shoal-role"] = role.name.lower()
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _shut_down(store: Store) -> None:
    if store.closed:
        return
    try:
        info = store.checkpoint()
        log.info("checkpoint %d at tail address %d written at shutdown", info.checkpoint_id, info.tail_address)
    finally:
        store.close()


class _CountResponses:
    """Counts responses by method and status (pure ASGI: streams untouched)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.responded(scope["method"], message["status"])
            await send(message)

        await self.app(scope, receive, counting_send)
