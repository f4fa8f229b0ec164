"""Moving bytes between the event loop and the store's synchronous calls.

Ingest: `Store.ingest` is synchronous (it releases the store's writer lock
while it waits for each chunk), so it runs on a worker thread and pulls the
request body from a bounded queue that the event loop fills:

    request.stream() --(event loop: coalesce to ~1 MiB)--> Queue(maxsize=8)
        --(worker thread)--> Store.ingest(iterable of chunks)

At most `QUEUE_CHUNKS` coalesced chunks wait in the queue, and uvicorn stops
reading the socket while the loop is not receiving, so a body of any size
streams in bounded memory. The worker thread comes from the caller's
limiter (limits.py: ingests have threads of their own); when the queue is
full the loop waits on an event the worker sets, holding no thread. Ends:
  * body ends: an EOF marker; ingest finishes and its result is returned.
  * ingest fails early (bad gzip, reject): the worker sets `done`; the loop
    stops feeding (and reading) and the library's exception propagates.
  * client disconnect, size limit, cancellation (shutdown): the loop puts the
    exception in the queue; the worker raises it out of the chunk iterator,
    so ingest ends and releases the writer lock; the loop waits for the
    worker before re-raising. Records framed before the cut stay stored when
    on_error=skip (as with any failing input iterator); with on_error=reject
    the library spools the input before storing, so nothing is stored.

Queries: `ndjson_chunks` turns the library's lazy RecordBatch iterator into
byte chunks (a batch's NDJSON as it is, or its address-wrapped lines made
in one native call), iterated on worker threads by the response.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread

from ..results import RecordBatch

QUEUE_CHUNKS = 8
COALESCE_BYTES = 1 << 20
_EOF = object()


class _Bridge:
    """A bounded queue of byte chunks from the loop to one worker thread."""

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.done = threading.Event()  # the worker stopped consuming
        self._loop = asyncio.get_running_loop()
        # Set (on the loop) after the worker takes an item or stops: the
        # loop's wait for room in a full queue, with no thread held.
        self._room = asyncio.Event()

    # worker side
    def chunks(self) -> Iterator[bytes]:
        while True:
            item = self.q.get()
            self.wake_loop()
            if item is _EOF:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def wake_loop(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._room.set)
        except RuntimeError:  # the loop is closed: nobody waits
            pass

    # loop side
    async def put(self, item: Any) -> bool:
        """Queue an item; False when the worker has stopped consuming."""
        while not self.done.is_set():
            try:
                self.q.put_nowait(item)
                return True
            except queue.Full:
                # A take between the failed put and this clear schedules a
                # set that runs after it (callbacks run only while we wait).
                self._room.clear()
                await self._room.wait()
        return False

    def put_final(self, exc: BaseException) -> None:
        """Queue a failure without awaiting (also when cancelled): make room
        by dropping unread chunks, which the failure makes moot."""
        while not self.done.is_set():
            try:
                self.q.put_nowait(exc)
                return
            except queue.Full:
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    pass


async def _coalesce(body: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """The body in chunks of at least `size` bytes (but the last): each
    received piece is copied once, by the join."""
    parts: list[bytes] = []
    held = 0
    async for chunk in body:
        if not chunk:
            continue
        parts.append(chunk)
        held += len(chunk)
        if held >= size:
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts = []
            held = 0
    if parts:
        yield b"".join(parts)


async def _pump(body: AsyncIterator[bytes], bridge: _Bridge) -> None:
    async for chunk in _coalesce(body, COALESCE_BYTES):
        if not await bridge.put(chunk):
            return  # the worker ended early: its result or error says why
    await bridge.put(_EOF)


async def feed_thread(body: AsyncIterator[bytes], consume: Callable[[Iterator[bytes]], Any], *,
                      limiter: anyio.CapacityLimiter | None = None) -> Any:
    """Run `consume(chunks)` on a worker thread (from `limiter`; None: the
    default pool) while feeding it `body`; returns what it returns, raises
    what it raises (or what ended `body`)."""
    bridge = _Bridge()

    def work() -> Any:
        try:
            return consume(bridge.chunks())
        finally:
            bridge.done.set()
            bridge.wake_loop()

    worker = asyncio.ensure_future(anyio.to_thread.run_sync(work, limiter=limiter))
    pump = asyncio.ensure_future(_pump(body, bridge))
    try:
        await asyncio.wait({worker, pump}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        pump.cancel()
        bridge.put_final(_Aborted("request cancelled"))
        await _wait_uncancellable(worker)
        raise
    if not pump.done():
        # The worker ended before the body did (a library error, or it
        # stopped reading): stop reading the body too.
        pump.cancel()
        await asyncio.wait({pump})
    elif not pump.cancelled() and pump.exception() is not None:
        # The body failed (disconnect, size limit): the worker must end, and
        # release the store's writer lock, before this request does.
        exc = pump.exception()
        bridge.put_final(exc)
        await _wait_uncancellable(worker)
        raise exc
    return await worker


class _Aborted(Exception):
    pass


async def _wait_uncancellable(fut: asyncio.Future) -> None:
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        # Cancelled again (e.g. shutdown): still let the worker finish first.
        await asyncio.wait([fut])
    except BaseException:  # noqa: BLE001 - the worker's own failure is secondary here
        pass


def ndjson_chunks(batches: Iterator[RecordBatch], *, with_address: bool,
                 on_end: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """Records as NDJSON, a chunk per batch: each batch's `ndjson()` (no
    work per record), or with `with_address` its lines
    `{"address":a,"record":<raw>}` with the raw bytes spliced in (one native
    call per batch). A record holding line breaks (a pretty-printed array
    element) has them turned into spaces, which JSON treats alike, so every
    record stays one line."""
    n = 0
    try:
        for b in batches:
            n += len(b)
            yield b.ndjson_with_addresses() if with_address else b.ndjson()
    finally:
        if on_end is not None:
            on_end(n)
