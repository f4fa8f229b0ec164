"""Crash recovery under SIGKILL at seeded kill points.

Method. A child process (crash_child.py) opens a store with 16-64 KiB pages,
a four-page memory budget and four-page segments, and ingests a generated
Zeek stream (shoal.sample.zeek_logs, seeded by the crash seed) in seeded
batches of a few hundred records, registering and deregistering PSFs, mixing
durable and plain ingests, checkpointing, flushing and (when the store has
`compact`) compacting along the way; some runs ingest from two
threads, so durable ingests share fsyncs and control calls overlap ingests.
It appends to an ack file what each call acknowledged: the input lines and
first/last address of every ingest, "durable up to tail" after flush and
checkpoint, PSF changes, and compactions with the new begin address.

The child is killed with SIGKILL at a kill point: after a seeded number of
its progress lines plus a short sleep, or by itself at the Nth I/O event of
a kind (segment write: before, after, or cut short after k blocks; segment
sync; any fsync; right after a durable acknowledgement) or at the Nth I/O
event inside a checkpoint, a PSF change, a flush, a compaction or the
recovery at open. Each lineage (a fresh store) is killed, recovered, checked
and continued by the next child again and again, so recovery of a recovered
store is tested too. Some opens, the child's or the checker's, skip reading
the log back below the checkpoint (verify_log_on_open=False). One lineage is
a keyed store (deletes too; compaction copies live versions forward).

After each kill the store is reopened here and checked:
  1. every record acknowledged as durable is there, at its address, byte
     for byte (records below a logged compaction's begin address excepted),
     and so is every record an earlier check saw (the checker closes the
     store, which is a durable flush);
  2. every record a full scan returns parses and is an input line; more
     strictly, the log is the previous log, then whole batches the run began
     (each contiguous, at the addresses its ingest reported) up to a cut that
     only the last batch may straddle; begin moved only by compactions;
  3. every query of every PSF (active or not) for sampled values equals an
     orjson + jmespath oracle over the scanned records; PSF changes that
     returned are in the registry; recovery.dropped lists strings and never
     an address of acknowledged data;
  4. keyed: each key's live version (or its deletion) is at or past every
     acknowledged write or delete of it and what earlier checks saw, and
     is its newest surviving version; get_key and queries, live and with
     superseded versions, agree with the oracle.

SHOAL_CRASH_SEED=<int> replays a run (the plan; thread timing varies); the
seed is in every failure message. `pytest -s` prints a line per kill point
and the totals: kill points, acknowledged records checked and lost.
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from crash_checks import KEY, Data, Lineage, Totals, check_recovered, read_events

import shoal
from shoal import sample
from shoal.config import KiB

pytestmark = pytest.mark.crash

SEED = int(os.environ.get("SHOAL_CRASH_SEED", "5"))
RECORDS = 60_000  # ~23 MB: more than a lineage ingests between its kills
CHILD = Path(__file__).with_name("crash_child.py")
PSFS = {"path": "_path", "resp_p": '"id.resp_p"', "proto": "proto", "query": "query",
        "udp": "proto == 'udp'", "answers": "length(answers)"}  # the last runs on the slow path
# One store per lineage, (page KiB, key): four-page memory budgets and
# segments, so pages turn, leave memory and fill segment files all the time;
# a tiny hash table that doubles during ingest and replay. The keyed store
# (key: the Zeek connection uid, ~2 versions per key) has deletes, and its
# compactions (twice as many) copy live versions forward.
KEY_EXPR = "uid"
LINEAGES = [(64, None), (16, None), (64, None), (32, None), (32, KEY_EXPR)]
KILLS_PER_LINEAGE = 8
THREADED_RUNS = 0.3  # unkeyed runs with two ingest threads (overlapping durable ingests)
UNVERIFIED_OPENS = 0.3  # opens (child or checker) that trust the log below the checkpoint
CHILD_TIMEOUT_S = 120
PLAN = {"psf": 0.08, "checkpoint": 0.10, "flush": 0.07, "compact": 0.08, "delete": 0.15, "durable": 0.35,
        "batch_min": 100, "batch_max": 500, "max_batches": 400}


def store_config(page_kib: int, key: str | None) -> dict:
    config = {"page_size_bytes": page_kib * KiB, "memory_budget_bytes": 4 * page_kib * KiB,
              "segment_size_bytes": 4 * page_kib * KiB, "batch_bytes": 32 * KiB, "index_bucket_bits": 6}
    return config if key is None else dict(config, key=key)


# ---- kill points ----

@dataclasses.dataclass
class KillPoint:
    label: str
    spec: dict | None = None      # a hook in the child; None: killed from here
    after_batches: int = 0        # time kills: progress lines to wait for
    sleep_s: float = 0.0          # and then this long


def plan_kill_points(rng: random.Random, has_compact: bool, n: int) -> list[KillPoint]:
    """n kill points spread over time, segment writes, syncs, fsyncs,
    checkpoints, PSF changes, flushes and compactions; seeded."""
    def hook(event, scope, when, hi):
        label = f"{scope or event}:{when}" + (f"({event})" if scope else "")
        return KillPoint(label, {"event": event, "scope": scope, "when": when,
                                 "nth": rng.randint(1, hi), "cut_blocks": rng.randint(1, 15)})

    makers = [
        lambda: KillPoint("time", after_batches=rng.randint(1, 14), sleep_s=rng.uniform(0, 0.03)),
        lambda: hook("segwrite", None, rng.choice(["before", "after"]), 30),
        lambda: hook("segwrite", None, "torn", 30),
        lambda: hook("ack", None, "after", 8),
        lambda: hook("segsync", None, rng.choice(["before", "after"]), 10),
        lambda: hook("fsync", None, rng.choice(["before", "after"]), 20),
        lambda: hook("any", "checkpoint", rng.choice(["before", "after"]), 16),
        lambda: hook("any", "psf", rng.choice(["before", "after"]), 6),
        lambda: hook("any", "flush", rng.choice(["before", "after"]), 4),
        lambda: hook("any", "open", rng.choice(["before", "after"]), 1),  # recovering a recovered store
    ]
    if has_compact:
        makers.append(lambda: hook("any", "compact", rng.choice(["before", "after"]), 6))
    # every kind at least twice (time and checkpoint more often), the rest at random
    kinds = [0, 0, 0] + list(range(len(makers))) * 2 + [6]
    kinds += [rng.randrange(len(makers)) for _ in range(max(0, n - len(kinds)))]
    rng.shuffle(kinds)
    return [makers[k]() for k in kinds]


# ---- the child ----

class Child:
    def __init__(self, spec: dict, stderr_path: Path):
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(CHILD), json.dumps(spec)],
                                         stdout=subprocess.PIPE, stderr=err)
        self.lines: queue.Queue = queue.Queue()
        self.stderr_path = stderr_path
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.decode().strip())
        self.lines.put(None)

    def run_until_killed(self, kp: KillPoint) -> str:
        """Wait for the kill point; returns how the child ended: "hook" (it
        killed itself), "time" (killed from here), "done" (its plan ran out
        before the hook fired: killed from here)."""
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        batches = 0
        try:
            while True:
                try:
                    line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise AssertionError(f"the child made no progress for {CHILD_TIMEOUT_S} s") from None
                if line is None:  # stdout closed: the child died
                    rc = self.proc.wait(timeout=30)
                    if rc != -signal.SIGKILL or kp.spec is None:
                        raise AssertionError(f"the child exited with {rc}: {self.stderr()}")
                    return "hook"
                if line.startswith("batch"):
                    batches += 1
                    if kp.spec is None and batches >= kp.after_batches:
                        time.sleep(kp.sleep_s)
                        return "time"
                elif line == "done":
                    return "done"
        finally:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self._reader.join(timeout=30)  # EOF once the child is gone
            self.proc.stdout.close()

    def stderr(self) -> str:
        return self.stderr_path.read_bytes()[-3000:].decode(errors="replace")


# ---- the test ----

def _opened(config: dict, rng: random.Random) -> dict:
    """The settings of one open: now and then without reading the log back."""
    unverified = rng.random() < UNVERIFIED_OPENS
    has = "verify_log_on_open" in {f.name for f in dataclasses.fields(shoal.StoreConfig)}
    return dict(config, verify_log_on_open=False) if unverified and has else config


def test_sigkill_at_kill_points(tmp_path):
    t0 = time.monotonic()
    rng = random.Random(SEED)
    has_compact = hasattr(shoal.Store, "compact")
    kill_points = plan_kill_points(rng, has_compact, len(LINEAGES) * KILLS_PER_LINEAGE)
    data_path = sample.write("zeek_logs", RECORDS, tmp_path / "zeek.ndjson.gz", seed=SEED)
    data = Data(data_path, {**PSFS, KEY: KEY_EXPR})
    totals = Totals()
    cursor = rng.randrange(len(data.lines))
    report: list[str] = []

    def summary() -> str:
        return f"[crash] seed {SEED}: {totals.summary()}, {time.monotonic() - t0:.1f} s"

    def fail(msg: str) -> None:
        pytest.fail(f"SHOAL_CRASH_SEED={SEED}: {msg}\n{summary()}\nlast kill points:\n" + "\n".join(report[-8:]),
                    pytrace=False)

    for k, (page_kib, key) in enumerate(LINEAGES):
        config = store_config(page_kib, key)
        lineage = Lineage(tmp_path / f"store-{k}", config, key)
        for kp in kill_points[k * KILLS_PER_LINEAGE:(k + 1) * KILLS_PER_LINEAGE]:
            run = lineage.runs
            lineage.runs += 1
            acks = tmp_path / f"acks-{k}-{run}.jsonl"
            threads = 2 if rng.random() < THREADED_RUNS and key is None else 1  # keyed: write order = ack order
            child_config, check_config = (_opened(config, rng) for _ in range(2))
            spec = {"store": str(lineage.path), "data": str(data_path), "ack": str(acks), "run": run,
                    "seed": rng.randrange(1 << 32), "start_line": cursor, "config": child_config, "psfs": PSFS,
                    "plan": dict(PLAN, max_batches=kp.after_batches + 20 if kp.spec is None
                                 else PLAN["max_batches"], compact=PLAN["compact"] * (2 if key else 1)),
                    "register_first": ["path", "udp", "answers"] if run == 0 else [], "kill": kp.spec,
                    "threads": threads}
            unverified = [who for who, c in (("child", child_config), ("checker", check_config)) if c is not config]
            where = (f"lineage {k} ({page_kib} KiB pages{', key ' + key if key else ''}) run {run} "
                     f"({threads} threads{', unverified open: ' + '+'.join(unverified) if unverified else ''}), "
                     f"kill point {kp.label}"
                     + (f" {kp.spec}" if kp.spec else f" after {kp.after_batches} batches + {kp.sleep_s:.3f} s"))
            child = Child(spec, tmp_path / f"stderr-{k}-{run}.txt")
            try:
                how = child.run_until_killed(kp)
            except AssertionError as exc:
                fail(f"{where}: {exc}")
            totals.kill_points += 1
            if how == "hook":
                totals.hooks_fired += 1
            elif how == "done":
                totals.not_fired.append(kp.label)
            events = read_events(acks)
            cursor = max([e["hi"] for e in events if e["ev"] == "begin"], default=cursor) % len(data.lines)
            try:
                store = shoal.open(lineage.path, **check_config)
            except Exception as exc:  # noqa: BLE001 - any failure to reopen is the finding
                fail(f"{where}: reopening failed: {exc!r}")
            try:
                problems = check_recovered(store, lineage, events, data, totals)
                begin = store.begin_address
            finally:
                store.close()
            n_ingests = sum(e["ev"] == "ingest" for e in events)
            report.append(f"[crash] {where}: {how}, {n_ingests} ingests, log {len(lineage.log)} records "
                          f"[{begin}, {lineage.tail}), dropped {store.recovery.dropped}")
            print(report[-1])
            if problems:
                fail(f"{where}:\n  " + "\n  ".join(problems[:20]))

    print(summary())
    assert totals.kill_points >= 20, summary()
    assert totals.acked_records_lost == totals.verified_records_lost == totals.live_versions_lost == 0, summary()
    # A hook that never fires (a renamed function, a plan too short) would test nothing.
    assert len(totals.not_fired) <= 2, summary()
