"""The process the crash tests kill: it opens a store, ingests real records in
seeded batches with PSF changes, checkpoints, flushes and compactions mixed
in, and writes down everything the store acknowledged.

Run as `python crash_child.py SPEC_JSON` (see test_crash_recovery.py for the
spec). It never exits on its own: it is killed, by the parent (SIGKILL after
a number of progress lines) or by itself (a kill point: the Nth I/O event of
a kind, optionally inside one operation, before or after the real call, or a
segment write cut short). When its plan runs out it prints "done" and waits.

The ack file gets one JSON line per event, each written with one os.write on
an O_APPEND descriptor once the call it reports has returned (no fsync: a
SIGKILL keeps the page cache). A "begin" line goes out before an ingest so
the parent knows which lines a torn tail may hold. Progress lines ("batch N")
go to stdout.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import signal
import sys
import time

import shoal
from shoal.store import segments

_real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "replace", "unlink", "ftruncate")}


class Killer:
    """Counts I/O events and kills this process at the Nth one that matches.

    spec: {"event": "segwrite" | "segsync" | "fsync" | "any", "scope": None
    or "checkpoint" | "psf" | "compact" | "flush", "nth": N, "when": "before"
    | "after" | "torn", "cut_blocks": k}. Events count only while a call of
    the scope's operation runs (any thread: the flusher's page writes during
    a checkpoint count too)."""

    def __init__(self, spec: dict | None):
        self.spec = spec
        self.scope: str | None = None
        self.seen = 0

    def hit(self, event: str) -> bool:
        s = self.spec
        if s is None or (s["scope"] is not None and s["scope"] != self.scope):
            return False
        if s["event"] != "any" and s["event"] != event:
            return False
        self.seen += 1
        return self.seen == s["nth"]

    def die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached


def install(killer: Killer) -> None:
    def wrap_os(name: str, event: str):
        real = _real[name]

        def hooked(*args, **kwargs):
            fire = killer.hit(event)
            if fire and killer.spec["when"] != "after":
                killer.die()
            out = real(*args, **kwargs)
            if fire:
                killer.die()
            return out
        setattr(os, name, hooked)

    wrap_os("fsync", "fsync")
    wrap_os("fdatasync", "fsync")
    for name in ("replace", "unlink", "ftruncate"):
        wrap_os(name, "file")

    real_write = segments.SegmentFiles.write
    real_sync = segments.SegmentFiles.sync

    def write(self, address, data):
        fire = killer.hit("segwrite")
        if fire:
            when = killer.spec["when"]
            if when == "torn":  # a pwrite cut short by the kill, at a block boundary (O_DIRECT)
                view = memoryview(data)
                blocks = len(view) // segments.BLOCK_BYTES
                cut = min(killer.spec["cut_blocks"], max(blocks - 1, 0)) * segments.BLOCK_BYTES
                if cut:
                    real_write(self, address, view[:cut])
                killer.die()
            if when == "before":
                killer.die()
        real_write(self, address, data)
        if fire:
            killer.die()

    def sync(self):
        fire = killer.hit("segsync")
        if fire and killer.spec["when"] != "after":
            killer.die()
        real_sync(self)
        if fire:
            killer.die()

    segments.SegmentFiles.write = write
    segments.SegmentFiles.sync = sync


def scoped(killer: Killer, scope: str, fn, *args, **kwargs):
    killer.scope = scope
    try:
        return fn(*args, **kwargs)
    finally:
        killer.scope = None


class Acks:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **event) -> None:
        os.write(self.fd, json.dumps(event, separators=(",", ":")).encode() + b"\n")


def main() -> None:
    spec = json.loads(sys.argv[1])
    rng = random.Random(spec["seed"])
    with gzip.open(spec["data"], "rb") as f:
        lines = f.read().split(b"\n")
    if not lines[-1]:
        lines.pop()
    killer = Killer(spec["kill"])
    install(killer)
    acks = Acks(spec["ack"])
    psfs: dict[str, str] = spec["psfs"]
    p = spec["plan"]

    store = shoal.open(spec["store"], **spec["config"])
    acks.write(ev="open", run=spec["run"], tail=store.tail_address, begin=store.begin_address,
               dropped=store.recovery.dropped)
    has_compact = hasattr(store, "compact")
    print("ready", flush=True)

    def toggle(name: str) -> None:
        active = any(q.name == name and q.active for q in store.psfs())
        op = "deregister" if active else "register"
        acks.write(ev="psf-begin", op=op, name=name)
        if active:
            psf = scoped(killer, "psf", store.deregister_psf, name)
        else:
            psf = scoped(killer, "psf", store.register_psf, name, psfs[name])
        acks.write(ev="psf", op=op, name=name, ranges=psf.ranges)

    for name in spec["register_first"]:
        toggle(name)
    cursor = spec["start_line"]
    for batch in range(p["max_batches"]):
        r = rng.random()
        if r < p["psf"]:
            toggle(rng.choice(sorted(psfs)))
        elif r < p["psf"] + p["checkpoint"]:
            acks.write(ev="checkpoint-begin")
            info = scoped(killer, "checkpoint", store.checkpoint)
            acks.write(ev="durable", how="checkpoint", tail=info.tail_address)
        elif r < p["psf"] + p["checkpoint"] + p["flush"]:
            tail = scoped(killer, "flush", store.flush)
            acks.write(ev="durable", how="flush", tail=tail)
        elif has_compact and r < p["psf"] + p["checkpoint"] + p["flush"] + p["compact"]:
            span = store.tail_address - store.begin_address
            if rng.random() < 0.5:
                args = {"retain_bytes": int(span * rng.uniform(0.3, 0.9))}
            else:
                args = {"until_address": store.begin_address + int(span * rng.uniform(0.1, 0.7))}
            acks.write(ev="compact-begin", args=args)
            scoped(killer, "compact", store.compact, **args)
            acks.write(ev="compact", args=args, begin=store.begin_address)

        n = rng.randint(p["batch_min"], p["batch_max"])
        lo = cursor % len(lines)
        hi = min(lo + n, len(lines))
        cursor = hi
        durable = rng.random() < p["durable"]
        acks.write(ev="begin", lo=lo, hi=hi)
        res = store.ingest(b"\n".join(lines[lo:hi]) + b"\n", durable=durable)
        acks.write(ev="ingest", lo=lo, hi=hi, durable=res.durable, count=res.ingested,
                   rejected=res.rejected, first=res.first_address, last=res.last_address)
        print("batch", batch, flush=True)
    print("done", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
