"""Crash recovery under SIGKILL at seeded kill points.

Method. A child process (crash_child.py) opens a store with 16-64 KiB pages,
a four-page memory budget and four-page segments, and ingests the Zeek stream
in seeded batches of a few hundred records, registering and deregistering
PSFs, mixing durable and plain ingests, checkpointing, flushing and (when the
store has `compact`) compacting along the way; some runs ingest from two
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
store is tested too.

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
     an address of acknowledged data.

SHOAL_CRASH_SEED=<int> replays a run (the plan; thread timing varies); the
seed is in every failure message. `pytest -s` prints a line per kill point
and the totals: kill points, acknowledged records checked and lost.
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from datadir import DATA_DIR
from oracle import ALL, Definition, sample_values, value_key

import shoal
from shoal.config import KiB
from shoal.store.address import FIRST_ADDRESS

pytestmark = pytest.mark.crash

SEED = int(os.environ.get("SHOAL_CRASH_SEED", "5"))
DATA = DATA_DIR / "ndjson" / "zeek_wrccdc2018.ndjson.gz"
CHILD = Path(__file__).with_name("crash_child.py")
# Per lineage: four-page memory budgets and segments, so pages turn, leave
# memory and fill segment files all the time; a tiny hash table that doubles
# during ingest and replay.
PAGES_KIB = [64, 16, 64, 32]
CONFIGS = [{"page_size_bytes": p * KiB, "memory_budget_bytes": 4 * p * KiB, "segment_size_bytes": 4 * p * KiB,
            "batch_bytes": 32 * KiB, "index_bucket_bits": 6} for p in PAGES_KIB]
PSFS = {"path": "_path", "resp_p": '"id.resp_p"', "proto": "proto", "query": "query",
        "udp": "proto == 'udp'", "answers": "length(answers)"}  # the last runs on the slow path
LINEAGES = len(PAGES_KIB)
KILLS_PER_LINEAGE = 8
THREADED_RUNS = 0.3  # runs with two ingest threads (overlapping durable ingests)
CHILD_TIMEOUT_S = 120
PLAN = {"psf": 0.08, "checkpoint": 0.10, "flush": 0.07, "compact": 0.08, "durable": 0.35,
        "batch_min": 100, "batch_max": 500, "max_batches": 400}
_ADDRESS = re.compile(r"address (\d+)")


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
        lambda: hook("any", "open", rng.choice(["before", "after"]), 2),  # recovering a recovered store
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


# ---- what the checker knows ----

class Data:
    """The input lines, which line a stored record is, and oracle values per
    (PSF, line), computed once."""

    def __init__(self, path: Path):
        import gzip
        with gzip.open(path, "rb") as f:
            self.lines = f.read().split(b"\n")
        if not self.lines[-1]:
            self.lines.pop()
        self.line_of: dict[bytes, int] = {}
        for i, raw in enumerate(self.lines):
            self.line_of.setdefault(raw, i)
        self._values: dict[str, dict[int, tuple | None]] = {name: {} for name in PSFS}
        self._defs = {name: Definition(d) for name, d in PSFS.items()}

    def value(self, name: str, line: int) -> tuple | None:
        cache = self._values[name]
        v = cache.get(line, False)
        if v is False:
            raw = self.lines[line]
            v = cache[line] = value_key(self._defs[name].value(orjson.loads(raw), raw))
        return v


@dataclasses.dataclass
class Lineage:
    """One store's history as the checker knows it."""
    path: Path
    log: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (address, line), verified
    acked: list[dict] = dataclasses.field(default_factory=list)           # ingest events acknowledged durable
    compacted_to: int = FIRST_ADDRESS  # the highest begin address a completed compaction reported
    tail: int | None = None       # after the last check
    active: dict[str, bool] = dataclasses.field(default_factory=dict)
    runs: int = 0


@dataclasses.dataclass
class Totals:
    kill_points: int = 0
    hooks_fired: int = 0
    not_fired: list[str] = dataclasses.field(default_factory=list)
    acked_batches: int = 0
    acked_records_checked: int = 0
    acked_records_lost: int = 0
    verified_records_lost: int = 0
    queries: int = 0
    torn_tails: int = 0


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    data = path.read_bytes()
    return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]


# ---- the checks ----

