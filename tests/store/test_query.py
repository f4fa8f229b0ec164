"""Queries, conjunctions, disjunctions, scans and gets over generated records
(shoal.sample) and, where they are, the real data sets, each answer compared
with the oracle (orjson + jmespath over the same records): the same records,
the same raw bytes, the same order.

Every store has 16 KiB pages and a four-page memory budget, so almost all of
each log is on disk when it is queried.
"""
from __future__ import annotations

import random

import pytest
from oracle import Log, as_pairs, orjson_accepts, python_value, sample_values

import shoal

# name: ((source, data set), records, {psf name: definition}, [scan expressions]);
# source "generated": a shoal.sample kind; "real": a real data set (the real
# tier: skipped when absent). The generated sets come in the real sets' shapes.
ZEEK_PSFS = {
    "path": "_path",
    "query": "query",
    "resp_h": '"id.resp_h"',
    "resp_p": '"id.resp_p"',
    "proto": "proto",
    "dns53": '"id.resp_p" == `53`',
    "dns_udp": "_path == 'dns' && proto == 'udp'",
    "high_port": '"id.resp_p" > `1024`',
    "not_dns": "!(_path == 'dns')",
    "answer0": "answers[0]",
    "ttl0": "TTLs[0]",
    "rtt": "rtt",
    "rd": "RD",
    "n_answers": "length(answers)",
}
GITHUB_PSFS = {
    "type": "type",
    "repo": "repo.name",
    "actor": "actor.login",
    "push": "type == 'PushEvent'",
    "size": "payload.size",
    "public": "public",
    "org": "org.login",
    "author0": "payload.commits[0].author.name",
    "authors": "payload.commits[*].author.name | [0]",
}
GITHUB_SCANS = ["payload.size > `3`", "payload.commits[?author.name == 'Alex']", "type != 'PushEvent'",
                "payload.commits[?author.name == 'Zoë Ångström']"]
TWITTER_PSFS = {
    "lang": "lang",
    "screen_name": "user.screen_name",
    "user_lang": "user.lang",
    "result_type": "metadata.result_type",
    "followers": "user.followers_count",
    "id": "id",
    "rt_user": "retweeted_status.user.screen_name",
    "hashtag0": "entities.hashtags[0].text",
    "ja": "lang == 'ja'",
    "popular": "user.followers_count >= `1000`",
    "n_hashtags": "length(entities.hashtags)",
}
TWITTER_SCANS = ["user.followers_count < `100`", "length(text) > `100`", "retweeted_status"]
JOBS_PSFS = {
    "color": "color",
    "name": "name",
    "blue": "color == 'blue'",
    "trunk": "contains(name, 'trunk')",
}
JOBS_SCANS = ["color == 'red' || color == 'yellow'", "length(name) > `10`"]
DATASETS = {
    "zeek": (("generated", "zeek_logs"), 20_000, ZEEK_PSFS,
             ['"id.resp_p" > `1024`', "length(answers) > `1`", "RD && !RA", "TTLs[1]"]),
    "github": (("generated", "github_events"), 500, GITHUB_PSFS, GITHUB_SCANS),
    "twitter": (("generated", "statuses"), 200, TWITTER_PSFS, TWITTER_SCANS),
    "jobs": (("generated", "jenkins_jobs"), 875, JOBS_PSFS, JOBS_SCANS),
    "github-real": (("real", "github_events"), None, GITHUB_PSFS, GITHUB_SCANS),
    "twitter-real": (("real", "twitter_statuses"), None, TWITTER_PSFS, TWITTER_SCANS),
    "jobs-real": (("real", "apache_builds_jobs"), None, JOBS_PSFS, JOBS_SCANS),
    "gsoc": (("real", "gsoc2018_projects"), None, {
        "sponsor": "sponsor.name",
        "author": "author.name",
        "type": '"@type"',
        "sponsor_type": 'sponsor."@type"',
        "starts_a": "starts_with(name, 'A')",
        "description": "description",  # long values, many with escapes
    }, ["length(name) > `10`", "sponsor.name == 'Submitty'", "contains(description, 'Python')"]),
    "plugins": (("real", "update_center_plugins"), None, {
        "core": "requiredCore",
        "name": "name",
        "dev0": "developers[0].developerId",
        "label0": "labels[0]",
        "scm": "scm",
        "n_deps": "length(dependencies)",
    }, ["labels[1]", "length(dependencies) > `2`", "requiredCore == '1.398'"]),
    "amazon": (("real", "amazon_cellphones"), None, {
        "brand": "[1]",
        "reviews": "[7]",
        "rating": "[5]",
        "asin": "[0]",
        "last": "[-1]",
    }, ["[7] > `100`", "[5] >= `4.5`", "[-1]"]),
}


