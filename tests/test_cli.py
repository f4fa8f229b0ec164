"""The `shoal` command. Most tests call `shoal.cli.main(argv)` in-process on a
data directory and compare what it prints with tests/oracle.py over the same
real data; the end-to-end tests run `shoal serve` as a real process and the
same commands with `--url`, and check a closed pipe and the console script.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jmespath
import orjson
import pytest
from api.conftest import pairs
from serverproc import ServerProcess, free_port
from datadir import real_path
from oracle import Log, python_value

import shoal
from shoal.cli import main, progress
from shoal.config import KiB

REPO = Path(__file__).resolve().parents[1]
PSFS = [("type", "type"), ("repo", "repo.name"), ("size", "payload.size"), ("push", "type == 'PushEvent'"),
        ("lang", "lang"), ("color", "color"), ("hadoop", "contains(name, 'hadoop')")]
# (psf, VALUE as typed, the value it means, options)
QUERIES = [("type", "PushEvent", "PushEvent", []), ("type", '"WatchEvent"', "WatchEvent", ["--order", "oldest"]),
           ("repo", "torvalds/linux", "torvalds/linux", []), ("size", "1", 1, ["--limit", "4"]),
           ("push", None, True, ["--limit", "5", "--order", "oldest"]), ("lang", "zh", "zh", []),
           ("color", "blue", "blue", ["--limit", "100"]), ("color", "red_anime", "red_anime", ["--order", "oldest"]),
           ("hadoop", "true", True, []), ("type", "NoSuchEvent", "NoSuchEvent", []), ("color", "blue", "blue", ["--limit", "0"])]
SCANS = [("color == 'yellow'", []), ("payload.size > `1`", ["--order", "oldest"]),
         ("length(entities.hashtags) > `0`", ["--limit", "7"])]


@pytest.fixture(autouse=True)
def no_location_from_the_environment(monkeypatch):
    monkeypatch.delenv("SHOAL_URL", raising=False)
    monkeypatch.delenv("SHOAL_DATA", raising=False)


class Run:
    def __init__(self, code: int, out: bytes, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Run(code={self.code}, out={self.out[:200]!r}, err={self.err!r})"


@pytest.fixture
def shoal_cli(capsysbinary, monkeypatch):
    """shoal_cli(*argv, stdin=bytes) -> Run(code, stdout bytes, stderr text)."""
    def run(*argv: str | os.PathLike, stdin: bytes | None = None) -> Run:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main([str(a) for a in argv])
        out, err = capsysbinary.readouterr()
        return Run(code, out, err.decode())
    return run


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


class Inputs:
    """Generated input files (gzip NDJSON unless named otherwise) and their records."""

    def __init__(self, directory: Path, generated):
        def put(name: str, data: bytes) -> Path:
            (directory / name).write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
            return directory / name

        def ndjson(records) -> bytes:
            return b"".join(r + b"\n" for r in records)

        self.github_records = generated("github_events", 30)
        self.statuses_records = generated("statuses", 100)
        self.jobs_records = generated("jenkins_jobs", 875)
        self.github = put("github_events.ndjson.gz", ndjson(self.github_records))
        self.statuses = put("statuses.ndjson.gz", ndjson(self.statuses_records))
        self.jobs = put("jenkins_jobs.ndjson.gz", ndjson(self.jobs_records))
        self.zeek = put("zeek_logs.ndjson.gz", ndjson(generated("zeek_logs", 20_000)))
        # A pretty-printed array of the events and one whole document, as APIs answer.
        self.events_array = put("github_events.json.gz", json.dumps(
            [orjson.loads(r) for r in self.github_records], indent=2, ensure_ascii=False).encode())
        self.document = put("search.json.gz", json.dumps(
            {"statuses": [orjson.loads(r) for r in self.statuses_records[:20]],
             "search_metadata": {"count": 20, "query": "%E5%A4%A9%E6%B0%97"}}, indent=1, ensure_ascii=False).encode())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, generated) -> Inputs:
    return Inputs(tmp_path_factory.mktemp("inputs"), generated)


class Loaded:
    def __init__(self, path: Path, log: Log):
        self.path, self.log = path, log


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, inputs) -> Loaded:
    """A data directory with PSFs and three generated data sets ingested
    through the CLI, and the oracle's Log of the same records (bound to
    addresses). Shared by the tests of this module: they only read it."""
    path = tmp_path_factory.mktemp("cli") / "data"
    for name, expr in PSFS[:-1]:
        assert main(["psf", "add", name, expr, "--data", str(path)]) == 0
    assert main(["ingest", str(inputs.github), str(inputs.statuses), str(inputs.jobs), "--data", str(path)]) == 0
    # A PSF registered after ingest: its answers come from scanning, complete all the same.
    assert main(["psf", "add", *PSFS[-1], "--data", str(path)]) == 0
    log = Log(inputs.github_records + inputs.statuses_records + inputs.jobs_records)
    with shoal.open(path) as store:
        log.bind(store)
    return Loaded(path, log)


def options(extra: list[str]) -> dict:
    kw = {}
    for flag, key, conv in (("--limit", "limit", int), ("--order", "order", str)):
        if flag in extra:
            kw[key] = conv(extra[extra.index(flag) + 1])
    return kw


def expressions() -> dict[str, str]:
    return dict(PSFS)


# ---- help and the console script ----

COMMANDS = [["serve"], ["ingest"], ["psf"], ["psf", "add"], ["psf", "ls"], ["psf", "rm"], ["query"], ["scan"],
            ["get"], ["checkpoint"], ["compact"], ["stats"], ["sample"]]


def test_help_for_every_command(shoal_cli):
    r = shoal_cli("--help")
    assert r.code == 0
    for cmd in COMMANDS:
        if len(cmd) == 1:
            assert cmd[0].encode() in r.out
        assert shoal_cli(*cmd, "--help").code == 0, cmd
    assert shoal_cli("--version").out.decode().startswith("shoal ")
    assert shoal_cli().code == 2  # a command is required
    assert shoal_cli("query", "type", "--limit", "-1").code == 2


def test_console_script_is_installed(tmp_path):
    exe = Path(sys.executable).parent / "shoal"
    assert exe.exists(), "pip install -e . creates the `shoal` console script"
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_URL", "SHOAL_DATA")}
    r = subprocess.run([exe, "--help"], check=False, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "ingest" in r.stdout
    r = subprocess.run([exe, "stats"], check=False, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 1 and "shoal: error: no store in ./shoal-data" in r.stderr
    assert not (tmp_path / "shoal-data").exists(), "a read command does not create a store"


# ---- queries and scans against the oracle ----

@pytest.mark.parametrize("psf, typed, value, extra", QUERIES)
def test_query_matches_oracle(shoal_cli, loaded, psf, typed, value, extra):
    args = ["query", psf] + ([typed] if typed is not None else []) + extra
    r = shoal_cli(*args, "--with-address", "--data", loaded.path)
    assert r.code == 0 and r.err == "", r
    expected = loaded.log.query(expressions()[psf], value, **options(extra))
    assert pairs(r.out) == expected
    plain = shoal_cli(*args, "--data", loaded.path)
    assert plain.out == b"".join(raw + b"\n" for _, raw in expected), "records are written as stored"


@pytest.mark.parametrize("expression, extra", SCANS)
def test_scan_matches_oracle(shoal_cli, loaded, expression, extra):
    r = shoal_cli("scan", expression, *extra, "--with-address", "--data", loaded.path)
    assert r.code == 0, r
    assert pairs(r.out) == loaded.log.scan(expression, **options(extra))


def test_get(shoal_cli, loaded):
    address, raw = loaded.log.addresses[5], loaded.log.raws[5]
    assert shoal_cli("get", address, "--data", loaded.path).out == raw + b"\n"
    assert pairs(shoal_cli("get", hex(address), "--with-address", "--data", loaded.path).out) == [(address, raw)]
    r = shoal_cli("get", address + 1, "--data", loaded.path)
    assert r.code == 1 and r.out == b"" and f"no record at address {address + 1}" in r.err


# ---- ingest ----

def test_ingest_summary_lists_files_and_addresses(shoal_cli, data_dir, inputs):
    r = shoal_cli("ingest", inputs.github, inputs.jobs, "--data", data_dir)
    assert r.code == 0
    lines = r.err.splitlines()
    assert lines[0].startswith(f"{inputs.github}: 30 ingested, 0 rejected, addresses 64..")
    assert lines[1].startswith(f"{inputs.jobs}: 875 ingested, 0 rejected, addresses ")
    assert lines[2] == "total: 905 ingested, 0 rejected"
    with shoal.open(data_dir) as store:
        log = Log(inputs.github_records + inputs.jobs_records)
        log.bind(store)
    assert f"addresses 64..{log.addresses[29]}" in lines[0]
    assert lines[1].endswith(f"addresses {log.addresses[30]}..{log.addresses[-1]}")


@pytest.mark.parametrize("source", ["generated", "real"])
def test_ingest_array_and_whole_document(shoal_cli, data_dir, inputs, source):
    # A pretty-printed array (detected) and one whole document (--format json):
    # generated ones, and the GitHub and Twitter API answers (real-data tier).
    array, whole = ((inputs.events_array, inputs.document) if source == "generated" else
                    (real_path("simdjson", "github_events.json.gz"), real_path("simdjson", "twitter.json.gz")))
    assert shoal_cli("ingest", array, "--data", data_dir).code == 0
    r = shoal_cli("ingest", whole, "--format", "json", "--data", data_dir)
    assert r.code == 0 and "1 ingested" in r.err
    out = shoal_cli("scan", "`true`", "--order", "oldest", "--data", data_dir).out
    lines = out.split(b"\n")[:-1]
    events = orjson.loads(gzip.decompress(array.read_bytes()))
    document = orjson.loads(gzip.decompress(whole.read_bytes()))
    assert [orjson.loads(x) for x in lines] == events + [document], "one record per line, line breaks as spaces"
    address = pairs(shoal_cli("scan", "search_metadata", "--with-address", "--data", data_dir).out)[0][0]
    with shoal.open(data_dir) as store:
        exact = store.get(address).raw
    assert b"\n" in exact and shoal_cli("get", address, "--data", data_dir).out == exact + b"\n", "get: exact bytes"


def test_ingest_stdin_plain_and_gzip(shoal_cli, data_dir, inputs):
    plain = b"".join(x + b"\n" for x in inputs.github_records)
    assert shoal_cli("ingest", "-", "--data", data_dir, stdin=plain).err.startswith("<stdin>: 30 ingested")
    r = shoal_cli("ingest", "--data", data_dir, "-", stdin=gzip.compress(plain))
    assert r.code == 0 and "<stdin>: 30 ingested" in r.err
    assert shoal_cli("scan", "`true`", "--data", data_dir).out.count(b"\n") == 60
    assert shoal_cli("ingest", "-", "-", "--data", data_dir).code == 1


def test_ingest_bad_records_skip_and_reject(shoal_cli, data_dir, tmp_path):
    good = b'{"a":1}\n'
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(good + b"{oops\n" + good + b"[1,\n" * 7)
    r = shoal_cli("ingest", bad, "--data", data_dir)
    assert r.code == 3, "records were stored, bad ones skipped and listed: a partial success"
    lines = r.err.splitlines()
    assert lines[0].startswith(f"{bad}: 2 ingested, 8 rejected, addresses ")
    assert lines[1].startswith(f"  {bad}:2: invalid JSON")
    assert lines[2].startswith(f"  {bad}:4: ")
    assert lines[6] == "  ... and 3 more"

    only_bad = tmp_path / "only_bad.ndjson"
    only_bad.write_bytes(b"nope\n{\n")
    r = shoal_cli("ingest", only_bad, "--data", data_dir)
    assert r.code == 1 and f"{only_bad}: 0 ingested, 2 rejected" in r.err

    ok = tmp_path / "ok.ndjson"
    ok.write_bytes(good * 3)
    r = shoal_cli("ingest", ok, bad, ok, "--on-error", "reject", "--data", data_dir)
    assert r.code == 1
    assert f"{ok}: 3 ingested" in r.err
    assert f"{bad}: refused: 8 bad record(s), nothing stored" in r.err
    assert f"  {bad}:2: invalid JSON" in r.err
    assert f"shoal: stopped; not read: {ok}" in r.err
    stats = json.loads(shoal_cli("stats", "--json", "--data", data_dir).out)
    assert stats["records"] == 2 + 3


def test_ingest_errors(shoal_cli, data_dir, tmp_path):
    r = shoal_cli("ingest", tmp_path / "missing.ndjson", "--data", data_dir)
    assert r.code == 1 and "no such file" in r.err
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(gzip.compress(b'{"a":1}\n' * 1000)[:-30] + b"\0" * 10)
    r = shoal_cli("ingest", corrupt, "--data", data_dir)
    assert r.code == 1 and "shoal: error: " in r.err and f"while ingesting {corrupt}" in r.err


def test_ingest_page_size_and_records_too_large(shoal_cli, tmp_path):
    """A record over the limit is listed with its size and the limit, and
    the summary says how to store it: --page-size, which applies when
    ingest creates the store; a store with another page size is an error."""
    big = b'{"x":"' + b"y" * (20 * KiB) + b'"}'
    src = tmp_path / "big.ndjson"
    src.write_bytes(b'{"a":1}\n' + big + b"\n")
    small, large = tmp_path / "small", tmp_path / "large"
    r = shoal_cli("ingest", src, "--page-size", "16KiB", "--data", small)
    assert r.code == 3, r
    assert f"{src}:2: record too large: {len(big):,} bytes, over the 16,352 bytes that fit in one 16 KiB log page" \
        in r.err
    assert "a record must fit in one log page (this store's pages are 16 KiB)" in r.err
    assert "shoal ingest --page-size 64MiB --data NEW_DIR FILE" in r.err
    r = shoal_cli("ingest", src, "--page-size", "64KiB", "--data", large)
    assert r.code == 0 and "2 ingested, 0 rejected" in r.err and "record too large" not in r.err
    with shoal.open(large) as store:
        assert store.config.page_size_bytes == 64 * KiB
        assert [rec.raw for rec in store.scan("`true`", order="oldest")] == [b'{"a":1}', big]
    r = shoal_cli("ingest", src, "--page-size", "64KiB", "--data", small)  # not the page size it was made with
    assert r.code == 1 and r.err == (f"shoal: error: --page-size 64KiB: {small} holds a store whose pages are 16 KiB, "
                                     f"and a store's page size is fixed when it is created; use a new data "
                                     f"directory (--data) for larger pages, or leave --page-size out\n")
    assert shoal_cli("ingest", src, "--page-size", "16KiB", "--data", small).code == 3  # the same: fine
    with shoal.open(small) as store:
        assert store.stats()["records"] == 2  # the refused run stored nothing
    r = shoal_cli("ingest", src, "--page-size", "16KiB", "--url", "http://127.0.0.1:1")
    assert r.code == 1 and "--page-size applies when `shoal ingest` creates a store" in r.err
    for bad in ("3KiB", "5000", "2GiB"):
        r = shoal_cli("ingest", src, "--page-size", bad, "--data", tmp_path / bad)
        assert r.code == 1 and "page_size_bytes must be a power of two between 4 KiB and 1 GiB" in r.err, bad
    r = shoal_cli("ingest", src, "--page-size", "256MiB", "--data", tmp_path / "huge")  # memory and segments follow
    assert r.code == 0 and shoal_cli("stats", "--data", tmp_path / "huge").code == 0


def test_progress_line_on_a_terminal(shoal_cli, data_dir, monkeypatch, inputs):
    monkeypatch.setattr(progress, "stderr_is_tty", lambda: True)
    monkeypatch.setattr(progress, "DRAW_INTERVAL_S", 0.0)
    r = shoal_cli("ingest", inputs.jobs, "--data", data_dir)
    assert r.code == 0
    drawn = r.err.split("\r")
    assert any("jenkins_jobs.ndjson.gz  100%" in d and "875 records" in d and "records/s" in d
               for d in drawn), r.err
    assert drawn[-1].startswith(f"{inputs.jobs}: 875 ingested, 0 rejected"), "the line is cleared before the summary"
    r = shoal_cli("ingest", "-", "--data", data_dir, stdin=b"".join(x + b"\n" for x in inputs.github_records))
    assert "<stdin>" in r.err and "30 records" in r.err and "%" not in r.err
    r = shoal_cli("ingest", inputs.events_array, "--data", data_dir)
    assert "MB/s" in r.err and "records/s" not in r.err, "lines of an array are not records"
    assert "30 ingested" in r.err
    with shoal.open(data_dir) as store:
        log = Log(inputs.jobs_records + inputs.github_records)
        assert len(list(store.scan("`true`"))) == 875 + 60
        assert [r.raw for r in store.scan("`true`", order="oldest")][:905] == log.raws


def test_quiet_when_piped(shoal_cli, data_dir, inputs):
    r = shoal_cli("ingest", inputs.jobs, "--data", data_dir)
    assert "\r" not in r.err and r.err.count("\n") == 1


# ---- PSFs ----

def test_psf_add_ls_rm(shoal_cli, data_dir, inputs):
    r = shoal_cli("psf", "add", "type", "type", "--data", data_dir)
    assert r.code == 0 and r.out.decode() == "registered PSF type (id 0, projection, native): type\n"
    assert shoal_cli("psf", "add", "big", "length(payload.commits) > `1`", "--data", data_dir).code == 0
    assert shoal_cli("ingest", inputs.github, "--data", data_dir).code == 0
    assert shoal_cli("psf", "rm", "type", "--data", data_dir).out == b"deregistered PSF type\n"
    table = shoal_cli("psf", "ls", "--data", data_dir).out.decode().splitlines()
    assert table[0].split() == ["NAME", "ID", "KIND", "STATUS", "EVAL", "DEFINITION", "ACTIVE", "RANGES"]
    assert table[1].split()[:5] == ["type", "0", "projection", "inactive", "native"]
    assert table[2].split()[:5] == ["big", "1", "predicate", "active", "python"]
    listed = json.loads(shoal_cli("psf", "ls", "--json", "--data", data_dir).out)
    with shoal.open(data_dir) as store:
        tail = store.tail_address
    assert listed == [
        {"name": "type", "id": 0, "kind": "projection", "active": False, "eval": "native", "definition": "type",
         "ranges": [[64, tail]]},
        {"name": "big", "id": 1, "kind": "predicate", "active": True, "eval": "python",
         "definition": "length(payload.commits) > `1`", "ranges": [[64, None]]}]
    assert shoal_cli("psf", "rm", "big", "--data", data_dir).code == 0
    assert shoal_cli("psf", "ls", "--data", data_dir).code == 0


def test_psf_errors(shoal_cli, data_dir):
    assert shoal_cli("psf", "add", "type", "type", "--data", data_dir).code == 0
    r = shoal_cli("psf", "add", "type", "repo.name", "--data", data_dir)
    assert r.code == 1 and r.err.startswith("shoal: error: ") and "type" in r.err
    r = shoal_cli("psf", "add", "broken", "a ==", "--data", data_dir)
    assert r.code == 1 and r.err.startswith("shoal: error: invalid JMESPath expression at position 4")
    r = shoal_cli("psf", "rm", "nope", "--data", data_dir)
    assert r.code == 1 and "PSF named 'nope'" in r.err
    r = shoal_cli("query", "nope", "x", "--data", data_dir)
    assert r.code == 1 and r.err == "shoal: error: no PSF named 'nope'\n" and r.out == b""
    r = shoal_cli("scan", "a ==", "--data", data_dir)
    assert r.code == 1 and "invalid JMESPath expression" in r.err


def test_psf_add_exist_ok_and_replace(shoal_cli, data_dir, inputs):
    assert shoal_cli("psf", "add", "type", "type", "--data", data_dir).code == 0
    r = shoal_cli("psf", "add", "type", "type", "--exist-ok", "--data", data_dir)
    assert (r.code, r.out) == (0, b"PSF type is already active with this definition (id 0): type\n")
    r = shoal_cli("psf", "add", "type", "actor.login", "--exist-ok", "--data", data_dir)
    assert r.code == 1 and "already active, defined as 'type'" in r.err and "--replace" in r.err
    assert shoal_cli("ingest", inputs.github, "--data", data_dir).code == 0
    r = shoal_cli("psf", "add", "type", "actor.login", "--replace", "--data", data_dir)
    assert (r.code, r.out) == (0, b"registered PSF type (id 1, projection, native): actor.login\n")
    with shoal.open(data_dir) as store:
        tail = store.tail_address
        assert [(p.id, p.definition, p.ranges) for p in store.psfs()] == [(1, "actor.login", [(tail, None)])]
        assert [(p.id, p.ranges) for p in store._registry.retired()] == [(0, [(64, tail)])]


# ---- where the store is ----

def test_locked_data_dir_points_at_url(shoal_cli, data_dir, inputs):
    with shoal.open(data_dir):
        for argv in (["query", "type", "x"], ["ingest", inputs.github], ["psf", "ls"], ["stats"]):
            r = shoal_cli(*argv, "--data", data_dir)
            assert r.code == 1, argv
            assert r.err.startswith(f"shoal: error: the data directory {data_dir} is held by a running server")
            assert "use --url http://" in r.err


def test_no_store_is_not_created_by_reads(shoal_cli, data_dir):
    for argv in (["query", "type", "x"], ["scan", "a"], ["get", "64"], ["psf", "ls"], ["psf", "rm", "a"],
                 ["stats"], ["checkpoint"]):
        r = shoal_cli(*argv, "--data", data_dir)
        assert r.code == 1 and f"no store in {data_dir}" in r.err, argv
    assert not data_dir.exists()


def test_environment_and_flags(shoal_cli, data_dir, monkeypatch, tmp_path, inputs):
    monkeypatch.setenv("SHOAL_DATA", str(data_dir))
    assert shoal_cli("psf", "add", "color", "color").code == 0
    assert shoal_cli("ingest", inputs.jobs).code == 0
    grey = sum(orjson.loads(r)["color"] == "grey" for r in inputs.jobs_records)
    assert grey > 0 and shoal_cli("query", "color", "grey").out.count(b"\n") == grey
    assert shoal_cli("--data", data_dir, "query", "color", "grey").out.count(b"\n") == grey, "flag before the command"
    monkeypatch.setenv("SHOAL_URL", "http://127.0.0.1:1")
    assert shoal_cli("query", "color", "grey", "--data", data_dir).code == 0, "--data beats $SHOAL_URL"
    r = shoal_cli("query", "color", "grey")
    assert r.code == 1 and "talking to the server at http://127.0.0.1:1 failed" in r.err
    r = shoal_cli("--url", "http://x", "stats", "--data", data_dir)
    assert r.code == 1 and "either --url or --data" in r.err


# ---- checkpoint, stats, compact ----

def test_checkpoint_stats_compact(shoal_cli, data_dir, inputs):
    for name, expr in PSFS[:2]:
        assert shoal_cli("psf", "add", name, expr, "--data", data_dir).code == 0
    assert shoal_cli("ingest", inputs.github, "--data", data_dir).code == 0
    r = shoal_cli("checkpoint", "--data", data_dir)
    assert r.code == 0 and r.out.decode().startswith("checkpoint 1: 30 records up to address ")
    stats = json.loads(shoal_cli("stats", "--json", "--data", data_dir).out)
    assert stats["records"] == 30 and stats["recovery"]["checkpoint_id"] == 1
    text = shoal_cli("stats", "--data", data_dir).out.decode()
    assert text.startswith("records   30\n")
    assert "checkpoint 1, 0 records replayed" in text
    assert "\ntype  0   projection  active  native  64-\n" in text
    assert "\nrepo  1   projection  active  native  64-" in text
    r = shoal_cli("compact", "--retain", "1GiB", "--data", data_dir)  # one page: nothing to compact
    assert r.code == 0 and r.out.startswith(b"nothing to compact: the cut is at or below the begin address 64")
    assert shoal_cli("compact", "--data", data_dir).code == 2, "--until or --retain is required"
    assert shoal_cli("compact", "--until", "64", "--retain", "1", "--data", data_dir).code == 2
    assert shoal_cli("compact", "--retain", "lots", "--data", data_dir).code == 2


def test_compact(shoal_cli, data_dir, generated, tmp_path):
    # Tiny pages and segments (layout is fixed at creation; the CLI reopens with it).
    shoal.open(data_dir, page_size_bytes=16 << 10, segment_size_bytes=64 << 10).close()
    src = tmp_path / "zeek.ndjson"
    src.write_bytes(b"\n".join(generated("zeek_logs", 3000)))
    assert shoal_cli("ingest", src, "--data", data_dir).code == 0
    before = json.loads(shoal_cli("stats", "--json", "--data", data_dir).out)
    r = shoal_cli("compact", "--until", hex(before["addresses"]["tail"] // 2), "--data", data_dir)
    cut = before["addresses"]["tail"] // 2 // (16 << 10) * (16 << 10)
    assert r.code == 0 and r.out.decode().startswith(f"compacted: begin address 64 -> {cut}; reclaimed ")
    after = json.loads(shoal_cli("stats", "--json", "--data", data_dir).out)
    assert after["addresses"]["begin"] == cut and after["disk_bytes"] < before["disk_bytes"]
    r = shoal_cli("compact", "--retain", "100KiB", "--json", "--data", data_dir)
    out = json.loads(r.out)
    assert r.code == 0 and out["begin_before"] == cut and out["begin_after"] > cut and out["records_dropped"] > 0
    text = shoal_cli("stats", "--data", data_dir).out.decode()
    assert "\ncompact   0 runs, 0 B reclaimed, 0 records dropped" in text  # each command opens the store afresh
    records = json.loads(shoal_cli("stats", "--json", "--data", data_dir).out)["records"]
    assert records == len(shoal_cli("scan", "`true`", "--data", data_dir).out.splitlines())


# ---- sample data ----

# What each kind's records are said to hold (`shoal sample --help`, README):
# (field, JMESPath, share of the records that must have a value of that type).
SAMPLE_FIELDS = {
    "github": [("type", "type", str, 1.0), ("actor.login", "actor.login", str, 1.0),
               ("repo.name", "repo.name", str, 1.0), ("payload", "payload", dict, 1.0),
               ("created_at", "created_at", str, 1.0), ("payload.size", "payload.size", int, 0.4)],
    "zeek": [("_path", "_path", str, 1.0), ("_write_ts", "_write_ts", str, 1.0), ("ts", "ts", str, 1.0),
             ("id.resp_p", '"id.resp_p"', int, 0.8), ("id.resp_h", '"id.resp_h"', str, 0.8),
             ("id.orig_h", '"id.orig_h"', str, 0.8), ("query", "query", str, 0.3),
             ("rcode_name", "rcode_name", str, 0.2), ("server_name", "server_name", str, 0.05)],
}


def test_sample_kinds_are_the_generators():
    from shoal import sample
    from shoal.cli.commands import SAMPLE_KINDS
    assert sorted(kind for kind, _ in SAMPLE_KINDS.values()) == sorted(sample.KINDS)
    assert sorted(SAMPLE_KINDS) == sorted(SAMPLE_FIELDS)


@pytest.mark.parametrize("kind", ["github", "zeek"])
def test_sample_writes_the_generators_records(shoal_cli, tmp_path, kind):
    """The oracle is shoal.sample's own output for the same n and seed; the
    records parse as NDJSON and hold the fields --help promises."""
    from shoal import sample
    from shoal.cli.commands import SAMPLE_KINDS
    generate = sample.KINDS[SAMPLE_KINDS[kind][0]]
    expected = generate(2000, 7)
    assert shoal_cli("sample", kind, "-n", "2000", "--seed", "7").out == expected
    assert shoal_cli("sample", kind, "-n", "2000", "--seed", "7", "-o", "-").out == expected
    assert shoal_cli("sample", kind, "-n", "300").out == generate(300, 1), "seed 1 by default"
    assert shoal_cli("sample", kind).out == generate(10_000, 1), "10,000 records by default"
    r = shoal_cli("sample", kind, "-n", "2000", "--seed", "7", "-o", tmp_path / "s.ndjson.gz")
    assert (r.code, r.out) == (0, b"")
    assert r.err == f"{tmp_path / 's.ndjson.gz'}: 2,000 {kind} records (seed 7), " \
                    f"{(tmp_path / 's.ndjson.gz').stat().st_size:,} bytes\n"
    packed = (tmp_path / "s.ndjson.gz").read_bytes()
    assert packed[:2] == b"\x1f\x8b" and gzip.decompress(packed) == expected
    assert shoal_cli("sample", kind, "-n", "2000", "--seed", "7", "-o", tmp_path / "s.ndjson").code == 0
    assert (tmp_path / "s.ndjson").read_bytes() == expected, "plain NDJSON unless the name ends in .gz"
    assert shoal_cli("sample", kind, "-n", "2000", "--seed", "8").out != expected

    lines = expected.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2001
    records = [orjson.loads(line) for line in lines[:-1]]
    assert all(isinstance(r, dict) for r in records)
    for name, expression, typ, share in SAMPLE_FIELDS[kind]:
        assert name in SAMPLE_KINDS[kind][1], f"--help names {name}"
        have = sum(isinstance(v, typ) and not isinstance(v, bool) for v in
                   (jmespath.search(expression, r) for r in records))
        assert have >= share * len(records), (name, have)
    assert shoal_cli("sample", kind, "-n", "0").out == b""


def test_sample_errors(shoal_cli, tmp_path):
    assert shoal_cli("sample", "nope").code == 2
    assert shoal_cli("sample", "github", "-n", "-1").code == 2
    assert shoal_cli("sample").code == 2
    r = shoal_cli("sample", "zeek", "-n", "5", "-o", tmp_path / "missing" / "z.ndjson")
    assert r.code == 1 and r.err.startswith(f"shoal: error: cannot write {tmp_path / 'missing' / 'z.ndjson'}: ")
    assert not (tmp_path / "missing").exists()


# ---- processes: a closed pipe, a real server ----

def cli_process(*argv: str | os.PathLike, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shoal.cli", *map(str, argv)], cwd=REPO, **kw)


def test_closed_pipe_is_quiet(data_dir, inputs):
    with shoal.open(data_dir) as store:
        store.register_psf("path", "_path")
        store.ingest(inputs.zeek)
    proc = cli_process("query", "path", "dns", "--data", data_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -n 1`
    assert proc.wait(60) == 0
    assert proc.stderr.read() == b""
    assert orjson.loads(first)["_path"] == "dns"


@pytest.fixture
def served(data_dir):
    s = ServerProcess(data_dir, "--memory", "64MiB", module="shoal.cli")
    yield s
    s.kill()


@pytest.mark.slow
def test_url_mode_against_a_real_server(shoal_cli, served, data_dir, inputs, monkeypatch):
    url = served.url
    for name, expr in PSFS[:-1]:
        assert shoal_cli("psf", "add", name, expr, "--url", url).code == 0
    r = shoal_cli("ingest", inputs.github, inputs.statuses, "--url", url)
    assert r.code == 0 and "total: 130 ingested, 0 rejected" in r.err
    monkeypatch.setattr(progress, "stderr_is_tty", lambda: True)
    monkeypatch.setattr(progress, "DRAW_INTERVAL_S", 0.0)
    r = shoal_cli("ingest", inputs.jobs, "--url", url)  # gzip travels compressed; a copy is counted here
    assert r.code == 0 and "875 records" in r.err and f"{inputs.jobs}: 875 ingested" in r.err
    monkeypatch.setenv("SHOAL_URL", url)
    assert shoal_cli("psf", "add", *PSFS[-1]).code == 0
    r = shoal_cli("psf", "add", *PSFS[-1], "--exist-ok")
    assert r.code == 0 and r.out.startswith(b"PSF hadoop is already active with this definition")
    r = shoal_cli("psf", "add", PSFS[-1][0], "name", "--exist-ok")
    assert r.code == 1 and "already active, defined as \"contains(name, 'hadoop')\"" in r.err

    log = Log(inputs.github_records + inputs.statuses_records + inputs.jobs_records)
    with shoal.Client(url) as client:
        log.bind(client)
    for psf, typed, value, extra in QUERIES:
        r = shoal_cli("query", psf, *([typed] if typed is not None else []), *extra, "--with-address")
        assert r.code == 0 and pairs(r.out) == log.query(expressions()[psf], value, **options(extra)), psf
    for expression, extra in SCANS:
        assert pairs(shoal_cli("scan", expression, *extra, "--with-address").out) == \
            log.scan(expression, **options(extra))
    assert shoal_cli("get", log.addresses[3]).out == log.raws[3] + b"\n"
    assert shoal_cli("get", log.addresses[3] + 1).code == 1
    assert "hadoop" in shoal_cli("psf", "ls").out.decode()
    assert json.loads(shoal_cli("stats", "--json").out)["records"] == len(log)
    assert shoal_cli("checkpoint").out.startswith(b"checkpoint 1: ")
    r = shoal_cli("compact", "--retain", "1KiB")  # the records fit in the tail page: nothing to do
    assert r.code == 0 and r.out.startswith(b"nothing to compact"), r
    r = shoal_cli("query", "nope", "1")
    assert r.code == 1 and "no PSF named 'nope'" in r.err
    r = shoal_cli("ingest", "-", "--on-error", "reject", stdin=b'{"a":1}\n{bad\n')
    assert r.code == 1 and "<stdin>: refused: 1 bad record(s), nothing stored" in r.err

    r = shoal_cli("stats", "--data", data_dir)
    assert r.code == 1 and "held by a running server" in r.err
    second = cli_process("serve", "--data", data_dir, "--port", str(free_port()), stderr=subprocess.PIPE)
    assert second.wait(30) == 1
    assert b"held by another process" in second.stderr.read()
    assert served.stop()[0] == 0
    assert json.loads(shoal_cli("stats", "--json", "--data", data_dir).out)["records"] == len(log)


def test_keyed_store_get_delete_and_history(shoal_cli, data_dir, tmp_path):
    src = tmp_path / "versions.ndjson"
    src.write_bytes(b'{"id": "a", "v": 1}\n{"id": "b", "v": 2}\n{"id": "a", "v": 3}\n')
    assert shoal_cli("ingest", src, "--key", "id", "--data", data_dir).code == 0
    assert shoal_cli("psf", "add", "v", "v", "--data", data_dir).code == 0
    assert shoal_cli("get", "--key", "a", "--data", data_dir).out == b'{"id": "a", "v": 3}\n'
    assert shoal_cli("scan", "v", "--data", data_dir).out == b'{"id": "a", "v": 3}\n{"id": "b", "v": 2}\n'
    r = shoal_cli("scan", "v", "--include-superseded", "--order", "oldest", "--data", data_dir)
    assert r.out == src.read_bytes()
    assert shoal_cli("query", "v", "1", "--data", data_dir).out == b""
    assert shoal_cli("query", "v", "1", "--include-superseded", "--data", data_dir).out == b'{"id": "a", "v": 1}\n'
    r = shoal_cli("delete", "a", "--durable", "--data", data_dir)
    assert r.code == 0 and "deleted key 'a'" in r.out.decode()
    r = shoal_cli("get", "--key", "a", "--data", data_dir)
    assert r.code == 1 and "no live record has key 'a'" in r.err
    r = shoal_cli("delete", "a", "--data", data_dir)
    assert r.code == 1 and "nothing deleted" in r.err
    r = shoal_cli("get", "--data", data_dir)
    assert r.code == 1 and "ADDRESS or --key" in r.err
    r = shoal_cli("ingest", src, "--key", "other", "--data", data_dir)
    assert r.code == 1 and "key is fixed" in r.err


def test_ingest_creates_a_compressed_store(shoal_cli, data_dir, tmp_path, generated):
    """--compression zstd at creation: the ingest returns with its sealed
    segments compressed; the records read back as they went in; a store's
    compression cannot change later."""
    src = tmp_path / "zeek.ndjson"
    lines = generated("zeek_logs", 120_000)  # ~40 MB: more than one 32 MiB segment
    src.write_bytes(b"\n".join(lines) + b"\n")
    assert shoal_cli("ingest", src, "--compression", "zstd", "--data", data_dir).code == 0
    with shoal.open(data_dir) as store:
        assert store.config.compression == "zstd"
        assert store.stats()["compression"]["cold_segments"] >= 1
    assert shoal_cli("scan", "`true`", "--order", "oldest", "--data", data_dir).out == src.read_bytes()
    r = shoal_cli("ingest", src, "--compression", "none", "--data", data_dir)
    assert r.code == 1 and "compression is fixed" in r.err


def test_ingest_damaged_and_odd_files(shoal_cli, data_dir, tmp_path):
    """A cut gzip file stores what came before the cut and says how much;
    a pretty-printed document is one record; an empty file stores nothing
    and exits 1; a file of mostly junk lines does not exit 0."""
    import gzip
    data = b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"y" * (i % 80)) for i in range(60_000))
    packed = gzip.compress(data)
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    r = shoal_cli("ingest", cut, "--data", data_dir)
    assert r.code == 1 and "truncated gzip input" in r.err
    stored = json.loads(shoal_cli("stats", "--json", "--data", data_dir).out)["records"]
    assert stored > 0 and f"{stored:,} record(s) of it were stored before the error" in r.err

    pretty = tmp_path / "doc.json"
    pretty.write_bytes(json.dumps({"statuses": [{"id": 19}, {"id": 22}]}, indent=2).encode())
    r = shoal_cli("ingest", pretty, "--data", data_dir)
    assert r.code == 0 and f"{pretty}: 1 ingested, 0 rejected" in r.err

    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"\n\n")
    r = shoal_cli("ingest", empty, "--data", data_dir)
    assert r.code == 1 and "no records in it" in r.err

    junk = tmp_path / "junk.ndjson"
    junk.write_bytes(b"{\"ok\":1}\n" + b"{\n" * 50)
    r = shoal_cli("ingest", junk, "--data", data_dir)
    assert r.code == 3 and f"{junk}: 1 ingested, 50 rejected" in r.err


# ---- counts and top values ----

@pytest.mark.parametrize("psf, typed, value, extra", QUERIES)
def test_count_matches_oracle(shoal_cli, loaded, psf, typed, value, extra):
    args = ["count", psf] + ([typed] if typed is not None else [])
    r = shoal_cli(*args, "--data", loaded.path)
    assert r.code == 0 and r.err == "", r
    assert int(r.out) == len(loaded.log.query(expressions()[psf], value))
    mid = loaded.log.addresses[len(loaded.log.addresses) // 2]
    r = shoal_cli(*args, "--from-address", mid, "--data", loaded.path)
    assert int(r.out) == len(loaded.log.query(expressions()[psf], value, from_address=mid))


@pytest.mark.parametrize("psf", ["type", "lang", "color", "size", "hadoop"])
def test_top_matches_oracle(shoal_cli, loaded, psf):
    want = {python_value(k): n for k, n in loaded.log.value_counts(expressions()[psf]).items()}
    r = shoal_cli("top", psf, "--limit", "0", "--json", "--data", loaded.path)
    assert r.code == 0, r
    groups = json.loads(r.out)["groups"]
    assert {g["value"]: g["count"] for g in groups} == want
    r = shoal_cli("top", psf, "--limit", "2", "--data", loaded.path)
    rows = [line.split(None, 1) for line in r.out.decode().splitlines()]
    assert [(json.loads(v), int(n)) for n, v in rows] == [(g["value"], g["count"]) for g in groups[:2]]


# ---- projections and columns ----

def _project(obj, keys_list):
    out = {}
    for keys in keys_list:
        cur = obj
        for k in keys:
            if not isinstance(cur, dict) or k not in cur:
                break
            cur = cur[k]
        else:
            node = out
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = cur
    return out


def test_fields_csv_and_table_match_oracle(shoal_cli, loaded):
    import csv
    want = loaded.log.query("type", "PushEvent", limit=20)
    r = shoal_cli("query", "type", "PushEvent", "--limit", "20", "--fields", "type,repo.name,payload.size",
                  "--data", loaded.path)
    assert r.code == 0, r
    assert [orjson.loads(line) for line in r.out.splitlines()] == [
        _project(orjson.loads(raw), [("type",), ("repo", "name"), ("payload", "size")]) for _, raw in want]
    r = shoal_cli("query", "type", "PushEvent", "--limit", "20", "--fields", "repo.name,payload.size", "--csv",
                  "--with-address", "--data", loaded.path)
    rows = list(csv.reader(r.out.decode().splitlines()))
    assert rows[0] == ["address", "repo.name", "payload.size"]
    assert rows[1:] == [[str(a), orjson.loads(raw)["repo"]["name"],
                         json.dumps(orjson.loads(raw)["payload"].get("size")) if "size" in orjson.loads(raw)["payload"]
                         else ""] for a, raw in want]
    r = shoal_cli("scan", "payload.size > `1`", "--limit", "5", "--fields", "type,length(payload.commits)",
                  "--table", "--data", loaded.path)
    lines = r.out.decode().splitlines()
    assert lines[0].split() == ["type", "length(payload.commits)"]
    expect = [(orjson.loads(raw)["type"], len(orjson.loads(raw)["payload"]["commits"]))
              for _, raw in loaded.log.scan("payload.size > `1`", limit=5)]
    assert [tuple(line.split()) for line in lines[1:]] == [(t, str(n)) for t, n in expect]
    r = shoal_cli("query", "type", "PushEvent", "--csv", "--data", loaded.path)
    assert r.code == 1 and "--fields" in r.err


def test_ingest_threads_keep_file_order(shoal_cli, data_dir, tmp_path):
    """--threads 2 on a file of many batches: every good record stored once,
    in file order, and each bad one reported on its line."""
    lines = [orjson.dumps({"i": i, "pad": "x" * (i % 50)}) for i in range(30_000)]
    for at in (7, 12_000, 29_999):
        lines[at] = b"{oops"
    src = tmp_path / "many.ndjson"
    src.write_bytes(b"\n".join(lines) + b"\n")
    r = shoal_cli("ingest", src, "--threads", "2", "--data", data_dir)
    assert r.code == 3
    assert [ln.split(":")[1] for ln in r.err.splitlines()[1:4]] == ["8", "12001", "30000"]
    with shoal.open(data_dir) as s:
        assert [x.raw for x in s.scan("`true`", order="oldest")] == [x for x in lines if x != b"{oops"]
    r = shoal_cli("ingest", src, "--threads", "2", "--url", "http://127.0.0.1:1")
    assert r.code == 1 and "--threads applies to a store in a data directory" in r.err
