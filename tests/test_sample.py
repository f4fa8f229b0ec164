"""shoal.sample: every generator's output depends only on (n, seed), is
pinned byte for byte for small n, and has the shapes its docstring promises
(the tests that ingest generated records rely on them)."""
from __future__ import annotations

import collections
import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from shoal import sample

REPO = Path(__file__).resolve().parents[1]
GENERATORS = {**sample.KINDS, "jenkins_jobs": sample.jenkins_jobs, "statuses": sample.statuses}
# sha256 of GENERATORS[kind](n, seed=1). github_events is the benchmarks' workload:
# its hash was taken from benchmarks/gen_events.py before the generator moved
# to shoal.sample, and must never change (cached data and recorded figures).
PINNED = {
    "github_events": (1000, "66d8307c8bebf00f80d1e8b8b34ff940959520a2f8e0f456e0f3081eece845e4"),
    "zeek_logs": (3000, "45fac1430d3ad44281e89e637e48ac7907c179a6cd2d83059b86e3f4ea729fd7"),
    "jenkins_jobs": (900, "86ac16827c1f3f88c647bea8238f4fd4130ffffa26aa9887e216a67365b5b3b7"),
    "statuses": (300, "78f0e0e874b919e36807c2bda0b1c984dced4d5eb779efadef88ed418b7dee98"),
}


def records(data: bytes) -> list[dict]:
    assert data.endswith(b"\n") and not data.endswith(b"\n\n")
    return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


def test_every_kind_is_pinned():
    assert set(PINNED) == set(GENERATORS) and set(sample.KINDS) == {"github_events", "zeek_logs"}
    assert sorted(sample.__all__) == sample.__all__


@pytest.mark.parametrize("kind", sorted(PINNED))
def test_the_same_arguments_give_the_same_bytes(kind):
    n, digest = PINNED[kind]
    data = GENERATORS[kind](n)
    assert hashlib.sha256(data).hexdigest() == digest
    assert GENERATORS[kind](n, seed=1) == data
    assert GENERATORS[kind](n, seed=2) != data
    assert len(records(data)) == n and all(isinstance(r, dict) for r in records(data))
    assert GENERATORS[kind](0) == b""


def test_the_benchmark_script_writes_github_events(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gen_events.py"), "-n", "1000"],
                       capture_output=True, check=True)
    assert p.stdout == sample.github_events(1000)


def test_github_value_counts_count_the_records():
    recs = records(sample.github_events(3000, seed=5))
    counts = sample.github_value_counts(3000, seed=5)
    assert counts["type"] == collections.Counter(r["type"] for r in recs)
    assert counts["repo.name"] == collections.Counter(r["repo"]["name"] for r in recs)
    assert counts["actor.login"] == collections.Counter(r["actor"]["login"] for r in recs)
    top_repo = counts["repo.name"].most_common(1)[0][1]
    assert 0.3 < top_repo / 3000 < 0.5 and min(counts["repo.name"].values()) == 1


def test_zeek_streams_are_prefixes_of_longer_ones():
    long = sample.zeek_logs(2500, seed=3).split(b"\n")
    for k in (1, 1023, 1024, 1025, 2048):
        assert sample.zeek_logs(k, seed=3).split(b"\n")[:-1] == long[:k]