def _load(name, raws, psfs, tiny_config, tmp_path_factory):
    store = shoal.open(tmp_path_factory.mktemp(name), tiny_config)
    for psf, definition in psfs.items():
        store.register_psf(psf, definition)
    result = store.ingest(b"\n".join(raws) + b"\n")
    assert (result.ingested, result.rejected) == (len(raws), 0)
    log = Log(raws)
    log.bind(store)
    return store, log


@pytest.fixture(scope="module", params=sorted(DATASETS))
def loaded(request, generated, real_data, tiny_config, tmp_path_factory):
    (source, data_set), limit, psfs, _ = DATASETS[request.param]
    raws = (generated if source == "generated" else real_data)(data_set, limit)
    store, log = _load(request.param, raws, psfs, tiny_config, tmp_path_factory)
    yield request.param, store, log
    store.close()


def _values(log: Log, definition: str) -> list:
    """Values to query a PSF with: a sample of its values, the numbers also as
    floats and, for integral ones, as 1.0-style floats, and one absent value."""
    counts = log.value_counts(definition)
    values = sample_values(counts)
    # strings that were escaped in the record text (\n, \", \\)
    values += sorted(k[1] for k in counts if k[0] == "s" and any(c in k[1] for c in '\n"\\'))[:2]
    for v in list(values):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53:
            values.append(float(v))
    return values + ["no such value \u2603", 987654321987]


def test_most_of_the_log_is_on_disk(loaded):
    name, store, log = loaded
    if len(log) > 500:
        assert store.head_address > store.tail_address // 2


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_query_equals_oracle(loaded, order):
    name, store, log = loaded
    for psf, definition in DATASETS[name][2].items():
        for value in _values(log, definition):
            got = as_pairs(store.query(psf, value, order=order))
            assert got == log.query(definition, value, order=order), (psf, value)


def test_query_default_value_is_true(loaded):
    name, store, log = loaded
    for psf, definition in DATASETS[name][2].items():
        assert as_pairs(store.query(psf)) == log.query(definition, True), psf


def test_query_true_is_not_one(loaded):
    name, store, log = loaded
    for psf, definition in DATASETS[name][2].items():
        for value in (1, 1.0, 0, False, None, "true"):
            assert as_pairs(store.query(psf, value)) == log.query(definition, value), (psf, value)


@pytest.mark.parametrize("limit", [0, 1, 7])
def test_query_limit(loaded, limit):
    name, store, log = loaded
    for psf, definition in DATASETS[name][2].items():
        for value in sample_values(log.value_counts(definition), 1):
            for order in ("newest", "oldest"):
                got = as_pairs(store.query(psf, value, limit=limit, order=order))
                assert got == log.query(definition, value, limit=limit, order=order), (psf, value)


def test_query_address_ranges(loaded):
    """from_address is inclusive, to_address exclusive, at record starts or not."""
    name, store, log = loaded
    rng = random.Random(7)
    addrs = log.addresses
    bounds = [None, 0, addrs[0], addrs[-1], store.tail_address, store.tail_address + 4096]
    bounds += [rng.choice(addrs) for _ in range(4)] + [rng.choice(addrs) + 8 for _ in range(2)]
    bounds += [rng.randrange(addrs[0], store.tail_address) for _ in range(2)]
    psfs = list(DATASETS[name][2].items())
    for _ in range(12):
        lo, hi = rng.choice(bounds), rng.choice(bounds)
        psf, definition = rng.choice(psfs)
        for value in sample_values(log.value_counts(definition), 1):
            for order in ("newest", "oldest"):
                got = as_pairs(store.query(psf, value, order=order, from_address=lo, to_address=hi))
                want = log.query(definition, value, order=order, from_address=lo, to_address=hi)
                assert got == want, (psf, value, lo, hi, order)


