"""Damaged input: what an ingest stores, counts and reports when the input
is cut short, corrupt, or malformed at the array level.

The contract (shoal/ingest/ingest.py): records framed before the damage are
stored, counted, and reported on the error (`ingest_result`); the store's
counters always equal what a scan finds, also after a reopen. The oracle is
a plain orjson loop over the same records."""
from __future__ import annotations

import gzip
import json
import zlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import ALL

import shoal
from shoal.config import KiB
from shoal.errors import IngestRejected, ParseError

RECORDS = [orjson.dumps({"n": i, "type": ["Push", "Watch", "Fork"][i % 3], "pad": "x" * (i % 50)})
           for i in range(3000)]
NDJSON = b"\n".join(RECORDS) + b"\n"
GZ = gzip.compress(NDJSON, compresslevel=6)
# large enough that gunzip hands out several chunks before the cut
BIG = b"".join(orjson.dumps({"n": i, "type": "Push", "pad": "x" * (i % 97)}) + b"\n" for i in range(60_000))
BIG_GZ = gzip.compress(BIG, compresslevel=6)


def scanned(store) -> list[bytes]:
    """The stored records in log order (the input's order)."""
    return [r.raw for r in sorted(store.scan(ALL), key=lambda r: r.address)]


def counted(store) -> int:
    return store.stats()["records"]


