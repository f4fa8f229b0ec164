"""Where the shared real data lives: $SHOAL_TEST_DATA, else ../shared/data
next to the repository (the documented place), else /work/shared/data."""
from __future__ import annotations

import os
import pathlib


def _find() -> pathlib.Path:
    env = os.environ.get("SHOAL_TEST_DATA")
    if env:
        return pathlib.Path(env)
    beside = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else pathlib.Path("/work/shared/data")


DATA_DIR = _find()