def test_zeek_shapes():
    recs = records(sample.zeek_logs(30_000))
    paths = collections.Counter(r["_path"] for r in recs)
    assert paths.most_common(4) == sorted(paths.items(), key=lambda kv: -kv[1])[:4]
    assert [p for p, _ in paths.most_common(4)] == ["dns", "ssl", "weird", "analyzer"]
    assert len(paths) >= 25 and min(paths.values()) <= 5, paths  # rare kinds exist
    assert all(not isinstance(v, dict) for r in recs for v in r.values()), "flat objects"
    stamps = [r["_write_ts"] for r in recs]
    assert stamps == sorted(stamps) and all(r["ts"] <= r["_write_ts"] for r in recs)
    conns = [r for r in recs if "uid" in r]
    assert len(conns) > 0.9 * len(recs)
    assert all(isinstance(r["id.resp_p"], int) and isinstance(r["id.orig_h"], str) for r in conns)
    uids = collections.Counter(r["uid"] for r in conns)
    assert 1.5 < len(conns) / len(uids) < 2.5 and max(uids.values()) > 5
    ports = collections.Counter(r["id.resp_p"] for r in conns)
    assert ports.most_common(1)[0][0] in (53, 443) and sum(n for p, n in ports.items() if p > 60000) >= 3

    dns = [r for r in recs if r["_path"] == "dns"]
    queries = collections.Counter(r.get("query", "<absent>") for r in dns)
    assert len(queries) > 500 and queries.most_common(1)[0][1] > 0.2 * len(dns)
    assert queries["<absent>"] > 0 and queries[None] > 0
    nx = collections.Counter(r.get("query") for r in dns if r.get("rcode_name") == "NXDOMAIN")
    assert len(nx) > 20 and any(nx[q] > 0 for q, _ in queries.most_common(8))
    answered = [r for r in dns if "answers" in r]
    assert answered and all(len(r["answers"]) == len(r["TTLs"]) for r in answered)
    assert any(len(r["answers"]) > 1 for r in answered) and any(r["RD"] and not r["RA"] for r in dns)
    assert all(isinstance(r["rtt"], float) for r in dns if "rtt" in r)
    ssl = [r for r in recs if r["_path"] == "ssl"]
    named = [r for r in ssl if "server_name" in r]
    assert 0.2 < len(named) / len(ssl) < 0.5 and len({r["server_name"] for r in named}) > 10


def test_jenkins_jobs_shapes():
    recs = records(sample.jenkins_jobs(2000))
    assert len({r["name"] for r in recs}) == 2000
    assert all(list(r) == ["name", "url", "color"] and r["url"].endswith(f"/job/{r['name']}/") for r in recs)
    colors = collections.Counter(r["color"] for r in recs)
    assert colors.most_common(2)[0][0] == "blue" and 5 <= len(colors) <= 10
    assert any("trunk" in r["name"] for r in recs) and any("hadoop" in r["name"] for r in recs)


def test_statuses_shapes():
    data = sample.statuses(500)
    recs = records(data)
    assert all(r["id"] > 2**53 and r["id_str"] == str(r["id"]) for r in recs)
    assert sum(r["lang"] == "ja" for r in recs) > len(recs) / 2
    assert max(data) >= 0x80 and b"\\n" in data and b'\\"' in data and b"\\\\" in data
    retweets = [r for r in recs if "retweeted_status" in r]
    assert 0.2 < len(retweets) / len(recs) < 0.4
    assert all(r["text"].startswith(f"RT @{r['retweeted_status']['user']['screen_name']}: ") for r in retweets)
    for r in recs:
        ents = r["entities"]
        for e in ents["hashtags"]:
            assert r["text"][e["indices"][0]:e["indices"][1]] == "#" + e["text"]
        for e in ents["user_mentions"]:
            assert r["text"][e["indices"][0]:e["indices"][1]] == "@" + e["screen_name"]
        for e in ents["urls"]:
            assert r["text"][e["indices"][0]:e["indices"][1]] == e["url"]
    assert any(r["entities"]["hashtags"] for r in recs) and any(r["entities"]["urls"] for r in recs)


@pytest.mark.parametrize("name", ["events.ndjson", "events.ndjson.gz"])
def test_write(tmp_path, name):
    path = sample.write("zeek_logs", 700, tmp_path / name, seed=4)
    assert path == tmp_path / name and [p.name for p in tmp_path.iterdir()] == [name]
    data = path.read_bytes()
    if name.endswith(".gz"):
        assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0"  # mtime 0
        data = gzip.decompress(data)
    assert data == sample.zeek_logs(700, seed=4)
    again = sample.write("zeek_logs", 700, str(tmp_path / "again"), seed=4)
    assert again.read_bytes() == sample.zeek_logs(700, seed=4)
    for kind in ("nope", "statuses"):
        with pytest.raises(ValueError, match=f"unknown sample kind '{kind}'"):
            sample.write(kind, 1, tmp_path / "x")