def check_recovered(store, lineage: Lineage, events: list[dict], data: Data, totals: Totals) -> list[str]:
    """Every property, after one kill; returns what is wrong (empty: all good)."""
    problems: list[str] = []
    lines = data.lines
    begin, tail = store.begin_address, store.tail_address

    # What the run did, from its acks.
    opened = [e for e in events if e["ev"] == "open"]
    if opened and lineage.tail is not None and opened[0]["tail"] != lineage.tail:
        problems.append(f"the child recovered tail {opened[0]['tail']}, the checker {lineage.tail}")
    begun: list[tuple[int, int]] = []  # line ranges the run began to ingest
    batches: list[dict] = []           # ingests that returned
    compacting = 0  # compactions begun and not returned (two threads may overlap)
    psf_pending: set[str] = set()
    for e in events:
        ev = e["ev"]
        if ev == "begin":
            begun.append((e["lo"], e["hi"]))
        elif ev == "ingest":
            if (e["count"], e["rejected"]) != (e["hi"] - e["lo"], 0):
                problems.append(f"ingest of lines {e['lo']}:{e['hi']} stored {e['count']}, rejected {e['rejected']}")
            batches.append(e)
            if e["durable"]:
                lineage.acked.append(e)
                totals.acked_batches += 1
        elif ev == "durable":  # flush or checkpoint: everything ingested so far is on disk
            for b in batches:
                if not b.get("acked_by_flush") and not b["durable"] and b["last"] < e["tail"]:
                    b["acked_by_flush"] = True
                    lineage.acked.append(b)
                    totals.acked_batches += 1
        elif ev == "psf-begin":
            psf_pending.add(e["name"])
        elif ev == "psf":
            psf_pending.discard(e["name"])
            lineage.active[e["name"]] = e["op"] == "register"
        elif ev == "compact-begin":
            compacting += 1
        elif ev == "compact":
            compacting -= 1
            lineage.compacted_to = max(lineage.compacted_to, e["begin"])

    # Compaction: begin moves only by a compaction, and not back after one returned.
    floor = begin
    if begin < lineage.compacted_to:
        problems.append(f"begin address {begin} is below {lineage.compacted_to}, "
                        f"where a completed compaction had moved it")
    if begin > lineage.compacted_to and not compacting:
        problems.append(f"begin address {begin} is past {lineage.compacted_to} without a compaction")
        floor = lineage.compacted_to

    # 2. Every record parses and is an input line.
    found = [(r.address, r.raw) for r in store.scan(ALL, order="oldest")]
    garbage = []
    for addr, raw in found:
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError:
            garbage.append(f"record at {addr} does not parse: {raw[:80]!r}")
        if raw not in data.line_of:
            garbage.append(f"record at {addr} is not an input line: {raw[:80]!r}")
    if garbage:
        return problems + garbage
    if found and (found[0][0] < begin or found[-1][0] >= tail):
        problems.append(f"scan returned addresses {found[0][0]}..{found[-1][0]} outside [{begin}, {tail})")

    # 2'. The log is the verified log, then what the run appended, up to a point.
    start = lineage.tail if lineage.tail is not None else 0
    old = [(a, i) for a, i in lineage.log if a >= floor]
    got_old = [(a, data.line_of[r]) for a, r in found if a < start]
    if got_old != old:
        lost = len(set(old) - set(got_old))
        totals.verified_records_lost += lost
        problems.append(f"the log before this run changed: {len(old)} records expected, {len(got_old)} found, "
                        f"{lost} lost; first difference at {_first_diff(old, got_old)}")
    problems += check_run_records(found[len(got_old):], begun, batches, floor, start, data)

    # 1. Every acknowledged record is there, at its address, byte for byte.
    by_address = dict(found)
    addresses = [a for a, _ in found]
    acked_end = 0
    for b in lineage.acked:
        if b["last"] < floor:
            continue
        n = b["hi"] - b["lo"]
        inside = found[bisect.bisect_left(addresses, max(b["first"], floor)):
                       bisect.bisect_right(addresses, b["last"])]
        whole = b["first"] >= floor
        totals.acked_records_checked += n if whole else len(inside)
        expect = lines[b["lo"]:b["hi"]] if whole else lines[b["hi"] - len(inside):b["hi"]]
        lost = (n - len(inside)) if whole else 0
        if lost or [r for _, r in inside] != expect:
            totals.acked_records_lost += max(lost, 1)
            problems.append(f"acknowledged lines {b['lo']}:{b['hi']} at {b['first']}..{b['last']}: "
                            f"{len(inside)} of {n} records found intact")
        for key, line in (("first", b["lo"]), ("last", b["hi"] - 1)):
            if b[key] >= floor:
                rec = store.get(b[key])
                if rec is None or rec.raw != lines[line] or by_address.get(b[key]) != lines[line]:
                    problems.append(f"get({b[key]}) does not return acknowledged line {line}")
        acked_end = max(acked_end, b["last"] + 1)

    # 3a. recovery.dropped: strings, never about acknowledged data.
    dropped = store.recovery.dropped
    if not isinstance(dropped, list) or not all(isinstance(m, str) for m in dropped):
        problems.append(f"recovery.dropped is not a list of str: {dropped!r}")
    for msg in dropped:
        addrs = [int(x) for x in _ADDRESS.findall(msg)]
        if not addrs or any(a < acked_end for a in addrs):
            problems.append(f"recovery dropped acknowledged data or something else: {msg!r}")
        else:
            totals.torn_tails += 1

    # 3b. The registry: changes that returned persisted; ranges end at the tail.
    psfs = {p.name: p for p in store.psfs()}
    for name, active in lineage.active.items():
        p = psfs.get(name)
        if p is None:
            problems.append(f"PSF {name!r} is missing after recovery")
        elif p.active != active and name not in psf_pending:
            problems.append(f"PSF {name!r} is {'' if p.active else 'in'}active after recovery")
    leftovers = sorted(f.name for f in store.path.glob("psfs.json.*.tmp"))
    if leftovers:  # one more after every crash inside a registry save, for good
        problems.append(f"temporary files of interrupted registry saves were left: {leftovers}")
    for p in psfs.values():
        lineage.active[p.name] = p.active
        if p.definition != PSFS.get(p.name):
            problems.append(f"PSF {p.name!r} has definition {p.definition!r}")
        if any(a > tail or (b is not None and b > tail) for a, b in p.ranges):
            problems.append(f"PSF {p.name!r} has ranges {p.ranges} past the tail {tail}")

    # 3c. Every index answer equals the oracle over the scanned records.
    for name in psfs:
        groups: dict[tuple, list[tuple[int, bytes]]] = {}
        for a, r in found:
            k = data.value(name, data.line_of[r])
            if k is not None:
                groups.setdefault(k, []).append((a, r))
        counts = {k: len(v) for k, v in groups.items()}
        for value in sample_values(counts, 2) + [True, "no such value"]:
            expect = groups.get(value_key(value), [])[::-1]
            got = [(r.address, r.raw) for r in store.query(name, value)]
            oldest = [(r.address, r.raw) for r in store.query(name, value, order="oldest", limit=3)]
            totals.queries += 2
            if got != expect or oldest != expect[::-1][:3]:
                problems.append(f"query({name!r}, {value!r}): {len(got)} records, the oracle {len(expect)}; "
                                f"first difference at {_first_diff(expect, got)}")
    lineage.log = [(a, data.line_of[r]) for a, r in found]
    lineage.tail = tail
    lineage.compacted_to = max(lineage.compacted_to, begin)  # an interrupted compaction's, if it got that far
    return problems


