"""Every script in examples/ runs as a subprocess and prints what an oracle,
computed here from the same data with orjson + jmespath, says it should: by
default the records the scripts generate (shoal.sample, the same n and
seed), and a file given on their command line."""
from __future__ import annotations

import collections
import gzip
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from oracle import search, truthy

from shoal import sample

REPO = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, timeout: float = 300) -> list[str]:
    r = subprocess.run([sys.executable, str(REPO / "examples" / name), *args], cwd=REPO,
                       capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def records(ndjson: bytes) -> list[dict]:
    return [orjson.loads(line) for line in ndjson.split(b"\n") if line]


def example_default(script: str, name: str) -> int:
    """How many records a script generates when given no file (its GENERATED)."""
    return int(re.search(rf"^{name} = ([\d_]+)$", (REPO / "examples" / script).read_text(), re.M).group(1))


def by_count(counter: collections.Counter) -> list[tuple]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))


def newest_pushes(events: list[dict], n: int) -> list[dict]:
    return [e for e in reversed(events) if e["type"] == "PushEvent"][:n]


@pytest.mark.parametrize("given", [False, True], ids=["generated", "file"])
def test_quickstart(tmp_path, given):
    if given:  # a file of other events (a pretty-printed JSON array, gzipped), not the generated ones
        events = records(sample.github_events(3000, seed=5))
        path = tmp_path / "events.json.gz"
        path.write_bytes(gzip.compress(orjson.dumps(events, option=orjson.OPT_INDENT_2)))
        out = run_example("quickstart.py", str(tmp_path / "store"), "--events", str(path))
    else:
        events = records(sample.github_events(example_default("quickstart.py", "GENERATED")))
        out = run_example("quickstart.py", str(tmp_path / "store"))
    assert re.fullmatch(rf"ingested {len(events)} records, rejected 0, addresses 64\.\.\d+", out[0])
    shown = [re.sub(r"^  @\d+: ", "", line) for line in out[1:4]]
    newest = newest_pushes(events, 3)
    assert shown == [f"{e['actor']['login']} pushed to {e['repo']['name']}" for e in newest]
    repo = newest[0]["repo"]["name"]
    pushes = sum(e["type"] == "PushEvent" for e in events)
    to_repo = sum(e["type"] == "PushEvent" and e["repo"]["name"] == repo for e in events)
    big = sum(truthy(search("payload.size > `1`", e)) for e in events)
    assert out[4:] == [f"{pushes} push events; {to_repo} of them to {repo}",
                       f"{big} events with payload.size > 1",
                       f"after reopen: {pushes} push events, PSFs: ['type', 'push', 'repo']"]


def test_http_github():
    events = records(sample.github_events(example_default("http_github.py", "GENERATED")))
    out = run_example("http_github.py")
    assert re.fullmatch(rf"ingested {len(events)} events, rejected 0, addresses 64\.\.\d+", out[0])
    assert out[1] == "newest 3 pushes:"
    shown = [re.sub(r"^  @\d+: ", "", line) for line in out[2:5]]
    assert shown == [f"{e['actor']['login']} -> {e['repo']['name']}" for e in newest_pushes(events, 3)]
    types = collections.Counter(e["type"] for e in events)
    kinds = ("PushEvent", "CreateEvent", "WatchEvent", "IssueCommentEvent", "ForkEvent")
    assert out[5:10] == [f"{k}: {types[k]}" for k in kinds]
    repo = newest_pushes(events, 1)[0]["repo"]["name"]
    both = sum(e["type"] == "PushEvent" and e["repo"]["name"] == repo for e in events)
    assert out[10] == f"pushes to {repo}: {both}; forks or watches: {types['ForkEvent'] + types['WatchEvent']}"
    big = sum(truthy(search("payload.size > `1`", e)) for e in events)
    assert out[11] == f"events with payload.size > 1 (scan): {big}"
    assert out[12] == f"first event: {events[0]['type']} by {events[0]['actor']['login']}"
    assert out[13] == f"server holds {len(events)} records; checkpoint 1"
    assert len(out) == 14


@pytest.mark.parametrize("given", [False, True], ids=["generated", "file"])
def test_zeek_explorer(tmp_path, given):
    if given:  # a file of other records (another seed, plain NDJSON) instead of the generated ones
        data = sample.zeek_logs(20_000, seed=4)
        (tmp_path / "zeek.ndjson").write_bytes(data)
        args = ["--zeek", str(tmp_path / "zeek.ndjson")]
    else:
        data = sample.zeek_logs(example_default("zeek_explorer.py", "GENERATED"))
        args = []
    zeek = records(data)
    out = run_example("zeek_explorer.py", str(tmp_path / "store"), "--top", "8", *args)
    assert re.fullmatch(rf"ingested {len(zeek):,} Zeek records in [\d.]+ s", out[0])
    kinds = collections.Counter(r["_path"] for r in zeek)
    expected = [f"{len(kinds)} log kinds (_path), {len(zeek):,} records:"]
    expected += [f"  {n:>8,}  {k}" for k, n in by_count(kinds)]

    names = collections.Counter(r["query"] for r in zeek
                                if r["_path"] == "dns" and isinstance(r.get("query"), str))
    nx = collections.Counter(r.get("query") for r in zeek if r.get("rcode_name") == "NXDOMAIN")
    expected.append(f"top 8 DNS queries ({len(names):,} distinct names), with NXDOMAIN answers:")
    expected += [f"  {n:>8,}  {nx[q]:>6,}  {orjson.dumps(q).decode()}" for q, n in by_count(names)[:8]]

    for port in (53, 443):
        hits = [r for r in zeek if r.get("id.resp_p") == port]
        by_log = collections.Counter(r["_path"] for r in hits)
        hosts = collections.Counter(r.get("id.resp_h") for r in hits)
        expected.append(f"port {port}: {len(hits):,} records; by log: "
                        + ", ".join(f"{k} {n:,}" for k, n in by_count(by_log)))
        expected.append("  top responders: " + ", ".join(f"{h} {n:,}" for h, n in by_count(hosts)[:3]))
    assert out[1:] == expected

    # A second run explores the existing store without ingesting again.
    again = run_example("zeek_explorer.py", str(tmp_path / "store"), "--top", "8", *args)
    assert again == out[1:]


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "examples").glob("*.py")))
def test_every_example_is_tested(script):
    assert f'"{script}"' in Path(__file__).read_text()


def test_examples_need_no_files_beside_the_repository():
    for script in (REPO / "examples").glob("*.py"):
        text = script.read_text()
        assert "shared" not in text and "/work" not in text and "SAMPLE_DATA" not in text, script.name