def test_query_all_and_any(loaded):
    name, store, log = loaded
    rng = random.Random(11)
    psfs = DATASETS[name][2]
    names = sorted(psfs)
    for _ in range(10):
        picked = rng.sample(names, min(len(names), rng.choice([1, 2, 3])))
        conds = []
        for p in picked:
            counts = log.value_counts(psfs[p])
            value = python_value(rng.choice(sorted(counts, key=repr))) if counts else "x"
            conds.append((p, value))
        oracle_conds = [(psfs[p], v) for p, v in conds]
        for order in ("newest", "oldest"):
            assert as_pairs(store.query_all(conds, order=order)) == log.query_all(oracle_conds, order=order), conds
            assert as_pairs(store.query_any(conds, order=order)) == log.query_any(oracle_conds, order=order), conds
        lo = rng.choice(log.addresses)
        assert (as_pairs(store.query_any(conds, limit=5, from_address=lo))
                == log.query_any(oracle_conds, limit=5, from_address=lo))


def test_query_all_of_values_found_together(loaded, monkeypatch):
    """Conjunctions of the values some record really has (so answers are
    not empty), Records and batches, newest first (answered by walking the
    rarest-looking chain and checking key pointers) and oldest first (by
    intersecting address streams), whole log, limits and ranges."""
    import shoal.store.fetch as query_mod
    name, store, log = loaded
    psfs = DATASETS[name][2]
    rng = random.Random(5)
    driven = []
    real = query_mod.rarest_first
    monkeypatch.setattr(query_mod, "rarest_first", lambda *a: driven.append(1) or real(*a))
    nonempty = 0
    for i in rng.sample(range(len(log)), min(12, len(log))):
        present = [p for p in sorted(psfs) if log.values(psfs[p])[i] is not None]
        if len(present) < 2:
            continue
        picked = rng.sample(present, rng.choice([2, min(3, len(present))]))
        conds = [(p, python_value(log.values(psfs[p])[i])) for p in picked]
        oracle_conds = [(psfs[p], v) for p, v in conds]
        want = log.query_all(oracle_conds)
        assert want, conds  # record i matches
        nonempty += 1
        assert as_pairs(store.query_all(conds)) == want, conds
        assert [(a, r) for b in store.query_batches(conds) for a, r in zip(b.addresses, b.raws())] == want
        assert as_pairs(store.query_all(conds, order="oldest")) == want[::-1]
        assert as_pairs(store.query_all(conds, limit=2)) == want[:2]
        mid = log.addresses[i]
        for kw in ({"from_address": mid}, {"to_address": mid + 1}, {"from_address": mid, "limit": 1}):
            assert as_pairs(store.query_all(conds, **kw)) == log.query_all(oracle_conds, **kw), (conds, kw)
    assert nonempty and driven


def test_query_all_with_disjoint_conditions_is_empty(loaded):
    name, store, log = loaded
    psf, definition = next(iter(DATASETS[name][2].items()))
    values = sample_values(log.value_counts(definition), 2)[:2]
    if len(values) == 2:
        assert list(store.query_all([(psf, values[0]), (psf, values[1])])) == []
        assert (as_pairs(store.query_any([(psf, values[0]), (psf, values[1])]))
                == log.query_any([(definition, values[0]), (definition, values[1])]))


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_scan_equals_oracle(loaded, order):
    name, store, log = loaded
    for expression in DATASETS[name][3] + ["`true`", "`false`"]:
        assert as_pairs(store.scan(expression, order=order)) == log.scan(expression, order=order), expression


def test_scan_limit_and_ranges(loaded):
    name, store, log = loaded
    rng = random.Random(5)
    for expression in DATASETS[name][3]:
        a, b = sorted(rng.sample(log.addresses, 2))
        ranges = [(a, b)] + rng.sample([(a + 8, b + 8), (None, b), (a, None), (b, a)], 1)
        for lo, hi in ranges:
            for order in ("newest", "oldest"):
                for limit in ((None, 0, 3) if (lo, hi) == (a, b) else (None,)):
                    got = as_pairs(store.scan(expression, order=order, limit=limit, from_address=lo, to_address=hi))
                    assert got == log.scan(expression, order=order, limit=limit, from_address=lo,
                                           to_address=hi), (expression, lo, hi)