def check_run_records(new: list[tuple[int, bytes]], begun: list[tuple[int, int]], batches: list[dict],
                      floor: int, start: int, data: Data) -> list[str]:
    """The records after the run's start address, in log order, are whole
    batches the run began, each at the addresses its ingest reported, up to
    the point where the log was cut: only the last batch may be partial, and
    a batch that returned is missing only past that point. (Ingest calls hold
    the writer lock while appending, so each batch is contiguous; with
    several threads the batches may be in any order.) A compaction in this
    run may have cut the first batch left, below `floor`."""
    problems: list[str] = []
    batch_of = {i: j for j, (lo, hi) in enumerate(begun) for i in range(lo, hi)}
    returned = {(b["lo"], b["hi"]): b for b in batches}
    groups: list[tuple[int, list[tuple[int, int]]]] = []  # (batch, [(address, line)])
    for a, raw in new:
        i = data.line_of[raw]
        j = batch_of.get(i)
        if j is None:
            return [f"record at {a} is line {i}, which the run did not ingest"]
        if groups and groups[-1][0] == j:
            groups[-1][1].append((a, i))
        else:
            groups.append((j, [(a, i)]))
    seen: set[int] = set()
    for g, (j, recs) in enumerate(groups):
        lo, hi = begun[j]
        b = returned.get((lo, hi))
        where = f"lines {lo}:{hi} (at {recs[0][0]}..{recs[-1][0]})"
        if j in seen:
            problems.append(f"{where}: the batch is split by other records")
        seen.add(j)
        idx = [i for _, i in recs]
        if idx != list(range(idx[0], idx[0] + len(idx))):
            problems.append(f"{where}: lines out of order or missing inside the batch")
        if idx[0] != lo and not (g == 0 and floor > start and (b is None or b["first"] < floor)):
            problems.append(f"{where}: the batch's first {idx[0] - lo} records are missing")
        if idx[-1] != hi - 1 and g != len(groups) - 1:
            problems.append(f"{where}: the batch lost its last {hi - 1 - idx[-1]} records, "
                            f"but records after it survived")
        if b is not None:
            if idx[0] == lo and recs[0][0] != b["first"]:
                problems.append(f"{where}: the ingest reported first address {b['first']}")
            if idx[-1] == hi - 1 and recs[-1][0] != b["last"]:
                problems.append(f"{where}: the ingest reported last address {b['last']}")
    end = new[-1][0] if new else start
    for j, (lo, hi) in enumerate(begun):
        b = returned.get((lo, hi))
        if j not in seen and b is not None and b["last"] >= floor and b["first"] <= end:
            problems.append(f"lines {lo}:{hi} at {b['first']}..{b['last']} are missing, "
                            f"but records after them survived")
    return problems


