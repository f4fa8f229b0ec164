"""The Record type (a C type, _native/records.c) and make_records, the one
call per batch that builds a batch's Records: values, equality, hashing,
pickling, argument errors, bounds checks, that Records are not tracked by
the cyclic garbage collector (the point of the type), and Records sharing
the buffer their batch was read into (when they let go of it)."""
from __future__ import annotations

import copy
import gc
import pickle
import random
import sys
from array import array

import orjson
import pytest

import shoal
from shoal.results import Record, make_records


def test_fields_json_and_repr():
    raw = b'{"type":"PushEvent","n":1}'
    r = Record(64, raw)
    assert r.address == 64 and r.raw == raw and type(r.raw) is bytes
    assert r.json() == orjson.loads(raw)
    assert repr(r) == f"Record(address=64, raw={raw.decode()!r})"
    long = b'{"s":"' + "é".encode() * 40 + b'"}'
    text = long[:60].decode("utf-8", "replace")  # a cut through a character shows as U+FFFD
    assert repr(Record(8, long)) == f"Record(address=8, raw={text!r}...)"
    assert Record(address=2 ** 64 - 1, raw=b"1").address == 2 ** 64 - 1
    assert type(r) is shoal.Record and isinstance(r, shoal.Record)


def test_equality_hash_and_pickle():
    a, b = Record(64, b'{"a":1}'), Record(64, b'{"a":1}')
    assert a == b and not a != b and hash(a) == hash(b) == hash((64, b'{"a":1}'))
    assert a != Record(72, b'{"a":1}') and a != Record(64, b'{"a":2}')
    assert a != (64, b'{"a":1}') and (64, b'{"a":1}') != a
    assert len({a, b, Record(72, b'{"a":1}')}) == 2
    for back in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a)):
        assert back == a and type(back) is Record


def test_records_are_immutable_and_not_tracked_by_the_gc():
    r = Record(64, b"1")
    with pytest.raises(AttributeError):
        r.raw = b"2"
    with pytest.raises(AttributeError):
        r.address = 8
    with pytest.raises(AttributeError):
        r.other = 1
    assert not gc.is_tracked(r)
    assert not any(map(gc.is_tracked, make_records(b"12", array("Q", [8, 16]), array("I", [1, 1]))))


def test_raw_is_kept_as_bytes():
    buf = bytearray(b'{"a":1}')
    r = Record(8, buf)  # a bytes-like raw is copied: a Record's text never changes under it
    buf[0:1] = b"["
    assert r.raw == b'{"a":1}' and type(r.raw) is bytes
    assert Record(8, memoryview(b"[1]")).raw == b"[1]"
    raw = b'{"b":2}'
    assert Record(8, raw).raw is raw  # bytes are shared, not copied


@pytest.mark.parametrize("args, exc", [
    ((), TypeError), ((1,), TypeError), ((1, b"x", 3), TypeError),
    (("1", b"x"), TypeError), ((1.0, b"x"), TypeError), ((1, "text"), TypeError), ((1, None), TypeError),
    ((-1, b"x"), ValueError), ((2 ** 64, b"x"), ValueError),
])
def test_bad_arguments(args, exc):
    with pytest.raises(exc):
        Record(*args)


def test_make_records_matches_slicing():
    rng = random.Random(7)
    raws = [orjson.dumps({"i": i, "s": "x" * rng.randrange(0, 300)}) for i in range(500)]
    addrs = [64 + 8 * i * 100 for i in range(len(raws))]
    lengths = array("I", map(len, raws))
    # back to back
    data = b"".join(raws)
    got = make_records(data, array("Q", addrs), lengths)
    assert got == [Record(a, r) for a, r in zip(addrs, raws)]
    # with separators and explicit offsets, as RecordBatches hold them
    data = b"".join(r + b"\n" for r in raws)
    offsets = array("Q", [0])
    for r in raws[:-1]:
        offsets.append(offsets[-1] + len(r) + 1)
    got = make_records(memoryview(data), array("Q", addrs), lengths, offsets)
    assert [(r.address, r.raw) for r in got] == list(zip(addrs, raws))
    assert make_records(b"", array("Q"), array("I")) == []