def test_get_returns_each_record(loaded):
    name, store, log = loaded
    rng = random.Random(3)
    picks = range(len(log)) if len(log) <= 2000 else rng.sample(range(len(log)), 2000)
    for i in picks:
        rec = store.get(log.addresses[i])
        assert rec is not None and (rec.address, rec.raw) == (log.addresses[i], log.raws[i])
        assert rec.json() == log.objs[i]


def test_get_of_a_non_record_address_is_none(loaded):
    name, store, log = loaded
    starts = set(log.addresses)
    for a in [0, 8, store.tail_address, store.tail_address + 8, 2**40, 2**48 - 8]:
        assert a in starts or store.get(a) is None, a
    for a in log.addresses[:50]:
        for inside in (a + 8, a + 16):
            if inside not in starts:
                assert store.get(inside) is None, inside


@pytest.mark.slow
def test_all_of_the_real_zeek_logs(real_data, tiny_config, tmp_path_factory):
    psfs = ZEEK_PSFS
    store, log = _load("zeek-real", real_data("zeek_wrccdc2018"), psfs, tiny_config, tmp_path_factory)
    try:
        assert len(log) == 158_439
        for psf in ("path", "resp_p", "dns_udp", "query", "n_answers"):
            for value in _values(log, psfs[psf])[:6]:
                for order in ("newest", "oldest"):
                    assert as_pairs(store.query(psf, value, order=order)) == log.query(psfs[psf], value, order=order)
        conds = [("path", "ssl"), ("resp_p", 443)]
        oracle_conds = [(psfs[p], v) for p, v in conds]
        assert as_pairs(store.query_all(conds)) == log.query_all(oracle_conds)
        assert as_pairs(store.query_any(conds, order="oldest")) == log.query_any(oracle_conds, order="oldest")
        assert as_pairs(store.scan("length(answers) > `2`")) == log.scan("length(answers) > `2`")
    finally:
        store.close()


# ---- JSON value semantics on small hand-made logs ----

NUMBER_RECORDS = [
    b'{"n": 1}', b'{"n": 1.0}', b'{"n": 10e-1}', b'{"n": 100E-2}', b'{"n": 0.1e1}', b'{"n": true}',
    b'{"n": "1"}', b'{"n": 2}', b'{"n": -1}', b'{"n": 0}', b'{"n": -0.0}', b'{"n": 0e5}', b'{"n": false}',
    b'{"n": null}', b'{"n": [1]}', b'{"n": {"a": 1}}', b'{"m": 1}', b'{"n": 12345678901234567890}',
    b'{"n": 1.2345678901234567e19}', b'{"n": 1e400}', b'{"n": 0.30000000000000004}', b'{"n": 0.3}',
    b'{"n": 123456789012345678901234567890}', b'{"n": 1.23456789012345678901234567890e29}',
    b'{"n": 18446744073709551616}', b'{"n": -9223372036854775809}', b'{"n": 1E2}', b'{"n": 100}',
]

STRING_RECORDS = [
    b'{"type": "PushEvent"}', b'{"type": "\\u0050ushEvent"}', b'{"type": "Push\\u0045\\u0076ent"}',
    b'{"type": "pushEvent"}', b'{"type": "PushEvent "}', b'{"type": "a\\/b"}', b'{"type": "a/b"}',
    b'{"type": "\\"q\\""}', b'{"type": "tab\\there"}', b'{"type": "caf\\u00e9"}',
    '{"type": "caf\u00e9"}'.encode(), b'{"type": "\\ud83d\\ude00"}', '{"type": "\U0001F600"}'.encode(),
    b'{"type": "\\u0000"}', b'{"type": ""}', b'{"ty\\u0070e": "PushEvent"}', b'{"type": "\\\\"}',
]


