"""gate.c, the reader gate, driven directly: readers counted in and out,
a closed gate refusing entry (and not counting the refused), and the
quiescence tokens compaction waits on (shoal_gate_mark / _idle_since hold
once every reader inside at the mark has left, and at once when none was)."""
from __future__ import annotations

import random
import threading

from shoal._native import ffi, lib


def _gate():
    return ffi.new("shoal_gate *")


def test_enter_exit_and_close():
    g = _gate()
    assert lib.shoal_gate_inside(g) == 0
    assert lib.shoal_gate_enter(g) == lib.SHOAL_OK and lib.shoal_gate_enter(g) == lib.SHOAL_OK
    assert lib.shoal_gate_inside(g) == 2
    g.closed = 1
    assert lib.shoal_gate_enter(g) == lib.SHOAL_E_CLOSED
    assert lib.shoal_gate_inside(g) == 2  # the refused reader is not counted
    lib.shoal_gate_exit(g)
    lib.shoal_gate_exit(g)
    assert lib.shoal_gate_inside(g) == 0


def test_tokens():
    g = _gate()
    idle = lib.shoal_gate_mark(g)  # nobody inside: idle at once
    assert lib.shoal_gate_idle_since(g, idle)
    lib.shoal_gate_enter(g)
    t1 = lib.shoal_gate_mark(g)
    assert not lib.shoal_gate_idle_since(g, t1)
    lib.shoal_gate_enter(g)  # a later reader keeps the gate busy, but not t1's readers
    lib.shoal_gate_exit(g)
    assert not lib.shoal_gate_idle_since(g, t1)  # the first reader is still inside
    lib.shoal_gate_exit(g)
    assert lib.shoal_gate_idle_since(g, t1)
    lib.shoal_gate_enter(g)
    assert lib.shoal_gate_idle_since(g, t1)  # passed for good: readers after the mark do not matter
    t2 = lib.shoal_gate_mark(g)
    assert not lib.shoal_gate_idle_since(g, t2)
    lib.shoal_gate_exit(g)
    assert lib.shoal_gate_idle_since(g, t2)


def test_threads_leave_it_quiet():
    g = _gate()
    errors = []

    def reader(seed):
        rng = random.Random(seed)
        for _ in range(2000):
            if lib.shoal_gate_enter(g) != lib.SHOAL_OK:
                errors.append("refused")
                return
            if rng.random() < 0.1:
                token = lib.shoal_gate_mark(g)
                if lib.shoal_gate_idle_since(g, token):
                    errors.append("idle while this reader is inside")
            lib.shoal_gate_exit(g)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert lib.shoal_gate_inside(g) == 0
    assert lib.shoal_gate_idle_since(g, lib.shoal_gate_mark(g))
