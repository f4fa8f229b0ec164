"""Where the examples find the shared sample data: $SHOAL_SAMPLE_DATA, else
../shared/data beside the repository, else /work/shared/data."""
from __future__ import annotations

import os
from pathlib import Path


def sample_data() -> Path:
    env = os.environ.get("SHOAL_SAMPLE_DATA")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")