@pytest.mark.parametrize("records, definitions, values", [
    (NUMBER_RECORDS, {"n": "n", "is1": "n == `1`", "is1f": "n == `1.0`", "big": "n > `1`"},
     [1, 1.0, True, "1", 0, -1, 2, 0.0, 12345678901234567890, 1.2345678901234567e19, 0.3,
      0.30000000000000004, None, False, 123456789012345678901234567890, 2**64, -(2**63) - 1, 100, 1e2]),
    (STRING_RECORDS, {"type": "type", "push": "type == 'PushEvent'", "push_lit": 'type == `"PushEvent"`'},
     ["PushEvent", "pushEvent", "a/b", '"q"', "tab\there", "caf\u00e9", "\U0001F600", "\x00", "",
      "\\", True, "PushEvent "]),
], ids=["numbers", "strings"])
def test_values_compare_as_json(store, records, definitions, values):
    for name, definition in definitions.items():
        store.register_psf(name, definition)
    records = records * 150  # several pages, most of them on disk
    result = store.ingest(b"\n".join(records), on_error="skip")
    good = [r for r in records if orjson_accepts(r)]
    assert result.ingested == len(good)
    log = Log(good)
    log.bind(store)
    for name, definition in definitions.items():
        for value in values + [True]:
            for order in ("newest", "oldest"):
                assert as_pairs(store.query(name, value, order=order)) == log.query(definition, value, order=order), \
                    (name, value)




# ---- callable PSFs ----

def _flaky(record):
    if record.get("type") == "WatchEvent":
        raise RuntimeError("refuses watch events")
    return record.get("type")


CALLABLES = {
    "big": (lambda size: size is not None and size > 3, ["payload.size"]),
    "login_len": (lambda login: len(login) if login else None, ["actor.login"]),
    "pair": (lambda t, n: f"{t}:{n}", ["type", "repo.name"]),
    "whole": (lambda r: r["type"].lower(), None),
    "flaky": (_flaky, None),
    "listy": (lambda r: [r["type"]], None),
    "floaty": (lambda size: size / 2 if isinstance(size, int) else None, ["payload.size"]),
}


def test_callable_psfs(open_store, generated):
    raws = generated("github_events", 100)
    store = open_store()
    for name, (func, fields) in CALLABLES.items():
        psf = store.register_psf(name, func, fields=fields)
        assert psf.kind is shoal.PSFKind.CALLABLE and not psf.native
    store.ingest(b"\n".join(raws))
    log = Log(raws)
    log.bind(store)
    for name, (func, fields) in CALLABLES.items():
        values = sample_values(log.value_counts(func, fields)) + [True, 1, "pushevent"]
        for value in values:
            for order in ("newest", "oldest"):
                assert (as_pairs(store.query(name, value, order=order))
                        == log.query(func, value, fields=fields, order=order)), (name, value)


# ---- oldest first ----

@pytest.mark.parametrize("scan_bytes", [0, 3000, 1 << 30], ids=["walk", "scan-then-walk", "scan"])
def test_oldest_first_in_pieces_equals_oracle(open_store, generated, monkeypatch, scan_bytes):
    """Oldest-first answers come from a scan of the range's oldest bytes and
    then a chain walked in pieces, re-walked oldest piece first
    (store/query.py, oldest_first): with pieces of 5 addresses and the
    scan's end anywhere (nowhere, mid-answer, past the end), every limit,
    range and merge crosses the boundaries, and where a PSF was inactive
    the scanned part is merged in."""
    monkeypatch.setattr(shoal.store.query, "_REVERSE_CHUNK", 5)
    monkeypatch.setattr(shoal.store.query, "OLDEST_SCAN_BYTES", scan_bytes)
    raws = generated("github_events", 100)
    store = open_store()
    store.register_psf("type", "type")
    half = len(raws) // 2
    store.ingest(b"\n".join(raws[:half]) + b"\n")
    store.register_psf("late", "type")  # inactive over the first half: scanned there
    store.register_psf("push", "type == 'PushEvent'")
    store.ingest(b"\n".join(raws[half:]) + b"\n")
    log = Log(raws)
    log.bind(store)
    rng = random.Random(3)
    addrs = log.addresses
    for psf in ("type", "late"):
        for value in sample_values(log.value_counts("type")):
            for limit in (None, 0, 1, 4, 5, 6, 11, 200):
                got = as_pairs(store.query(psf, value, order="oldest", limit=limit))
                assert got == log.query("type", value, order="oldest", limit=limit), (psf, value, limit)
                batches = store.query_batches([(psf, value)], order="oldest", limit=limit)
                assert [(r.address, r.raw) for b in batches for r in b] == got
            for _ in range(4):
                lo, hi = sorted(rng.sample(addrs, 2))
                got = as_pairs(store.query(psf, value, order="oldest", limit=7, from_address=lo, to_address=hi))
                assert got == log.query("type", value, order="oldest", limit=7, from_address=lo, to_address=hi)
    conds = [("push", True), ("type", "PushEvent")]
    oracle = [("type == 'PushEvent'", True), ("type", "PushEvent")]
    assert as_pairs(store.query_all(conds, order="oldest", limit=9)) == log.query_all(oracle, order="oldest", limit=9)
    conds = [("late", "WatchEvent"), ("type", "ForkEvent")]
    oracle = [("type", "WatchEvent"), ("type", "ForkEvent")]
    assert as_pairs(store.query_any(conds, order="oldest", limit=13)) == log.query_any(oracle, order="oldest",
                                                                                      limit=13)


