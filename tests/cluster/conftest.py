"""A local Ray cluster for the cluster tests: started once per session (2
CPUs, no dashboard), shards take a quarter CPU each so 2-4 shards fit.
Without Ray installed (pip install 'shoal[cluster]') these tests skip,
saying so; make test installs it."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the cluster tests need Ray: pip install 'shoal[cluster]' (make test does)")

import shoal.cluster  # noqa: E402
from shoal.config import KiB  # noqa: E402

SHARD_CPUS = 0.25
# Small pages, so shards' logs spill to segment files in these tests too.
SMALL = dict(page_size_bytes=64 * KiB, memory_budget_bytes=4 * 64 * KiB, segment_size_bytes=4 * 64 * KiB,
             batch_bytes=16 * KiB)


@pytest.fixture(scope="session")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="shoal",
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def open_cluster(ray_cluster, tmp_path):
    """open_cluster(shards=2, path=tmp_path / "cluster", **kw) -> Cluster;
    closed (its actors stopped) at teardown."""
    opened = []

    def _open(shards=2, path=None, **kw):
        kw.setdefault("shard_cpus", SHARD_CPUS)
        for k, v in SMALL.items():
            kw.setdefault(k, v)
        c = shoal.cluster.open(path if path is not None else tmp_path / "cluster", shards, **kw)
        opened.append(c)
        return c

    yield _open
    for c in opened:
        c.close()
