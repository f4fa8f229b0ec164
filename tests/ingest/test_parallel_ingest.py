"""Ingest on several threads (ingest/parallel.py, and concurrent calls that
prepare outside the writer lock) against one thread on the same input.

The same chunks go through a serial call and a threads=2 call into twin
stores: the results (counts, every error's line, reason and offset, the
addresses' order) and the stored records must be equal. Then what threads
must not break: a PSF registered while batches are prepared indexes every
record from its start, a failing source keeps a prefix, and the records of
a long input land once each, in order."""
from __future__ import annotations

import threading
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import ALL
import test_lazy_framing as lazy_framing

import shoal
from shoal.config import KiB

_open = lazy_framing._open
PAGE = lazy_framing.PAGE


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    a, b = _open(tmp_path_factory.mktemp("serial")), _open(tmp_path_factory.mktemp("threads"))
    yield a, b
    a.close()
    b.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=lazy_framing.mixed_inputs(max_lines=400), fmt=st.sampled_from(["ndjson", "auto"]))
def test_threads_agree_with_one_thread(twins, chunks, fmt):
    serial, threaded = twins
    tails = serial.tail_address, threaded.tail_address
    a = serial.ingest(iter(chunks), format=fmt, addresses=True)
    b = threaded.ingest(iter(chunks), format=fmt, addresses=True, threads=2)
    assert lazy_framing._summary(a) == lazy_framing._summary(b)
    # Same records, in input order: the nonzero addresses rise.
    assert [x != 0 for x in a.addresses] == [x != 0 for x in b.addresses]
    got = [x for x in b.addresses if x]
    assert got == sorted(got)
    assert ([r.raw for r in serial.scan(ALL, order="oldest", from_address=tails[0])]
            == [threaded.get(x).raw for x in got]
            == [r.raw for r in threaded.scan(ALL, order="oldest", from_address=tails[1])])


def test_long_input_lands_once_in_order(tmp_path):
    """Many batches and more records than one spans array holds: each record
    once, in input order, errors on their lines, every chain complete."""
    n = 70_000
    lines = [orjson.dumps({"t": i % 7, "i": i}) for i in range(n)]
    lines[12_345] = b"{bad}"
    data = b"\n".join(lines) + b"\n" + b"1\n" * 70_000
    with shoal.open(tmp_path / "s", batch_bytes=64 * KiB) as s:
        s.register_psf("t", "t")
        res = s.ingest(data, threads=2)
        assert (res.ingested, res.rejected) == (n - 1 + 70_000, 1)
        assert [e.line for e in res.errors] == [12_346]
        want = [x for i, x in enumerate(lines) if i != 12_345] + [b"1"] * 70_000
        assert [r.raw for r in s.scan(ALL, order="oldest")] == want
        for v in range(7):
            oracle = [x for x in want[:n - 1] if orjson.loads(x)["t"] == v]
            assert [r.raw for r in s.query("t", v, order="oldest")] == oracle


def test_psf_registered_while_threads_ingest_indexes_from_its_start(tmp_path):
    """Registrations land while two callers (one with threads=2) ingest:
    every record at or after a PSF's start is on its chains."""
    s = _open(tmp_path / "s", memory_budget_bytes=64 * PAGE, segment_size_bytes=64 * PAGE)
    body = b"".join(orjson.dumps({"t": i % 5, "k": i % 3}) + b"\n" for i in range(20_000))
    done = threading.Event()

    def ingest(threads):
        while not done.is_set():
            s.ingest(body, threads=threads)

    workers = [threading.Thread(target=ingest, args=(n,)) for n in (1, 2)]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 60
        for j in range(4):
            while s.stats()["ingest"]["records"] < 30_000 * (j + 1) and time.monotonic() < deadline:
                time.sleep(0.002)
            s.register_psf(f"k{j}", "k")
    finally:
        done.set()
        for w in workers:
            w.join(120)
    try:
        records = [(r.address, orjson.loads(r.raw)) for r in s.scan(ALL, order="oldest")]
        assert len(records) == s.stats()["ingest"]["records"]
        for j in range(4):
            start = s.psf(f"k{j}").ranges[0][0]
            for v in range(3):
                want = [a for a, o in records if a >= start and o["k"] == v]
                # Active from `start` on: this part of the answer is its chains'.
                got = [r.address for r in s.query(f"k{j}", v, order="oldest", from_address=start)]
                assert got == want
    finally:
        s.close()


def test_failing_source_keeps_a_prefix(tmp_path):
    """A source that fails after some chunks: what is stored is a prefix of
    the input, counted in the error's result."""
    lines = [orjson.dumps({"t": i}) for i in range(5_000)]

    def chunks():
        body = b"\n".join(lines) + b"\n"
        for i in range(0, len(body) // 2, 10_000):
            yield body[i:i + 10_000]
        raise OSError("connection reset")

    with _open(tmp_path / "s", memory_budget_bytes=64 * PAGE) as s:
        with pytest.raises(OSError) as ei:
            s.ingest(chunks(), threads=2)
        stored = [r.raw for r in s.scan(ALL, order="oldest")]
        assert stored == lines[:len(stored)] and len(stored) > 1_000
        assert ei.value.ingest_result.ingested == len(stored) == s.stats()["ingest"]["records"]


@pytest.mark.parametrize("bad", [0, -1, 65, 1.5, True, "2"])
def test_threads_must_be_a_small_positive_integer(tmp_path, bad):
    with shoal.open(tmp_path / "s") as s:
        with pytest.raises(shoal.InvalidArgument, match="threads must be an integer from 1 to 64"):
            s.ingest(b"{}\n", threads=bad)
        assert s.stats()["ingest"]["records"] == 0


def test_counts_stay_exact_while_threads_grow_the_tally(tmp_path):
    """Two callers, one with threads=2, ingest values new and old at once:
    the tally's table is rebuilt while batches are prepared (each looks its
    entries up then, ingest.c), and every count and the whole group count
    still equal the oracle's."""
    from collections import Counter

    bodies = []
    for c in range(6):
        rng = range(c * 15_000, (c + 1) * 15_000)
        bodies.append(b"".join(orjson.dumps({"v": f"k{i % (3_000 + 2_000 * c)}", "w": i % 7}) + b"\n" for i in rng))
    with shoal.open(tmp_path / "s", batch_bytes=16 * KiB) as s:
        s.register_psf("v", "v")
        s.register_psf("w", "w")
        workers = [threading.Thread(target=lambda bs, t: [s.ingest(b, threads=t) for b in bs], args=(bodies[k::2], k + 1))
                   for k in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        records = [orjson.loads(line) for b in bodies for line in b.splitlines()]
        for field in ("v", "w"):
            want = Counter(r[field] for r in records)
            assert sorted(s.group_count(field)) == sorted(want.items())
            for value in list(want)[:50]:
                assert s.count(field, value) == want[value]