def test_oldest_first_does_not_hold_the_whole_chain(open_store):
    """An oldest-first answer with a limit walks the whole chain (chains
    link newest to oldest) but keeps one piece of it, not every address
    (was: a Python list of all of them, ~36 bytes per record)."""
    import tracemalloc
    shoal.store.query.OLDEST_SCAN_BYTES, saved = 0, shoal.store.query.OLDEST_SCAN_BYTES  # the walk alone
    n = 150_000
    store = open_store(page_size_bytes=1 << 20, memory_budget_bytes=64 << 20, segment_size_bytes=1 << 20)
    store.register_psf("k", "k")
    store.ingest(b"".join(b'{"k":"v","i":%d}\n' % i for i in range(n)))
    first = next(store.scan("i == `0`", order="oldest"))
    tracemalloc.start()
    try:
        got = [(r.address, r.raw) for r in store.query("k", "v", order="oldest", limit=3)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        shoal.store.query.OLDEST_SCAN_BYTES = saved
    assert got[0] == (first.address, first.raw) and [r[1] for r in got] == [b'{"k":"v","i":%d}' % i
                                                                          for i in range(3)]
    assert peak < n * 36 // 3, peak  # one piece of 16,384 addresses is ~0.6 MB; all of them ~5.4 MB


def test_oldest_first_of_a_common_value_does_not_walk_the_chain(open_store, monkeypatch):
    """Oldest first (store/query.py, oldest_first): a short chain is answered
    from one native walk of its newest entries; a long, dense one by a scan
    of the range's oldest bytes, and walked only above them when the answer
    needs more. All equal the oracle."""
    store = open_store(page_size_bytes=1 << 16, memory_budget_bytes=1 << 20, segment_size_bytes=1 << 20)
    store.register_psf("k", "k")
    raws = [b'{"k":"%s","i":%d}' % (b"rare" if i % 5000 == 4999 else b"common", i) for i in range(40_000)]
    store.ingest(b"\n".join(raws) + b"\n")
    log = Log(raws)
    log.bind(store)
    monkeypatch.setattr(shoal.store.query, "OLDEST_SCAN_BYTES", 100_000)  # ~1,400 common records
    walked = []
    real_walk = shoal.store.query.walk_chain_oldest_first
    monkeypatch.setattr(shoal.store.query, "walk_chain_oldest_first",
                        lambda *a, **kw: (walked.append(a[5]), real_walk(*a, **kw))[1])

    def check(value, limit):
        assert as_pairs(store.query("k", value, order="oldest", limit=limit)) == log.query(
            "k", value, order="oldest", limit=limit), (value, limit)

    check("common", 200)
    check("rare", 5)
    assert walked == []  # the scan held the first; the probe, all of the second
    check("common", 3000)  # more than the scan's stretch holds: walked above it
    assert walked == [log.addresses[0] + 100_000]
    check("common", None)
