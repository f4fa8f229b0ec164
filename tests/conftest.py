"""Fixtures shared by the store-level tests.

Every store here uses tiny pages and a memory budget of four pages, so most
of each log lives in segment files and every test runs the disk paths
(eviction, page turns, reads through pread, replay). `open_store` opens (and
at teardown closes) stores on a tmp dir; `real_data` loads the shared real
data sets once per session. The expected answers come from `tests/oracle.py`.
"""
from __future__ import annotations

import functools
import gzip
import itertools
import pathlib

import pytest

import shoal
from shoal.config import KiB

from datadir import DATA_DIR  # noqa: E402
NDJSON_DIR = DATA_DIR / "ndjson"
SIMDJSON_DIR = DATA_DIR / "simdjson"
TESTSUITE_DIR = DATA_DIR / "jsontestsuite" / "test_parsing"

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
def _lines(name: str, limit: int | None) -> tuple[bytes, ...]:
    with gzip.open(NDJSON_DIR / f"{name}.ndjson.gz", "rb") as f:
        it = f if limit is None else itertools.islice(f, limit)
        return tuple(line.rstrip(b"\n") for line in it)


@pytest.fixture(scope="session")
def real_data():
    """real_data(name, limit=None) -> tuple of the raw records (lines without
    their newline) of ndjson/<name>.ndjson.gz, cached for the session."""
    def load(name: str, limit: int | None = None) -> tuple[bytes, ...]:
        return _lines(name, limit)
    return load


@pytest.fixture(scope="session")
def testsuite_files() -> dict[str, bytes]:
    """JSONTestSuite: file name -> bytes (skips when ../shared is absent, as on
    a user's machine)."""
    if not TESTSUITE_DIR.is_dir():
        pytest.skip(f"JSONTestSuite not found in {TESTSUITE_DIR} (set SHOAL_TEST_DATA or check out ../shared)")
    return {p.name: p.read_bytes() for p in sorted(TESTSUITE_DIR.iterdir()) if p.is_file()}


@pytest.fixture
def faulty_disk(tmp_path, monkeypatch):
    """A FaultyDisk (tests/faults.py) over this test's tmp dir: injects I/O
    errors into the store's writes and fsyncs, and copies the tree as a power
    cut would leave it."""
    from faults import FaultyDisk
    return FaultyDisk(tmp_path, monkeypatch)
