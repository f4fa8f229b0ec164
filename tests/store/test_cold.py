"""Cold segment files (store/cold.py): log bytes as compressed frames, read
back by address. The oracle is the raw log bytes the file was written from."""
from __future__ import annotations

import os
import random

import pytest
from conftest import SOURCES
from test_frames import log_bytes

from shoal import StoreConfig
from shoal._native import ffi
from shoal.errors import CorruptionError
from shoal.store import cold
from shoal.store.frames import Codec
from shoal.store.segments import SegmentFiles


def reads_match(seg: cold.ColdSegment, raw: bytes, base: int, rng: random.Random, k: int = 300) -> None:
    for _ in range(k):
        a = rng.randrange(0, len(raw))
        n = rng.randrange(1, min(70_000, len(raw) - a) + 1)
        assert seg.read(base + a, n) == raw[a:a + n]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", ["github_events", "zeek_logs"])
def test_reads_give_back_the_log(open_store, records, tmp_path, source, kind):
    raw = log_bytes(open_store, records(source, kind, 2_000))
    base = 7 << 22
    path = tmp_path / "segment-000007.z"
    size = cold.write(path, Codec(frame_bytes=16384), base, raw)
    assert size == path.stat().st_size < len(raw) / 2
    assert not path.with_name(path.name + ".tmp").exists()
    seg = cold.ColdSegment(path, Codec())
    try:
        assert not seg.repaired and seg.address == base and seg.raw_bytes == len(raw)
        assert seg.check() == len(raw)
        assert seg.read(base, len(raw)) == raw
        reads_match(seg, raw, base, random.Random(1))
        with pytest.raises(ValueError, match="not in cold file"):
            seg.read(base + len(raw) - 1, 2)
        with pytest.raises(ValueError, match="not in cold file"):
            seg.read(base - 1, 1)
    finally:
        seg.close()


def test_a_file_without_its_footer_is_read_frame_by_frame(open_store, generated, tmp_path):
    raw = log_bytes(open_store, generated("github_events", 1_500))
    path = tmp_path / "segment-000000.z"
    cold.write(path, Codec(frame_bytes=8192), 4096, raw)
    whole = path.read_bytes()
    n_frames = -(-len(raw) // 8192)
    table_at = len(whole) - cold.FOOTER.size - 8 * n_frames
    for cut in (len(whole) - 1, table_at):  # the footer damaged, or table and footer gone
        path.write_bytes(whole[:cut])
        seg = cold.ColdSegment(path, Codec())
        assert seg.repaired and seg.address == 4096 and seg.raw_bytes == len(raw)
        reads_match(seg, raw, 4096, random.Random(cut), 100)
        seg.close()
    # frames cut short: what is whole is read, nothing past it
    path.write_bytes(whole[:table_at // 2])
    seg = cold.ColdSegment(path, Codec())
    assert seg.repaired and 0 < seg.raw_bytes < len(raw) and seg.raw_bytes % 8192 == 0
    assert seg.read(4096, seg.raw_bytes) == raw[:seg.raw_bytes]
    with pytest.raises(ValueError):
        seg.read(4096 + seg.raw_bytes, 1)
    seg.close()


def test_a_damaged_frame_fails_its_reads_only(open_store, generated, tmp_path):
    raw = log_bytes(open_store, generated("zeek_logs", 3_000))
    path = tmp_path / "segment-000000.z"
    cold.write(path, Codec(frame_bytes=16384), 0, raw)
    seg = cold.ColdSegment(path, Codec())
    third = seg.offsets[2]
    seg.close()
    with open(path, "r+b") as f:
        f.seek(third + 100)
        b = f.read(1)
        f.seek(third + 100)
        f.write(bytes([b[0] ^ 0x10]))
    seg = cold.ColdSegment(path, Codec())
    try:
        assert not seg.repaired
        assert seg.check() == 2 * 16384  # the frames before the damaged one check, without decompressing
        assert seg.read(0, 2 * 16384) == raw[:2 * 16384]
        assert seg.read(3 * 16384, 5000) == raw[3 * 16384:3 * 16384 + 5000]
        for a, n in ((2 * 16384, 1), (2 * 16384 - 10, 20), (0, len(raw))):
            with pytest.raises(CorruptionError, match="frame at address 32768"):
                seg.read(a, n)
    finally:
        seg.close()


def test_an_empty_or_foreign_file_holds_nothing(tmp_path):
    for data in (b"", os.urandom(5000)):
        path = tmp_path / "segment-000001.z"
        path.write_bytes(data)
        seg = cold.ColdSegment(path, Codec())
        assert seg.repaired and seg.raw_bytes == 0
        with pytest.raises(ValueError):
            seg.read(0, 1)
        seg.close()


def test_a_segment_goes_cold_only_if_its_records_check(open_store, generated):
    """make_cold checks every record before compressing it: recovery later
    verifies cold frames without decompressing them, so a record damaged in
    the raw file must not go into a frame that checks."""
    config = StoreConfig(page_size_bytes=16 * 1024, memory_budget_bytes=4 * 16 * 1024,
                         segment_size_bytes=64 * 1024, compression="zstd")
    store = open_store(config=config)
    store.ingest(b"\n".join(generated("zeek_logs", 600)))  # too little to train a dictionary: nothing goes cold
    path = store.path
    store.close()
    raw1 = (path / "log" / "segment-000001.log").read_bytes()
    at = 3 * 16 * 1024 + 200  # inside a record of its fourth page
    with open(path / "log" / "segment-000001.log", "r+b") as f:
        f.seek(at)
        f.write(bytes([raw1[at] ^ 0x01]))
    seg_bits = (config.segment_size_bytes // config.page_size_bytes).bit_length() - 1
    segs = SegmentFiles(path / "log", config.page_bits, seg_bits, ffi.new("int32_t[]", 64), 64, codec=Codec())
    try:
        with pytest.raises(CorruptionError, match="does not check"):
            segs.make_cold(1, config.segment_size_bytes, Codec())
        assert segs.has_raw(1) and segs.read(64 * 1024 + at - 100, 300) == raw1[at - 100:at] + bytes(
            [raw1[at] ^ 0x01]) + raw1[at + 1:at + 200]
        assert segs.cold_bytes(1) < at  # the pages before the damaged one may go cold, not it
        raw0 = segs.read(0, config.segment_size_bytes)
        done = segs.make_cold(0, config.segment_size_bytes, Codec())
        assert done is not None and done[0] == "close"
        os.close(done[1])
        assert not segs.has_raw(0) and segs.read(0, config.segment_size_bytes) == raw0
    finally:
        segs.close()
