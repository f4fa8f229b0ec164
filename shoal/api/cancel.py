"""Stopping a streamed answer's work when nobody will read it.

A scan runs in worker threads, one `next()` of its chunk iterator at a time,
and one `next()` may scan the whole log (few matches). Waiting for it ends
no sooner than the scan, so an abandoned scan would keep a core busy and
hold up shutdown. Each streamed answer therefore has a `Cancel` (a
threading.Event the library's scan checks before each page and, in Python,
before each record, and then ends its stream). It is set when

* the client disconnects: before the response starts, `run` polls for it;
  after, StreamingResponse notices and cancels the task awaiting `run`;
* the request is cancelled otherwise (graceful-shutdown timeout);
* the server shuts down: `cancel_all` (server.py calls it first thing), so
  SIGTERM is not held up by a scan. A scan is a read; it can be asked again.

`run` then still waits for the worker thread (a few records at most), so no
work outlives its request. An answer cut short never ends as if complete:
before the response starts it is a 503 (shutdown) or the end of the request
(client gone); after, the stream is cut without its last chunk.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request

from ..errors import StoreClosed

# How often a request waiting for its first chunk asks whether its client is still there.
DISCONNECT_POLL_S = 0.1

DISCONNECTED = "the client disconnected"
SHUTDOWN = "the server is shutting down"


class Cancel(threading.Event):
    """A threading.Event that says why it was set."""

    reason: str | None = None

    def cancel(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
            self.set()

    def error(self) -> Exception:
        """What ends a request whose answer was cut."""
        if self.reason == SHUTDOWN:
            return StoreClosed(f"{SHUTDOWN}; the answer was cut (ask again)")
        return ClientDisconnect()


def cancellables(request: Request) -> set[Cancel]:
    """The Cancels of the answers being streamed (touched on the loop only)."""
    state = request.app.state
    streams = getattr(state, "cancellable_streams", None)
    if streams is None:
        streams = state.cancellable_streams = set()
    return streams


def cancel_all(app: Any, reason: str = SHUTDOWN) -> int:
    """Cancel every answer being streamed; how many. Call on the loop."""
    streams = getattr(app.state, "cancellable_streams", ())
    for c in list(streams):
        c.cancel(reason)
    return len(streams)


async def run(fn: Callable[[], Any], cancel: Cancel, request: Request | None = None) -> Any:
    """fn() on a worker thread. With `request`, poll for its client going
    away meanwhile (only before the response starts: StreamingResponse
    receives for itself after). Either that or this task being cancelled
    sets `cancel`; the worker is waited for either way."""
    worker = asyncio.ensure_future(anyio.to_thread.run_sync(fn))
    try:
        while not worker.done():
            await asyncio.wait({worker}, timeout=DISCONNECT_POLL_S if request is not None else None)
            if request is not None and not worker.done() and await request.is_disconnected():
                cancel.cancel(DISCONNECTED)
                request = None
    except asyncio.CancelledError:
        cancel.cancel(DISCONNECTED)
        await _wait_out(worker)
        raise
    return worker.result()


async def _wait_out(worker: asyncio.Future) -> None:
    """Wait for the worker, through further cancellations (anyio repeats
    them while its scope is cancelled); it ends soon, its Cancel being set."""
    while not worker.done():
        try:
            await asyncio.wait({worker})
        except asyncio.CancelledError:
            continue
    if not worker.cancelled():
        worker.exception()  # retrieved: its failure is moot now


async def start(request: Request, make: Callable[[Cancel], Iterator[bytes]], *,
                cancellable: bool = True) -> tuple[AsyncIterator[bytes], Cancel]:
    """Make a chunk iterator (`make(cancel)`, on a worker thread) and read
    its first chunk there, watching for the client going away, so errors
    before the first chunk still get their status codes. Returns the body
    for a StreamingResponse. `cancellable`: the iterator honors `cancel`
    (a scan); only then is it registered for `cancel_all` until it ends (an
    answer that runs to its end regardless must not be cut after it)."""
    cancel = Cancel()
    streams = cancellables(request) if cancellable else set()
    streams.add(cancel)
    chunks: Iterator[bytes] | None = None

    def first() -> bytes | None:
        nonlocal chunks
        chunks = make(cancel)
        return next(chunks, None)

    try:
        head = await run(first, cancel, request)
        if cancel.is_set():
            raise cancel.error()
    except BaseException:
        streams.discard(cancel)
        if chunks is not None:
            chunks.close()
        raise
    assert chunks is not None
    return _body(head, chunks, cancel, streams), cancel


async def _body(head: bytes | None, chunks: Iterator[bytes], cancel: Cancel,
                streams: set[Cancel]) -> AsyncIterator[bytes]:
    try:
        if head is None:
            return
        yield head
        while True:
            chunk = await run(lambda: next(chunks, None), cancel)
            if chunk is None:
                break
            yield chunk
        if cancel.is_set():  # cut short: never end it as if complete
            raise cancel.error()
    finally:
        streams.discard(cancel)
        chunks.close()  # no worker runs it now: run() waited
