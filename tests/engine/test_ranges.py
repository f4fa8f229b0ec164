"""Bucketed PSFs: query_range and count_range against the oracle (a plain
loop comparing each record's value with the range, times parsed with
datetime.fromisoformat), on generated and real records, with bucket widths
that make ends fall inside buckets, PSFs registered before and after the
records, after a reopen, and on a keyed store."""
from __future__ import annotations

import datetime
import json
import math
import random

import jmespath
import orjson
import pytest
from oracle import Log
from timedata import seconds

import shoal



def number(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def expect(log: Log, expr: str, lo, hi, *, time=False, order="newest", limit=None, from_address=None,
           to_address=None):
    idx = []
    for i, obj in enumerate(log.objs):
        v = jmespath.search(expr, obj)
        x = seconds(v) if time else number(v)
        if x is not None and lo <= x < hi:
            idx.append(i)
    return log.answer(idx, order=order, limit=limit, from_address=from_address, to_address=to_address)


CASES = {
    "github-size": ("github_events", "payload.size", False, [1, 3, 0.5]),
    "github-time": ("github_events", "created_at", True, [60, 3600, 7]),
    "zeek-port": ("zeek_logs", '"id.resp_p"', False, [100, 1, 4096]),
    "zeek-rtt": ("zeek_logs", "rtt", False, [0.01, 0.25]),
    "zeek-ts": ("zeek_logs", "ts", True, [1, 60]),
}


def _values(log, expr, time):
    out = []
    for obj in log.objs:
        v = jmespath.search(expr, obj)
        x = seconds(v) if time else number(v)
        if x is not None:
            out.append(x)
    return sorted(out)


@pytest.mark.parametrize("source", ["generated", "real"])
@pytest.mark.parametrize("case", list(CASES))
def test_ranges_match_the_oracle(open_store, records, source, case):
    kind, expr, time, widths = CASES[case]
    raws = records(source, kind, 2500)
    store = open_store()
    for i, w in enumerate(widths[:-1]):
        store.register_psf(f"b{i}", expr, bucket=w, time=time)
    store.ingest(b"\n".join(raws[:1500]))
    store.register_psf(f"b{len(widths) - 1}", expr, bucket=widths[-1], time=time)  # the first 1,500 scanned
    store.ingest(b"\n".join(raws[1500:]))
    log = Log(raws)
    log.bind(store)
    values = _values(log, expr, time)
    if not values:
        pytest.skip(f"no {expr} values in this data")
    rng = random.Random(3)
    spans = [(values[0], values[-1] + 1), (values[len(values) // 3], values[2 * len(values) // 3])]
    for _ in range(6):
        a, b = sorted(rng.uniform(values[0] - 1, values[-1] + 1) for _ in range(2))
        spans.append((a, b))
    spans.append((values[len(values) // 2], values[len(values) // 2]))  # empty
    mid = log.addresses[len(log.addresses) // 2]
    for i in range(len(widths)):
        name = f"b{i}"
        for lo, hi in spans:
            want = expect(log, expr, lo, hi, time=time)
            got = [(r.address, r.raw) for r in store.query_range(name, lo, hi)]
            assert got == want, (name, lo, hi)
            assert store.count_range(name, lo, hi) == len(want)
            assert [(r.address, r.raw) for r in store.query_range(name, lo, hi, order="oldest", limit=9,
                                                                   from_address=mid)] == \
                expect(log, expr, lo, hi, time=time, order="oldest", limit=9, from_address=mid)
            assert store.count_range(name, lo, hi, to_address=mid) == len(
                expect(log, expr, lo, hi, time=time, to_address=mid))


def test_time_ranges_take_iso_text_and_milliseconds(store):
    store.register_psf("t", "t", bucket=3600, time=True)
    store.ingest(b'{"t": "2024-05-01T10:30:00Z"}\n{"t": "2024-05-01T12:30:00+02:00"}\n'
                 b'{"t": 1714559400}\n{"t": 1714559400500}\n{"t": "2024-05-01 10:30:00.25"}\n'
                 b'{"t": "not a time"}\n{"t": "2024-02-30T00:00:00Z"}\n{"t": true}\n{"t": "2024-05-01T10:30:00\\u005a"}')
    # 10:30:00Z = 1714559400
    assert store.count_range("t", "2024-05-01T10:30:00Z", "2024-05-01T10:30:01Z") == 5
    assert store.count_range("t", 1714559400, 1714559400.4) == 4  # .5 (the ms one) is out
    assert store.count_range("t", 1714559400000, 1714559400.3) == 4  # ms is ms
    assert store.count_range("t", datetime.datetime(2024, 5, 1, 10), datetime.datetime(2024, 5, 1, 11)) == 5
    assert [g for g in store.group_count("t")] == [(1714557600, 5)]
    with pytest.raises(shoal.InvalidArgument):
        store.count_range("t", "yesterday", "today")


def test_ranges_after_reopen_and_on_keyed_stores(open_store, generated, store_path):
    raws = generated("github_events", 2000)
    objs = [orjson.loads(r) for r in raws]
    for i, o in enumerate(objs):
        o["k"] = i % 700
    lines = [json.dumps(o).encode() for o in objs]
    store = open_store(key="k")
    store.register_psf("size", "payload.size", bucket=2)
    store.ingest(b"\n".join(lines))
    store.checkpoint()
    store.close()
    store = open_store(key="k")
    live = {o["k"]: o for o in objs}
    for lo, hi in [(0, 3), (1, 100), (2.5, 5)]:
        want = sum(1 for o in live.values() if number(o["payload"].get("size")) is not None
                   and lo <= o["payload"]["size"] < hi)
        assert store.count_range("size", lo, hi) == want
        assert len(list(store.query_range("size", lo, hi))) == want
        every = sum(1 for o in objs if number(o["payload"].get("size")) is not None and lo <= o["payload"]["size"] < hi)
        assert store.count_range("size", lo, hi, include_superseded=True) == every


def test_bucket_arguments(store):
    store.register_psf("plain", "a")
    with pytest.raises(shoal.InvalidArgument, match="bucket"):
        list(store.query_range("plain", 0, 1))
    for bad in (0, -1, float("inf"), "1", True):
        with pytest.raises(shoal.InvalidArgument):
            store.register_psf("b", "a", bucket=bad)
    with pytest.raises(shoal.InvalidArgument, match="C core"):
        store.register_psf("b", "length(a)", bucket=1)
    with pytest.raises(shoal.InvalidArgument, match="bucket width"):
        store.register_psf("b", "a", time=True)
    store.register_psf("b", "a", bucket=10)
    with pytest.raises(shoal.PSFExists):
        store.register_psf("b", "a", bucket=20, exist_ok=True)  # another definition
    assert store.register_psf("b", "a", bucket=10, exist_ok=True).bucket == 10
    with pytest.raises(shoal.InvalidArgument):
        store.count_range("b", "x", 1)


@pytest.mark.parametrize("width", [0.1, 3, 300, 2.5])
def test_ranges_on_bucket_edges(store, width):
    """Values on, just below and just above bucket edges, and ranges whose
    ends lie exactly on edges (an end bucket wholly inside is not read; the
    bucket a hi on its edge opens is not walked): the answers equal a plain
    comparison of each value."""
    store.register_psf("x", "x", bucket=width)
    xs = []
    for k in range(-3, 12):
        e = k * width
        xs += [e, math.nextafter(e, -math.inf), math.nextafter(e, math.inf), e + width / 2, e - 1e-9]
    xs += [0.30000000000000004, 0.3, 2 ** 53, 2 ** 53 + 2]
    raws = [orjson.dumps({"x": x, "i": i}) for i, x in enumerate(xs)]
    store.ingest(b"\n".join(raws))
    got_x = {orjson.loads(r.raw)["i"]: orjson.loads(r.raw)["x"] for r in store.scan("`true`")}
    edges = [k * width for k in range(-3, 12)] + [0.3, 0.30000000000000004, 2 ** 53, 2 ** 53 + 1]
    for lo in edges:
        for hi in edges:
            want = sorted(i for i, x in got_x.items() if lo <= x < hi)
            got = sorted(orjson.loads(r.raw)["i"] for r in store.query_range("x", lo, hi))
            assert got == want, (lo, hi)
            assert store.count_range("x", lo, hi) == len(want), (lo, hi)
