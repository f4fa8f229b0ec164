"""Every benchmark script runs at its smallest size, so none of them rots.

Each runs in its own process (as `make bench` runs it) with --quick and one
round, writes its JSON where we ask, and reports its targets. The figures
are not checked: at these sizes they mean nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datadir import DATA_DIR

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

# script -> extra arguments making it smaller than --quick where it can be
SCRIPTS = {
    "access.py": ["--requests", "5"],
    "ingest.py": ["--records", "2000", "--datasets", "events,zeek,github,twitter"],
    "ingest_threads.py": ["--datasets", "events,zeek", "--threads", "1,2", "--no-sqlite"],
    "http_ingest.py": ["--records", "2000"],
    "es_bulk.py": ["--records", "1000"],
    "durable.py": ["--records", "2000"],
    "query.py": ["--records", "5000"],
    "counts.py": ["--records", "1500", "--reps", "3"],
    "ranges.py": ["--records", "3000", "--reps", "2"],
    "walks.py": ["--reps", "2"],
    "space.py": ["--records", "1500"],
    "tail.py": ["--seconds", "1", "--rate", "2000"],
    "recovery.py": ["--sizes-mb", "0.5,1"],
    "memory.py": ["--budget-mb", "2"],
    "json_parse.py": [],
    "ingest_zeek.py": ["--no-sqlite"],
    "compaction.py": ["--records", "3000"],
    "compression.py": ["--records", "3000", "--reps", "2"],
    "keys.py": ["--records", "3000"],
    "cluster.py": ["--records", "2000"],
    "load.py": ["--records", "4000", "--seconds", "5", "--templates", "2000"],
}

pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    """The script in its own process, given the real data when the tests have
    it (the parts measured on it say they are skipped otherwise)."""
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_DATA"}
    if DATA_DIR is not None:
        env["SHOAL_DATA"] = str(DATA_DIR)
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_script_is_covered():
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts - {"gen_events.py", "suite.py"} == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs(script, tmp_path):
    out = tmp_path / "result.json"
    p = run(script, "--quick", "--runs", "1", "--out", str(out), *SCRIPTS[script])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["git_sha"] and result["machine"]["cpus"]
    for t in result["targets"]:
        assert {"target", "required", "measured", "ratio", "pass"} <= set(t)
        assert ("PASS" if t["pass"] else "MISS") in p.stdout


def test_suite_collects_targets(tmp_path):
    p = run("suite.py", "--quick", "--runs", "1", "--only", "memory")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "=== targets" in p.stdout and "peak RSS ingesting 10x the memory budget" in p.stdout


def test_generator_is_seeded_and_counts_match(tmp_path):
    out = tmp_path / "events.ndjson"
    p = subprocess.run([sys.executable, str(BENCH / "gen_events.py"), "-n", "3000", "--seed", "7", "-o", str(out),
                        "--counts"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    again = subprocess.run([sys.executable, str(BENCH / "gen_events.py"), "-n", "3000", "--seed", "7"],
                           capture_output=True, timeout=120).stdout
    data = out.read_bytes()
    assert data == again
    import orjson
    records = [orjson.loads(line) for line in data.splitlines()]
    assert len(records) == 3000 and len({r["id"] for r in records}) == 3000
    counts = json.loads(out.with_suffix(".counts.json").read_text())
    for key, get in (("type", lambda r: r["type"]), ("repo.name", lambda r: r["repo"]["name"]),
                     ("actor.login", lambda r: r["actor"]["login"])):
        seen: dict[str, int] = {}
        for r in records:
            seen[get(r)] = seen.get(get(r), 0) + 1
        assert seen == counts[key]
    assert 0.4 < counts["type"]["PushEvent"] / 3000 < 0.6
    assert 800 < len(data) / 3000 < 1300
    assert b"\\u" in data and "ü".encode() in data and b'\\"' in data