def test_make_records_checks_its_buffers():
    with pytest.raises(ValueError, match="disagree"):
        make_records(b"abc", array("Q", [8, 16]), array("I", [1]))
    with pytest.raises(ValueError, match="disagree"):
        make_records(b"abc", array("Q", [8]), array("I", [1]), array("Q", [0, 1]))
    with pytest.raises(ValueError, match="beyond"):
        make_records(b"abc", array("Q", [8, 16]), array("I", [2, 2]))
    with pytest.raises(ValueError, match="beyond"):
        make_records(b"abc", array("Q", [8]), array("I", [1]), array("Q", [3]))
    with pytest.raises(ValueError, match="beyond"):
        make_records(b"abc", array("Q", [8]), array("I", [1]), array("Q", [2 ** 64 - 1]))
    with pytest.raises(TypeError):
        make_records("abc", array("Q", [8]), array("I", [1]))


def test_a_query_answer_keeps_its_records_alive_and_frees_them(store):
    store.register_psf("type", "type")
    recs = [orjson.dumps({"type": "a" if i % 3 else "b", "i": i}) for i in range(5000)]
    store.ingest(b"\n".join(recs))
    got = list(store.query("type", "a", order="oldest"))
    assert [r.raw for r in got] == [r for i, r in enumerate(recs) if i % 3]
    raw = got[0].raw
    before = sys.getrefcount(raw)
    del got
    gc.collect()
    assert sys.getrefcount(raw) == before - 1  # the Record held the one other reference


def _shared(raws: list[bytes], kind=bytes):
    """(data, Records sharing data) for raws laid back to back."""
    data = kind(b"".join(raws))
    addrs = array("Q", [64 + 8 * i for i in range(len(raws))])
    return data, make_records(data, addrs, array("I", map(len, raws)), share=True)


def _pinned(data: bytearray) -> bool:
    """Whether something holds data's buffer (a bytearray cannot be resized then)."""
    try:
        data.extend(b" ")
    except BufferError:
        return True
    del data[-1:]
    return False


def test_shared_records_behave_as_records_with_their_own_bytes():
    rng = random.Random(11)
    raws = [orjson.dumps({"i": i, "s": "é" * rng.randrange(0, 80)}) for i in range(300)]
    data, got = _shared(raws)
    own = [Record(64 + 8 * i, r) for i, r in enumerate(raws)]
    assert got == own and [hash(r) for r in got] == [hash(r) for r in own]
    assert [repr(r) for r in got] == [repr(r) for r in own]
    assert [r.json() for r in got] == [orjson.loads(r) for r in raws]
    assert [pickle.loads(pickle.dumps(r)) for r in got[:20]] == own[:20]
    assert not any(map(gc.is_tracked, got))
    assert [r.raw for r in got] == raws and {type(r.raw) for r in got} == {bytes}
    assert got[0].raw is got[0].raw  # made once, then kept
    assert got == own


def test_a_shared_buffer_is_let_go_once_few_records_point_into_it():
    raws = [orjson.dumps({"i": i}) for i in range(64)]
    data, got = _shared(raws, bytearray)
    assert _pinned(data)
    keep = got[:9]
    del got  # 9 of 64 Records still point into the buffer: it is kept
    assert _pinned(data)
    assert [r.json() for r in keep] == [{"i": i} for i in range(9)]
    del keep[8]  # 8 of 64 (1/8): they get their own bytes and let go of it
    assert not _pinned(data)
    data[:] = b"x" * len(data)
    assert [r.raw for r in keep] == raws[:8]
    assert [r.json() for r in keep] == [{"i": i} for i in range(8)]


def test_a_bad_record_midway_through_a_shared_batch():
    """The Records made before the bad one are freed with their batch (whose
    release, once most are dead, visits only Records that were made)."""
    for _ in range(20):
        raws = [orjson.dumps({"i": i}) for i in range(200)]
        data = b"".join(raws)
        lengths = array("I", map(len, raws))
        lengths[-1] += 1  # the last record runs past the data
        junk = [b"\xab" * k for k in range(1500, 1700, 4)]  # freed memory, not zeros, for the batch's arrays
        del junk
        with pytest.raises(ValueError, match="beyond"):
            make_records(data, array("Q", range(8, 8 * 201, 8)), lengths, share=True)
        with pytest.raises(ValueError, match="disagree"):
            make_records(data, array("Q", [8]), array("I", [1, 2]), share=True)


