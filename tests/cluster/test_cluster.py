"""The cluster against the oracle (tests/oracle.py: orjson + jmespath over
the same records): every query, count and top-values answer of a cluster
of 2-3 shards equals what one store must answer over the records, and a
spread cluster keeps one ingest's records in input order."""
from __future__ import annotations

import gzip
import json
import random
import time

import orjson
import pytest
from oracle import Log, python_value

import shoal
from shoal.cluster import addresses

TYPES = ["push", "pull", "issue", "fork", "watch", "release"]


def make_records(n: int, seed: int, start: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        out.append({"id": i, "type": rng.choices(TYPES, weights=[30, 20, 10, 5, 3, 1])[0],
                    "repo": {"name": f"r{rng.randrange(40)}"}, "n": rng.randrange(1000),
                    "pad": "x" * rng.randrange(200)})
    return out


def ndjson(objs) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def raws(records) -> list[bytes]:
    return [bytes(r.raw) for r in records]


def oracle_answer(log: Log, indexes, order="newest", limit=None) -> list[bytes]:
    out = [log.raws[i] for i in sorted(set(indexes))]
    if order == "newest":
        out.reverse()
    return out if limit is None else out[:limit]


def top_counts(log: Log, definition: str) -> dict:
    return {python_value(k): c for k, c in log.value_counts(definition).items()}


def test_spread_cluster_answers_as_one_store(open_cluster):
    c = open_cluster(3, piece_bytes=16 << 10)
    c.register_psf("type", "type")
    a, b = make_records(3000, 1), make_records(2000, 2, start=3000)
    data_a = ndjson(a)
    r = c.ingest(data_a)
    assert (r.ingested, r.rejected) == (3000, 0)
    c.register_psf("repo", "repo.name")  # ranges before it are scanned on every shard
    bad_b = ndjson(b[:700]) + b"{not json\n" + ndjson(b[700:])
    r = c.ingest(bad_b)
    assert (r.ingested, r.rejected) == (2000, 1)
    assert [e.line for e in r.errors] == [701]
    log = Log(ndjson(a + b).splitlines())
    # every shard got part of it
    per_shard = [s["records"] for s in c.status()["shards"]]
    assert sum(per_shard) == 5000 and all(per_shard), per_shard

    for t in TYPES:
        want = log.matching("type", t)
        assert c.count("type", t) == len(want)
        assert raws(c.query("type", t)) == oracle_answer(log, want)
        assert raws(c.query("type", t, limit=7)) == oracle_answer(log, want, limit=7)
        assert raws(c.query("type", t, order="oldest", limit=9)) == oracle_answer(log, want, "oldest", 9)
    # projected answers (fields=) merge as whole ones do
    want = log.matching("type", "pull")
    got = [orjson.loads(r.raw) for r in c.query("type", "pull", fields=["id", "repo.name"])]
    assert got == [{"id": log.objs[i]["id"], "repo": {"name": log.objs[i]["repo"]["name"]}}
                   for i in reversed(want)]
    for repo in ("r0", "r7", "r39"):
        want = log.matching("repo.name", repo)
        assert c.count("repo", repo) == len(want)
        assert raws(c.query("repo", repo)) == oracle_answer(log, want)
    conds = [("type", "pull"), ("repo", "r3")]
    allset = set(log.matching("type", "pull")) & set(log.matching("repo.name", "r3"))
    assert raws(c.query_all(conds)) == oracle_answer(log, allset)
    assert c.count_all(conds) == len(allset)
    anyset = set(log.matching("type", "release")) | set(log.matching("repo.name", "r5"))
    assert raws(c.query_any([("type", "release"), ("repo", "r5")])) == oracle_answer(log, anyset)
    assert c.count_any([("type", "release"), ("repo", "r5")]) == len(anyset)
    assert raws(c.scan("n > `990`")) == oracle_answer(log, log.scan_matching("n > `990`"))
    # all records, in input order
    assert raws(c.scan("`true`", order="oldest")) == log.raws

    counts = top_counts(log, "type")
    assert dict(c.group_count("type")) == counts
    for k in (1, 2, 3):
        got = c.group_count("type", limit=k)
        assert [n for _, n in got] == sorted(counts.values(), reverse=True)[:k]
        assert all(counts[v] == n for v, n in got)
    repo_counts = top_counts(log, "repo.name")
    assert dict(c.group_count("repo")) == repo_counts
    got = c.group_count("repo", limit=5)
    assert [n for _, n in got] == sorted(repo_counts.values(), reverse=True)[:5]
    assert all(repo_counts[v] == n for v, n in got)

    # a cluster address finds its record again
    for rec in list(c.query("type", "fork", limit=5)):
        assert bytes(c.get(rec.address).raw) == bytes(rec.raw)
    assert c.get(addresses.encode(7, 64)) is None  # no such shard


def test_top_values_exact_when_shards_disagree(open_cluster):
    """Each shard's own top values differ from the cluster's: the merge asks
    again (and, if need be, for everything) rather than answer wrong."""
    c = open_cluster(2, route_by="g", piece_bytes=4 << 10)
    c.register_psf("v", "v")
    rng = random.Random(5)
    objs = []
    # shard-local heavy hitters: value "h<g>" is frequent only within group g
    for g in range(12):
        for _ in range(40 + 7 * g):
            objs.append({"g": g, "v": f"h{g}"})
        for _ in range(60):
            objs.append({"g": g, "v": f"c{rng.randrange(25)}"})
    rng.shuffle(objs)
    c.ingest(ndjson(objs))
    log = Log(ndjson(objs).splitlines())
    counts = top_counts(log, "v")
    want = sorted(counts.values(), reverse=True)
    for k in (1, 3, 5, 10, 20):
        got = c.group_count("v", limit=k)
        assert [n for _, n in got] == want[:k], k
        assert all(counts[v] == n for v, n in got)


def test_route_by_keeps_a_value_on_one_shard(open_cluster):
    c = open_cluster(3, route_by="repo.name", piece_bytes=8 << 10)
    c.register_psf("repo", "repo.name")
    objs = make_records(3000, 3)
    c.ingest(ndjson(objs))
    log = Log(ndjson(objs).splitlines())
    shards_used = set()
    for repo in {o["repo"]["name"] for o in objs}:
        got = list(c.query("repo", repo))
        shards = {addresses.decode(r.address)[0] for r in got}
        assert len(shards) == 1, (repo, shards)
        assert c.last_shards["total"] == 1  # a query by the routing value asks that value's shard only
        shards_used |= shards
        # within one shard, cluster order is the shard's: input order
        assert raws(got) == oracle_answer(log, log.matching("repo.name", repo))
        assert c.count("repo", repo) == len(got) and c.last_shards["total"] == 1
        assert c.count_all([("repo", repo), ("repo", "r-none")]) == 0
    assert len(shards_used) == 3
    c.register_psf("type", "type")  # not the routing expression: every shard is asked
    assert c.count("type", "push") == len(log.matching("type", "push")) and c.last_shards["total"] == 3
    two = sorted({o["repo"]["name"] for o in objs})[:2]
    got = list(c.query_any([("repo", two[0]), ("repo", two[1])]))
    assert raws(got) == oracle_answer(log, log.matching("repo.name", two[0]) + log.matching("repo.name", two[1]))
    assert c.last_shards["total"] == len({c._router.shard_of_value(r) for r in two})
    c.register_psf("repo_b", "repo.name", bucket=None)
    assert c.count("repo", True) == 0  # true is no routing value: every shard asked, none has it
    assert c.last_shards["total"] == 3


def test_keyed_cluster_keeps_one_live_version(open_cluster):
    c = open_cluster(3, key="id", piece_bytes=8 << 10)
    c.register_psf("type", "type")
    first = make_records(1500, 4)
    c.ingest(ndjson(first))
    rng = random.Random(9)
    updates = []
    for _ in range(800):
        o = dict(first[rng.randrange(1500)])
        o["type"] = rng.choice(TYPES)
        o["n"] = rng.randrange(1000)
        updates.append(o)
    c.ingest(ndjson(updates))
    live = {o["id"]: o for o in first + updates}
    deleted = sorted(rng.sample(sorted(live), 50))
    for k in deleted:
        assert c.delete_key(k) is True
        del live[k]
    assert c.delete_key(10 ** 9) is False
    for k in list(live)[:100] + deleted[:10]:
        got = c.get_key(k)
        if k in live:
            assert orjson.loads(got.raw) == live[k]
        else:
            assert got is None
    for t in TYPES:
        want = sum(1 for o in live.values() if o["type"] == t)
        assert c.count("type", t) == want
        assert sorted(r.json()["id"] for r in c.query("type", t)) == sorted(
            k for k, o in live.items() if o["type"] == t)
    with pytest.raises(shoal.InvalidArgument):
        c.get_key([1])


def test_array_gzip_and_bad_records_report_input_numbering(open_cluster):
    c = open_cluster(2, piece_bytes=4 << 10)
    c.register_psf("type", "type")
    objs = make_records(400, 6)
    pretty = json.dumps(objs[:200], indent=2).encode()  # elements hold line breaks
    r = c.ingest(pretty)
    assert (r.ingested, r.rejected) == (200, 0)
    lines = [orjson.dumps(o) for o in objs[200:]]
    lines[50] = b'{"type": "push", "bad": }'
    lines[120] = b"[1, 2"
    r = c.ingest(gzip.compress(b"\n".join(lines) + b"\n"))
    assert (r.ingested, r.rejected) == (198, 2)
    assert [e.line for e in r.errors] == [51, 121]
    kept = objs[:200] + [o for i, o in enumerate(objs[200:]) if i not in (50, 120)]
    log = Log(ndjson(kept).splitlines())
    assert sorted((orjson.loads(x) for x in raws(c.scan("`true`"))), key=lambda o: o["id"]) == kept
    for t in TYPES:
        assert c.count("type", t) == len(log.matching("type", t))


def test_reopen_keeps_records_and_catches_up_registrations(open_cluster, tmp_path):
    path = tmp_path / "cl"
    c = open_cluster(2, path=path, piece_bytes=8 << 10)
    c.register_psf("type", "type")
    objs = make_records(2000, 7)
    c.ingest(ndjson(objs), durable=True)
    c.close()
    # A front that saved a registration and died before any shard had it:
    m = json.loads((path / "cluster.json").read_text())
    m["psfs"].append({"op": "register", "name": "repo", "definition": "repo.name", "bucket": None, "time": False})
    (path / "cluster.json").write_text(json.dumps(m))
    c = open_cluster(None, path=path)
    assert c.map.shards == 2
    log = Log(ndjson(objs).splitlines())
    assert c.count("type", "push") == len(log.matching("type", "push"))
    assert {p.name for p in c.psfs(include_inactive=False)} == {"type", "repo"}
    more = make_records(500, 8, start=2000)
    c.ingest(ndjson(more))
    log.extend(ndjson(more).splitlines())
    assert c.count("repo", "r1") == len(log.matching("repo.name", "r1"))
    with pytest.raises(shoal.InvalidArgument):
        open_cluster(1, path=path)  # removing shards: not served


def test_psf_registration_errors(open_cluster):
    c = open_cluster(2)
    c.register_psf("type", "type")
    assert c.register_psf("type", "type", exist_ok=True).name == "type"
    with pytest.raises(shoal.PSFExists):
        c.register_psf("type", "repo.name")
    c.register_psf("type", "repo.name", replace=True)
    assert c.psf("type").definition == "repo.name"
    c.deregister_psf("type")
    with pytest.raises(shoal.PSFNotFound):
        c.deregister_psf("type")
    with pytest.raises(shoal.InvalidArgument):
        c.register_psf("f", lambda r: r)
    with pytest.raises(shoal.InvalidArgument):
        c.ingest(b"{}\n", on_error="maybe")


def test_a_dead_shard_fails_reads_unless_partial(open_cluster, ray_cluster):
    import ray
    c = open_cluster(2, piece_bytes=8 << 10)
    c.register_psf("type", "type")
    objs = make_records(2000, 10)
    c.ingest(ndjson(objs))
    on = {i: s["records"] for i, s in enumerate(c.status()["shards"])}
    assert all(on.values())
    ray.kill(c._actors[1], no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # ray.kill returns before the actor is gone
        try:
            ray.get(c._actors[1].ping.remote(), timeout=10)
            time.sleep(0.05)
        except ray.exceptions.RayActorError:
            break
    with pytest.raises(shoal.ShardUnavailable):
        c.count("type", "push")
    with pytest.raises(shoal.ShardUnavailable):
        list(c.query("type", "push"))
    got = list(c.query("type", "push", allow_partial=True))
    assert c.last_shards["failed"] == 1 and c.last_shards["successful"] == 1
    assert {addresses.decode(r.address)[0] for r in got} == {0}
    assert c.count("type", "push", allow_partial=True) == len(got)
    with pytest.raises(shoal.ShardUnavailable) as e:
        c.ingest(ndjson(make_records(2000, 11)))
    assert e.value.shards == [1] and e.value.result.ingested > 0


@pytest.mark.slow
@pytest.mark.crash
def test_a_shard_killed_mid_ingest_comes_back_with_every_acknowledged_record(open_cluster):
    """SIGKILL of a shard's process while a writer ingests: Ray restarts it,
    its store recovers, and every record of every acknowledged call is
    answered exactly once; calls that failed stored each record at most once."""
    import os
    import signal
    import threading
    import time

    c = open_cluster(2, piece_bytes=8 << 10)
    c.register_psf("type", "type")
    calls = [make_records(300, 100 + k, start=300 * k) for k in range(40)]
    acked, failed = [], []
    started = threading.Event()

    def writer():
        for k, objs in enumerate(calls):
            if k == 5:
                started.set()
            try:
                c.ingest(ndjson(objs), durable=k % 2 == 0)
                acked.append(k)
            except shoal.ShardUnavailable:
                failed.append(k)
                time.sleep(0.2)

    t = threading.Thread(target=writer)
    t.start()
    started.wait(60)
    pid = c._get(1, c._call(1, "ping"))["pid"]
    os.kill(pid, signal.SIGKILL)
    t.join(180)
    assert not t.is_alive()
    assert len(acked) >= 20, (acked, failed)
    assert c._get(1, c._call(1, "ping"))["pid"] != pid  # restarted
    ids = [orjson.loads(r.raw)["id"] for r in c.scan("`true`")]
    assert len(ids) == len(set(ids)), "a record stored twice"
    stored = set(ids)
    for k in acked:
        assert {o["id"] for o in calls[k]} <= stored, f"call {k} was acknowledged, its records are not all there"
    log = Log(ndjson([o for k in sorted(acked) for o in calls[k]]).splitlines())
    got = {t_: c.count("type", t_) for t_ in TYPES}
    for t_ in TYPES:
        # counts cover the acknowledged records, and at most the failed calls' on top
        assert got[t_] >= len(log.matching("type", t_))
    assert sum(got.values()) == len(stored)


FRONT = """
import sys, time, ray, shoal.cluster
ray.init(address=sys.argv[1], namespace="shoal", log_to_driver=False, configure_logging=False)
c = shoal.cluster.open(sys.argv[2], 2, shard_cpus=0.25, piece_bytes=8192, **eval(sys.argv[3]))
c.register_psf("type", "type")
r = c.ingest(sys.stdin.buffer.read())
print("acked", r.ingested, flush=True)
time.sleep(120)
"""


@pytest.mark.slow
@pytest.mark.crash
def test_a_killed_front_loses_nothing_acknowledged(open_cluster, tmp_path):
    """The shards outlive their front: SIGKILL of the front's process after
    an acknowledged ingest, and a new front on the same directory answers
    every record."""
    import subprocess
    import sys

    import ray

    from cluster.conftest import SMALL
    path = tmp_path / "cl"
    objs = make_records(3000, 12)
    proc = subprocess.Popen([sys.executable, "-c", FRONT, ray.get_runtime_context().gcs_address, str(path),
                             repr(SMALL)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdin.write(ndjson(objs))
    proc.stdin.close()
    line = proc.stdout.readline()
    assert line.split() == [b"acked", b"3000"], line
    proc.kill()
    proc.wait(30)
    c = open_cluster(None, path=path)
    log = Log(ndjson(objs).splitlines())
    for t in TYPES:
        assert c.count("type", t) == len(log.matching("type", t))
    assert raws(c.scan("`true`", order="oldest")) == log.raws


@pytest.mark.parametrize("route_by", [None, "repo.name"])
def test_pages_by_cluster_address_never_repeat_or_skip(open_cluster, route_by):
    c = open_cluster(3, route_by=route_by, piece_bytes=4 << 10)
    c.register_psf("type", "type")
    for k in range(3):
        c.ingest(ndjson(make_records(700, 20 + k, start=700 * k)))
    for order in ("newest", "oldest"):
        whole = list(c.query("type", "push", order=order))
        assert len(whole) > 300
        pages, cursor = [], None
        while True:
            kw = {} if cursor is None else ({"to_address": cursor} if order == "newest" else {"from_address": cursor})
            page = list(c.query("type", "push", order=order, limit=37, **kw))
            pages.extend(page)
            if len(page) < 37:
                break
            cursor = page[-1].address if order == "newest" else page[-1].address + 1
        assert raws(pages) == raws(whole)
        assert [r.address for r in pages] == [r.address for r in whole]
    scan = list(c.scan("`true`", order="oldest", limit=50))
    rest = list(c.scan("`true`", order="oldest", from_address=scan[-1].address + 1))
    assert len(scan) + len(rest) == 2100
    assert len({r.address for r in scan + rest}) == 2100
    # Counts over a window of cluster addresses count what a query over it
    # returns: the window is a slice of the whole in cluster order.
    whole = list(c.scan("`true`", order="oldest"))
    objs = [orjson.loads(r.raw) for r in whole]
    for i, j in ((0, 333), (333, 2099), (1050, None), (None, 1050), (700, 701), (5, 5)):
        a = None if i is None else whole[i].address
        b = None if j is None else whole[j].address
        window = objs[i or 0:j]
        types = {}
        for o in window:
            types[o["type"]] = types.get(o["type"], 0) + 1
        for t in ("push", "pull", "release"):
            assert c.count("type", t, from_address=a, to_address=b) == types.get(t, 0)
        assert c.count_any([("type", "push"), ("type", "fork")], from_address=a, to_address=b) == \
            types.get("push", 0) + types.get("fork", 0)
        assert dict(c.group_count("type", from_address=a, to_address=b)) == types
        top = c.group_count("type", limit=2, from_address=a, to_address=b)
        assert [n for _, n in top] == sorted(types.values(), reverse=True)[:2]
        assert all(types[v] == n for v, n in top)
    with pytest.raises(shoal.InvalidArgument):
        c.count("type", "push", from_address=addresses.encode(9, 64))  # no shard 9


def test_two_fronts_on_one_cluster(open_cluster, tmp_path):
    """Two fronts on the same directory share its shards: both ingest at
    once, every record is stored once, and each call's records keep their
    input order on each shard (across shards, two fronts' pieces are
    ordered as they reached the shards: README, Cluster)."""
    import threading

    path = tmp_path / "two"
    c1 = open_cluster(2, path=path, piece_bytes=4 << 10)
    c1.register_psf("type", "type")
    c2 = open_cluster(None, path=path, piece_bytes=4 << 10)
    calls = {1: [make_records(500, 30 + k, start=500 * k) for k in range(4)],
             2: [make_records(500, 40 + k, start=2000 + 500 * k) for k in range(4)]}

    def writer(c, mine):
        for objs in mine:
            assert c.ingest(ndjson(objs)).ingested == 500

    ts = [threading.Thread(target=writer, args=(c, calls[i])) for i, c in ((1, c1), (2, c2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ids = [orjson.loads(r.raw)["id"] for r in c2.scan("`true`", order="oldest")]
    assert sorted(ids) == list(range(4000))
    shard_of = {}
    for r in c2.scan("`true`"):
        shard_of[orjson.loads(r.raw)["id"]] = addresses.decode(r.address)
    for front in calls.values():
        for objs in front:
            for shard in (0, 1):
                got = [shard_of[o["id"]][1] for o in objs if shard_of[o["id"]][0] == shard]
                assert got == sorted(got), "a call's records out of input order on a shard"
    log = Log(ndjson([o for f in calls.values() for objs in f for o in objs]).splitlines())
    assert c1.count("type", "push") == len(log.matching("type", "push"))


def test_bad_input_and_bad_questions_get_the_stores_errors(open_cluster):
    c = open_cluster(2, piece_bytes=4 << 10, max_record_bytes=1000)
    c.register_psf("type", "type")
    assert c.ingest(b"").ingested == 0
    big = b'{"type":"x","pad":"' + b"y" * 5000 + b'"}'
    r = c.ingest(b'{"type":"a"}\n' + big + b"\n" + b'{"type":"b"}\n' * 3 + b"[1,2\n" + b'{"type":"c"}\n')
    assert (r.ingested, r.rejected) == (5, 2)
    assert [e.line for e in r.errors] == [2, 6]
    assert r.errors[0].reason.startswith("record too large")
    assert (c.count("type", "a"), c.count("type", "b"), c.count("type", "c")) == (1, 3, 1)
    with pytest.raises(shoal.PSFNotFound):
        list(c.query("nope", 1))
    with pytest.raises(shoal.PSFNotFound):
        c.count("nope", 1)
    with pytest.raises(shoal.PSFDefinitionError):
        list(c.scan("a[?"))
    with pytest.raises(shoal.InputTooLarge):
        c.ingest(b'{"a":1}\n' * 10, max_input_bytes=20)
    with pytest.raises(shoal.InvalidArgument):
        list(c.query("type", "a", order="sideways"))
    with pytest.raises(shoal.InvalidArgument):
        c.group_count("type", from_address=-1)


def test_keyed_cluster_rejects_records_without_a_key_by_line(open_cluster):
    c = open_cluster(2, key="id")
    r = c.ingest(b'{"id":1,"v":1}\n{"v":2}\n{"id":[1]}\n{"id":2}\n')
    assert (r.ingested, r.rejected) == (2, 2)
    assert [e.line for e in r.errors] == [2, 3]
    assert c.get_key(2).json() == {"id": 2}


@pytest.mark.parametrize("route_by", [None, "type"])
def test_ingest_gives_each_records_cluster_address_in_input_order(open_cluster, route_by):
    c = open_cluster(3, route_by=route_by, piece_bytes=4 << 10)
    objs = make_records(1500, 50)
    lines = [orjson.dumps(o) for o in objs]
    lines[100] = b"{bad"
    r = c.ingest(b"\n".join(lines) + b"\n", addresses=True)
    assert len(r.addresses) == 1500 and r.addresses[100] == 0
    for i in (0, 1, 99, 101, 777, 1499):
        assert bytes(c.get(r.addresses[i]).raw) == lines[i]
    assert len({a for a in r.addresses if a}) == 1499


def test_elasticsearch_bulk_on_a_cluster(open_cluster):
    """POST /_bulk answers each item with its record's cluster address."""
    import anyio
    import httpx

    from shoal.api.app import create_app
    c = open_cluster(2, piece_bytes=4 << 10)
    app = create_app(c)
    body = b"".join(b'{"index":{"_index":"logs"}}\n' + orjson.dumps({"n": i}) + b"\n" for i in range(300))

    async def post():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shoal") as client:
            return await client.post("/_bulk", content=body, headers={"content-type": "application/x-ndjson"})

    r = anyio.run(post)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 300 and not r.json()["errors"]
    for i in (0, 150, 299):
        assert orjson.loads(c.get(int(items[i]["index"]["_id"])).raw) == {"_index": "logs", "n": i}


def test_the_tail_follows_every_shard(open_cluster):
    """follow over a cluster gives each record ingested after it started
    once, with cluster addresses, a condition's only; since_address resumes
    after a given record."""
    import threading

    c = open_cluster(2, piece_bytes=4 << 10)
    c.register_psf("type", "type")
    c.ingest(ndjson(make_records(300, 60)))  # before the tail: not given
    stop = threading.Event()
    got, pushes = [], []

    def follow(conditions, into):
        for r in c.follow(conditions, cancel=stop, timeout=30):
            into.append(r)

    ts = [threading.Thread(target=follow, args=(None, got)),
          threading.Thread(target=follow, args=([("type", "push")], pushes))]
    for t in ts:
        t.start()
    time.sleep(1.0)  # both tails open
    later = make_records(1200, 61, start=300)
    for k in range(4):
        c.ingest(ndjson(later[300 * k:300 * (k + 1)]))
    deadline = time.monotonic() + 60
    while len(got) < 1200 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in ts:
        t.join(30)
    assert sorted(orjson.loads(r.raw)["id"] for r in got) == [o["id"] for o in later]
    assert sorted(orjson.loads(r.raw)["id"] for r in pushes) == [o["id"] for o in later if o["type"] == "push"]
    for r in got[:50]:
        assert bytes(c.get(r.address).raw) == bytes(r.raw)
    # resume after the 600th record given: the records after it in cluster order
    order = [r.address for r in c.scan("`true`", order="oldest")]
    cut = order.index(got[599].address)
    resumed = []
    for r in c.follow(since_address=got[599].address, timeout=2):
        resumed.append(r.address)
    assert sorted(resumed) == sorted(order[cut:])
    with pytest.raises(shoal.PSFNotFound):
        c.follow([("nope", 1)])
    with pytest.raises(shoal.InvalidArgument):
        c.follow(on_gap="maybe")


def test_adding_shards_to_a_spreading_cluster(open_cluster, tmp_path):
    """New pieces go to every shard in turn, old records stay where they
    are, answers stay complete and in order; another front on the same
    directory takes the new shards up."""
    import threading

    path = tmp_path / "grow"
    c = open_cluster(2, path=path, piece_bytes=4 << 10)
    c.register_psf("type", "type")
    other = open_cluster(None, path=path, piece_bytes=4 << 10)
    stop = threading.Event()
    tailed = []  # a tail of the other front, begun before the shards were added
    follower = threading.Thread(target=lambda: tailed.extend(other.follow(cancel=stop, timeout=60)))
    follower.start()
    time.sleep(1.0)
    first = make_records(1000, 70)
    c.ingest(ndjson(first))
    c.add_shards(2, shard_cpus=0.25)
    assert c.map.shards == 4
    second = make_records(2000, 71, start=1000)
    c.ingest(ndjson(second))
    deadline = time.monotonic() + 60
    while len(tailed) < 3000 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    follower.join(30)
    assert sorted(orjson.loads(r.raw)["id"] for r in tailed) == list(range(3000))
    per_shard = [s["records"] for s in other.status()["shards"]]  # the other front sees 4 shards
    assert len(per_shard) == 4 and all(per_shard[2:]) and sum(per_shard) == 3000
    log = Log(ndjson(first + second).splitlines())
    for t in TYPES:
        want = log.matching("type", t)
        assert other.count("type", t) == len(want)
        assert raws(other.query("type", t)) == oracle_answer(log, want)
    assert raws(c.scan("`true`", order="oldest")) == log.raws
    c.close(keep_shards=True)
    c = open_cluster(5, path=path, piece_bytes=4 << 10, shard_cpus=0.25)  # grows on open too
    assert c.map.shards == 5 and c.count("type", "push") == len(log.matching("type", "push"))
    with pytest.raises(shoal.InvalidArgument):
        open_cluster(3, path=path)


def _keyed_history(seed: int, n: int = 3000):
    """A keyed history: n records, updates of some, deletes of some; the
    live version of each key (the oracle) and the calls that make it."""
    rng = random.Random(seed)
    first = make_records(n, seed)
    updates = []
    for _ in range(n // 3):
        o = dict(first[rng.randrange(n)])
        o["type"], o["n"] = rng.choice(TYPES), rng.randrange(1000)
        updates.append(o)
    live = {o["id"]: o for o in first + updates}
    deleted = sorted(rng.sample(sorted(live), n // 30))
    for k in deleted:
        del live[k]
    return first, updates, deleted, live


def _keyed_cluster(open_cluster, path, seed: int, n: int, piece_bytes: int, shards: int = 2):
    """A keyed cluster of 2 shards (key id, PSF type) holding
    _keyed_history(seed, n); the cluster and its live versions."""
    c = open_cluster(shards, path=path, key="id", piece_bytes=piece_bytes)
    c.register_psf("type", "type")
    first, updates, deleted, live = _keyed_history(seed, n)
    c.ingest(ndjson(first))
    c.ingest(ndjson(updates))
    for k in deleted:
        assert c.delete_key(k)
    return c, live


def _check_keyed(c, live: dict) -> None:
    """Every live key answered once, by the shard the map gives it, and
    every count, query and top-values answer as the oracle's."""
    got = [orjson.loads(r.raw) for r in c.scan("`true`")]
    assert sorted(o["id"] for o in got) == sorted(live)  # each key once
    assert {o["id"]: o for o in got} == live
    for t in TYPES:
        want = sorted(k for k, o in live.items() if o["type"] == t)
        assert c.count("type", t) == len(want)
        assert sorted(r.json()["id"] for r in c.query("type", t)) == want
    from collections import Counter
    assert dict(c.group_count("type")) == dict(Counter(o["type"] for o in live.values()))
    for k in sorted(live)[::97]:
        r = c.get_key(k)
        assert orjson.loads(r.raw) == live[k]
        assert addresses.decode(r.address)[0] == c._router.shard_of_value(k)


def test_adding_shards_to_a_keyed_cluster_moves_its_keys(open_cluster, tmp_path):
    """The new shard takes its share of virtual shards with their keys
    (copied, switched, deleted at the old shard). Reads from another front
    that run all through the move see every key exactly once; an ingest
    running meanwhile waits for the move and loses nothing; later versions
    of a moved key go to its new shard."""
    import threading

    path = tmp_path / "keyed"
    c, live = _keyed_cluster(open_cluster, path, 80, 3000, 8 << 10)
    other = open_cluster(None, path=path, piece_bytes=8 << 10)
    want = {t: sum(1 for o in live.values() if o["type"] == t) for t in TYPES}
    stop, bad, reads, late = threading.Event(), [], [0], []

    def reader():
        while not stop.is_set():
            for t in TYPES:
                n = other.count("type", t)
                if n != want[t]:
                    bad.append((t, n, want[t]))
            reads[0] += 1

    def writer():  # new keys of their own type, so the reader's counts hold
        i = 0
        while not stop.is_set():
            batch = [{"id": 100_000 + i + j, "type": "late"} for j in range(50)]
            c.ingest(ndjson(batch))
            late.extend(batch)
            i += 50

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    c.add_shards(1, shard_cpus=0.25)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(60)
    assert not bad and reads[0] > 0 and late
    m = c.map
    assert m.shards == 3 and m.move is None
    owned = [m.owners.count(s) for s in range(3)]
    assert max(owned) - min(owned) <= 1, owned
    live.update({o["id"]: o for o in late})
    want["late"] = len(late)
    _check_keyed(c, live)
    _check_keyed(other, live)  # the other front took the new map up
    assert all(s["records"] for s in c.status()["shards"])
    # later versions of moved keys: stored by their new shard, superseding the copies
    moved = [k for k in sorted(live) if k < 100_000 and c._router.shard_of_value(k) == 2][:40]
    assert moved
    again = [{**live[k], "type": "fork", "n": -1} for k in moved]
    c.ingest(ndjson(again))
    live.update({o["id"]: o for o in again})
    for k in moved[:5]:
        assert c.delete_key(k)
        del live[k]
    _check_keyed(c, live)
    c.close(keep_shards=True)
    other.close(keep_shards=True)
    _check_keyed(open_cluster(None, path=path), live)  # and after a reopen


@pytest.mark.parametrize("cut_at", ["copying", "copied"])
def test_a_move_cut_short_is_finished_by_the_next_front(open_cluster, tmp_path, monkeypatch, cut_at):
    """A front that dies in a move (here: SystemExit at the chosen step)
    leaves its journal in the map; the next front to open the cluster
    finishes it, and every key is then live on exactly one shard."""
    from shoal.cluster import mover

    path = tmp_path / "cut"
    c, live = _keyed_cluster(open_cluster, path, 81, 1500, 8 << 10)
    real_copy, real_each = mover._copy, mover._each
    calls = []

    def copy(front, src, dst, vs):  # copies one pair, then the front "dies"
        calls.append(src)
        if len(calls) > 1:
            raise SystemExit("the front died")
        return real_copy(front, src, dst, vs)

    def each(front, per_shard, method, *args):
        if front.map.move["state"] == "copied":
            raise SystemExit("the front died")
        return real_each(front, per_shard, method, *args)

    monkeypatch.setattr(mover, "_copy" if cut_at == "copying" else "_each",
                        copy if cut_at == "copying" else each)
    with pytest.raises(SystemExit):
        c.add_shards(1, shard_cpus=0.25)
    monkeypatch.setattr(mover, "_copy", real_copy)
    monkeypatch.setattr(mover, "_each", real_each)
    c.close(keep_shards=True)
    again = open_cluster(None, path=path)
    assert again.map.move is None and again.map.shards == 3
    owned = [again.map.owners.count(s) for s in range(3)]
    assert max(owned) - min(owned) <= 1, owned
    _check_keyed(again, live)


def test_a_move_that_fails_is_undone_or_finished(open_cluster, tmp_path, monkeypatch):
    """An error in a move (a shard that fails) before the switch undoes it
    (copies deleted, every key where it was) and says so; rebalance() then
    moves the keys. An error after the switch is finished on a second try."""
    from shoal.cluster import mover

    c, live = _keyed_cluster(open_cluster, tmp_path / "fail", 82, 1500, 8 << 10)
    real_copy, real_each = mover._copy, mover._each
    calls = []

    def copy(front, src, dst, vs):
        calls.append(src)
        if len(calls) == 2:
            raise shoal.ShardUnavailable("shard did not answer", [src])
        return real_copy(front, src, dst, vs)

    monkeypatch.setattr(mover, "_copy", copy)
    with pytest.raises(shoal.ShoalError, match="undone"):
        c.add_shards(1, shard_cpus=0.25)
    assert c.map.move is None and c.map.shards == 3 and c.map.owners.count(2) == 0
    _check_keyed(c, live)
    monkeypatch.setattr(mover, "_copy", real_copy)
    failed = []

    def each(front, per_shard, method, *args):  # the first deletion at the old shards fails
        if front.map.move["state"] == "copied" and not failed:
            failed.append(method)
            raise shoal.ShardUnavailable("shard did not answer", [0])
        return real_each(front, per_shard, method, *args)

    monkeypatch.setattr(mover, "_each", each)
    moves = c.rebalance()
    assert failed and moves and c.map.move is None and c.map.owners.count(2) >= 1
    _check_keyed(c, live)


def test_adding_shards_to_a_routed_cluster(open_cluster, tmp_path):
    """A routed cluster's new shard takes its share of virtual shards for
    later records; earlier ones stay where they were and every answer
    stays complete."""
    c = open_cluster(2, path=tmp_path / "routed", route_by="repo.name", piece_bytes=8 << 10)
    c.register_psf("repo", "repo.name")
    objs = make_records(2000, 82)
    c.ingest(ndjson(objs))
    moves = c.rebalance()
    assert moves == {}  # already even
    c.add_shards(1, shard_cpus=0.25)
    more = make_records(2000, 83, start=2000)
    c.ingest(ndjson(more))
    log = Log(ndjson(objs + more).splitlines())
    per_shard = [s["records"] for s in c.status()["shards"]]
    assert per_shard[2] > 0 and sum(per_shard) == 4000
    for repo in sorted({o["repo"]["name"] for o in objs}):
        want = log.matching("repo.name", repo)
        got = list(c.query("repo", repo))
        assert raws(got) == oracle_answer(log, want)
        later = {addresses.decode(r.address)[0] for r in got if r.json()["id"] >= 2000}
        assert later == {c._router.shard_of_value(repo)}  # later records: the owner the map names now
        assert c.count("repo", repo) == len(want)  # asked: the owner and the one before it
        assert c.last_shards["total"] == len({addresses.decode(r.address)[0] for r in got} | later)


def test_compaction_through_the_front(open_cluster, tmp_path):
    """compact(until_address) drops, on every shard, what comes before that
    record in cluster order (cuts rounded down to a page); what stays
    answers as the oracle over it; a keyed cluster keeps its live keys."""
    c = open_cluster(2, path=tmp_path / "spread", piece_bytes=16 << 10)
    c.register_psf("type", "type")
    objs = make_records(4000, 90)
    c.ingest(ndjson(objs))
    oldest = list(c.scan("`true`", order="oldest"))
    cut = oldest[3000]
    assert cut.json()["id"] == 3000
    with pytest.raises(shoal.InvalidArgument):
        c.compact()
    with pytest.raises(shoal.InvalidArgument):
        c.compact(cut.address, retain_bytes=10)
    r = c.compact(cut.address)
    stays = [orjson.loads(x.raw) for x in c.scan("`true`", order="oldest")]
    ids = [o["id"] for o in stays]
    assert set(range(3000, 4000)) <= set(ids) and len(ids) < 4000
    assert ids == sorted(ids)  # still in input order
    assert r.records_dropped == 4000 - len(ids)
    for t in TYPES:
        assert c.count("type", t) == sum(1 for o in stays if o["type"] == t)

    k, live = _keyed_cluster(open_cluster, tmp_path / "keyed", 91, 1500, 16 << 10)
    r = k.compact(retain_bytes=0)
    assert r.records_copied > 0 and r.records_dropped > 0
    _check_keyed(k, live)


@pytest.mark.parametrize("key", [None, "id"])
def test_reject_stores_nothing_when_any_shard_finds_a_bad_record(open_cluster, tmp_path, key):
    """on_error="reject": a bad record in any shard's part (or one the
    front's framing refuses) stores nothing anywhere, and every error is
    reported by input line; good input is stored whole."""
    c = open_cluster(3, path=tmp_path / "c", key=key, piece_bytes=4 << 10, max_record_bytes=1000)
    c.register_psf("type", "type")
    objs = make_records(1200, 95)
    lines = [orjson.dumps(o) for o in objs]
    lines[700] = lines[700][:-3]                         # not JSON: a shard finds it
    lines[1100] = b'{"type":"x","pad":"' + b"y" * 5000 + b'"}'  # too large: the front's framing finds it
    if key:
        lines[50] = b'{"type":"push"}'                   # no key: a shard finds it
    bad = [51, 701, 1101] if key else [701, 1101]
    with pytest.raises(shoal.IngestRejected) as info:
        c.ingest(b"\n".join(lines) + b"\n", on_error="reject")
    assert [e.line for e in info.value.result.errors] == bad
    assert info.value.result.rejected == len(bad)
    assert sum(s["records"] for s in c.status()["shards"]) == 0
    assert list(c.scan("`true`")) == []
    r = c.ingest(ndjson(objs), on_error="reject", addresses=True)
    assert (r.ingested, r.rejected) == (1200, 0) and all(r.addresses)
    assert sum(s["records"] for s in c.status()["shards"]) == 1200
    log = Log(ndjson(objs).splitlines())
    for t in TYPES[:3]:
        assert c.count("type", t) == len(log.matching("type", t))


@pytest.mark.slow
@pytest.mark.crash
def test_a_call_lost_with_its_shard_is_sent_again_when_none_of_it_was_stored(open_cluster):
    """A shard's process stopped (SIGSTOP) with the front's call out, then
    killed: Ray restarts it, the front learns that none of the call was
    stored there (begun.py) and sends it again, so the ingest succeeds and
    every record is stored exactly once."""
    import os
    import signal
    import threading

    c = open_cluster(2, piece_bytes=8 << 10)
    c.register_psf("type", "type")
    c.ingest(ndjson(make_records(200, 120)))
    pid = c._get(1, c._call(1, "ping"))["pid"]
    objs = make_records(3000, 121, start=200)
    got: list = []
    os.kill(pid, signal.SIGSTOP)
    try:
        t = threading.Thread(target=lambda: got.append(c.ingest(ndjson(objs), durable=True)))
        t.start()
        time.sleep(1.5)  # the call to shard 1 is out, and waits on the stopped process
    finally:
        os.kill(pid, signal.SIGKILL)
    t.join(180)
    assert not t.is_alive() and got, "the ingest did not finish"
    assert (got[0].ingested, got[0].rejected) == (3000, 0)
    assert c._get(1, c._call(1, "ping"))["pid"] != pid  # restarted
    ids = [orjson.loads(r.raw)["id"] for r in c.scan("`true`", order="oldest")]
    assert ids == list(range(3200))  # each once, in input order


def _marks(path) -> int:
    """Sequence marks the cluster's shards hold (marks.py: 16 bytes each)."""
    return sum(f.stat().st_size // 16 for f in path.glob("*/marks.bin"))


@pytest.mark.parametrize("kind", ["spread", "keyed"])
def test_pieces_joined_for_one_shard_keep_lines_order_and_addresses(open_cluster, tmp_path, kind):
    """Pieces cut one after another for the same shard go in one
    Store.ingest (ingest.py): error lines, input order and each record's
    address come out as with one call per piece. One shard (spread), or a
    keyed cluster where nearly every record has the same key, so runs of
    pieces go to one shard."""
    path = tmp_path / kind
    if kind == "spread":
        c = open_cluster(1, path=path, piece_bytes=4 << 10, max_record_bytes=2048)
        objs = make_records(3000, 31)
    else:
        c = open_cluster(2, path=path, key="k", piece_bytes=4 << 10, max_record_bytes=2048)
        objs = [dict(o, k="hot" if o["id"] % 50 else f"k{o['id']}") for o in make_records(3000, 31)]
    c.register_psf("type", "type")
    lines = [orjson.dumps(o) for o in objs]
    bad = {17, 600, 1501, 2999}
    for i in bad:
        lines[i] = b'{"type": "push", "oops": }'
    # Too large: the front rejects it, so the pieces either side of it
    # are not consecutive lines and must not join.
    big = 1200
    bad.add(big)
    lines[big] = orjson.dumps({"type": "push", "pad": "y" * 3000})
    data = b"\n".join(lines) + b"\n"
    # In small chunks, as a socket gives them: a too-large line cut by a
    # chunk's end is skipped by the front's framer (routing.py).
    r = c.ingest((data[i:i + 1000] for i in range(0, len(data), 1000)), addresses=True)
    assert (r.ingested, r.rejected) == (3000 - len(bad), len(bad))
    assert [e.line for e in r.errors] == sorted(i + 1 for i in bad)
    # Far fewer marks than pieces: pieces were joined (each piece is ~4 KiB).
    assert _marks(path) < len(data) // (4 << 10) // 2
    kept = [o for i, o in enumerate(objs) if i not in bad]
    assert len(r.addresses) == 3000
    assert [a == 0 for a in r.addresses] == [i in bad for i in range(3000)]
    for a, o in zip((a for a in r.addresses if a), kept):
        assert orjson.loads(c.get(a).raw) == o
    got = [orjson.loads(x) for x in raws(c.scan("`true`", order="oldest"))]
    if kind == "spread":
        assert got == kept  # cluster order is input order
        log = Log(ndjson(kept).splitlines())
        for t in TYPES:
            assert raws(c.query("type", t)) == oracle_answer(log, log.matching("type", t))
    else:  # a key's latest version only
        latest = {o["k"]: o for o in kept}
        assert sorted(got, key=lambda o: o["id"]) == sorted(latest.values(), key=lambda o: o["id"])


def test_a_cluster_has_every_store_method():
    """One API (the cluster issue): each public Store method is a Cluster's too."""
    from shoal.cluster.front import Cluster
    from shoal.engine import Store
    public = {n for n in dir(Store) if not n.startswith("_") and callable(getattr(Store, n))}
    assert sorted(n for n in public if not hasattr(Cluster, n)) == []


def test_check_query_addresses_delete_keys_on_a_cluster(open_cluster):
    c = open_cluster(2, key="id", piece_bytes=4 << 10)
    c.register_psf("type", "type")
    objs = make_records(1500, 51)
    lines = [orjson.dumps(o) for o in objs]
    bad = {3, 700, 1499}
    for i in bad:
        lines[i] = b'{"id": 1, "type": }'
    lines.append(b'{"type": "push"}')  # no key: the keyed cluster rejects it
    data = b"\n".join(lines) + b"\n"
    checked = c.check(data)
    assert (checked.ingested, checked.rejected) == (1500 - len(bad), len(bad) + 1)
    assert [e.line for e in checked.errors] == sorted([i + 1 for i in bad] + [1501])
    assert c.count("type", "push") == 0 and sum(s["records"] for s in c.status()["shards"]) == 0  # nothing stored
    r = c.ingest(data)
    assert (r.ingested, r.rejected) == (checked.ingested, checked.rejected)
    kept = [o for i, o in enumerate(objs) if i not in bad]
    log = Log(ndjson(kept).splitlines())
    for order in ("newest", "oldest"):
        want = [x.address for x in c.query_any([("type", "push"), ("type", "fork")], order=order)]
        assert len(want) == len(set(log.matching("type", "push")) | set(log.matching("type", "fork")))
        assert list(c.query_addresses([("type", "push"), ("type", "fork")], mode="any", order=order)) == want
        cut = want[len(want) // 3]
        window = {"to_address": cut} if order == "newest" else {"from_address": cut}
        assert list(c.query_addresses([("type", "push"), ("type", "fork")], mode="any", order=order,
                                      **window)) == \
            [x.address for x in c.query_any([("type", "push"), ("type", "fork")], order=order, **window)]
    gone = [o["id"] for o in kept[:200]] + [10**6, 10**6 + 1]  # two keys never stored
    assert c.delete_keys(gone) == 200
    assert c.delete_keys(gone) == 0
    assert all(c.get_key(k) is None for k in gone[:20])
    live = kept[200:]
    assert c.count("type", "push") == sum(o["type"] == "push" for o in live)
    assert c.get_key(live[0]["id"]) is not None
    assert c.wait_compressed(timeout=5)


def _actor_gone(name: str, timeout: float = 20.0) -> bool:
    """Whether the named shard actor is gone (ray.kill returns before it is)."""
    import ray
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace="shoal")
        except ValueError:
            return True
        time.sleep(0.1)
    return False


def test_removing_shards_from_a_keyed_cluster_keeps_every_key(open_cluster, tmp_path):
    """remove_shards moves the removed shards' virtual shards, and their
    live keys, to the others, then stops them and deletes their stores;
    every key stays answered once, from this front and another, and
    opening with fewer shards removes the rest. Spreading clusters refuse."""
    path = tmp_path / "shrink"
    c, live = _keyed_cluster(open_cluster, path, 90, 3000, 8 << 10, shards=3)
    other = open_cluster(None, path=path, piece_bytes=8 << 10)
    assert all(s["records"] for s in c.status()["shards"])
    moves = c.remove_shards(1)
    assert moves and all(src == 2 for src, _ in moves.values()), moves
    m = c.map
    assert (m.shards, m.retiring, m.move) == (2, [], None) and set(m.owners) == {0, 1}
    assert abs(m.owners.count(0) - m.owners.count(1)) <= 1
    assert not (path / "shard-2").exists()
    assert _actor_gone(f"shard-2@{path.resolve()}")
    _check_keyed(c, live)
    _check_keyed(other, live)  # the other front took the smaller map up
    assert len(other.status()["shards"]) == 2
    again = [{**live[k], "type": "fork", "n": -1} for k in sorted(live)[:60]]
    c.ingest(ndjson(again))
    live.update({o["id"]: o for o in again})
    for k in sorted(live)[:5]:
        assert other.delete_key(k)
        del live[k]
    _check_keyed(c, live)
    with pytest.raises(shoal.InvalidArgument):
        c.remove_shards(2)  # at most shards - 1
    spread = open_cluster(2, path=tmp_path / "spread")
    with pytest.raises(shoal.InvalidArgument, match="only a keyed cluster"):
        spread.remove_shards(1)
    c.close(keep_shards=True)
    other.close(keep_shards=True)
    one = open_cluster(1, path=path)  # opening with fewer shards removes the rest
    assert one.map.shards == 1 and set(one.map.owners) == {0}
    assert not (path / "shard-1").exists()
    _check_keyed(one, live)


@pytest.mark.parametrize("cut_at", ["copying", "retiring"])
def test_a_removal_cut_short_is_finished_by_the_next_front(open_cluster, tmp_path, monkeypatch, cut_at):
    """A front that dies while removing a shard (SystemExit while keys are
    copied, or once they moved and before the shard is stopped) leaves the
    map naming it retiring; the next front finishes the removal."""
    from shoal.cluster import growth, mover

    path = tmp_path / "cut-removal"
    c, live = _keyed_cluster(open_cluster, path, 91, 1500, 8 << 10, shards=3)

    def die(*a, **k):
        raise SystemExit("the front died")

    monkeypatch.setattr(mover if cut_at == "copying" else growth.ClusterGrowth,
                        "_copy" if cut_at == "copying" else "_retire", die)
    with pytest.raises(SystemExit):
        c.remove_shards(1)
    monkeypatch.undo()
    c.close(keep_shards=True)
    m = json.loads((path / "cluster.json").read_text())
    assert m["retiring"] == [2]
    again = open_cluster(None, path=path)
    assert (again.map.shards, again.map.retiring, again.map.move) == (2, [], None)
    assert not (path / "shard-2").exists()
    _check_keyed(again, live)


@pytest.mark.slow
@pytest.mark.crash
@pytest.mark.parametrize("addresses", [False, True])
def test_a_call_a_shard_died_in_is_resumed_where_it_stopped(open_cluster, addresses):
    """A shard's process dies halfway through a piece: Ray restarts it, its
    store recovers the records written before, and the front sends the
    call again naming the lost one, so the shard skips the valid records
    it holds (resume.py) and stores the rest: every valid record once, in
    input order, every bad one reported by its input line, and with
    addresses=True each record's address (0 for the bad ones)."""
    def crash_mid_ingest(shard, calls_before: int = 1) -> None:
        """Run in a shard's process (__ray_call__): its ingest call after
        `calls_before` more stores the first half of a piece, writes it out,
        and the process dies (as a SIGKILL mid-ingest would leave it)."""
        import os as _os
        real = shard.store.ingest
        left = [calls_before]

        def crashing(data, **kw):
            if left[0]:
                left[0] -= 1
                return real(data, **kw)
            buf = data if isinstance(data, (bytes, bytearray)) else b"".join(bytes(x) for x in data)
            cut = buf.rfind(b"\n", 0, len(buf) // 2) + 1
            real(buf[:cut], **kw)
            shard.store.flush(durable=False)
            _os._exit(1)

        shard.store.ingest = crashing

    c = open_cluster(1, piece_bytes=4 << 10)
    c.register_psf("type", "type")
    pid = c._get(0, c._call(0, "ping"))["pid"]
    c._ray.get(c._actors[0].__ray_call__.remote(crash_mid_ingest))  # a function defined here travels by value
    objs = make_records(1200, 130)
    lines = [orjson.dumps(o) for o in objs]
    # bad records all through the first calls: before and after where the shard dies
    bad = set(range(3, 300, 7)) | {420, 777, 1100}
    for i in bad:
        lines[i] = b'{"type": "push", "oops": }'
    data = b"\n".join(lines) + b"\n\n"
    r = c.ingest(data, addresses=addresses)
    assert c._get(0, c._call(0, "ping"))["pid"] != pid  # it died, and Ray restarted it
    assert (r.ingested, r.rejected) == (1200 - len(bad), len(bad))
    assert [e.line for e in r.errors] == sorted(i + 1 for i in bad)
    kept = [o["id"] for i, o in enumerate(objs) if i not in bad]
    assert [orjson.loads(x.raw)["id"] for x in c.scan("`true`", order="oldest")] == kept  # each once, in order
    if addresses:
        assert [a == 0 for a in r.addresses] == [i in bad for i in range(1200)]
        assert [orjson.loads(c.get(a).raw)["id"] for a in r.addresses if a] == kept
    log = Log(ndjson([o for i, o in enumerate(objs) if i not in bad]).splitlines())
    for t in TYPES:
        assert c.count("type", t) == len(log.matching("type", t))
