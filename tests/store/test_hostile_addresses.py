"""Forged addresses: whatever address a caller passes (store.get, a query's
or a scan's from_address / to_address, compact's until_address), the answer
is the record that starts there, byte for byte as ingested, or nothing: never
bytes from inside another record, from a page's unused end, from past the
tail or below begin, and never a crash.

The oracle is what ingest returned: each record is ingested by a call of its
own, whose first_address is where it starts, and its bytes are the text that
call was given. Nothing of shoal's reads is trusted to build it.

Three kinds of bytes look like a record without being one, and each has a
test that builds it on purpose:
* a header forged inside a record: a PSF's value with escapes is stored
  unescaped in the record's values area, so a client chooses those bytes
  (a fake header, length fields, even a valid checksum);
* a page's unused end: a frame is recycled without being cleared, so what
  followed a page's last record used to be what the frame held before, a
  page from long ago (records compaction may have removed);
* the same on disk, as segment files written before the fix hold it.
"""
from __future__ import annotations

import os
import pathlib
import random
import struct

import pytest
from conftest import PAGE_BYTES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shoal
from shoal._native import lib

HEADER = 32
KP = 24
FIRST = 64  # the log's first address (address 0 means "none")
FUZZ_EXAMPLES = int(os.environ.get("SHOAL_FUZZ_EXAMPLES", "0")) or 400
HOSTILE_INTS = [0, 1, 7, 8, 63, 65, 2**48 - 8, 2**48 - 1, 2**48, 2**63 - 1, 2**63, 2**64 - 8, 2**64 - 1,
                2**64, 2**64 + 1, 2**70]


# ---- forging ----------------------------------------------------------------

def _json_string(data: bytes) -> bytes:
    """A JSON string literal whose unescaped bytes are `data` (bytes < 0x80):
    every byte that is not printable ASCII is an escape, so shoal stores the
    value's canonical bytes (unescaped) in the record's values area."""
    assert all(b < 0x80 for b in data)
    out = bytearray(b'"')
    for b in data:
        if 0x20 <= b < 0x7F and b not in b'"\\':
            out.append(b)
        else:
            out += b"\\u%04x" % b
    return bytes(out + b'"')


def _low(n: int) -> bool:
    """Whether every byte of n's 4-byte little-endian form is below 0x80."""
    return all(b < 0x80 for b in struct.pack("<I", n))


def _fake_record(payload: bytes, size: int | None = None) -> bytes:
    """A record header (version 1, no key pointers) laid out as shoal.h says,
    every byte below 0x80 so that it fits in a JSON string.
    Without `size`: followed by `payload` (trailing spaces added until the
    checksum's bytes are below 0x80), checksum valid: a whole, verifiable
    record. With `size`: a header alone claiming `size` bytes (values and
    payload lengths that add up to it), whose checksum cannot be known:
    it claims whatever bytes follow it."""
    if size is not None:
        rest = size - HEADER
        payload_bytes = next(p for p in range(rest, -1, -8) if _low(p) and _low(rest - p))
        head = struct.pack("<HBBIIHHIQ", lib.SHOAL_RECORD_MAGIC, lib.SHOAL_RECORD_VERSION, 0, size,
                           payload_bytes, 0, 0, rest - payload_bytes, 0)
        fake = b"AAAA" + head
        assert all(b < 0x80 for b in fake)
        return fake
    for spaces in range(4096):
        body = payload + b" " * spaces
        n = len(body)
        head = struct.pack("<HBBIIHHIQ", lib.SHOAL_RECORD_MAGIC, lib.SHOAL_RECORD_VERSION, 0,
                           HEADER + n + (-n) % 8, n, 0, 0, 0, 0)
        crc = lib.shoal_crc32c(0, head + body, len(head) + n)
        fake = struct.pack("<I", crc) + head + body
        if all(b < 0x80 for b in fake):
            return fake + b"F" * ((-n) % 8)
    raise AssertionError(f"no checksum below 0x80 for {payload!r}")


def forged_record(fake: bytes, **fields) -> bytes:
    """A record whose PSF "f" value holds `fake` at record offset 64: with
    one key pointer the values area starts at 32 + 24 = 56, the canonical
    value there is "s" + the string's bytes, so 7 filler bytes put the fake
    at 64, an 8-aligned offset where a header could start."""
    value = b"FFFFFFF" + fake
    extra = b"".join(b',"%s":%s' % (k.encode(), v) for k, v in fields.items())
    return b'{"f":' + _json_string(value) + extra + b"}"