def test_truncated_gzip_stores_counts_and_reports_what_came_before(open_store, store_path):
    store = open_store(config=shoal.StoreConfig())
    cut = BIG_GZ[: len(BIG_GZ) * 2 // 3]
    with pytest.raises(ParseError, match="truncated gzip") as info:
        store.ingest(cut)
    partial = info.value.ingest_result
    found = scanned(store)
    # what decompresses from the cut prefix, whole lines only
    d = zlib.decompressobj(wbits=31)
    readable = d.decompress(cut)
    whole = readable[: readable.rfind(b"\n") + 1].splitlines()
    assert 0 < partial.ingested == len(found) == counted(store)
    # a prefix of the input's records, which the error counts: a client
    # resumes after it without storing duplicates
    assert found == whole[: len(found)]
    assert partial.last_address == max(r.address for r in store.scan(ALL))
    store.close()
    reopened = open_store(config=shoal.StoreConfig())
    assert counted(reopened) == len(scanned(reopened)) == partial.ingested


def test_a_failing_source_keeps_and_counts_the_records_before_it(open_store):
    store = open_store()

    def chunks():
        yield NDJSON[:40_000]
        yield NDJSON[40_000:80_000]
        raise OSError("connection reset")

    with pytest.raises(OSError) as info:
        store.ingest(chunks())
    partial = info.value.ingest_result
    found = scanned(store)
    assert 0 < partial.ingested == len(found) == counted(store) == store.stats()["ingest"]["records"]
    assert found == RECORDS[:len(found)]  # a prefix of the input, whole lines only
    assert len(found) <= NDJSON[:80_000].count(b"\n")


def test_reject_mode_stores_nothing_from_a_damaged_input(open_store):
    store = open_store()
    with pytest.raises(ParseError):
        store.ingest(GZ[:-20], on_error="reject")
    assert counted(store) == 0 and scanned(store) == []


_DAMAGE = st.sampled_from(["cut-gzip", "flip-gzip", "cut-plain", "flip-plain", "raise"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=_DAMAGE, frac=st.floats(0.0, 1.0), byte=st.integers(0, 255), chunk=st.integers(1, 70_000))
def test_counters_always_equal_what_a_scan_finds(tmp_path_factory, kind, frac, byte, chunk):
    """Whatever the damage and wherever it falls, the counters agree with a
    scan, before and after a reopen, and the error (if any) says how many
    records the call stored."""
    path = tmp_path_factory.mktemp("store")
    cfg = shoal.StoreConfig(page_size_bytes=16 * KiB, memory_budget_bytes=64 * KiB,
                            segment_size_bytes=64 * KiB, batch_bytes=16 * KiB)
    data = GZ if kind.endswith("gzip") else NDJSON
    at = int(frac * (len(data) - 1))
    if kind.startswith("cut"):
        data = data[:at]
    elif kind.startswith("flip"):
        data = data[:at] + bytes([byte]) + data[at + 1:]

    def pieces():
        for i in range(0, len(data), chunk):
            if kind == "raise" and i >= at:
                raise ConnectionError("client went away")
            yield data[i:i + chunk]

    with shoal.open(path, cfg) as store:
        try:
            got = store.ingest(pieces()).ingested
        except (ParseError, ConnectionError) as exc:
            got = exc.ingest_result.ingested
        found = scanned(store)
        assert got == len(found) == counted(store)
        if not kind.startswith("flip"):  # a flipped byte may make new valid records
            assert found == RECORDS[:len(found)]
    with shoal.open(path, cfg) as store:
        assert counted(store) == len(scanned(store)) == got


# ---- array framing: the array itself must be well formed --------------------

@pytest.mark.parametrize("body, stored, error_at", [
    (b'["a"]]', [b'"a"'], 5),
    (b'["a"],', [b'"a"'], 5),
    (b'[1,2] x', [b"1", b"2"], 6),
    (b'[1,', [b"1"], 3),
    (b'[1]\n[2]', [b"1"], 4),
    (b'[1] [2]', [b"1"], 4),
    (b'[] x', [], 3),
    (b'[\n {"a": 1},\n {"b": 2}\n]\n{"c": 3}\n', [b'{"a": 1}', b'{"b": 2}'], 25),
])
def test_array_level_damage_is_an_error_with_its_offset(open_store, tmp_path, body, stored, error_at):
    formats = ["array", "document"]
    if body.split(b"\n")[0].strip() not in (b"[1]", b"[]"):
        formats.append("auto")  # a complete one-line array is NDJSON to auto (documented)
    for fmt in formats:
        store = open_store(path=tmp_path / fmt)
        r = store.ingest(body, format=fmt)
        assert sorted(x.raw for x in store.scan(ALL)) == sorted(stored) and r.ingested == len(stored), fmt
        assert r.rejected == 1 and r.errors[0].reason == "malformed JSON array", fmt
        assert r.errors[0].offset == error_at, fmt
        with pytest.raises(IngestRejected):
            store.ingest(body, format=fmt, on_error="reject")
        assert store.stats()["records"] == len(stored), fmt


def test_element_damage_keeps_its_per_record_report(open_store):
    store = open_store()
    r = store.ingest(b'[{"a":1}, {oops}, {"b":2}]', format="array")
    assert r.ingested == 2 and [(e.line, e.reason) for e in r.errors] == [(2, "invalid JSON")]


# ---- one pretty-printed document ----------------------------------------------

PRETTY = json.dumps({"statuses": [{"id": i, "text": "t" * i} for i in range(30)],
                     "search_metadata": {"count": 30}}, indent=2).encode()


@pytest.mark.parametrize("fmt", ["auto", "document", "json"])
def test_a_pretty_printed_document_is_one_record(open_store, fmt):
    store = open_store(config=shoal.StoreConfig())
    r = store.ingest(b"\n" + PRETTY + b"\n\n", format=fmt)
    assert (r.ingested, r.rejected) == (1, 0)
    [rec] = list(store.scan(ALL))
    assert rec.raw == PRETTY and orjson.loads(rec.raw) == json.loads(PRETTY)


def test_document_format_takes_an_arrays_elements(open_store):
    store = open_store()
    r = store.ingest(b' [{"a":1},\n{"b":2}] ', format="document")
    assert r.ingested == 2 and sorted(x.raw for x in store.scan(ALL)) == [b'{"a":1}', b'{"b":2}']


def test_auto_keeps_ndjson_whose_first_line_is_bad(open_store):
    store = open_store()
    r = store.ingest(b'{oops\n{"a":1}\n{"b":2}\n')
    assert (r.ingested, r.rejected) == (2, 1) and r.errors[0].line == 1


def test_gzip_whose_first_chunk_is_one_byte(open_store):
    """A trickled upload may send the gzip magic one byte at a time."""
    store = open_store()
    r = store.ingest(iter([GZ[:1], GZ[1:2], GZ[2:]]))
    assert r.ingested == len(RECORDS) and scanned(store) == RECORDS


def test_check_finds_what_reject_would_and_stores_nothing(open_store):
    """Store.check: the records ingest would store and the bad ones with
    their lines (an orjson loop says which lines are bad), nothing stored."""
    store = open_store(key="n")
    store.register_psf("type", "type")
    lines = list(RECORDS[:500])
    for i in (3, 77, 400):
        lines[i] = lines[i][:-5]           # cut: not JSON
    lines[200] = b'{"type": "Push"}'        # no key
    data = b"\n".join(lines) + b"\n"

    def bad(line: bytes) -> bool:
        try:
            return "n" not in orjson.loads(line)
        except orjson.JSONDecodeError:
            return True

    want_bad = [i + 1 for i, line in enumerate(lines) if bad(line)]
    r = store.check(data)
    assert (r.ingested, r.rejected) == (len(lines) - len(want_bad), len(want_bad))
    assert [e.line for e in r.errors] == want_bad
    assert counted(store) == 0 and scanned(store) == []
    with pytest.raises(IngestRejected) as info:
        store.ingest(data, on_error="reject")
    assert [e.line for e in info.value.result.errors] == want_bad
    good = b"\n".join(line for line in lines if not bad(line)) + b"\n"
    assert store.check(good).rejected == 0 and counted(store) == 0
    assert store.ingest(good, on_error="reject").ingested == len(lines) - len(want_bad)
