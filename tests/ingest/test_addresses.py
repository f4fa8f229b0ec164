"""Store.ingest(addresses=True): each input record's address, in input
order, 0 for a rejected one, across batches and page turns (the tiny test
pages), as NDJSON, arrays and gzip, checked record by record against
orjson's verdict and Store.get."""
from __future__ import annotations

import gzip
import random

import orjson
import pytest


def spoiled(raws: list[bytes], seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for r in raws:
        x = rng.random()
        out.append(r[:len(r) // 3] if x < 0.05 else b"{,}" if x < 0.08 else r)
    return out


def valid(r: bytes) -> bool:
    try:
        orjson.loads(r)
        return True
    except orjson.JSONDecodeError:
        return False


@pytest.mark.parametrize("source", ["generated", "real"])
@pytest.mark.parametrize("form", ["ndjson", "gzip", "array"])
def test_addresses_name_each_record(open_store, records, source, form):
    store = open_store()
    store.register_psf("type", "type")
    raws = spoiled(list(records(source, "github_events", 3000)), seed=4)
    if form == "array":  # an array's elements: bad ones cannot be framed, so only good ones here
        raws = [r for r in raws if valid(r)]
        data = b"[" + b",".join(raws) + b"]"
    else:
        data = b"\n".join(raws)
        data = gzip.compress(data) if form == "gzip" else data
    result = store.ingest(data, addresses=True, format="array" if form == "array" else "auto")
    assert len(result.addresses) == len(raws)
    assert [a != 0 for a in result.addresses] == [valid(r) for r in raws]
    assert result.ingested == sum(1 for a in result.addresses if a)
    kept = [a for a in result.addresses if a]
    assert kept == sorted(kept) and (kept[0], kept[-1]) == (result.first_address, result.last_address)
    for a, r in zip(result.addresses, raws):
        if a:
            assert store.get(a).raw == r
    assert store.ingest(b'{"a": 1}').addresses is None  # only when asked
    assert list(store.ingest(b'{"a": 1}\n{"a": 2}', on_error="reject", addresses=True).addresses) == \
        [r.address for r in store.scan("a", order="newest", limit=2)][::-1]
