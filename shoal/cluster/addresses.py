"""Cluster addresses and the cluster's order of records.

A cluster record's address is its shard's store address (48 bits,
store/address.py) with the shard number above it:
    address = shard << STORE_ADDRESS_BITS | store_address
so `Cluster.get(record.address)` finds it again, and addresses of different
shards never collide. At most MAX_SHARDS shards keep it a positive int64.

Order: records of different shards have no common address order, so the
cluster orders by the *sequence number* the front gave the piece of input a
record arrived in (nanoseconds since the epoch when the front cut it, kept
increasing per front), then by shard, then by store address. A shard keeps
each piece's first address and sequence number (marks.py), and sequence
numbers only grow with addresses within a shard, so each shard's answer in
its own address order is already in cluster order: the front merges them.
Within one ingest call, pieces are cut in input order, so on a cluster that
spreads records (no key, no route_by) the cluster order of one call's
records is their input order. With several fronts ingesting at once, a
shard raises a piece's number that arrives below one it already stored
(marks.py): each call keeps its order on each shard, and across shards
pieces are ordered by when they reached their shards.
"""
from __future__ import annotations

from ..store.address import ADDRESS_BITS as STORE_ADDRESS_BITS

STORE_ADDRESS_MASK = (1 << STORE_ADDRESS_BITS) - 1
MAX_SHARDS = 1 << 15


def encode(shard: int, store_address: int) -> int:
    return (shard << STORE_ADDRESS_BITS) | store_address


def decode(address: int) -> tuple[int, int]:
    """(shard, store address) of a cluster address."""
    return address >> STORE_ADDRESS_BITS, address & STORE_ADDRESS_MASK
