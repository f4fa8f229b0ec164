"""What one client may hold of the server, so slow or stuck clients cannot
take it from the others.

Threads are what a client could exhaust: the store's calls are synchronous
and run on worker threads, and anyio's default pool (40 tokens) serves every
synchronous route and every chunk of a query's answer. An ingest holds its
worker thread for as long as its body takes to arrive, so 40 bodies
trickled at a few bytes per second once held every thread, and /stats,
queries and the other ingests waited until those clients gave up. Hence:

  * ingests run on threads of their own (`IngestSlots.limiter`), never on
    the default pool, which stays whole for reads, admin routes and
    /healthz (which needs no thread at all);
  * at most `max_ingests` ingests run at once; one more is answered at
    once with 503 `too_many_ingests` and a Retry-After header, before its
    body is read (and the connection closed, not drained);
  * a body must keep arriving (`limited_body`): no byte for
    `body_idle_timeout_s`, or less than `body_min_rate_bytes_per_s` on
    average over any such span of waiting, ends the ingest with 408
    `body_timeout`. Only time spent waiting for the client counts, not
    time the server spent storing what it sent;
  * an answer must keep being read (`SendTimeout`): a response the client
    has not taken a byte of for `send_timeout_s` is cut off (the connection
    closes mid-answer, so the client sees a truncated answer, never a short
    complete-looking one). What waits for a slow reader meanwhile is one
    chunk (a RecordBatch, ~1 MiB) and uvicorn's transport buffer; it holds
    no thread.

Concurrency: everything here runs on the event loop except the ingest
threads themselves; the slot counter is touched only by the loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError

log = logging.getLogger("shoal.api")

# On the answers that refuse a body, or end one early: uvicorn would
# otherwise read (and drop) the rest of the body to keep the connection.
_CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class ServerLimits:
    """How much of the server one client may hold (see the module docstring).

    max_ingests: ingests (POST /records) running at once; more get 503.
    retry_after_s: the Retry-After of that 503.
    body_idle_timeout_s: longest wait for the next byte of a body (408).
    body_min_rate_bytes_per_s: least average rate of a body over each
        span of body_idle_timeout_s spent waiting for it (408); 0: none.
    send_timeout_s: longest wait for a client to take the next piece of an
        answer before the connection is closed; None: wait forever.
    """

    max_ingests: int = 16
    retry_after_s: int = 1
    body_idle_timeout_s: float = 30.0
    body_min_rate_bytes_per_s: int = 500
    send_timeout_s: float | None = 60.0

    def __post_init__(self) -> None:
        from ..errors import InvalidArgument

        def positive(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")
        if not isinstance(self.max_ingests, int) or isinstance(self.max_ingests, bool) or self.max_ingests < 1:
            raise InvalidArgument("max_ingests must be a positive int")
        if not isinstance(self.retry_after_s, int) or self.retry_after_s < 0:
            raise InvalidArgument("retry_after_s must be an int >= 0")
        if not positive(self.body_idle_timeout_s):
            raise InvalidArgument("body_idle_timeout_s must be a positive number of seconds")
        if (not isinstance(self.body_min_rate_bytes_per_s, int) or isinstance(self.body_min_rate_bytes_per_s, bool)
                or self.body_min_rate_bytes_per_s < 0):
            raise InvalidArgument("body_min_rate_bytes_per_s must be an int >= 0")
        if self.send_timeout_s is not None and not positive(self.send_timeout_s):
            raise InvalidArgument("send_timeout_s must be a positive number of seconds (or None)")


class IngestSlots:
    """Admission of ingests: at most `limits.max_ingests` at once, each with
    a worker thread from `limiter` (not from the default pool)."""

    def __init__(self, limits: ServerLimits):
        self.limits = limits
        self.running = 0
        # One token per admitted ingest: take() admits no more than there
        # are tokens, so acquiring one never waits.
        self.limiter = anyio.CapacityLimiter(limits.max_ingests)

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        """Hold a slot for one ingest, or raise the 503 that says to retry."""
        n = self.limits.max_ingests
        if self.running >= n:
            raise ApiError(503, "too_many_ingests",
                           f"{n} ingests are running, the most this server takes at once (--max-ingests); "
                           f"retry after {self.limits.retry_after_s} s",
                           max_ingests=n, headers={"Retry-After": str(self.limits.retry_after_s), **_CLOSE})
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1


async def limited_body(body: AsyncIterator[bytes], limits: ServerLimits) -> AsyncIterator[bytes]:
    """`body`, ended with 408 `body_timeout` when the client stops sending
    it or sends it too slowly. Only the time spent awaiting the client
    counts: a window closes after `body_idle_timeout_s` of waiting, and
    must have brought `body_min_rate_bytes_per_s` per second of it."""
    idle_s = limits.body_idle_timeout_s
    min_rate = limits.body_min_rate_bytes_per_s
    it = body.__aiter__()
    waited = 0.0  # seconds spent waiting for the client in this window
    got = 0       # bytes it brought
    while True:
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(idle_s):
                chunk = await it.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ApiError(408, "body_timeout", f"no byte of the body arrived for {idle_s:g} s "
                                                f"(--body-idle-timeout)", timeout_s=idle_s, headers=_CLOSE) from None
        waited += time.monotonic() - t0
        got += len(chunk)
        if waited >= idle_s:
            if got < min_rate * waited:
                raise ApiError(408, "body_timeout",
                               f"the body arrived at {got / waited:.0f} bytes/s over the last {waited:.0f} s, "
                               f"below the least this server takes, {min_rate} bytes/s (--body-min-rate)",
                               min_rate_bytes_per_s=min_rate, headers=_CLOSE)
            waited, got = 0.0, 0
        yield chunk


class SendTimeout:
    """Cuts off a response whose client takes none of it for
    `send_timeout_s` (pure ASGI: answers stream through untouched). The
    app returns with the answer unfinished, so uvicorn closes the
    connection; the cut-off is logged here as a warning, and uvicorn's
    error for an unfinished answer is dropped for that request only
    (`_QuietCutoffs`)."""

    def __init__(self, app: ASGIApp, timeout_s: float | None):
        self.app = app
        self.timeout_s = timeout_s
        logging.getLogger("uvicorn.error").addFilter(_QUIET)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout_s is None:
            await self.app(scope, receive, send)
            return
        timeout_s = self.timeout_s

        async def timed_send(message: Message) -> None:
            try:
                async with asyncio.timeout(timeout_s):
                    await send(message)
            except TimeoutError:
                raise ClientNotReading(f"the client took nothing of the answer for {timeout_s:g} s") from None

        try:
            await self.app(scope, receive, timed_send)
        except* ClientNotReading:
            log.warning("%s %s: the client took nothing of the answer for %g s (--send-timeout); "
                        "connection closed", scope["method"], scope["path"], timeout_s)
            # uvicorn logs the unfinished answer in this task, after this returns
            _cut_off.set(True)


class ClientNotReading(Exception):
    """A response's client stopped reading it (SendTimeout)."""


# Set in the task of a request whose answer SendTimeout cut off.
_cut_off: contextvars.ContextVar[bool] = contextvars.ContextVar("shoal_cut_off", default=False)


class _QuietCutoffs(logging.Filter):
    """Drops uvicorn's "returned without completing response" error for a
    request SendTimeout cut off (and logged) on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cut_off.get() and "without completing response" in record.getMessage())


_QUIET = _QuietCutoffs()