def test_raw_lets_go_of_the_shared_buffer():
    raws = [orjson.dumps({"i": i}) for i in range(64)]
    data, got = _shared(raws, bytearray)
    for r in got[:55]:
        assert r.raw == raws[r.address // 8 - 8]
    assert _pinned(data)  # 9 still point into it
    got[55].raw
    assert not _pinned(data)
    data[:] = b"x" * len(data)
    assert [r.raw for r in got] == raws
    assert got == [Record(64 + 8 * i, r) for i, r in enumerate(raws)]


def test_answers_keep_their_text_across_later_reads_and_close(store):
    """Large answers hand their read buffer to their Records and small ones
    copy it: neither is overwritten by the next read on the thread, and
    both outlive the store."""
    store.register_psf("type", "type")
    recs = [orjson.dumps({"type": "abc"[i % 3] if i % 100 else "z", "i": i, "pad": "p" * (i % 700)})
            for i in range(6000)]
    store.ingest(b"\n".join(recs))
    oracle = {t: [r for r in reversed(recs) if orjson.loads(r)["type"] == t] for t in "abcz"}
    answers = {t: list(store.query("type", t)) for t in "abcz"}
    scanned = list(store.scan("type == 'b'"))
    few = [r for i, r in enumerate(store.query("type", "a")) if i % 97 == 0]  # kept from dropped batches
    store.ingest(b"\n".join(recs[:3000]))
    store.close()
    for t in "abcz":
        assert [r.raw for r in answers[t]] == oracle[t]
    assert [r.json() for r in scanned] == [orjson.loads(r) for r in oracle["b"]]
    assert [r.raw for r in few] == oracle["a"][::97]


def _address_lines_oracle(pairs) -> bytes:
    return b"".join(b'{"address":%d,"record":%s}\n' % (a, r.replace(b"\r", b" ").replace(b"\n", b" "))
                    for a, r in pairs)


def test_address_lines_are_the_wire_form():
    from shoal.wire import address_lines
    rng = random.Random(5)
    raws = [orjson.dumps({"i": i, "s": "é\\n" * rng.randrange(0, 30)}) for i in range(300)]
    raws += [b'[\n  1,\r\n  2\n]', b'{"a":\n"\r"}', b"7"]
    addrs = [rng.randrange(0, 2 ** 64) for _ in raws] + [0, 2 ** 64 - 1, 10 ** 19]
    raws += [b"{}", b"{}", b"{}"]
    data = b"".join(r + b"\n" for r in raws)
    offsets = array("Q", [0])
    for r in raws[:-1]:
        offsets.append(offsets[-1] + len(r) + 1)
    out = address_lines(data, array("Q", addrs), offsets, array("I", map(len, raws)))
    assert out == _address_lines_oracle(zip(addrs, raws))
    assert [orjson.loads(line)["address"] for line in out.splitlines()] == addrs
    assert address_lines(b"", array("Q"), array("Q"), array("I")) == b""
    with pytest.raises(ValueError, match="beyond"):
        address_lines(b"abc", array("Q", [8]), array("Q", [2]), array("I", [2]))
    with pytest.raises(ValueError, match="disagree"):
        address_lines(b"abc", array("Q", [8]), array("Q", [0, 1]), array("I", [1]))


def test_split_address_lines_takes_complete_lines_and_stops_at_a_bad_one():
    from shoal.wire import split_address_lines
    pairs = [(8 * i, orjson.dumps({"i": i, "t": "}" * (i % 3)})) for i in range(50)] + [(2 ** 64 - 1, b"[]")]
    wire = _address_lines_oracle(pairs)
    addrs, offs, lens, used, bad = split_address_lines(wire + b'{"address":5,"rec')
    assert (used, bad) == (len(wire), -1)
    got = make_records(wire, addrs, lens, offs, share=True)
    assert [(r.address, r.raw) for r in got] == pairs
    for line in [b'{"address":,"record":1}', b'{"address":1x,"record":1}', b'{"address":1,"record":1',
                 b'{"address":18446744073709551616,"record":1}', b'{"addr":1,"record":1}', b"",
                 b'{"address":1,"recor":1}', b'{"address":-1,"record":1}', b" " + wire[:20]]:
        data = wire[:wire.index(b"\n") + 1] + line + b"\n" + wire
        addrs, offs, lens, used, bad = split_address_lines(data)
        assert len(addrs) == 8 and bad == used == wire.index(b"\n") + 1, line
    with pytest.raises(TypeError):
        split_address_lines(bytearray(wire))  # Records share the data: it must not change
