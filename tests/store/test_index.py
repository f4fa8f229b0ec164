"""The hash index against a dict oracle: upserts, growth, dump and load."""
from __future__ import annotations

import random
import threading

import pytest

from shoal._native import ffi, lib
from shoal.errors import CorruptionError
from shoal.store.index import HashIndex


def _random_hashes(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(64) for _ in range(n)]


def _upsert(ix: HashIndex, h: int, addr: int) -> int:
    prev = ffi.new("uint64_t *")
    assert lib.shoal_index_upsert(ix.ptr, h, addr, prev) == 0
    return prev[0]


def test_upsert_returns_previous_head_like_a_dict():
    ix = HashIndex(4)  # tiny table: overflow buckets get used
    oracle: dict[int, int] = {}
    rng = random.Random(1)
    keys = _random_hashes(500, 2)
    for step in range(5000):
        h = rng.choice(keys)
        addr = 64 + 8 * step
        assert _upsert(ix, h, addr) == oracle.get(h, 0)
        oracle[h] = addr
    for h in keys:
        assert ix.lookup(h) == oracle.get(h, 0)
    s = ix.stats()
    assert s.entries == len(oracle)
    assert s.overflow_buckets > 0


def test_hashes_differing_only_in_low_16_bits_share_a_chain_head():
    # The index keys chains by hash bits 16..63; walks compare values, so two
    # values colliding in those bits share a chain, by design.
    ix = HashIndex(4)
    _upsert(ix, 0xABCD_0000_1234_0001, 64)
    assert _upsert(ix, 0xABCD_0000_1234_FFFF, 128) == 64


def test_growth_keeps_every_chain_head():
    ix = HashIndex(4)
    oracle = {}
    for i, h in enumerate(_random_hashes(20000, 3)):
        _upsert(ix, h, 64 + 8 * i)
        oracle[h] = 64 + 8 * i
        ix.maybe_grow()
    s = ix.stats()
    assert s.buckets >= 20000 // 4
    assert s.entries == len(oracle)
    assert all(ix.lookup(h) == a for h, a in oracle.items())
    assert ix.lookup(12345) == 0


def test_dump_and_load_round_trip():
    ix = HashIndex(6)
    oracle = {}
    for i, h in enumerate(_random_hashes(3000, 4)):
        _upsert(ix, h, 64 + 8 * i)
        oracle[h] = 64 + 8 * i
    data = ix.dump()
    back = HashIndex.load(data)
    assert back.stats().entries == len(oracle)
    assert all(back.lookup(h) == a for h, a in oracle.items())


@pytest.mark.parametrize("damage", ["truncate", "magic", "count"])
def test_load_rejects_damaged_dumps(damage):
    ix = HashIndex(4)
    for i, h in enumerate(_random_hashes(50, 5)):
        _upsert(ix, h, 64 + 8 * i)
    data = bytearray(ix.dump())
    if damage == "truncate":
        data = data[:-5]
    elif damage == "magic":
        data[0] ^= 0xFF
    else:
        data[8] += 1
    with pytest.raises(CorruptionError):
        HashIndex.load(bytes(data))


def test_zero_address_is_refused():
    ix = HashIndex(4)
    prev = ffi.new("uint64_t *")
    assert lib.shoal_index_upsert(ix.ptr, 1 << 40, 0, prev) == lib.SHOAL_E_ARG


def test_prune_drops_the_entries_below_an_address_and_keeps_the_rest():
    ix = HashIndex(4)
    oracle: dict[int, int] = {}
    rng = random.Random(3)
    keys = _random_hashes(3000, 4)
    for step in range(12000):
        h = rng.choice(keys)
        oracle[h] = 64 + 8 * step
        _upsert(ix, h, oracle[h])
    ix.maybe_grow()
    while ix.maybe_grow():
        pass
    cut = 64 + 8 * 9000
    dead = sum(1 for a in oracle.values() if a < cut)
    assert 0 < dead < len(oracle)
    assert ix.count_below(cut) == dead
    bits_before = ix.stats().buckets.bit_length() - 1
    assert ix.prune(cut, 4) == dead
    s = ix.stats()
    assert s.entries == len(oracle) - dead and ix.count_below(cut) == 0
    assert s.buckets.bit_length() - 1 <= bits_before and s.entries * 2 <= 4 * s.buckets
    for h, a in oracle.items():
        assert ix.lookup(h) == (a if a >= cut else 0)
    # it keeps working as an index: upserts, growth, dump and load
    for step, h in enumerate(keys):
        prev = oracle.get(h, 0)
        assert _upsert(ix, h, 10 ** 9 + 8 * step) == (prev if prev >= cut else 0)
    while ix.maybe_grow():
        pass
    loaded = HashIndex.load(ix.dump())
    assert all(loaded.lookup(h) == 10 ** 9 + 8 * k for k, h in enumerate(keys))
    assert ix.prune(10 ** 10, 4) == len(keys) and ix.stats().entries == 0  # everything below
    assert ix.stats().buckets == 16 and ix.prune(0, 6) == 0 and ix.stats().buckets == 16  # never grows


def test_prune_while_readers_look_up():
    ix = HashIndex(6)
    keys = _random_hashes(5000, 5)
    for k, h in enumerate(keys):
        _upsert(ix, h, 64 + 8 * k)
    live = keys[2500:]
    stop = threading.Event()
    wrong = []

    def reader():
        while not stop.is_set():
            for k, h in enumerate(live[:200]):
                if ix.lookup(h) != 64 + 8 * (2500 + k):
                    wrong.append(h)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for r in range(20):
            cut = 64 + 8 * (2500 - 100 * r)
            ix.prune(cut, 4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert wrong == []
    assert ix.stats().entries == 2500 and all(ix.lookup(h) == 0 for h in keys[:2500])
