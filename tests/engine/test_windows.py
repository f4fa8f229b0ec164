"""Time windows (since/until) on a store with a time field, against the
oracle (each record's time read with datetime.fromisoformat or as epoch
seconds/ms, compared in a plain loop): records out of order, queries,
counts, group counts and scans, newest and oldest first, with limits, after
a reopen, and over HTTP."""
from __future__ import annotations

import random

import pytest
from oracle import Log, python_value
from timedata import BASE, DAY, events, in_window, iso

import shoal



def _in(log: Log, since, until):
    return in_window(log.objs, since, until)


@pytest.mark.parametrize("reopen", [False, True])
def test_windows_match_the_oracle(open_store, generated, reopen):
    raws = events(generated)
    store = open_store(time_field="created_at", time_bucket_seconds=300)
    store.register_psf("type", "type")
    store.register_psf("push", "type == 'PushEvent'")
    store.ingest(b"\n".join(raws[:2500]))
    store.register_psf("repo", "repo.name")  # the first 2,500 records scanned for it
    store.ingest(b"\n".join(raws[2500:]))
    if reopen:
        store.checkpoint()
        store.close()
        store = open_store()  # the time field is kept without being named again
    log = Log(raws)
    log.bind(store)
    rng = random.Random(9)
    windows = [(BASE + 3600 * 5, BASE + 3600 * 6), (iso(BASE + 1000.5), iso(BASE + 50_000.25)),
               ((BASE + 7200) * 1000, BASE + 7260), (BASE - 10, BASE + DAY + 10), (BASE + 100, BASE + 100)]
    windows += [tuple(sorted(BASE + rng.uniform(0, DAY) for _ in range(2))) for _ in range(3)]
    types = log.value_counts("type")
    for since, until in windows:
        inside = set(_in(log, since, until))
        for value in ["PushEvent", "WatchEvent", "NoSuchEvent"]:
            want = log.answer(inside & set(log.matching("type", value)))
            assert [(r.address, r.raw) for r in store.query("type", value, since=since, until=until)] == want
            assert store.count("type", value, since=since, until=until) == len(want)
            assert [(r.address, r.raw) for r in store.query("type", value, since=since, until=until,
                                                             order="oldest", limit=5)] == list(reversed(want))[:5]
        repo = python_value(next(iter(log.value_counts("repo.name"))))
        want = log.answer(inside & set(log.matching("repo.name", repo)))
        assert [(r.address, r.raw) for r in store.query("repo", repo, since=since, until=until)] == want
        conds = [("type", "PushEvent"), ("push", True)]
        both = inside & set(log.matching("type", "PushEvent"))
        assert store.count_all(conds, since=since, until=until) == len(both)
        either = inside & (set(log.matching("type", "WatchEvent")) | set(log.matching("type", "ForkEvent")))
        assert store.count_any([("type", "WatchEvent"), ("type", "ForkEvent")], since=since, until=until) == \
            len(either)
        scan = [(r.address, r.raw) for r in store.scan("payload.size > `2`", since=since, until=until)]
        assert scan == log.answer(inside & set(log.scan_matching("payload.size > `2`")))
        groups = {}
        for i in inside:
            t = log.objs[i].get("type")
            if isinstance(t, str):
                groups[t] = groups.get(t, 0) + 1
        got = store.group_count("type", since=since, until=until)
        assert dict(got) == groups and [n for _, n in got] == sorted(groups.values(), reverse=True)
    assert set(types)  # the data has types
    since_only = _in(log, BASE + DAY - 3600, BASE + 10 * DAY)
    assert store.count("type", "PushEvent", since=BASE + DAY - 3600) == len(
        set(since_only) & set(log.matching("type", "PushEvent")))


def test_windows_need_a_time_field(store):
    store.register_psf("type", "type")
    store.ingest(b'{"type": "a"}')
    with pytest.raises(shoal.InvalidArgument, match="time field"):
        store.count("type", "a", since=0)
    with pytest.raises(shoal.InvalidArgument, match="time field"):
        list(store.query("type", "a", until="2015-01-01"))


def test_window_reads_only_its_pages(open_store, generated):
    """A one-hour window of a day reads the records of that hour (and of
    the bucket ends), not the log between: counted as records fetched."""
    raws = events(generated, 6000)
    store = open_store(time_field="created_at")
    store.register_psf("type", "type")
    store.ingest(b"\n".join(raws))
    log = Log(raws)
    log.bind(store)
    since, until = BASE + 3600 * 10, BASE + 3600 * 11
    inside = _in(log, since, until)
    from shoal.store import fetch as q
    seen = []
    real = q.fetch_chain

    def counting(*a, **kw):
        for r in real(*a, **kw):
            seen.append(r.address)
            yield r
    q.fetch_chain = counting
    try:
        n = store.count("type", "PushEvent", since=since, until=until)
    finally:
        q.fetch_chain = real
    assert n == len(set(inside) & set(log.matching("type", "PushEvent")))
    assert len(seen) <= 2 * len(inside)
