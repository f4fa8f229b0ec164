"""Ingest through a store: bad records among good ones with on_error="skip"
(the good ones stored, every error on its line) and "reject" (nothing stored,
nothing changed), error reporting limits, record size limits, and what an
IngestResult says. Expected records and line numbers come from the test's own
construction of the input, validity from orjson."""
from __future__ import annotations

import random

import pytest
from oracle import ALL, Log, as_pairs, orjson_accepts

import shoal
from shoal.config import KiB

# What the reason of a record over the limit of the tests' store (16 KiB pages, tests/conftest.py) ends with.
FIT_16K = f"the {16 * KiB - 32:,} bytes that fit in one 16 KiB log page"
BAD_LINES = [
    b'{"a":1,}', b"[1,]", b"nul", b'{"a":NaN}', b'{"a":"\x01"}', b'{"a":"\xff"}', b'{"a":"\\ud800"}',
    b'{"a":1} x', b'{"a":1}{"b":2}', b"1e400", b"[" * 2000 + b"]" * 2000, b'\xef\xbb\xbf{"bom":1}',
    b"{'single':1}", b'{"a":01}', b'{"a":.5}', b'{"a":tru}', b'"unterminated', b"}", b'{"a" 1}',
    b'{"a":"\\x41"}', b"[1,2", b'{"a":[1,2}', b"-", b"0x10", b'{"a":1}/* c */',
]