def forged_offset(n_kps: int = 1) -> int:
    """Where forged_record's fake lies in its record when the record has
    n_kps key pointers ("f"'s first: its value opens the values area)."""
    return HEADER + n_kps * KP + 8


FORGED_OFFSET = forged_offset(1)


def _assert_forged(store, address: int, fake: bytes, n_kps: int = 1) -> None:
    """The precondition of every forged-header test: the fake header is
    where the test means it to be (read with the whole-record read, which
    only the precondition uses)."""
    at = forged_offset(n_kps)
    whole = store._log.read_records([address])[0]
    assert whole[at:at + len(fake)] == fake, "the forgery is not where it was meant to be"


# ---- a store whose record starts are known ---------------------------------

class Known:
    """Records ingested one per call: address -> raw bytes."""

    def __init__(self, store):
        self.store = store
        self.raws: dict[int, bytes] = {}

    def add(self, raw: bytes) -> int:
        res = self.store.ingest(raw)
        assert res.ingested == 1 and res.rejected == 0, res
        assert res.first_address not in self.raws
        self.raws[res.first_address] = raw
        return res.first_address

    def expected(self, address: int) -> bytes | None:
        if address < self.store.begin_address:
            return None
        return self.raws.get(address)

    def sweep(self, lo: int = 0, hi: int | None = None, step: int = 8) -> None:
        """get(a) for every a in [lo, hi) a step apart: a known record's
        bytes at its own address, None everywhere else."""
        store = self.store
        hi = store.tail_address + 2 * PAGE_BYTES if hi is None else hi
        wrong = []
        for a in range(lo, hi, step):
            rec = store.get(a)
            got = None if rec is None else rec.raw
            if got != self.expected(a):
                wrong.append((a, None if got is None else got[:60]))
        assert not wrong, f"{len(wrong)} addresses answered wrongly, e.g. {wrong[:5]}"


