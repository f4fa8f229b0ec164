"""Fuzzing the whole ingest path (framing, the native parse, append) with
hypothesis: random and mutated JSON texts (truncated, a byte flipped,
invalid UTF-8, control characters, random bytes) as NDJSON and as array
elements, plain or gzipped, fed in random chunks. No crash, and shoal's
verdict on every record is orjson's: the valid ones are stored byte for
byte (less surrounding whitespace) in order, each bad one is reported on
its line, and the store's count equals what a scan finds.

pysimdjson is a second oracle: where it and orjson agree, shoal agrees with
both. They disagree on integers beyond 64 bits (simdjson refuses them;
orjson, and so shoal, reads them as floats): asserted as that one known case.
"""
from __future__ import annotations

import gzip
import os

import orjson
import pytest
import simdjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import ALL, JSON_WS, orjson_accepts

import shoal
from shoal.config import KiB

# A longer run: SHOAL_FUZZ_EXAMPLES=5000 (README, "Testing"); CI runs the default.
SCALE = int(os.environ.get("SHOAL_FUZZ_EXAMPLES", "0")) or None
CFG = shoal.StoreConfig(page_size_bytes=16 * KiB, memory_budget_bytes=64 * KiB,
                        segment_size_bytes=64 * KiB, batch_bytes=4 * KiB)

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | _text)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3),
                       max_leaves=8)
_valid = st.one_of(_values.map(orjson.dumps), _values.map(lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2)),
                   st.integers(2**64, 2**80).map(lambda i: str(i).encode()))
_junk = st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\x1f",
                         b'"', b"\\", b"{", b"]", b",", b"tru", b"1e999", b"-", b"01", b"\xe2\x82"])


@st.composite
def _mutated(draw) -> bytes:
    text = draw(_valid)
    how = draw(st.sampled_from(["cut", "flip", "insert", "random"]))
    if how == "random":
        return draw(st.binary(min_size=1, max_size=24))
    at = draw(st.integers(0, len(text)))
    if how == "cut":
        return text[:at] or b"{"
    if how == "flip":
        i = min(at, len(text) - 1)
        return text[:i] + bytes([draw(st.integers(0, 255))]) + text[i + 1:]
    return text[:at] + draw(_junk) + text[at:]


_record = st.one_of(_valid, _valid, _mutated()).map(lambda b: b.replace(b"\n", b" "))


def _simdjson_accepts(raw: bytes) -> bool:
    try:
        simdjson.Parser().parse(raw)
        return True
    except (ValueError, RuntimeError):
        return False


def _chunks(data: bytes, cuts: list[int]):
    prev = 0
    for c in sorted(set(min(c, len(data)) for c in cuts)):
        if c > prev:
            yield data[prev:c]
            prev = c
    if prev < len(data):
        yield data[prev:]


def _stored(store) -> list[bytes]:
    return [r.raw for r in sorted(store.scan(ALL), key=lambda r: r.address)]


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    with shoal.open(tmp_path_factory.mktemp("fuzz"), CFG) as s:
        s.register_psf("a", "a")
        yield s


@settings(max_examples=SCALE or 300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_record, min_size=1, max_size=25), packed=st.booleans(),
       cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_ndjson_verdicts_are_orjsons(fuzz_store, records, packed, cuts):
    store = fuzz_store
    before = store.stats()["records"]
    data = b"\n".join(records) + b"\n"
    body = gzip.compress(data) if packed else data
    result = store.ingest(_chunks(body, cuts), format="ndjson")
    lines = data.split(b"\n")[:-1]
    texts = [(i + 1, ln.strip(JSON_WS)) for i, ln in enumerate(lines) if ln.strip(JSON_WS)]
    good = [t for _, t in texts if orjson_accepts(t)]
    bad_lines = [i for i, t in texts if not orjson_accepts(t)]
    assert (result.ingested, result.rejected) == (len(good), len(bad_lines))
    assert [e.line for e in result.errors] == bad_lines
    assert all(e.reason for e in result.errors)
    got = _stored(store)[before:]
    assert got == good
    assert store.stats()["records"] == before + len(good) == len(_stored(store))
    for _, t in texts:
        if _simdjson_accepts(t) != orjson_accepts(t):
            assert orjson_accepts(t) and _has_big_integer(t), t


@settings(max_examples=SCALE or 200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(elements=st.lists(st.one_of(_valid, st.sampled_from(
           [b"tru", b"01", b"1.", b"+1", b"nul", b'"\xff"', b'"\xc0\x80"', b'"a\x01"', b"-", b".5", b"1e999"])),
           min_size=1, max_size=20),
       packed=st.booleans(), cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_array_element_verdicts_are_orjsons(fuzz_store, elements, packed, cuts):
    store = fuzz_store
    before = store.stats()["records"]
    data = b"[" + b",\n ".join(elements) + b"]"
    body = gzip.compress(data) if packed else data
    result = store.ingest(_chunks(body, cuts), format="array")
    good = [e for e in elements if orjson_accepts(e)]
    bad = [i + 1 for i, e in enumerate(elements) if not orjson_accepts(e)]
    assert (result.ingested, result.rejected) == (len(good), len(bad))
    assert [e.line for e in result.errors] == bad
    assert _stored(store)[before:] == good
    assert store.stats()["records"] == before + len(good)


def _has_big_integer(text: bytes) -> bool:
    """Does `text` hold an integer literal beyond 64 bits (outside strings)?"""
    value = orjson.loads(text)
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and v.is_integer() and abs(v) >= 2**63:
            return True
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return False