def _mixed(raws, seed=0, n_bad=None):
    """Good records with bad lines and blank lines mixed in. Returns (text,
    good records in order, 1-based line numbers of the bad ones)."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    good: list[bytes] = []
    bad_at: list[int] = []
    bad = list(BAD_LINES)
    for raw in raws:
        r = rng.random()
        if r < 0.05:
            lines.append(b"")
        if r < 0.15 or (bad and r < 0.3):
            b = bad.pop(0) if bad else raw[: len(raw) // 2]  # then truncated records
            lines.append(b)
            bad_at.append(len(lines))
        lines.append(raw)
        good.append(raw)
    for b in bad:
        lines.append(b)
        bad_at.append(len(lines))
    assert not any(orjson_accepts(lines[i - 1]) for i in bad_at)
    return b"\n".join(lines) + b"\n", good, bad_at


@pytest.mark.parametrize(("kind", "n"), [("github_events", 30), ("jenkins_jobs", 875), ("statuses", 100)])
def test_skip_stores_the_good_records_and_names_the_bad_lines(store, generated, kind, n):
    raws = generated(kind, n)
    store.register_psf("lang", "lang")
    text, good, bad_at = _mixed(raws, seed=len(raws))
    res = store.ingest(text, on_error="skip")
    assert (res.ingested, res.rejected) == (len(good), len(bad_at))
    assert [e.line for e in res.errors] == bad_at
    lines = text.split(b"\n")
    for e in res.errors:
        assert isinstance(e.reason, str) and e.reason
        assert e.offset is None or 0 <= e.offset <= len(lines[e.line - 1])
    log = Log(good)
    log.bind(store)
    assert (res.first_address, res.last_address) == (log.addresses[0], log.addresses[-1])
    for value in ("ja", "en", True):
        assert as_pairs(store.query("lang", value)) == log.query("lang", value)


def test_specific_reasons(store):
    lines = [b'{"ok":1}', b"[" * 1100 + b"]" * 1100, b'{"a":"\x01"}', b'{"a":"\xff"}', b"x" * (20 * KiB)]
    res = store.ingest(b"\n".join(lines))
    assert res.ingested == 1
    assert [e.line for e in res.errors] == [2, 3, 4, 5]
    assert res.errors[3].reason == f"record too large: {20 * KiB:,} bytes, over {FIT_16K}"
    assert all(not e.reason.startswith("record too large") for e in res.errors[:3])


def test_reject_stores_nothing_and_changes_nothing(store, generated):
    first = generated("github_events", 30)
    store.register_psf("type", "type")
    store.ingest(b"\n".join(first))
    log = Log(first)
    log.bind(store)
    before = (store.tail_address, store.stats()["records"], as_pairs(store.query("type", "PushEvent")))

    text, good, bad_at = _mixed(generated("statuses", 100), seed=1)
    with pytest.raises(shoal.IngestRejected) as e:
        store.ingest(text, on_error="reject")
    assert e.value.result.rejected == len(bad_at)
    assert [x.line for x in e.value.result.errors] == bad_at
    assert "nothing stored" in str(e.value)
    assert (store.tail_address, store.stats()["records"], as_pairs(store.query("type", "PushEvent"))) == before
    log.bind(store)  # exactly the first records, nothing more

    # The same input, chunked and through a non-seekable iterable.
    chunks = (text[i:i + 999] for i in range(0, len(text), 999))
    with pytest.raises(shoal.IngestRejected):
        store.ingest(chunks, on_error="reject")
    assert store.tail_address == before[0]

    # One bad record at the very end is enough.
    with pytest.raises(shoal.IngestRejected) as e:
        store.ingest(b"\n".join(first) + b"\n{oops", on_error="reject")
    assert [x.line for x in e.value.result.errors] == [len(first) + 1]
    assert store.tail_address == before[0]

    # Good input in reject mode is stored in full.
    res = store.ingest(b"\n".join(first), on_error="reject")
    assert res.ingested == len(first)
    log.extend(first)
    log.bind(store)
    assert as_pairs(store.query("type", "PushEvent")) == log.query("type", "PushEvent")


def test_reported_errors_are_capped_but_all_counted(open_store, tiny_config):
    store = open_store(config=tiny_config.replace(max_reported_errors=5))
    text = b"\n".join([b"{bad"] * 50 + [b'{"ok":1}'] * 3)
    res = store.ingest(text)
    assert (res.ingested, res.rejected, len(res.errors)) == (3, 50, 5)
    assert res.errors_truncated and [e.line for e in res.errors] == [1, 2, 3, 4, 5]
    assert res.to_dict()["errors_total"] == 50
    with pytest.raises(shoal.IngestRejected) as e:
        store.ingest(text, on_error="reject")
    assert e.value.result.rejected == 50


# ---- record size limits ----

def _record(n: int) -> bytes:
    """A JSON object of exactly n bytes."""
    base = b'{"pad":""}'
    assert n >= len(base)
    return b'{"pad":"' + b"x" * (n - len(base)) + b'"}'


@pytest.mark.parametrize("limit", [100, 1000, 4000])
def test_max_record_bytes(open_store, tiny_config, limit):
    store = open_store(config=tiny_config.replace(max_record_bytes=limit))
    sizes = [limit - 1, limit, limit + 1, limit + 2, limit + 100, 50, limit]
    lines = [_record(n) for n in sizes]
    res = store.ingest(b"\n".join(lines))
    assert [(e.line, e.reason) for e in res.errors] == [
        (i + 1, f"record too large: {sizes[i]:,} bytes, over max_record_bytes ({limit:,})") for i in (2, 3, 4)]
    assert [r.raw for r in store.scan(ALL, order="oldest")] == [lines[0], lines[1], lines[5], lines[6]]


@pytest.mark.parametrize("page", [4 * KiB, 16 * KiB])
def test_page_size_limit(open_store, page):
    """Without max_record_bytes a record may take a page less its 32-byte header; one
    that cannot fit (also because of its key pointers) is "record too large"
    and the records around it are stored."""
    store = open_store(page_size_bytes=page, memory_budget_bytes=4 * page, segment_size_bytes=4 * page)
    limit = page - 32
    lines = [_record(100), _record(limit), _record(limit + 1), _record(page), _record(page + 5000),
             _record(limit - 1), _record(200)]
    res = store.ingest(b"\n".join(lines))
    fit = f"the {limit:,} bytes that fit in one {page // KiB} KiB log page"
    assert [(e.line, e.reason) for e in res.errors] == [
        (i + 1, f"record too large: {len(lines[i]):,} bytes, over {fit}") for i in (2, 3, 4)]
    assert [r.raw for r in store.scan(ALL, order="oldest")] == [lines[i] for i in (0, 1, 5, 6)]

    # Key pointers take room too: a full-size record with several indexed
    # values either fits or is rejected as too large; nothing else.
    for k in range(6):
        store.register_psf(f"n{k}", f"to_string(length(pad)) || `{k}`")  # a callable-free slow path
    tail = store.tail_address
    near = [_record(n) for n in (limit - 200, limit - 100, limit - 8, limit)]
    res = store.ingest(b"\n".join(near + [_record(64)]))
    stored = [r.raw for r in store.scan(ALL, order="oldest", from_address=tail)]
    assert [e.reason for e in res.errors] == [  # their texts fit; with their PSF values they do not
        f"record too large: {len(near[e.line - 1]):,} bytes, and with the values its PSFs index it does not fit in "
        f"one {page // KiB} KiB log page" for e in res.errors]
    assert res.ingested + res.rejected == len(near) + 1
    assert stored == [r for i, r in enumerate(near + [_record(64)]) if i + 1 not in {e.line for e in res.errors}]
    assert stored[-1] == _record(64) and stored[0] == near[0]


def test_over_long_line_mid_stream(store, generated):
    """A line far larger than any record is skipped without being buffered and
    line numbers after it stay right, however the input is chunked."""
    raws = list(generated("jenkins_jobs", 50))
    huge = b'{"x":"' + b"y" * (300 * KiB) + b'"}'
    lines = raws[:20] + [huge] + raws[20:40] + [b"{bad"] + raws[40:]
    text = b"\n".join(lines) + b"\n"
    for chunks in ([text], [text[i:i + 4096] for i in range(0, len(text), 4096)],
                   [text[i:i + 777] for i in range(0, len(text), 777)]):
        tail = store.tail_address
        res = store.ingest(iter(chunks))
        assert [(e.line, e.reason) for e in res.errors][:1] == [(21, f"record too large: {len(huge):,} bytes, "
                                                                     f"over {FIT_16K}")]
        assert [e.line for e in res.errors] == [21, 42]
        assert [r.raw for r in store.scan(ALL, order="oldest", from_address=tail)] == raws


# ---- results ----

def test_result_addresses_and_counts(store, generated):
    raws = generated("github_events", 30)
    log = Log()
    for k in range(0, len(raws), 7):
        part = raws[k:k + 7]
        tail = store.tail_address
        res = store.ingest(b"\n".join(part))
        assert res.ingested == len(part) and res.first_address == tail
        log.extend(part)
        log.bind(store)
        assert (res.first_address, res.last_address) == (log.addresses[k], log.addresses[-1])
        assert res.to_dict()["ingested"] == len(part)
    # one record per ingest call gives each record's address: the same ones
    other = Log()
    for raw in raws[:10]:
        res = store.ingest(raw)
        assert res.first_address == res.last_address
        other.addresses.append(res.first_address)
        assert store.get(res.first_address).raw == raw
    assert store.stats()["records"] == len(raws) + 10


def test_durable_result(store, generated):
    res = store.ingest(b"\n".join(generated("github_events", 30)), durable=True)
    assert res.durable
    assert store.stats()["addresses"]["flushed_until"] == store.tail_address


def test_records_ending_exactly_at_a_page_end(open_store, store_path):
    """Records that fill their page to the last byte, across frame recycling,
    a close with the tail on a page boundary, and a reopen."""
    page = 4 * KiB
    store = open_store(page_size_bytes=page, memory_budget_bytes=2 * page, segment_size_bytes=2 * page)
    expected = []
    exact = 0
    for i in range(12):
        small = b'{"i":%d}' % i
        store.ingest(small)
        expected.append(small)
        left = page - store.tail_address % page
        # header (32 bytes) + text padded to 8 (store/record.py) fills the page exactly
        rec = _record(left - 32)
        store.ingest(rec)
        expected.append(rec)
        exact += store.tail_address % page == 0
    assert exact == 12
    assert [r.raw for r in store.scan(ALL, order="oldest")] == expected
    last = b'{"last":true}'
    # end the log exactly at a page end, then reopen
    store.ingest(last)
    expected.append(last)
    rec = _record(page - store.tail_address % page - 32)
    store.ingest(rec)
    expected.append(rec)
    assert store.tail_address % page == 0
    store.close()
    store = open_store(page_size_bytes=page, memory_budget_bytes=2 * page, segment_size_bytes=2 * page)
    assert [r.raw for r in store.scan(ALL, order="oldest")] == expected
    store.ingest(b'{"after":1}\n{"after":2}')
    expected += [b'{"after":1}', b'{"after":2}']
    log = Log(expected)
    log.bind(store)
    assert [store.get(a).raw for a in log.addresses] == expected
