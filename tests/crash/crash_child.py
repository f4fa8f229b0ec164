"""The process the crash tests kill: it opens a store, ingests real records in
seeded batches with PSF changes, checkpoints, flushes and compactions mixed
in, and writes down everything the store acknowledged.

Run as `python crash_child.py SPEC_JSON` (see test_crash_recovery.py for the
spec). It never exits on its own: it is killed, by the parent (SIGKILL after
a number of progress lines) or by itself (a kill point: the Nth I/O event of
a kind, optionally inside one operation, before or after the real call, or a
segment write cut short). When its plan runs out it prints "done" and waits.
With `threads` > 1 several ingest loops share the store, so durable ingests
overlap (group commit) and control operations overlap ingests.

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
import threading
import time
import traceback

import jmespath
import orjson

import shoal
from shoal.store import segments

_real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "replace", "unlink", "ftruncate")}


class Killer:
    """Counts I/O events and kills this process at the Nth one that matches.

    spec: {"event": "segwrite" | "segsync" | "fsync" | "file" | "ack" | "any",
    "scope": None or "open" | "checkpoint" | "psf" | "flush" | "compact",
    "nth": N, "when": "before" | "after" | "torn", "cut_blocks": k}. With a
    scope, events count only while a call of that operation runs (events of
    any thread: the flusher's page writes during a checkpoint count too)."""

    def __init__(self, spec: dict | None):
        self.spec = spec
        self.scopes: dict[str, int] = {}  # operations running now (threads may overlap)
        self.seen = 0
        self._lock = threading.Lock()

    def hit(self, event: str) -> bool:
        s = self.spec
        if s is None or (s["event"] != "any" and s["event"] != event):
            return False
        with self._lock:  # events come from the ingest threads and the flusher
            if s["scope"] is not None and not self.scopes.get(s["scope"]):
                return False
            self.seen += 1
            return self.seen == s["nth"]

    def enter(self, scope: str, delta: int) -> None:
        with self._lock:
            self.scopes[scope] = self.scopes.get(scope, 0) + delta

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


def acked(killer: Killer) -> None:
    """The moment durability is most easily lost: right after an acknowledgement."""
    if killer.hit("ack"):
        killer.die()


def scoped(killer: Killer, scope: str, fn, *args, **kwargs):
    killer.enter(scope, 1)
    try:
        return fn(*args, **kwargs)
    finally:
        killer.enter(scope, -1)


class Acks:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **event) -> None:
        os.write(self.fd, json.dumps(event, separators=(",", ":")).encode() + b"\n")


