"""The server's malloc upkeep (shoal/api/allocator.py): arenas capped unless
the user chose, and a trimming thread that can be stopped."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt and malloc_trim are glibc's")

CODE = """
import threading
from shoal.api.allocator import limit_arenas, start_trimming
print(limit_arenas())
stop = start_trimming(0.01)
names = [t.name for t in threading.enumerate()]
stop.set()
print("shoal-malloc-trim" in names)
"""


def _run(env_extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_arenas_capped_unless_the_user_chose_and_trimming_runs():
    assert _run({}) == ["True", "True"]
    assert _run({"MALLOC_ARENA_MAX": "8"}) == ["False", "True"]
    assert _run({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}) == ["False", "True"]
