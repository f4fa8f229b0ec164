"""Every script in examples/ runs as a subprocess and prints what an oracle,
computed here from the same data with orjson + jmespath, says it should."""
from __future__ import annotations

import collections
import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import NDJSON_DIR
from datadir import DATA_DIR
from oracle import search, truthy

REPO = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, timeout: float = 120) -> list[str]:
    env = dict(os.environ, SHOAL_SAMPLE_DATA=str(DATA_DIR))
    r = subprocess.run([sys.executable, str(REPO / "examples" / name), *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def records(name: str) -> list[dict]:
    with gzip.open(NDJSON_DIR / f"{name}.ndjson.gz", "rb") as f:
        return [orjson.loads(line) for line in f]


def by_count(counter: collections.Counter) -> list[tuple]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))


def newest_pushes(events: list[dict], n: int) -> list[dict]:
    return [e for e in reversed(events) if e["type"] == "PushEvent"][:n]


def test_quickstart(tmp_path):
    events = records("github_events")
    out = run_example("quickstart.py", str(tmp_path / "store"))
    assert re.fullmatch(rf"ingested {len(events)} records, rejected 0, addresses 64\.\.\d+", out[0])
    shown = [re.sub(r"^  @\d+: ", "", line) for line in out[1:4]]
    assert shown == [f"{e['actor']['login']} pushed to {e['repo']['name']}" for e in newest_pushes(events, 3)]
    pushes = sum(e["type"] == "PushEvent" for e in events)
    to_repo = sum(e["type"] == "PushEvent" and e["repo"]["name"] == "markpiro/muzicbaux" for e in events)
    big = sum(truthy(search("payload.size > `1`", e)) for e in events)
    assert out[4:] == [f"{pushes} push events; {to_repo} of them to markpiro/muzicbaux",
                       f"{big} events with payload.size > 1",
                       f"after reopen: {pushes} push events, PSFs: ['type', 'push', 'repo']"]


def test_http_github():
    events = records("github_events")
    out = run_example("http_github.py")
    assert re.fullmatch(rf"ingested {len(events)} events, rejected 0, addresses 64\.\.\d+", out[0])
    assert out[1] == "newest 3 pushes:"
    shown = [re.sub(r"^  @\d+: ", "", line) for line in out[2:5]]
    assert shown == [f"{e['actor']['login']} -> {e['repo']['name']}" for e in newest_pushes(events, 3)]
    types = collections.Counter(e["type"] for e in events)
    kinds = ("PushEvent", "CreateEvent", "WatchEvent", "IssueCommentEvent", "ForkEvent")
    assert out[5:10] == [f"{k}: {types[k]}" for k in kinds]
    both = sum(e["type"] == "PushEvent" and e["repo"]["name"] == "markpiro/muzicbaux" for e in events)
    assert out[10] == f"pushes to markpiro/muzicbaux: {both}; forks or watches: {types['ForkEvent'] + types['WatchEvent']}"
    big = sum(truthy(search("payload.size > `1`", e)) for e in events)
    assert out[11] == f"events with payload.size > 1 (scan): {big}"
    assert out[12] == f"first event: {events[0]['type']} by {events[0]['actor']['login']}"
    assert out[13] == f"server holds {len(events)} records; checkpoint 1"
    assert len(out) == 14


def test_zeek_explorer(tmp_path):
    zeek = records("zeek_wrccdc2018")
    out = run_example("zeek_explorer.py", str(tmp_path / "store"), "--top", "8")
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
    again = run_example("zeek_explorer.py", str(tmp_path / "store"), "--top", "8")
    assert again == out[1:]


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "examples").glob("*.py")
                                           if not p.name.startswith("_")))  # _data.py is a helper
def test_every_example_is_tested(script):
    assert f'"{script}"' in Path(__file__).read_text()
