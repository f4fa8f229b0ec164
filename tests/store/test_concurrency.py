"""Readers during ingest. With a two-page memory budget every page turn evicts
a page, often under a reader. Whatever a reader sees must be a correct and
complete answer for some prefix of the log: for a query that started when
the tail was T0, exactly the oracle's answer below some T >= T0 (every match
below T0 present, nothing that does not match, nothing missing in between),
in order, with the right bytes; get() of any address seen returns the same
record. Results are recorded during the run and checked against the oracle
once the writer is done (only then are all addresses known)."""
from __future__ import annotations

import random
import threading
import time

import pytest
from oracle import ALL, Log, as_pairs, sample_values

import shoal
from shoal.config import KiB

PAGE = 4 * KiB
PSFS = {"path": "_path", "resp_p": '"id.resp_p"', "ssl_443": "_path == 'ssl' && \"id.resp_p\" == `443`"}
QUERIES = [
    ("one", [("path", "weird")]),
    ("one", [("path", "rdp")]),
    ("one", [("resp_p", 22)]),
    ("one", [("ssl_443", True)]),
    ("one", [("late", "tcp")]),  # registered mid-run: scanned below its registration
    ("all", [("path", "ssl"), ("resp_p", 443)]),
    ("any", [("path", "smtp"), ("resp_p", 3389)]),
    ("scan", '"id.resp_p" == `25`'),
    ("scan", "length(answers) > `2`"),
]
DEFS = dict(PSFS, late="proto")


def _oracle_indexes(log: Log, kind, arg):
    if kind == "scan":
        return set(log.scan_matching(arg))
    sets = [set(log.matching(DEFS[name], value)) for name, value in arg]
    return set.intersection(*sets) if kind in ("one", "all") else set().union(*sets)


def _run(store, kind, arg, order):
    if kind == "scan":
        return as_pairs(store.scan(arg, order=order))
    if kind == "one":
        return as_pairs(store.query(arg[0][0], arg[0][1], order=order))
    f = store.query_all if kind == "all" else store.query_any
    return as_pairs(f(arg, order=order))


@pytest.mark.slow
def test_readers_see_complete_prefixes_while_ingesting(open_store, generated):
    raws = list(generated("zeek_logs", 12_000))
    store = open_store(page_size_bytes=PAGE, memory_budget_bytes=2 * PAGE, segment_size_bytes=4 * PAGE)
    for name, definition in PSFS.items():
        store.register_psf(name, definition)
    late_registered = threading.Event()
    writer_done = threading.Event()
    errors: list[BaseException] = []
    observations: list[tuple] = []
    seen_lock = threading.Lock()

    def writer():
        try:
            for k in range(0, len(raws), 400):
                store.ingest(b"\n".join(raws[k:k + 400]))
                if k == 4000:
                    store.register_psf("late", "proto")
                    late_registered.set()
                if k == 8000:
                    store.checkpoint()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            late_registered.set()
            writer_done.set()

    def reader(seed):
        rng = random.Random(seed)
        got_addresses: list[tuple[int, bytes]] = []
        try:
            while not writer_done.is_set():
                kind, arg = rng.choice(QUERIES)
                if kind == "one" and arg[0][0] == "late" and not late_registered.is_set():
                    continue
                order = rng.choice(["newest", "oldest"])
                tail0 = store.tail_address
                result = _run(store, kind, arg, order)
                with seen_lock:
                    observations.append((kind, arg, order, tail0, result))
                got_addresses.extend(rng.sample(result, min(3, len(result))))
                for a, raw in got_addresses[-6:]:
                    rec = store.get(a)
                    assert rec is not None and rec.raw == raw
                time.sleep(0)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]

    log = Log(raws)
    log.bind(store)
    assert store.head_address > store.tail_address // 2
    index_of = {a: i for i, a in enumerate(log.addresses)}
    assert len(observations) > 20
    for kind, arg, order, tail0, result in observations:
        want = _oracle_indexes(log, kind, arg)
        addrs = [a for a, _ in result]
        assert addrs == sorted(addrs, reverse=(order == "newest")), (kind, arg)
        for a, raw in result:
            assert a in index_of and log.raws[index_of[a]] == raw and index_of[a] in want, (kind, arg, a)
        top = max([tail0] + [a + 1 for a in addrs])
        assert result == log.answer(want, order=order, to_address=top), (kind, arg, order, tail0)
    # and after the run, the complete answers
    for kind, arg in QUERIES:
        for order in ("newest", "oldest"):
            assert _run(store, kind, arg, order) == log.answer(_oracle_indexes(log, kind, arg), order=order)


