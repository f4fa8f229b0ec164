"""Compressed frames (store/frames.py, _native/frame.c) against zstd itself.

The oracle is the zstandard package's own decompressor run over each frame's
compressed bytes (where the header says they are), beside the raw log bytes
the frame was made of: shoal's C decompression must give those bytes back,
and any damage to a frame must read as CorruptionError, never as other bytes.
"""
from __future__ import annotations

import struct
import threading

import pytest
import zstandard
from conftest import SOURCES
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import CorruptionError
from shoal.store import frames as F

_HEADER = struct.Struct("<IIQIIII")  # magic, crc, address, raw_len, comp_len, raw_crc, flags
assert _HEADER.size == F.HEADER_BYTES


def log_bytes(open_store, lines) -> bytes:
    """The segment files of a store holding `lines`, back to back: real log
    bytes (headers, key pointers, payloads, page ends)."""
    s = open_store(config=None)
    s.register_psf("a", "type || _path || id")
    s.ingest(b"\n".join(lines))
    s.checkpoint()
    path = s.path
    s.close()
    return b"".join(p.read_bytes() for p in sorted((path / "log").glob("segment-*.log")))


def frames_of(out: bytes, offsets) -> list[tuple[tuple, bytes]]:
    """(header fields, compressed bytes) of each frame, parsed here, not by shoal."""
    res = []
    for o in offsets:
        h = _HEADER.unpack_from(out, o)
        res.append((h, out[o + F.HEADER_BYTES:o + F.HEADER_BYTES + h[4]]))
    return res


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", ["github_events", "zeek_logs"])
@pytest.mark.parametrize("trained", [False, True])
def test_frames_give_back_the_log_bytes(open_store, records, source, kind, trained):
    raw = log_bytes(open_store, records(source, kind, 3_000))
    base = 1 << 20
    dictionary = b""
    if trained:
        dictionary = F.train_dictionary(raw, 16 << 10)
        assert dictionary or len(raw) < 8 * (16 << 10)  # trained, unless too little to train on
    codec = F.Codec(dictionary=dictionary, level=1)
    out, offsets = codec.compress(base, raw)
    assert len(offsets) == -(-len(raw) // codec.frame_bytes)
    zd = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None)
    for i, (h, comp) in enumerate(frames_of(out, offsets)):
        want = raw[i * codec.frame_bytes:(i + 1) * codec.frame_bytes]
        assert h[0] == 0x5A4C4853 and h[2] == base + i * codec.frame_bytes and h[3] == len(want)
        assert h[6] == (1 if dictionary else 0)
        assert zd.decompress(comp, max_output_size=len(want)) == want  # the oracle: zstd itself
        assert codec.decompress(memoryview(out)[offsets[i]:], base + i * codec.frame_bytes) == want
        assert F.frame_size(memoryview(out)[offsets[i]:]) == (offsets[i + 1] if i + 1 < len(offsets) else len(out)) - offsets[i]
    assert len(out) < 0.5 * len(raw)  # log bytes of JSON records compress


def test_a_trained_dictionary_makes_small_frames_smaller(open_store, generated):
    raw = log_bytes(open_store, generated("github_events", 3_000))
    d = F.train_dictionary(raw, 16 << 10)
    assert d
    plain, _ = F.Codec(frame_bytes=4096, level=1).compress(0, raw)
    trained, _ = F.Codec(frame_bytes=4096, level=1, dictionary=d).compress(0, raw)
    assert len(trained) < 0.9 * len(plain)


def test_any_damage_reads_as_corruption(generated):
    raw = b"\n".join(generated("github_events", 200))
    codec = F.Codec(frame_bytes=8192)
    out, offsets = codec.compress(4096, raw)
    one = out[:offsets[1]]
    (_, _, _, _, comp_len, _, _) = _HEADER.unpack_from(one)
    assert codec.decompress(one, 4096) == raw[:8192]
    for pos in list(range(F.HEADER_BYTES)) + list(range(F.HEADER_BYTES, F.HEADER_BYTES + comp_len, 7)):
        for bit in (0, 5):
            bad = bytearray(one)
            bad[pos] ^= 1 << bit
            with pytest.raises(CorruptionError):
                codec.decompress(bytes(bad), 4096)
    with pytest.raises(CorruptionError, match="address 4097"):  # the frame of another address
        codec.decompress(one, 4097)
    with pytest.raises(CorruptionError):  # cut short
        codec.decompress(one[:F.HEADER_BYTES + comp_len - 1], 4096)
    with pytest.raises(CorruptionError):
        F.frame_size(one[:F.HEADER_BYTES - 1])


