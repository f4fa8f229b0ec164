"""The live tail (Store.follow, GET /tail, Client.tail): under concurrent
ingest from several threads no record is missed or given twice (checked
against the oracle of every record stored), it starts at the tail or at
since_address, ends on timeout or cancel, and a follower that compaction
passed meets a gap."""
from __future__ import annotations

import json
import threading
import time

import pytest
from oracle import Log

import shoal


def _ingest_in_threads(store, generated, n_threads=3, per=40, size=50):
    raws = generated("github_events", n_threads * per * size)

    def work(k):
        for b in range(per):
            start = (k * per + b) * size
            store.ingest(b"\n".join(raws[start:start + size]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("conditions", [[], [("type", "PushEvent")], [("type", "PushEvent"), ("push", True)]])
def test_follow_gives_every_record_once_under_concurrent_ingest(open_store, generated, conditions):
    store = open_store()
    store.register_psf("type", "type")
    store.register_psf("push", "type == 'PushEvent'")
    store.ingest(b'{"type": "PushEvent", "before": true}')  # before the follower: not given
    got: list = []
    ready = threading.Event()

    def follower():
        it = store.follow(conditions, timeout=1.5)
        ready.set()
        got.extend((r.address, r.raw) for r in it)

    f = threading.Thread(target=follower)
    f.start()
    ready.wait()
    for t in _ingest_in_threads(store, generated):
        t.join()
    f.join()
    everything = [(r.address, r.raw) for r in store.scan("`true`", order="oldest")]
    log = Log([raw for _, raw in everything])
    log.bind(store)
    first = log.addresses[1]
    if not conditions:
        want = log.answer(range(1, len(log)), order="oldest")
    else:
        want = log.query_all([("type", "PushEvent"), ("type == 'PushEvent'", True)][:len(conditions)],
                             order="oldest", from_address=first)
    assert got == want
    assert len({a for a, _ in got}) == len(got)


def test_follow_stops_at_the_linked_tail(open_store, generated):
    """The writer publishes the tail before it links a record into its
    chains: a follower that walked chains up to tail_address could pass a
    record for good. It reads up to the linked tail, and the records between
    it and the tail come in the next round, once they are linked."""
    store = open_store()
    store.register_psf("type", "type")
    raws = list(generated("github_events", 400))
    got: list = []
    ready = threading.Event()

    def follower():
        it = store.follow([("type", "PushEvent")], timeout=3)
        ready.set()
        got.extend(r.address for r in it)

    f = threading.Thread(target=follower)
    f.start()
    ready.wait()
    log = store._log
    hold: dict = {"at": None}

    class Held(type(log)):  # what the follower reads of linked_tail, held where the test says
        @property
        def linked_tail(self):
            return self.__dict__["_linked"] if hold["at"] is None else hold["at"]

        @linked_tail.setter
        def linked_tail(self, value):
            self.__dict__["_linked"] = value

    log.__dict__["_linked"] = log.__dict__.pop("linked_tail")
    log.__class__ = Held
    store.ingest(b"\n".join(raws[:200]))
    held = hold["at"] = log.tail_address  # the second call's records: as if not linked yet
    store.ingest(b"\n".join(raws[200:]))
    time.sleep(0.5)
    seen = list(got)
    hold["at"] = None
    f.join()
    push = [r.address for r in store.query("type", "PushEvent", order="oldest")]
    assert seen == [a for a in push if a < held]  # nothing at or past the linked tail
    assert got == push  # and nothing missed once it moved


def test_follow_since_address_fields_and_cancel(store):
    store.register_psf("type", "type")
    res = store.ingest(b"\n".join(json.dumps({"type": "a", "i": i, "x": {"y": i}}).encode() for i in range(10)))
    got = [r.raw for r in store.follow([("type", "a")], since_address=res.first_address, timeout=0.2,
                                       fields=["i", "x.y"])]
    assert got == [b'{"i":%d,"x":{"y":%d}}' % (i, i) for i in range(10)]
    stop = threading.Event()
    it = store.follow(cancel=stop)
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    assert list(it) == []
    assert time.monotonic() - t0 < 5
    with pytest.raises(shoal.PSFNotFound):
        store.follow([("nope", 1)])
    with pytest.raises(shoal.InvalidArgument):
        store.follow(on_gap="maybe")


def test_a_follower_passed_by_compaction_meets_a_gap(open_store, generated):
    store = open_store()
    raws = generated("github_events", 3000)
    store.ingest(b"\n".join(raws[:1500]))
    start = store.begin_address
    store.ingest(b"\n".join(raws[1500:]))
    store.compact(until_address=store.tail_address // 2)
    with pytest.raises(shoal.TailGap) as exc:
        next(store.follow(since_address=start, timeout=0.1))
    assert exc.value.missed == (start, store.begin_address)
    items = list(store.follow(since_address=start, timeout=0.1, on_gap="skip"))
    assert isinstance(items[0], shoal.TailGap)
    assert [r.address for r in items[1:]] == [r.address for r in store.scan("`true`", order="oldest")]
