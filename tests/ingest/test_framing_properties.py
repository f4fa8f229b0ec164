"""Property tests: what a store keeps does not depend on how the input is cut.

Random records (non-ASCII text, escapes, nesting, numbers), written with
random formatting and line endings, cut into random chunks and fed through an
iterable source with the smallest batch size: the stored records are exactly
the input records, in order. Records around the size limit are stored when
they fit and reported as "record too large" on their line when not, with
their exact size (also when a chunk boundary made the framer skip the line
unread), and the records around them are stored either way.

One store per test serves all examples; each example checks only what it
appended (scan from the tail it started at)."""
from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import ALL, JSON_WS

import shoal
from shoal.config import KiB

PAGE = 4 * KiB
LIMIT = 700

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | _text)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)


def _dump(value, style: int) -> bytes:
    """One-line JSON text of `value` in one of several styles."""
    if style == 0:
        return orjson.dumps(value)  # raw UTF-8
    if style == 1:
        return json.dumps(value, ensure_ascii=True).encode()  # \\uXXXX escapes, surrogate pairs
    if style == 2:
        return json.dumps(value, ensure_ascii=False, separators=(" ,\t", " : ")).encode()
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()


@st.composite
def ndjson_inputs(draw, records=st.lists(st.tuples(json_values, st.integers(0, 3)), min_size=0, max_size=25)):
    """(chunks, expected stored texts)."""
    recs = [_dump(v, style) for v, style in draw(records)]
    parts = []
    for r in recs:
        parts.append(draw(st.sampled_from([b"", b"\n", b"\r\n", b" \n\t\n"])))  # blank lines
        parts.append(draw(st.sampled_from([b"", b" ", b"\t ", b"  "])) + r + draw(st.sampled_from([b"", b" ", b"\t", b"\r"])))
        parts.append(b"\n")
    if recs and draw(st.booleans()):
        parts.pop()  # no final newline
    text = b"".join(parts)
    return _cut(draw, text), recs


