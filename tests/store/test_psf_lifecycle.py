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
def test_registered_mid_stream(store, generated, definition):
    raws = generated("zeek_logs", 6000)
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


def test_deregister_and_register_again(store, generated):
    raws = generated("zeek_logs", 8000)
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


def test_deregister_register_without_ingest_between(store, generated):
    raws = generated("github_events", 30)
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


def test_exist_ok_and_replace(open_store, store_path, generated):
    """Setup code that registers its PSFs runs twice (exist_ok: the same
    PSFs, no new ranges, also after a reopen); replace swaps a definition
    at one address, and every answer is then the new definition's."""
    raws = generated("zeek_logs", 6000)
    parts = _chunks(raws, 3)
    log = Log()
    store = open_store()
    first = store.register_psf("p", "_path", exist_ok=True)
    _ingest(store, log, parts[0])
    assert store.register_psf("p", "_path", exist_ok=True) is first and first.ranges == [(64, None)]
    with pytest.raises(shoal.PSFExists, match="defined as '_path'"):
        store.register_psf("p", "proto", exist_ok=True)
    store.close()
    store = open_store()
    again = store.register_psf("p", "_path", exist_ok=True)
    assert (again.id, again.ranges) == (first.id, [(64, None)]) and store.psfs() == [again]
    _ingest(store, log, parts[1])
    _check(store, log, "p", "_path")
    at = store.tail_address
    new = store.register_psf("p", "proto", replace=True)
    assert new.id != first.id and new.ranges == [(at, None)]
    assert [(p.id, p.ranges) for p in store._registry.retired()] == [(first.id, [(64, at)])]
    _check(store, log, "p", "proto")  # the old definition's index never answers
    _ingest(store, log, parts[2])
    _check(store, log, "p", "proto")


def test_many_psfs_come_and_go(store, generated):
    """Several PSFs with overlapping active ranges; query_all/any over them."""
    raws = generated("github_events", 30) * 4
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


def test_callable_registered_mid_stream_and_replaced(store, generated):
    raws = generated("github_events", 30) * 3
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


def test_different_callable_with_the_same_fields(store, generated):
    """A different function under a deregistered callable's name must answer
    with the new function over all records, also where the old one indexed."""
    raws = generated("github_events", 30)
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


# ---- bounded registry: limits, forgetting, reused psf_ids ----

def test_max_active_psfs(open_store):
    store = open_store(max_active_psfs=2)
    store.register_psf("a", "a")
    store.register_psf("b", "b")
    with pytest.raises(shoal.TooManyPSFs) as info:
        store.register_psf("c", "c")
    assert info.value.limit == 2 and "max_active_psfs=2" in str(info.value)
    store.deregister_psf("a")
    assert store.register_psf("c", "c").active
    with pytest.raises(shoal.TooManyPSFs):  # resuming counts too
        store.register_psf("a", "a")
    with pytest.raises(shoal.InvalidArgument):
        shoal.StoreConfig(max_active_psfs=0)
    with pytest.raises(shoal.InvalidArgument):
        shoal.StoreConfig(max_active_psfs=60_000, max_inactive_psfs=6_000)


def test_a_reused_psf_id_never_answers_for_its_earlier_psf(open_store, generated, monkeypatch):
    """x = `_path` indexes a part of the log, is deregistered and forgotten;
    y = `service` takes its psf_id (the id space is 2 here). A query of y
    over the whole log walks y's chains only where y was active: x's key
    pointers for the same value (dns is both a _path and a service) lie
    before, on the same (psf_id, value) chains, and are never returned."""
    monkeypatch.setattr(shoal.psf.registry, "_ID_SPACE", 2)
    raws = generated("zeek_logs", 6000)
    parts = _chunks(raws, 3)
    store = open_store(max_active_psfs=1, max_inactive_psfs=0)
    log = Log()
    _ingest(store, log, parts[0])
    x = store.register_psf("x", "_path")
    _ingest(store, log, parts[1])
    store.deregister_psf("x")
    with pytest.raises(shoal.PSFNotFound):  # max_inactive_psfs=0: forgotten at once
        store.psf("x")
    store.register_psf("k", "proto")  # the last fresh id
    store.deregister_psf("k")
    y = store.register_psf("y", "service")
    assert y.id == x.id
    _ingest(store, log, parts[2])
    _check(store, log, "y", "service")
    for value in ("dns", "http", "ssl"):
        assert as_pairs(store.query_any([("y", value)], order="oldest", limit=50)) == \
            log.query("service", value, order="oldest", limit=50)


@pytest.mark.slow
def test_churn_keeps_the_registry_bounded_and_answers_complete(open_store, generated, monkeypatch):
    """Register/deregister churn with records between: a few names that come
    back (same or other definition) and a stream of new ones. psfs.json
    stays bounded, ids never run out (an id space of 12 here), and every
    answer equals the oracle's."""
    monkeypatch.setattr(shoal.psf.registry, "_ID_SPACE", 12)
    monkeypatch.setattr(shoal.psf.registry, "MAX_RANGES", 4)
    raws = generated("zeek_logs", 3000)
    store = open_store(max_active_psfs=3, max_inactive_psfs=5)
    log = Log()
    defs = {"path": ["_path", "proto"], "dns": ["_path == 'dns'"], "port": ['"id.resp_p"', "service"]}
    sizes = []
    for cycle in range(200):
        _ingest(store, log, raws[15 * cycle:15 * cycle + 15])
        name = list(defs)[cycle % 3]
        definition = defs[name][cycle // 3 % len(defs[name])]
        store.register_psf(name, definition)
        fresh = store.register_psf(f"new{cycle}", "query")
        if cycle % 50 == 49:
            _check(store, log, name, definition)
            _check(store, log, fresh.name, "query")
        store.deregister_psf(name)
        store.deregister_psf(fresh.name)
        sizes.append((store.path / "psfs.json").stat().st_size)
        held = store._registry.all() + store._registry.retired()
        assert len(held) <= 8 and all(len(p.ranges) <= 4 for p in held)
    assert max(sizes[50:]) <= max(sizes[:50]) * 1.2, (sizes[:50], sizes[50:])
    for name in defs:  # forgotten or not, a name answers completely or not at all
        try:
            psf = store.psf(name)
        except shoal.PSFNotFound:
            continue
        _check(store, log, name, psf.definition)
