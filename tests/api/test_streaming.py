"""The ends of a streamed ingest: a client that disconnects mid-body, an
ingest that fails before the body ends, a cancelled request. In every case
the worker thread ends and the store's writer lock is free afterwards; and
while an upload stalls, the lock is free for other requests."""
from __future__ import annotations

import asyncio
import gzip
import threading
import time

import pytest

from shoal.api import streaming

pytestmark = pytest.mark.anyio

REC = b'{"a":1,"b":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}\n'


async def call_raw(app, messages, query=b""):
    """Run one POST /records through the ASGI app with these receive
    messages; returns (status, body)."""
    it = iter(messages)
    sent = []

    async def receive():
        try:
            return next(it)
        except StopIteration:
            await asyncio.sleep(3600)  # a client that neither sends nor leaves

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/records", "raw_path": b"/records", "query_string": query,
             "root_path": "", "headers": [(b"content-type", b"application/x-ndjson")],
             "client": ("127.0.0.1", 1), "server": ("t", 80)}
    await asyncio.wait_for(app(scope, receive, send), 30)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body


def writer_lock_is_free(store) -> bool:
    ok = store._write_lock.acquire(timeout=5)
    if ok:
        store._write_lock.release()
    return ok


@pytest.mark.parametrize("on_error", ["skip", "reject"])
async def test_client_disconnect_mid_body(app, store, on_error):
    chunk = REC * 20000  # ~1.2 MB per message: several batches reach the store before the cut
    msgs = [{"type": "http.request", "body": chunk, "more_body": True} for _ in range(5)]
    msgs.append({"type": "http.disconnect"})
    status, body = await call_raw(app, msgs, b"on_error=" + on_error.encode())
    assert status == 400 and b"client_disconnected" in body
    assert writer_lock_is_free(store)
    stored = len(list(store.scan("`true`")))
    if on_error == "reject":
        assert stored == 0
    else:
        assert 0 <= stored <= 5 * 20000  # whatever was framed before the cut
    assert store.ingest(REC).ingested == 1  # the store goes on


async def test_an_early_library_error_ends_the_request(app, store):
    bad = gzip.compress(REC * 1000)
    bad = bad[:10] + b"\xff" * 50 + bad[60:]  # corrupt deflate stream right at the start
    msgs = [{"type": "http.request", "body": bad, "more_body": True}]
    msgs += [{"type": "http.request", "body": REC * 1000, "more_body": True} for _ in range(30)]
    # the body never ends: the request must still finish once ingest failed
    status, body = await call_raw(app, msgs)
    assert status == 400 and b"parse_error" in body
    assert writer_lock_is_free(store)


async def test_cancelling_the_request_ends_the_worker(app, store):
    started = threading.Event()
    done = threading.Event()

    def consume(chunks):
        try:
            for _ in chunks:
                started.set()
        finally:
            done.set()

    async def body():
        while True:
            yield REC * 20000
            await asyncio.sleep(0)

    task = asyncio.ensure_future(streaming.feed_thread(body(), consume))
    while not started.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()


async def test_queue_stays_bounded_and_loses_nothing():
    """A slow consumer holds back the producer: never more than
    QUEUE_CHUNKS chunks wait, and every byte arrives (the end marker waits
    for room too)."""
    bridge_sizes = []

    def consume(chunks):
        n = 0
        for c in chunks:
            n += len(c)
            time.sleep(0.002)
        return n

    produced = 0

    async def body():
        nonlocal produced
        for _ in range(200):
            produced += 1 << 20
            yield b"x" * (1 << 20)

    orig = streaming._Bridge.put

    async def spy(self, item):
        bridge_sizes.append(self.q.qsize())
        return await orig(self, item)

    streaming._Bridge.put = spy
    try:
        total = await streaming.feed_thread(body(), consume)
    finally:
        streaming._Bridge.put = orig
    assert total == produced == 200 << 20
    assert max(bridge_sizes) == streaming.QUEUE_CHUNKS  # it filled up, and no further


async def test_coalesce_joins_pieces_into_chunks_of_at_least_the_size():
    """The body reaches the worker as it was sent, in chunks of at least
    the coalescing size (but the last), whatever the pieces' sizes."""
    import random
    rng = random.Random(3)
    for trial in range(30):
        size = rng.choice([1, 10, 1000, 4096])
        pieces = [b"" if rng.random() < 0.1 else bytes([65 + trial % 26]) * rng.choice([0, 1, 7, 500, 9000]) + b"%d," % i
                  for i in range(rng.randrange(0, 60))]

        async def body():
            for p in pieces:
                yield p

        chunks = [c async for c in streaming._coalesce(body(), size)]
        assert b"".join(chunks) == b"".join(pieces)
        assert all(len(c) >= size for c in chunks[:-1]) and all(chunks)
        assert all(type(c) is bytes for c in chunks)


async def test_a_stalled_upload_holds_up_no_other_request(app, store):
    """An upload that stops mid-body (a slow client) leaves the writer lock
    free while it waits: another POST /records completes meanwhile, and the
    stalled one completes once its body resumes."""
    go = asyncio.Event()
    msgs = [{"type": "http.request", "body": REC * 1000 + REC[:20], "more_body": True}]

    async def stalled_receive():
        if msgs:
            return msgs.pop(0)
        await go.wait()
        return {"type": "http.request", "body": REC[20:] + REC * 999, "more_body": False}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/records", "raw_path": b"/records", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/x-ndjson")],
             "client": ("127.0.0.1", 1), "server": ("t", 80)}
    stalled = asyncio.ensure_future(app(scope, stalled_receive, send))
    while msgs:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the first chunk reached the worker, which waits for the next
    status, body = await call_raw(app, [{"type": "http.request", "body": REC * 300, "more_body": False}])
    assert status == 200 and b'"ingested":300' in body.replace(b" ", b"")
    assert writer_lock_is_free(store)
    assert not stalled.done()
    go.set()
    await asyncio.wait_for(stalled, 30)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 200
    assert b'"ingested":2000' in b"".join(m.get("body", b"") for m in sent).replace(b" ", b"")
    assert len(list(store.scan("`true`"))) == 2300


async def test_one_body_on_several_threads_lands_in_order(store):
    """One streamed POST prepared on 2 threads (--ingest-threads): its
    records land once each, in body order, its bad line reported."""
    import httpx
    import orjson
    from shoal.api import create_app

    app = create_app(store, ingest_threads=2)
    lines = [orjson.dumps({"i": i, "s": "y" * (i % 40)}) for i in range(20_000)]
    lines[15_000] = b"[1,"
    body = b"\n".join(lines) + b"\n"

    async def pieces():
        for i in range(0, len(body), 50_000):
            yield body[i:i + 50_000]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shoal") as c:
        r = await c.post("/records", content=pieces())
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["ingested"], out["rejected"]) == (19_999, 1)
    assert out["errors"][0]["line"] == 15_001
    assert [x.raw for x in store.scan("`true`", order="oldest")] == lines[:15_000] + lines[15_001:]


def test_ingest_threads_are_bounded(store):
    from shoal.api import create_app
    from shoal.errors import InvalidArgument
    with pytest.raises(InvalidArgument, match="ingest threads must be from 1 to 64"):
        create_app(store, ingest_threads=0)
