"""The hash index against a dict oracle: upserts, growth, dump and load."""
from __future__ import annotations

import random

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
