"""Bulk answers: Store.query_batches and Store.scan_batches, whose
RecordBatches hold the records' text in one buffer. Each answer is compared
with the oracle (orjson + jmespath over the same records) over the real data
sets, with most of each log on disk, and the NDJSON a batch gives is checked
line by line.
"""
from __future__ import annotations

import random

import orjson
import pytest
from oracle import Log, as_pairs, python_value, sample_values
from test_query import DATASETS, _values, loaded  # noqa: F401  (the module-scoped fixture)

import shoal
from shoal import InvalidArgument, RecordBatch


def pairs(batches) -> list[tuple[int, bytes]]:
    """(address, raw) of every record of the batches, checking each batch's
    layout on the way: record, then b"\\n", back to back."""
    out = []
    for b in batches:
        assert isinstance(b, RecordBatch) and len(b) > 0
        assert len(b.addresses) == len(b.offsets) == len(b.lengths) == len(b)
        pos = 0
        for k, (o, n) in enumerate(zip(b.offsets, b.lengths)):
            assert o == pos and b.data[o + n:o + n + 1] == b"\n", k
            pos = o + n + 1
        assert pos == len(b.data) and b.data.readonly
        got = as_pairs(b)
        assert got == as_pairs([b[k] for k in range(len(b))]) == list(zip(b.addresses, b.raws()))
        lines = bytes(b.ndjson()).split(b"\n")
        assert lines[-1] == b"" and len(lines) == len(b) + 1
        assert [orjson.loads(x) for x in lines[:-1]] == [orjson.loads(r) for _, r in got]
        out += got
    return out


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_query_batches_equal_oracle(loaded, order):
    name, store, log = loaded
    for psf, definition in DATASETS[name][2].items():
        for value in _values(log, definition)[:4]:
            got = pairs(store.query_batches([(psf, value)], order=order))
            assert got == log.query(definition, value, order=order), (psf, value)


def test_query_batches_limit_and_ranges(loaded):
    name, store, log = loaded
    rng = random.Random(17)
    psfs = list(DATASETS[name][2].items())
    for _ in range(8):
        psf, definition = rng.choice(psfs)
        lo, hi = sorted(rng.sample(log.addresses, 2))
        for value in sample_values(log.value_counts(definition), 1):
            for order in ("newest", "oldest"):
                for limit in (None, 0, 1, 5):
                    got = pairs(store.query_batches([(psf, value)], order=order, limit=limit,
                                                    from_address=lo, to_address=hi))
                    want = log.query(definition, value, order=order, limit=limit, from_address=lo, to_address=hi)
                    assert got == want, (psf, value, order, limit)


def test_query_batches_all_and_any(loaded):
    name, store, log = loaded
    rng = random.Random(13)
    psfs = DATASETS[name][2]
    names = sorted(psfs)
    for _ in range(6):
        picked = rng.sample(names, min(len(names), 2))
        conds = []
        for p in picked:
            counts = log.value_counts(psfs[p])
            conds.append((p, python_value(rng.choice(sorted(counts, key=repr))) if counts else "x"))
        oracle_conds = [(psfs[p], v) for p, v in conds]
        for order in ("newest", "oldest"):
            assert pairs(store.query_batches(conds, order=order)) == log.query_all(oracle_conds, order=order)
            assert (pairs(store.query_batches(conds, mode="any", order=order))
                    == log.query_any(oracle_conds, order=order))


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_scan_batches_equal_oracle(loaded, order):
    name, store, log = loaded
    for expression in DATASETS[name][3]:
        assert pairs(store.scan_batches(expression, order=order)) == log.scan(expression, order=order)
    a, b = sorted(random.Random(3).sample(log.addresses, 2))
    expression = DATASETS[name][3][0]
    assert (pairs(store.scan_batches(expression, limit=3, from_address=a, to_address=b))
            == log.scan(expression, limit=3, from_address=a, to_address=b))


def test_what_a_batch_gives_per_record(store):
    """What the README says: iterating a batch and batch[i] give Records
    (address and text); raws() gives the texts as bytes."""
    raws = [b'{"t":"a","n":%d}' % i for i in range(5)]
    res = store.ingest(b"\n".join(raws) + b"\n")
    (batch,) = store.scan_batches("`true`", order="oldest")
    records = list(batch)
    assert all(type(r) is shoal.Record for r in records)
    assert [r.raw for r in records] == raws and records[0].address == res.first_address
    assert type(batch[1]) is shoal.Record and (batch[1].address, batch[1].raw) == (records[1].address, raws[1])
    assert (batch[-1].address, batch[-1].raw) == (res.last_address, raws[-1])
    assert batch.raws() == raws and all(type(r) is bytes for r in batch.raws())


def test_query_batches_rejects_bad_arguments(store):
    store.register_psf("t", "type")
    with pytest.raises(InvalidArgument):
        store.query_batches([])
    with pytest.raises(InvalidArgument):
        store.query_batches([("t", "x")], mode="one")
    with pytest.raises(InvalidArgument):
        store.query_batches([("t", "x")], limit=-1)
    with pytest.raises(shoal.PSFNotFound):
        store.query_batches([("nope", "x")])