def _first_diff(a: list, b: list) -> str:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"#{k}: expected {str(x)[:100]}, got {str(y)[:100]}"
    return f"#{min(len(a), len(b))}: lengths {len(a)} and {len(b)}"


# ---- the test ----

def test_sigkill_at_kill_points(tmp_path):
    t0 = time.monotonic()
    rng = random.Random(SEED)
    has_compact = hasattr(shoal.Store, "compact")
    n_kills = LINEAGES * KILLS_PER_LINEAGE
    kill_points = plan_kill_points(rng, has_compact, n_kills)
    data = Data(DATA)
    totals = Totals()
    cursor = rng.randrange(len(data.lines))
    report: list[str] = []

    def fail(msg: str) -> None:
        pytest.fail(f"SHOAL_CRASH_SEED={SEED}: {msg}\n{summary()}\nlast kill points:\n" + "\n".join(report[-8:]),
                    pytrace=False)

    def summary() -> str:
        return (f"[crash] seed {SEED}: {totals.kill_points} kill points ({totals.hooks_fired} in-process hooks "
                f"fired, not reached: {totals.not_fired}), {totals.acked_batches} acknowledged-durable batches "
                f"({totals.acked_records_checked} record checks), {totals.acked_records_lost} acknowledged records lost, "
                f"{totals.verified_records_lost} earlier-verified records lost, {totals.torn_tails} torn tails "
                f"dropped, {totals.queries} queries checked, {time.monotonic() - t0:.1f} s")

    for k in range(LINEAGES):
        lineage = Lineage(tmp_path / f"store-{k}")
        for kp in kill_points[k * KILLS_PER_LINEAGE:(k + 1) * KILLS_PER_LINEAGE]:
            run = lineage.runs
            lineage.runs += 1
            acks = tmp_path / f"acks-{k}-{run}.jsonl"
            spec = {"store": str(lineage.path), "data": str(DATA), "ack": str(acks), "run": run,
                    "seed": rng.randrange(1 << 32), "start_line": cursor, "config": CONFIGS[k], "psfs": PSFS,
                    "plan": dict(PLAN, max_batches=kp.after_batches + 20 if kp.spec is None
                                 else PLAN["max_batches"]),
                    "register_first": ["path", "udp", "answers"] if run == 0 else [], "kill": kp.spec,
                    "threads": 2 if rng.random() < THREADED_RUNS else 1}
            where = (f"lineage {k} run {run} ({spec['threads']} threads), kill point {kp.label}"
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
                store = shoal.open(lineage.path, **CONFIGS[k])
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
    assert totals.acked_records_lost == 0 and totals.verified_records_lost == 0, summary()
    # A hook that never fires (a renamed function, a plan too short) would test nothing.
    assert len(totals.not_fired) <= 2, summary()
