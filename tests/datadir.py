"""Where the third-party real data sets are, if anywhere: $SHOAL_TEST_DATA,
else ../shared/data beside the repository (where CI puts it), else nowhere.

The suite has two tiers. Generated records (shoal.sample) make the default
tier, which always runs. Tests whose point is a real third-party shape (JSON
differential tests on the real files, JSONTestSuite, the simdjson documents)
make the real-data tier: they ask for a path with `real_path`, which skips
them with REASON when the data is not there.
"""
from __future__ import annotations

import os
import pathlib

import pytest

REASON = "needs the real data sets: set SHOAL_TEST_DATA=DIR or put the data at ../shared/data"


def _find() -> pathlib.Path | None:
    env = os.environ.get("SHOAL_TEST_DATA")
    if env:
        return pathlib.Path(env)
    beside = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else None


DATA_DIR = _find()


def real_path(*parts: str) -> pathlib.Path:
    """DATA_DIR / parts; skips the calling test (with REASON) when it does not exist."""
    if DATA_DIR is None:
        pytest.skip(REASON)
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found; {REASON}")
    return path