def _build(store, n: int, seed: int) -> Known:
    """n records of varied sizes (so pages end at different offsets and a
    recycled frame's old records sit past a page's end), every 9th one
    carrying a forged header (some with valid checksums, some claiming
    lengths that run past the record, the page or the tail)."""
    store.register_psf("f", "f")
    store.register_psf("kind", "kind")
    rng = random.Random(seed)
    known = Known(store)
    for i in range(n):
        if i % 9 == 4:
            if i % 2:
                fake = _fake_record(b'{"forged":%d}' % i)
            else:
                fake = _fake_record(b"", size=rng.choice([64, 1024, 4096, PAGE_BYTES // 2, PAGE_BYTES - 256]))
            raw = forged_record(fake, i=b"%d" % i, kind=b'"forged"')
            a = known.add(raw)
            _assert_forged(store, a, fake, n_kps=2)  # f and kind
        else:
            pad = "x" * rng.choice([0, 10, 100, 700, 1500, 3000, 6000])
            known.add(b'{"i":%d,"kind":"%s","pad":"%s"}' % (i, b"ab"[i % 2:i % 2 + 1], pad.encode()))
    return known


@pytest.fixture
def known(store) -> Known:
    return _build(store, 240, seed=1)


# ---- store.get ----------------------------------------------------------------

def test_argument_types_and_signs(store):
    for bad in (-1, -(2**64), "64", b"64", 64.0, True, False, None, [64]):
        with pytest.raises(shoal.InvalidArgument):
            store.get(bad)


def test_every_address_in_and_around_the_log(known):
    """Memory and disk pages, page starts, page ends, the zero header after a
    page's last record, what follows it, the tail and past it."""
    store = known.store
    assert store.head_address > store.begin_address + 8 * PAGE_BYTES, "most of the log should be on disk"
    known.sweep()
    for a in HOSTILE_INTS + [store.tail_address, store.tail_address + 8, store.head_address]:
        rec = store.get(a)
        assert (None if rec is None else rec.raw) == known.expected(a), a


def test_unaligned_addresses(known):
    store = known.store
    for a in list(known.raws)[::5]:
        for d in (1, 2, 3, 4, 5, 6, 7, -1, -4, -7):
            assert store.get(a + d) is None, a + d


def test_forged_header_with_a_valid_checksum(store):
    """A client-built header inside a record's values area, its checksum
    right: not a record start, on a memory page and on disk."""
    known = Known(store)
    store.register_psf("f", "f")
    fake = _fake_record(b'{"forged":true}')
    a = known.add(forged_record(fake))
    _assert_forged(store, a, fake)
    assert store.get(a).raw == known.raws[a]
    assert store.get(a + FORGED_OFFSET) is None  # the tail page, in memory
    while store.head_address <= a:  # push it out to its segment file
        known.add(b'{"pad":"%s"}' % (b"y" * 5000))
    assert store.get(a + FORGED_OFFSET) is None
    assert store.get(a).raw == known.raws[a]


@pytest.mark.parametrize("size", [HEADER + 8, 4096, PAGE_BYTES // 2, PAGE_BYTES - 256, PAGE_BYTES, 0x7F7F7F78])
def test_forged_lengths_never_reach_past_the_tail_or_the_page(store, size):
    """A forged header claiming `size` bytes, in a page's first record:
    the bytes it claims run past the record, past the tail (into a frame's
    old bytes: the frame is recycled first), past the page."""
    known = Known(store)
    store.register_psf("f", "f")
    while store.tail_address < 6 * PAGE_BYTES:  # the frames hold older pages now
        known.add(b'{"old":"%s"}' % (b"o" * 3000))
    fake = _fake_record(b"", size=size)
    raw = forged_record(fake)
    need = forged_offset(1) + len(fake) + 7 + len(raw) + 16  # more than the record takes
    while (room := PAGE_BYTES - store.tail_address % PAGE_BYTES) >= need - 128:
        # a filler that leaves less room than the forged record needs (a
        # filler takes 32 + its text padded to 8 bytes)
        known.add(b'{"old":"%s"}' % (b"o" * max(0, room - need - 48)))
    a = known.add(raw)
    _assert_forged(store, a, fake)
    assert a % PAGE_BYTES == 0
    assert size < 4096 or a + FORGED_OFFSET + 4096 > store.tail_address, "the fake should claim bytes past the tail"
    assert store.get(a + FORGED_OFFSET) is None
    if size >= 4096:  # the native read alone, without the record-start check, stops at the tail too
        assert store._log.read_records([a + FORGED_OFFSET], payload_only=True) == [None]
    store.flush()
    while store.head_address <= a:
        known.add(b'{"pad":"%s"}' % (b"y" * 5000))
    assert store.get(a + FORGED_OFFSET) is None
    known.sweep(a - PAGE_BYTES, a + 2 * PAGE_BYTES)


def test_after_reopen_every_byte_is_read_from_disk(known, open_store, store_path):
    known.store.close()
    known.store = open_store(store_path)
    known.sweep()


def test_after_compaction_nothing_below_begin_and_no_removed_record(known):
    """Compaction moves begin and deletes segment files: their records are
    gone for every address, including where a recycled frame once copied
    them (past a later page's end)."""
    store = known.store
    cut = (store.tail_address // 2) // PAGE_BYTES * PAGE_BYTES
    removed = {raw for a, raw in known.raws.items() if a < cut}
    files_before = set(os.listdir(store.path / "log"))
    res = store.compact(cut)
    assert res.begin_after == cut
    # (the flusher may open a new segment meanwhile: only deletions count)
    assert files_before - set(os.listdir(store.path / "log")), "no segment file was deleted"
    known.sweep()
    for a in range(0, store.tail_address, 8):
        rec = store.get(a)
        assert rec is None or rec.raw not in removed, a


def test_without_the_tag_key(known, open_store, store_path):
    """Records whose tag is not their address's under the log's key (written
    before tags, or the key file lost) are checked by a walk of their page:
    every answer stays exact, forgeries included."""
    from shoal.store.hlog import TAG_KEY_FILE
    store = known.store
    store.close()
    (store_path / "log" / TAG_KEY_FILE).unlink()
    known.store = open_store(store_path)
    known.sweep()
    for i in range(40):  # tagged under the new key, beside the old ones
        known.add(forged_record(_fake_record(b'{"new":%d}' % i), kind=b'"forged"'))
    known.sweep(known.store.head_address - 2 * PAGE_BYTES)


def test_removed_records_leave_no_copy_in_the_data_directory(known):
    """What compaction removes with its segment file is gone from disk: no
    file of the data directory holds such a record's text (a recycled frame
    used to carry old records into later pages' unused ends, and so into
    their segment files). A segment file the cut runs through is kept whole:
    its records below begin stay in it, where they were written."""
    store = known.store
    seg_bytes = store.config.segment_size_bytes
    cut = (store.tail_address // 2) // seg_bytes * seg_bytes
    store.compact(cut)
    store.flush()
    removed = [raw for a, raw in known.raws.items() if a < cut and b'"pad":"x' in raw]
    assert removed and not (store.path / "log" / "segment-000000.log").exists()
    found = []
    for dirpath, _, names in os.walk(store.path):
        for name in names:
            data = (pathlib.Path(dirpath) / name).read_bytes()
            found += [(name, raw[:30]) for raw in removed if raw in data]
    assert not found, found[:5]


def test_stale_record_past_a_page_end_on_disk(known, open_store, store_path):
    """A segment file written before page ends were cleared: a whole, valid
    record (checksum and all) copied past a page's zero end header, as a
    recycled frame left one. It was never appended there: not a record."""
    store = known.store
    whole_pages = store.head_address // PAGE_BYTES  # pages below head: on disk only
    starts = sorted(a for a in known.raws if a // PAGE_BYTES < whole_pages)
    by_page: dict[int, list[int]] = {}
    for a in starts:
        by_page.setdefault(a // PAGE_BYTES, []).append(a)
    # A page with room after its last record for a copy of a small one.
    donor = min((a for a in starts if len(store._log.read_records([a])[0]) <= 512),
                key=lambda a: len(known.raws[a]))
    donor_bytes = store._log.read_records([donor])[0]
    for page, addrs in sorted(by_page.items()):
        last = addrs[-1]
        end = last + len(store._log.read_records([last])[0])
        at = (end + HEADER + 7) // 8 * 8  # past the zero end header
        if page > 0 and at + len(donor_bytes) <= (page + 1) * PAGE_BYTES:
            break
    else:
        pytest.skip("no page with room after its last record")
    seg_bytes = store.config.segment_size_bytes
    store.close()
    path = store_path / "log" / f"segment-{at // seg_bytes:06d}.log"
    with open(path, "r+b") as f:
        f.seek(at % seg_bytes)
        f.write(donor_bytes)
    known.store = open_store(store_path)
    assert known.store.get(at) is None
    assert known.store.get(donor).raw == known.raws[donor]
    known.sweep(page * PAGE_BYTES, (page + 1) * PAGE_BYTES)


def test_keyed_store(open_store):
    """A keyed store whose key is the forging field (the key's canonical
    value is stored in the values area at the same place): forged
    addresses are nothing, live, superseded and deleted versions alike."""
    store = open_store(key="f")
    known = Known(store)
    fakes = {}
    for i in range(160):
        k = i % 7
        if k % 2:
            fake = fakes.setdefault(k, _fake_record(b'{"forged":%d}' % k))
            a = known.add(forged_record(fake, v=b"%d" % i))
            _assert_forged(store, a, fake)
        else:
            known.add(b'{"f":"k%d","v":%d,"pad":"%s"}' % (k, i, b"p" * (i * 97 % 3000)))
    assert store.delete_key(f"k{2}")
    assert store.head_address > 4 * PAGE_BYTES, "some versions should be on disk"
    for a, raw in known.raws.items():
        assert store.get(a).raw == raw
    known.sweep()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_addresses(known, data):
    """Random addresses, most near record starts (inside headers, key
    pointers, values, payloads) or page ends (a page's unused end), some
    anywhere, some huge; each with the 8-aligned addresses of a window
    after it."""
    store = known.store
    starts = sorted(known.raws)
    tail = store.tail_address
    pages = tail // PAGE_BYTES + 2
    address = data.draw(st.one_of(
        st.integers(0, tail + 4 * PAGE_BYTES),
        st.builds(lambda a, d: max(0, a + d), st.sampled_from(starts), st.integers(-64, 4096)),
        st.builds(lambda p, d: max(0, p * PAGE_BYTES - d), st.integers(1, pages), st.integers(0, 8192)),
        st.sampled_from(HOSTILE_INTS),
        st.integers(2**47, 2**66),
    ), label="address")
    window = data.draw(st.integers(0, 64), label="window")
    for a in [address] + [address - address % 8 + 8 * k for k in range(1, window + 1)]:
        rec = store.get(a)
        assert (None if rec is None else rec.raw) == known.expected(a), a


# ---- ranges: from_address, to_address, until_address ---------------------------

def _range_values(known) -> list[int]:
    store = known.store
    starts = sorted(known.raws)
    mid = starts[len(starts) // 2]
    return sorted(set(HOSTILE_INTS + [mid - 8, mid - 1, mid, mid + 1, mid + FORGED_OFFSET,
                                      store.begin_address, store.tail_address, store.tail_address + 1]))


def _expected_range(known, lo: int | None, hi: int | None, kind: str | None = None) -> list[tuple[int, bytes]]:
    return [(a, raw) for a, raw in sorted(known.raws.items(), reverse=True)
            if known.expected(a) is not None and (lo is None or a >= lo) and (hi is None or a < hi)
            and (kind is None or b'"kind":"%s"' % kind.encode() in raw)]


def test_query_and_scan_ranges(known):
    store = known.store
    store.compact(4 * PAGE_BYTES)
    values = _range_values(known)
    for lo in [None] + values[::2]:
        for hi in [None] + values[1::2]:
            want = _expected_range(known, lo, hi, "a")
            got = [(r.address, r.raw) for r in store.query("kind", "a", from_address=lo, to_address=hi)]
            assert got == want, (lo, hi)
            got = [(r.address, r.raw) for r in store.query("kind", "a", from_address=lo, to_address=hi,
                                                           order="oldest")]
            assert got == want[::-1], (lo, hi)
            got = [(r.address, r.raw) for r in store.scan("kind == 'a'", from_address=lo, to_address=hi)]
            assert got == want, (lo, hi)
            got = [a for b in store.query_batches([("kind", "a")], from_address=lo, to_address=hi)
                   for a in b.addresses]
            assert got == [a for a, _ in want], (lo, hi)


@pytest.mark.parametrize("bad", [-1, -(2**64), "64", 64.0, True, [1]])
def test_range_argument_types(store, bad):
    store.register_psf("kind", "kind")
    for kw in ("from_address", "to_address"):
        with pytest.raises(shoal.InvalidArgument):
            list(store.query("kind", "a", **{kw: bad}))
        with pytest.raises(shoal.InvalidArgument):
            list(store.scan("kind", **{kw: bad}))
    with pytest.raises(shoal.InvalidArgument):
        store.compact(bad)


@pytest.mark.parametrize("until", ["inside", "page", 2**48, 2**63, 2**64 + 1, 2**70])
def test_compact_until_any_address(known, until):
    """The cut is a page start at or below `until` and never past the tail
    page; afterwards every address still answers by the oracle."""
    store = known.store
    starts = sorted(known.raws)
    if until == "inside":
        until = starts[len(starts) // 3] + FORGED_OFFSET + 3
    elif until == "page":
        until = (starts[len(starts) // 3] // PAGE_BYTES) * PAGE_BYTES
    tail_page = store.tail_address // PAGE_BYTES * PAGE_BYTES
    begin = store.begin_address
    res = store.compact(until)
    assert res.begin_after == max(begin, min(until // PAGE_BYTES * PAGE_BYTES, tail_page))
    assert store.begin_address == res.begin_after
    known.sweep()
    assert [(r.address, r.raw) for r in store.scan("`true`")] == _expected_range(known, None, None)


def test_compact_hostile_retain_bytes(known):
    store = known.store
    for bad in (-1, "1", 1.5, True):
        with pytest.raises(shoal.InvalidArgument):
            store.compact(retain_bytes=bad)
    before = store.begin_address
    assert store.compact(retain_bytes=2**64 + 1).begin_after == before
    known.sweep()


def test_native_read_rejects_what_python_would(known):
    """shoal_read itself, below the Python checks: addresses past 48 bits,
    unaligned, in the last 31 bytes of a page, answer no record."""
    store = known.store
    log = store._log
    for a in (2**48, 2**63, 2**64 - 8, PAGE_BYTES - 8, PAGE_BYTES - 24, 3 * PAGE_BYTES + 4, 1):
        assert log.read_records([a], payload_only=True) == [None], a