def test_records_with_line_breaks_stay_one_line_each(open_store):
    """Pretty-printed array elements keep their exact bytes in `raws()`, and
    `ndjson()` still gives one line per record."""
    store = open_store()
    store.register_psf("k", "k")
    docs = [{"k": "a", "i": i, "text": "x\ny" * (i % 3)} for i in range(3000)]
    pretty = b"[" + b",".join(orjson.dumps(d, option=orjson.OPT_INDENT_2).replace(b"\n", b"\r\n" if i % 2 else b"\n")
                             if i % 5 == 0 else orjson.dumps(d) for i, d in enumerate(docs)) + b"]"
    result = store.ingest(pretty)
    assert result.ingested == len(docs)
    oracle = Log()
    oracle.extend(r.raw for r in store.scan("`true`", order="oldest"))
    assert [orjson.loads(r) for r in oracle.raws] == docs
    for batches in (store.query_batches([("k", "a")]), store.scan_batches("k == 'a'")):
        batches = list(batches)
        assert sum(b.line_breaks for b in batches) > 0
        got = pairs(batches)  # checks ndjson() line by line
        assert [r for _, r in got] == oracle.raws[::-1]
        lines = b"".join(b.ndjson() for b in batches).split(b"\n")[:-1]
        assert [orjson.loads(x) for x in lines] == docs[::-1]
    addresses = [r.address for r in store.scan("`true`", order="oldest")]
    flat = list(store.query_batches([("k", "a")], from_address=addresses[1], to_address=addresses[5]))
    assert [len(b) for b in flat] == [4] and flat[0].line_breaks == 0
    assert flat[0].ndjson() is flat[0].data  # no copy when no record holds a line break


def test_batches_keep_their_records_while_later_reads_run(open_store):
    """A batch that fills enough of its buffer owns the buffer the native
    read filled (no copy): the thread's later reads, bulk or not, on the
    chain or the scan path, must write elsewhere. Every batch kept from
    many answers still holds its records, and its data is read-only."""
    store = open_store()
    store.register_psf("k", "k")
    rng = random.Random(5)
    raws = [orjson.dumps({"k": rng.choice("abc"), "i": i, "pad": "x" * rng.randrange(200, 1200)})
            for i in range(6000)]
    assert store.ingest(b"\n".join(raws)).ingested == len(raws)
    oracle = Log(raws)
    oracle.bind(store)
    kept = []
    for value in "abcab":
        for order in ("newest", "oldest"):
            kept.append((list(store.query_batches([("k", value)], order=order)),
                         oracle.query("k", value, order=order)))
            list(store.query("k", value))  # Records through the same thread's buffers
        kept.append((list(store.scan_batches(f"k == '{value}'")), oracle.query("k", value)))
    assert sum(not isinstance(b._buf, bytes) for batches, _ in kept for b in batches) > 10
    for batches, expected in kept:
        assert pairs(batches) == expected
        assert b"".join(b.data for b in batches) == b"".join(r + b"\n" for _, r in expected)
        with pytest.raises(TypeError):
            batches[0].data[0] = 0


def test_a_record_larger_than_the_read_buffer(open_store, tmp_path):
    """A record over 1 MiB (the bulk buffers' size) comes back whole, alone
    or among small ones, by the chain walk and by the scan path."""
    store = open_store(tmp_path / "big", page_size_bytes=4 << 20, memory_budget_bytes=8 << 20,
                       segment_size_bytes=8 << 20, batch_bytes=4 << 20)
    store.register_psf("k", "k")
    big = orjson.dumps({"k": "a", "blob": "z" * (1536 << 10)})
    small = [orjson.dumps({"k": "a", "i": i}) for i in range(5)]
    for raw in small[:2] + [big] + small[2:]:
        assert store.ingest(raw).ingested == 1
    want = [r.raw for r in store.query("k", "a")]
    assert len(want) == 6 and big in want
    assert [r for _, r in pairs(store.query_batches([("k", "a")]))] == want
    assert [r for _, r in pairs(store.scan_batches("k == 'a'"))] == want
    assert [r for _, r in pairs(store.query_batches([("k", "a")], order="oldest"))] == want[::-1]


def test_keyed_store_batches_hold_live_versions(open_store, tmp_path):
    store = open_store(tmp_path / "keyed", key="id")
    store.register_psf("t", "t")
    live: dict[int, bytes] = {}
    rng = random.Random(9)
    for step in range(3000):
        i = rng.randrange(400)
        raw = orjson.dumps({"id": i, "t": rng.choice("ab"), "step": step})
        store.ingest(raw)
        live[i] = raw
    for i in rng.sample(sorted(live), 50):
        store.delete_key(i)
        del live[i]
    for t in "ab":
        want = sorted((r for r in live.values() if orjson.loads(r)["t"] == t), key=lambda r: -orjson.loads(r)["step"])
        assert [r for _, r in pairs(store.query_batches([("t", t)]))] == want
        assert [r for _, r in pairs(store.scan_batches(f"t == '{t}'"))] == want
        history = pairs(store.query_batches([("t", t)], include_superseded=True))
        assert history == as_pairs(store.query("t", t, include_superseded=True))
        assert len(history) > len(want)
