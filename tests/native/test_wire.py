"""wire.c, the wire form of records with their addresses (one line each,
{"address":a,"record":text}), as the _records module carries it: what
address_lines makes, split_address_lines takes back whole, for any batch
(the invariant wire.c states); line breaks in a record come back as spaces.
The form's details and argument errors are tested with the Record type
(tests/store/test_record.py)."""
from __future__ import annotations

import random
from array import array

import orjson

from shoal._native import _records


def _batch(rng: random.Random, n: int):
    raws = [orjson.dumps({"i": i, "s": "}\\n é" * rng.randrange(0, 20), "t": "\n" * (i % 2)},
                         option=orjson.OPT_INDENT_2 if i % 5 == 0 else 0) for i in range(n)]
    addrs = [rng.choice([0, 2 ** 64 - 1, rng.randrange(0, 2 ** 64), 8 * i]) for i in range(n)]
    gap = [rng.randrange(0, 4) for _ in raws]
    data = b"".join(b"#" * g + r for g, r in zip(gap, raws))
    offsets, pos = array("Q"), 0
    for g, r in zip(gap, raws):
        offsets.append(pos + g)
        pos += g + len(r)
    return data, array("Q", addrs), offsets, array("I", map(len, raws)), raws


def test_the_module_carries_the_wire_form():
    for name in ("address_lines", "split_address_lines"):
        assert callable(getattr(_records, name)) and getattr(_records, name).__doc__


def test_round_trip():
    rng = random.Random(11)
    for n in (0, 1, 2, 50, 400):
        data, addrs, offsets, lengths, raws = _batch(rng, n)
        wire = _records.address_lines(data, addrs, offsets, lengths)
        assert wire.count(b"\n") == n
        back_addrs, back_offs, back_lens, used, bad = _records.split_address_lines(wire)
        assert (used, bad) == (len(wire), -1)
        back = _records.records(wire, back_addrs, back_lens, back_offs, share=True)
        assert [r.address for r in back] == list(addrs)
        assert [r.raw for r in back] == [r.replace(b"\r", b" ").replace(b"\n", b" ") for r in raws]
        assert [r.json() for r in back] == [orjson.loads(r) for r in raws]
