"""Fixtures shared by the store-level tests.

Every store here uses tiny pages and a memory budget of four pages, so most
of each log lives in segment files and every test runs the disk paths
(eviction, page turns, reads through pread, replay). `open_store` opens (and
at teardown closes) stores on a tmp dir. The records come from `generated`
(shoal.sample, always there) or `real_data` (the third-party data sets, which
skip the test when absent: tests/datadir.py); `records(source, kind, n)`
lets a test run on both. The expected answers come from `tests/oracle.py`.
"""
from __future__ import annotations

import functools
import gzip
import itertools
import pathlib

import pytest

import shoal
from shoal import sample
from shoal.config import KiB

from datadir import real_path  # noqa: E402

PAGE_BYTES = 16 * KiB  # twitter records are ~4.6 KB: several per page, many pages
TINY = shoal.StoreConfig(
    page_size_bytes=PAGE_BYTES,
    memory_budget_bytes=4 * PAGE_BYTES,
    segment_size_bytes=4 * PAGE_BYTES,
    batch_bytes=16 * KiB,
)


@pytest.fixture(scope="session")
def tiny_config() -> shoal.StoreConfig:
    return TINY


@pytest.fixture
def store_path(tmp_path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def open_store(store_path, tiny_config):
    """open_store(path=store_path, config=tiny_config, **overrides) -> Store;
    every store opened through it is closed at teardown."""
    opened: list[shoal.Store] = []

    def _open(path=None, config=None, **overrides) -> shoal.Store:
        s = shoal.open(path if path is not None else store_path,
                       config if config is not None else tiny_config, **overrides)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store) -> shoal.Store:
    return open_store()


@functools.lru_cache(maxsize=None)
def _real_lines(name: str, limit: int | None) -> tuple[bytes, ...]:
    with gzip.open(real_path("ndjson", f"{name}.ndjson.gz"), "rb") as f:
        it = f if limit is None else itertools.islice(f, limit)
        return tuple(line.rstrip(b"\n") for line in it)


@pytest.fixture(scope="session")
def real_data():
    """real_data(name, limit=None) -> tuple of the raw records (lines without
    their newline) of the real data set ndjson/<name>.ndjson.gz, cached for
    the session; skips the test when the real data is absent."""
    def load(name: str, limit: int | None = None) -> tuple[bytes, ...]:
        return _real_lines(name, limit)
    return load


_zeek: list[bytes] = []


@functools.lru_cache(maxsize=None)
def _generated_lines(kind: str, n: int) -> tuple[bytes, ...]:
    if kind == "zeek_logs":
        # A prefix of a longer zeek stream is the shorter stream: make one
        # stream for the session, long enough for every test, and slice it.
        if len(_zeek) < n:
            _zeek[:] = sample.zeek_logs(max(n, 30_000)).split(b"\n")[:-1]
        return tuple(_zeek[:n])
    return tuple(getattr(sample, kind)(n).split(b"\n")[:-1])


@pytest.fixture(scope="session")
def generated():
    """generated(kind, n) -> tuple of the raw records of shoal.sample.<kind>(n)
    (seed 1; kind: zeek_logs, github_events, jenkins_jobs, statuses), cached."""
    return _generated_lines


# The real data set of each generated kind's shape.
REAL_NAMES = {"zeek_logs": "zeek_wrccdc2018", "github_events": "github_events",
              "jenkins_jobs": "apache_builds_jobs", "statuses": "twitter_statuses"}
SOURCES = ["generated", "real"]


@pytest.fixture(scope="session")
def records(generated, real_data):
    """records(source, kind, n) -> n raw records of that kind: generated, or
    with source "real" the first n (at most) of the real data set of that
    shape (REAL_NAMES), skipping the test when it is absent. For tests
    parametrized over SOURCES: the generated run always, the real one where
    the data is."""
    def load(source: str, kind: str, n: int) -> tuple[bytes, ...]:
        assert source in SOURCES, source
        return generated(kind, n) if source == "generated" else real_data(REAL_NAMES[kind], n)
    return load


@pytest.fixture(scope="session")
def testsuite_files() -> dict[str, bytes]:
    """JSONTestSuite: file name -> bytes (real-data tier: skips when absent)."""
    directory = real_path("jsontestsuite", "test_parsing")
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def faulty_disk(tmp_path, monkeypatch):
    """A FaultyDisk (tests/faults.py) over this test's tmp dir: injects I/O
    errors into the store's writes and fsyncs, and copies the tree as a power
    cut would leave it."""
    from faults import FaultyDisk
    return FaultyDisk(tmp_path, monkeypatch)