def _cut(draw, text: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=30))))
    bounds = [0] + cuts + [len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    s = shoal.open(tmp_path_factory.mktemp("prop"), page_size_bytes=PAGE, memory_budget_bytes=2 * PAGE,
                   segment_size_bytes=4 * PAGE, batch_bytes=4 * KiB)
    s.register_psf("t", "t")
    yield s
    s.close()


def _appended(store, tail):
    return [r.raw for r in store.scan(ALL, order="oldest", from_address=tail)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ndjson_inputs())
def test_framing_ignores_chunk_boundaries(shared_store, data):
    chunks, recs = data
    tail = shared_store.tail_address
    res = shared_store.ingest(iter(chunks))
    assert (res.ingested, res.rejected, res.errors) == (len(recs), 0, [])
    assert _appended(shared_store, tail) == recs
    for r in recs:
        assert orjson.loads(r) == orjson.loads(r.strip(JSON_WS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ndjson_inputs(), fmt=st.sampled_from(["ndjson", "auto"]))
def test_reject_mode_with_chunks(shared_store, data, fmt):
    """One bad line anywhere: nothing stored; without it: everything."""
    chunks, recs = data
    tail = shared_store.tail_address
    if recs and recs[0].lstrip().startswith(b"[") and fmt == "auto":
        fmt = "ndjson"  # a first line that is a complete array is NDJSON either way
    with pytest.raises(shoal.IngestRejected) as e:
        shared_store.ingest(iter(chunks + [b"\n{\"bad\":}\n"]), on_error="reject", format=fmt)
    assert e.value.result.rejected == 1
    assert shared_store.tail_address == tail
    res = shared_store.ingest(iter(chunks), on_error="reject", format=fmt)
    assert res.ingested == len(recs)
    assert _appended(shared_store, tail) == recs


def _sized(size: int, unit: bytes) -> bytes:
    """A JSON object of exactly `size` bytes whose string is made of `unit`."""
    n = size - 8
    k = n // len(unit)
    return b'{"k":"' + unit * k + b"x" * (n - k * len(unit)) + b'"}'


@st.composite
def sized_inputs(draw):
    """Records of sizes around LIMIT with whitespace around them, cut into chunks.
    Returns (chunks, [(record text, line)])."""
    lines, expected = [], []
    for _ in range(draw(st.integers(1, 8))):
        size = draw(st.sampled_from([10, LIMIT - 2, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2, LIMIT + 3, 3 * LIMIT]))
        r = _sized(size, draw(st.sampled_from([b"x", "\u00e9".encode(), b"\\n"])))
        assert len(r) == size
        pre = draw(st.sampled_from([b"", b" ", b"   ", b"\t\t\t\t"]))
        post = draw(st.sampled_from([b"", b"\r", b"    ", b" \t \r"]))
        lines.append(pre + r + post)
        expected.append((r, len(lines)))
    text = b"\n".join(lines) + draw(st.sampled_from([b"", b"\n"]))
    return _cut(draw, text), expected


@pytest.fixture(scope="module")
def limited_store(tmp_path_factory):
    s = shoal.open(tmp_path_factory.mktemp("limit"), page_size_bytes=PAGE, memory_budget_bytes=2 * PAGE,
                   segment_size_bytes=4 * PAGE, batch_bytes=4 * KiB, max_record_bytes=LIMIT)
    yield s
    s.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=sized_inputs())
def test_records_near_the_size_limit(limited_store, data):
    chunks, expected = data
    tail = limited_store.tail_address
    res = limited_store.ingest(iter(chunks))
    fits = [(r, line) for r, line in expected if len(r) <= LIMIT]
    too_big = [(r, line) for r, line in expected if len(r) > LIMIT]
    assert [(e.line, e.reason) for e in res.errors] == [
        (line, f"record too large: {len(r):,} bytes, over max_record_bytes ({LIMIT})") for r, line in too_big]
    assert res.ingested == len(fits)
    assert _appended(limited_store, tail) == [r for r, _ in fits]


@st.composite
def array_inputs(draw):
    """A JSON array of random records with random whitespace (newlines too),
    cut into chunks. Returns (chunks, expected element texts)."""
    recs = [_dump(v, style) for v, style in draw(st.lists(st.tuples(json_values, st.integers(0, 3)), max_size=20))]
    ws = st.sampled_from([b"", b" ", b"\n", b"\r\n  ", b"\t\n\n "])
    out = draw(ws) + b"[" + draw(ws)
    for i, r in enumerate(recs):
        out += r + draw(ws)
        if i < len(recs) - 1:
            out += b"," + draw(ws)
    out += b"]" + draw(ws)
    return _cut(draw, out), recs


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=array_inputs())
def test_array_framing_ignores_chunk_boundaries(shared_store, data):
    chunks, recs = data
    tail = shared_store.tail_address
    res = shared_store.ingest(iter(chunks), format="array")
    assert (res.ingested, res.rejected, res.errors) == (len(recs), 0, [])
    assert _appended(shared_store, tail) == recs


@pytest.fixture(scope="module")
def page_limited_store(tmp_path_factory):
    s = shoal.open(tmp_path_factory.mktemp("page"), page_size_bytes=PAGE, memory_budget_bytes=2 * PAGE,
                   segment_size_bytes=4 * PAGE, batch_bytes=4 * KiB)
    yield s
    s.close()


@st.composite
def page_sized_inputs(draw):
    """Records around the largest a 4 KiB page takes (no PSFs: header only)."""
    lines, expected = [], []
    for _ in range(draw(st.integers(1, 6))):
        size = draw(st.integers(PAGE - 80, PAGE + 8) | st.just(20))
        r = _sized(size, draw(st.sampled_from([b"x", "\u00e9".encode()])))
        lines.append(draw(st.sampled_from([b"", b"  "])) + r + draw(st.sampled_from([b"", b"\r", b"  "])))
        expected.append((r, len(lines)))
    return _cut(draw, b"\n".join(lines) + b"\n"), expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=page_sized_inputs())
def test_records_near_the_page_size(page_limited_store, data):
    """Without PSFs a record's text may take a whole page less the 32-byte
    record header (StoreConfig.effective_max_record_bytes)."""
    chunks, expected = data
    store = page_limited_store
    tail = store.tail_address
    res = store.ingest(iter(chunks))

    def fits(r):
        return len(r) <= PAGE - 32

    assert [(e.line, e.reason) for e in res.errors] == [
        (line, f"record too large: {len(r):,} bytes, over the {PAGE - 32:,} bytes that fit in one 4 KiB log page")
        for r, line in expected if not fits(r)]
    assert _appended(store, tail) == [r for r, _ in expected if fits(r)]