class Run:
    """One child run: `threads` ingest loops over a shared line cursor, each
    doing a seeded control operation (PSF change, checkpoint, flush,
    compaction, in a keyed store a delete) now and then between its batches."""

    def __init__(self, spec: dict, store, killer: Killer, acks: Acks, lines: list[bytes]):
        self.spec, self.store, self.killer, self.acks, self.lines = spec, store, killer, acks, lines
        self.plan = spec["plan"]
        self.psfs: dict[str, str] = spec["psfs"]
        self.has_compact = hasattr(store, "compact")
        self._lock = threading.Lock()  # the cursor, the batch count, stdout; PSF toggles
        self._psf_lock = threading.Lock()
        self.cursor = spec["start_line"]
        self.batches = 0
        self.key: str | None = spec["config"].get("key")  # a keyed store: deletes too
        self.last_batch = (0, 0)

    def toggle(self, name: str) -> None:
        store, acks = self.store, self.acks
        with self._psf_lock:  # look and change as one step
            active = any(q.name == name and q.active for q in store.psfs())
            op = "deregister" if active else "register"
            acks.write(ev="psf-begin", op=op, name=name)
            if active:
                psf = scoped(self.killer, "psf", store.deregister_psf, name)
            else:
                psf = scoped(self.killer, "psf", store.register_psf, name, self.psfs[name])
            acks.write(ev="psf", op=op, name=name, ranges=psf.ranges)

    def control(self, rng: random.Random) -> None:
        p, store, acks, killer = self.plan, self.store, self.acks, self.killer
        r = rng.random()
        if r < p["psf"]:
            self.toggle(rng.choice(sorted(self.psfs)))
        elif r < p["psf"] + p["checkpoint"]:
            acks.write(ev="checkpoint-begin")
            info = scoped(killer, "checkpoint", store.checkpoint)
            acks.write(ev="durable", how="checkpoint", tail=info.tail_address)
            acked(killer)
        elif r < p["psf"] + p["checkpoint"] + p["flush"]:
            tail = scoped(killer, "flush", store.flush)
            acks.write(ev="durable", how="flush", tail=tail)
            acked(killer)
        elif self.has_compact and r < p["psf"] + p["checkpoint"] + p["flush"] + p["compact"]:
            span = store.tail_address - store.begin_address
            if rng.random() < 0.5:
                args = {"retain_bytes": int(span * rng.uniform(0.3, 0.9))}
            else:
                args = {"until_address": store.begin_address + int(span * rng.uniform(0.1, 0.7))}
            acks.write(ev="compact-begin", args=args)
            res = scoped(killer, "compact", store.compact, **args)
            acks.write(ev="compact", args=args, begin=store.begin_address,
                       copied=getattr(res, "records_copied", 0), dropped=getattr(res, "records_dropped", 0))
        elif self.key is not None and r < p["psf"] + p["checkpoint"] + p["flush"] + p["compact"] + p["delete"]:
            lo, hi = self.last_batch
            for _ in range(3 if hi > lo else 0):  # keys of recent records; some may be deleted already
                key = jmespath.search(self.key, orjson.loads(self.lines[rng.randrange(lo, hi)]))
                if isinstance(key, (str, int)) and not isinstance(key, bool):
                    durable = rng.random() < p["durable"]
                    acks.write(ev="delete-begin", key=key)
                    deleted = store.delete_key(key, durable=durable)
                    acks.write(ev="delete", key=key, deleted=deleted, durable=durable)
                    if deleted and durable:
                        acked(killer)

    def ingest_loop(self, seed: int) -> None:
        rng = random.Random(seed)
        p, lines = self.plan, self.lines
        while True:
            self.control(rng)
            n = rng.randint(p["batch_min"], p["batch_max"])
            durable = rng.random() < p["durable"]
            with self._lock:
                if self.batches >= p["max_batches"]:
                    return
                self.batches += 1
                lo = self.cursor % len(lines)
                hi = self.cursor = min(lo + n, len(lines))
                self.acks.write(ev="begin", lo=lo, hi=hi)
            res = self.store.ingest(b"\n".join(lines[lo:hi]) + b"\n", durable=durable)
            self.last_batch = (lo, hi)
            self.acks.write(ev="ingest", lo=lo, hi=hi, durable=res.durable, count=res.ingested,
                            rejected=res.rejected, first=res.first_address, last=res.last_address)
            if res.durable:
                acked(self.killer)
            with self._lock:
                sys.stdout.write(f"batch {lo}\n")
                sys.stdout.flush()


def fatal(fn, *args) -> None:
    """Run fn; any exception ends the process with status 1 (the parent
    reports it), not just the thread."""
    try:
        fn(*args)
    except BaseException:  # noqa: BLE001 - whatever it is, the run failed
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


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

    store = scoped(killer, "open", shoal.open, spec["store"], **spec["config"])
    acks.write(ev="open", run=spec["run"], tail=store.tail_address, begin=store.begin_address,
               dropped=store.recovery.dropped)
    print("ready", flush=True)
    run = Run(spec, store, killer, acks, lines)
    if not (spec["kill"] and spec["kill"]["scope"] == "open"):  # else: it did not fire, and never will
        for name in spec["register_first"]:
            run.toggle(name)
        threads = [threading.Thread(target=fatal, args=(run.ingest_loop, rng.randrange(1 << 32)))
                   for _ in range(spec["threads"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print("done", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
