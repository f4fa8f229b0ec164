"""The server's malloc setting (shoal/api/allocator.py): set in a server
process, left alone when the user chose one through glibc's environment."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from shoal.api.allocator import tune_for_server; print(tune_for_server())"


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_sets_the_threshold_unless_the_user_chose_one():
    assert _run({}) == "True"
    assert _run({"MALLOC_MMAP_THRESHOLD_": "1048576"}) == "False"
    assert _run({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == "False"
