"""PSFs registered mid-stream, deregistered and registered again (with the same
or a different definition): every answer stays complete over ALL records,
whatever was indexed when, and equals the oracle's."""
from __future__ import annotations

import pytest
from oracle import Log, as_pairs, sample_values

import shoal


def _chunks(raws, n):
    size = -(-len(raws) // n)
    return [raws[i:i + size] for i in range(0, len(raws), size)]


def _check(store, log, name, definition, fields=None):
    """Every sampled value of `name` (current definition) equals the oracle,
    both orders, plus a limit and a range."""
    values = sample_values(log.value_counts(definition, fields)) + ["absent", True]
    mid = log.addresses[len(log) // 2] if len(log) else 0
    for value in values:
        for order in ("newest", "oldest"):
            assert as_pairs(store.query(name, value, order=order)) == \
                log.query(definition, value, fields=fields, order=order), (name, value, order)
        assert as_pairs(store.query(name, value, limit=3, from_address=mid)) == \
            log.query(definition, value, fields=fields, limit=3, from_address=mid), (name, value)
        assert as_pairs(store.query(name, value, order="oldest", to_address=mid)) == \
            log.query(definition, value, fields=fields, order="oldest", to_address=mid), (name, value)


def _ingest(store, log, raws):
    result = store.ingest(b"\n".join(raws) + b"\n")
    assert (result.ingested, result.rejected) == (len(raws), 0)
    log.extend(raws)
    log.bind(store)


@pytest.mark.parametrize("definition", ["_path", "_path == 'dns'", "length(answers)", "proto == 'tcp' || RD"])
def test_registered_mid_stream(store, real_data, definition):
    raws = real_data("zeek_wrccdc2018", 6000)
    parts = _chunks(raws, 3)
    log = Log()
    _ingest(store, log, parts[0])
    psf = store.register_psf("p", definition)
    assert psf.ranges == [(store.tail_address, None)]
    _check(store, log, "p", definition)  # nothing indexed yet: all by scanning
    _ingest(store, log, parts[1])
    _check(store, log, "p", definition)
    _ingest(store, log, parts[2])
    _check(store, log, "p", definition)


def test_deregister_and_register_again(store, real_data):
    raws = real_data("zeek_wrccdc2018", 8000)
    parts = _chunks(raws, 6)
    log = Log()
    d1, d2 = "_path", "proto"
    _ingest(store, log, parts[0])
    store.register_psf("p", d1)
    _ingest(store, log, parts[1])
    _check(store, log, "p", d1)

    old = store.deregister_psf("p")
    assert not old.active and not store.psf("p").active
    _ingest(store, log, parts[2])
    _check(store, log, "p", d1)  # still answerable while deregistered
    with pytest.raises(shoal.PSFNotFound):
        store.deregister_psf("p")

    again = store.register_psf("p", d1)  # same definition: same id, a new range
    assert again.id == old.id and again.active and len(again.ranges) == 2
    _ingest(store, log, parts[3])
    _check(store, log, "p", d1)
    with pytest.raises(shoal.PSFExists):
        store.register_psf("p", d1)

    store.deregister_psf("p")
    _ingest(store, log, parts[4])
    other = store.register_psf("p", d2)  # different definition: answers are d2's, over all records
    assert other.id != old.id and other.definition == d2
    _check(store, log, "p", d2)
    _ingest(store, log, parts[5])
    _check(store, log, "p", d2)
    assert [p.name for p in store.psfs()] == ["p"]


def test_deregister_register_without_ingest_between(store, real_data):
    raws = real_data("github_events")
    log = Log()
    store.register_psf("type", "type")
    _ingest(store, log, raws[:10])
    store.deregister_psf("type")
    store.register_psf("type", "type")
    store.deregister_psf("type")
    store.register_psf("type", "type")
    _ingest(store, log, raws[10:])
    _check(store, log, "type", "type")
    store.deregister_psf("type")
    store.register_psf("type", "actor.login")
    _check(store, log, "type", "actor.login")


def test_many_psfs_come_and_go(store, real_data):
    """Several PSFs with overlapping active ranges; query_all/any over them."""
    raws = real_data("github_events") * 4
    parts = _chunks(raws, 8)
    log = Log()
    defs = {"type": "type", "push": "type == 'PushEvent'", "repo": "repo.name", "size": "payload.size"}
    plan = [("reg", "type"), ("reg", "push"), ("dereg", "type"), ("reg", "repo"),
            ("reg", "size"), ("dereg", "push"), ("reg", "type"), ("dereg", "repo")]
    for (op, name), part in zip(plan, parts):
        if op == "reg":
            store.register_psf(name, defs[name])
        else:
            store.deregister_psf(name)
        _ingest(store, log, part)
        for n in store.psfs():
            _check(store, log, n.name, defs[n.name])
        conds = [("type", "PushEvent"), ("repo", "jathanism/trigger")]
        present = [(n, v) for n, v in conds if n in {p.name for p in store.psfs()}]
        if present:
            oc = [(defs[n], v) for n, v in present]
            assert as_pairs(store.query_all(present)) == log.query_all(oc)
            assert as_pairs(store.query_any(present, order="oldest")) == log.query_any(oc, order="oldest")


def test_callable_registered_mid_stream_and_replaced(store, real_data):
    raws = real_data("github_events") * 3
    parts = _chunks(raws, 3)
    log = Log()

    def big(size):
        return size is not None and size > 3

    _ingest(store, log, parts[0])
    store.register_psf("big", big, fields=["payload.size"])
    _ingest(store, log, parts[1])
    _check(store, log, "big", big, ["payload.size"])
    store.deregister_psf("big")
    _ingest(store, log, parts[2])
    _check(store, log, "big", big, ["payload.size"])

    def login(record):
        return record["actor"]["login"]

    store.register_psf("big", login)  # a different definition under the same name
    _check(store, log, "big", login)


def test_different_callable_with_the_same_fields(store, real_data):
    """A different function under a deregistered callable's name must answer
    with the new function over all records, also where the old one indexed."""
    raws = real_data("github_events")
    log = Log()

    def size(size):
        return size

    def size_plus_one(size):
        return size + 1 if size is not None else None

    store.register_psf("s", size, fields=["payload.size"])
    _ingest(store, log, raws[:15])
    store.deregister_psf("s")
    store.register_psf("s", size_plus_one, fields=["payload.size"])
    _ingest(store, log, raws[15:])
    _check(store, log, "s", size_plus_one, ["payload.size"])