def test_a_dictionary_frame_needs_the_dictionary(generated):
    raw = b"\n".join(generated("github_events", 300))
    d = F.train_dictionary(raw, 8 << 10)
    assert d
    out, _ = F.Codec(dictionary=d, frame_bytes=16384).compress(0, raw[:16384])
    with pytest.raises(CorruptionError, match="dictionary"):
        F.Codec().decompress(out, 0)
    assert F.Codec(dictionary=d).decompress(out, 0) == raw[:16384]


def test_too_little_log_trains_no_dictionary():
    assert F.train_dictionary(b"x" * 1000, 16 << 10) == b""


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="frame_bytes"):
        F.Codec(frame_bytes=0)
    with pytest.raises(ValueError, match="frame_bytes"):
        F.Codec(frame_bytes=F.MAX_FRAME_BYTES + 1)
    with pytest.raises(ValueError, match="level"):
        F.Codec(level=23)


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(min_size=0, max_size=40_000), frame=st.integers(1, 9000), level=st.integers(-5, 9),
       address=st.integers(0, 1 << 47))
def test_any_bytes_round_trip(raw, frame, level, address):
    codec = F.Codec(frame_bytes=frame, level=level)
    out, offsets = codec.compress(address, raw)
    back = b"".join(codec.decompress(memoryview(out)[o:], address + i * frame) for i, o in enumerate(offsets))
    assert back == raw


def test_threads_decompress_at_once(generated):
    raw = b"\n".join(generated("zeek_logs", 4_000))
    codec = F.Codec(frame_bytes=16384)
    out, offsets = codec.compress(0, raw)
    errors: list = []

    def work(k: int) -> None:
        try:
            for _ in range(3):
                for i in range(k, len(offsets), 2):
                    if codec.decompress(memoryview(out)[offsets[i]:], i * 16384) != raw[i * 16384:(i + 1) * 16384]:
                        errors.append(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k % 2,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_frame_cache_never_hands_out_another_frames_bytes():
    """Readers take no lock on a hit (a seqlock per set): with every frame in
    one set of 32 slots, fillers evicting all the time and readers on other
    threads, a hit gives exactly the bytes put for that address, and hits
    and misses add up to the lookups."""
    from shoal._native import ffi, lib
    frame = 32768  # long copies: a reader and a filler in one slot at once, often
    cache = ffi.gc(lib.shoal_frame_cache_new(32 * frame, frame), lib.shoal_frame_cache_free)
    addresses = [(i + 1) * 1_000_000 for i in range(96)]  # three times the slots: always evicting

    def content(a: int) -> bytes:
        return (a.to_bytes(8, "little") * (frame // 8))[: frame - (a // 1_000_000) % 7]

    stop = threading.Event()
    errors: list[str] = []
    lookups = [0]

    def filler(k: int) -> None:
        i = k
        while not stop.is_set():
            a = addresses[i % len(addresses)]
            data = content(a)
            lib.shoal_frame_cache_put(cache, a, data, len(data))
            i += 7

    def reader(k: int) -> None:
        dst = ffi.new("char[]", frame)
        n_len = ffi.new("uint32_t *")
        i = k
        for _ in range(20_000):
            a = addresses[i % len(addresses)]
            at = (i * 8) % 64
            if lib.shoal_frame_cache_get(cache, a, at, dst, frame, n_len):
                want = content(a)
                if n_len[0] != len(want) or ffi.buffer(dst, len(want) - at)[:] != want[at:]:
                    errors.append(f"address {a}: other bytes")
            lookups[0] += 1
            i += 5

    fillers = [threading.Thread(target=filler, args=(k,)) for k in range(2)]
    readers = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    for t in fillers + readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    for t in fillers:
        t.join()
    assert errors == []
    hits, misses = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    lib.shoal_frame_cache_counts(cache, hits, misses)
    assert hits[0] + misses[0] == lookups[0] == 60_000 and hits[0] > 0 and misses[0] > 0