def test_lazy_iterators_and_readers_across_close(open_store, generated):
    raws = generated("zeek_logs", 3000)
    store = open_store(page_size_bytes=PAGE, memory_budget_bytes=2 * PAGE, segment_size_bytes=4 * PAGE)
    store.register_psf("path", "_path")
    store.register_psf("any", "_path != 'none'")  # true for all 3,000: answers of several batches
    store.ingest(b"\n".join(raws))
    it = store.query("any", order="oldest")  # lazy streams: read a batch at a time as consumed
    first = next(it)
    newest = store.query("any")
    next(newest)
    snapshot = store.query("path", "ssl")  # one native batch holds the whole answer: read at the call
    want = [(r.address, r.raw) for r in store.query("path", "ssl")]
    assert 1 < len(want) < 1024
    scan_it = store.scan("`true`")
    next(scan_it)
    stop = threading.Event()
    outcomes: list[str] = []

    def reader():
        while not stop.is_set():
            try:
                list(store.query("path", "dns"))
                store.get(first.address)
                outcomes.append("ok")
            except shoal.StoreClosed:
                outcomes.append("closed")
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    store.close()
    stop.set()
    for t in threads:
        t.join(30)
    assert outcomes.count("closed") == 3 or all(not t.is_alive() for t in threads)
    with pytest.raises(shoal.StoreClosed):
        list(it)
    with pytest.raises(shoal.StoreClosed):
        list(newest)
    with pytest.raises(shoal.StoreClosed):
        list(scan_it)
    assert [(r.address, r.raw) for r in snapshot] == want


def test_concurrent_ingest_calls_keep_order_and_lose_nothing(open_store, generated):
    """Several threads ingesting at once (they prepare batches in parallel
    and commit them in turn, so calls may interleave by batch): each call's
    records land in its input order, and the log holds every record of
    every call exactly once, each indexed."""
    sets = [generated("github_events", 30), generated("jenkins_jobs", 200), generated("statuses", 40)]
    store = open_store(batch_bytes=4096)  # many batches, so the calls do interleave
    store.register_psf("all", "`true`")
    results = {}

    def ingest(i):
        results[i] = store.ingest(b"\n".join(sets[i]), addresses=True)

    threads = [threading.Thread(target=ingest, args=(i,)) for i in range(len(sets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    owner = {}
    for i, raws in enumerate(sets):
        addrs = list(results[i].addresses)
        assert len(addrs) == len(raws) and all(addrs) and addrs == sorted(addrs), "a call's records out of order"
        assert [store.get(a).raw for a in addrs] == list(raws)
        owner.update(dict.fromkeys(addrs, i))
    scanned = [r.address for r in store.scan(ALL, order="oldest")]
    assert scanned == sorted(owner), "the log holds records no call wrote, or lost some"
    assert sorted(r.address for r in store.query("all", True)) == scanned


# ---- a stream that stalls between chunks ----

class _Stalling:
    """An iterable of byte chunks that stops after the first until `go` is
    set (a slow HTTP upload); `pulled` is set once the first was taken."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.pulled = threading.Event()
        self.go = threading.Event()

    def __iter__(self):
        yield self.chunks[0]
        self.pulled.set()
        assert self.go.wait(30)
        yield from self.chunks[1:]


def _cut_mid_line(body: bytes, parts: int) -> list[bytes]:
    k = len(body) // parts + 7  # not at a line end
    return [body[i:i + k] for i in range(0, len(body), k)]


def _in_thread(fn, *args):
    out: dict = {}

    def run():
        try:
            out["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_a_stalled_stream_holds_up_no_other_writer(open_store, generated):
    """While an iterable ingest waits for its next chunk, other ingests, a
    PSF registration (a Python callable: the stream's lazy framing must
    switch to spans for it) and a checkpoint run; the stream's later records
    are indexed by the new PSF, and every answer equals the oracle's."""
    raws = generated("zeek_logs", 1500)
    store = open_store()
    store.register_psf("path", "_path")
    stream = _Stalling(_cut_mid_line(b"\n".join(raws[:1000]) + b"\n", 5))
    streamer, streamed = _in_thread(store.ingest, stream)
    assert stream.pulled.wait(30)

    def others():
        assert store.ingest(b"\n".join(raws[1000:1200])).ingested == 200
        store.register_psf("proto", lambda p: p, fields=["proto"])
        store.checkpoint()
        assert store.ingest(b"\n".join(raws[1200:])).ingested == 300

    other, done = _in_thread(others)
    try:
        other.join(20)
        assert not other.is_alive(), "a writer waited for the stalled stream"
        assert done == {"result": None}, done
        assert streamer.is_alive()
    finally:
        stream.go.set()
        other.join(30)
    streamer.join(60)
    assert "error" not in streamed and streamed["result"].ingested == 1000
    stored = [r.raw for r in store.scan("`true`", order="oldest")]
    assert sorted(stored) == sorted(raws)
    log = Log(stored)
    log.bind(store)
    for name, definition in (("path", "_path"), ("proto", "proto")):
        for value in sample_values(log.value_counts(definition), 4):
            assert as_pairs(store.query(name, value)) == log.query(definition, value), (name, value)


@pytest.mark.parametrize("on_error", ["skip", "reject"])
def test_close_does_not_wait_for_a_stalled_stream(open_store, generated, on_error):
    """skip: close() goes ahead while the stream waits, and the ingest then
    ends with StoreClosed. reject: the stream is spooled before the writer
    lock is taken, so close() does not wait for it either."""
    raws = generated("zeek_logs", 400)
    store = open_store()
    stream = _Stalling(_cut_mid_line(b"\n".join(raws) + b"\n", 3))
    streamer, streamed = _in_thread(lambda: store.ingest(stream, on_error=on_error))
    assert stream.pulled.wait(30)
    closer, closed = _in_thread(store.close)
    closer.join(10)
    assert not closer.is_alive() and "error" not in closed
    stream.go.set()
    streamer.join(30)
    assert isinstance(streamed.get("error"), shoal.StoreClosed), streamed
