"""What the crash test checks after each kill, against what the killed child
acknowledged (its ack file) and what earlier checks saw (a Lineage).

`check_recovered` runs every check on a reopened store and returns the
problems found as strings (empty: all good), updating the lineage and the
totals. The oracle values come from tests/oracle.py (orjson + jmespath),
cached per (PSF, input line) in `Data`.
"""
from __future__ import annotations

import bisect
import dataclasses
import gzip
import json
import re
from pathlib import Path
from typing import Any

import orjson
from oracle import ALL, Definition, python_value, sample_values, value_key

from shoal.store.address import FIRST_ADDRESS

_ADDRESS = re.compile(r"address (\d+)")
_SEQ_STRIDE = 1 << 20  # sequence numbers: event number * stride + position in the batch
KEY = "__key__"


class Data:
    """The input lines, which line a stored record is, and oracle values per
    (definition name, line), computed once."""

    def __init__(self, path: Path, definitions: dict[str, str]):
        with gzip.open(path, "rb") as f:
            self.lines = f.read().split(b"\n")
        if not self.lines[-1]:
            self.lines.pop()
        self.line_of: dict[bytes, int] = {raw: i for i, raw in enumerate(self.lines)}
        assert len(self.line_of) == len(self.lines), "the checks tell records apart by their bytes"
        self.definitions = definitions
        self._defs = {name: Definition(d) for name, d in definitions.items()}
        self._values: dict[str, dict[int, Any]] = {name: {} for name in definitions}

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
    config: dict
    key: str | None = None  # a keyed store's key expression (data.definitions[KEY])
    log: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (address, line), verified
    acked: list[dict] = dataclasses.field(default_factory=list)           # ingests acknowledged durable
    compacted_to: int = FIRST_ADDRESS  # the highest begin address a returned compaction reported
    tail: int | None = None            # after the last check
    active: dict[str, bool] = dataclasses.field(default_factory=dict)
    runs: int = 0
    # keyed stores: write order (single-threaded runs), deletes, what must be live
    events: int = 0
    seq: dict[int, int] = dataclasses.field(default_factory=dict)          # line -> sequence number
    deletes: dict[tuple, list[int]] = dataclasses.field(default_factory=dict)  # key -> begun deletes
    required: dict[tuple, int] = dataclasses.field(default_factory=dict)   # key -> state it must be at or past

    def stored(self, data: Data, lo: int, hi: int) -> list[int]:
        """The lines of an ingest of lines lo:hi that a store keeps (a keyed
        store rejects records without a key)."""
        if self.key is None:
            return list(range(lo, hi))
        return [i for i in range(lo, hi) if data.value(KEY, i) is not None]


@dataclasses.dataclass
class Totals:
    kill_points: int = 0
    hooks_fired: int = 0
    not_fired: list[str] = dataclasses.field(default_factory=list)
    acked_batches: int = 0
    acked_records_checked: int = 0
    acked_records_lost: int = 0
    verified_records_lost: int = 0
    keys_checked: int = 0
    deletes_acked: int = 0
    compactions: int = 0
    records_compacted: int = 0
    records_copied: int = 0
    live_versions_lost: int = 0
    queries: int = 0
    torn_tails: int = 0

    def summary(self) -> str:
        return (f"{self.kill_points} kill points ({self.hooks_fired} in-process hooks fired, not reached: "
                f"{self.not_fired}), {self.acked_batches} acknowledged-durable batches "
                f"({self.acked_records_checked} record checks), {self.acked_records_lost} acknowledged records "
                f"lost, {self.verified_records_lost} earlier-verified records lost; keyed: {self.keys_checked} "
                f"key checks, {self.deletes_acked} durable deletes, {self.live_versions_lost} acknowledged live "
                f"versions lost; {self.compactions} compactions returned ({self.records_compacted} records "
                f"dropped, {self.records_copied} copied); {self.torn_tails} torn tails dropped, {self.queries} "
                f"queries checked")


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    data = path.read_bytes()
    return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]


def check_recovered(store, lineage: Lineage, events: list[dict], data: Data, totals: Totals) -> list[str]:
    """Every property, after one kill; returns what is wrong (empty: all good)."""
    problems: list[str] = []
    begin, tail = store.begin_address, store.tail_address
    keyed = lineage.key is not None

    # What the run did, from its acks.
    opened = [e for e in events if e["ev"] == "open"]
    if opened and lineage.tail is not None and opened[0]["tail"] != lineage.tail:
        problems.append(f"the child recovered tail {opened[0]['tail']}, the checker {lineage.tail}")
    begun: list[tuple[int, int]] = []  # line ranges the run began to ingest
    batches: list[dict] = []           # ingests that returned
    pending: list[tuple[tuple, int]] = []  # deletes that returned, not yet durable: (key, seq)
    compacting = 0  # compactions begun and not returned (two threads may overlap)
    psf_pending: set[str] = set()
    for e in events:
        ev = e["ev"]
        if ev == "begin":
            begun.append((e["lo"], e["hi"]))
            base = lineage.events * _SEQ_STRIDE
            lineage.events += 1
            for n, i in enumerate(range(e["lo"], e["hi"])):
                lineage.seq[i] = base + n
        elif ev == "ingest":
            n_stored = len(lineage.stored(data, e["lo"], e["hi"]))
            if (e["count"], e["rejected"]) != (n_stored, e["hi"] - e["lo"] - n_stored):
                problems.append(f"ingest of lines {e['lo']}:{e['hi']} stored {e['count']}, "
                                f"rejected {e['rejected']}; expected {n_stored} stored")
            batches.append(e)
            if e["durable"]:
                _ack(lineage, totals, e, data)
        elif ev == "durable":  # flush or checkpoint: everything ingested so far is on disk
            for b in batches:
                if not b.get("acked") and b["count"] and b["last"] < e["tail"]:
                    _ack(lineage, totals, b, data)
            for k, s in pending:
                lineage.required[k] = max(lineage.required.get(k, 0), s)
            pending.clear()
        elif ev == "delete-begin":
            k = value_key(e["key"])
            lineage.deletes.setdefault(k, []).append(lineage.events * _SEQ_STRIDE)
            lineage.events += 1
        elif ev == "delete" and e["deleted"]:
            k, s = value_key(e["key"]), lineage.deletes[value_key(e["key"])][-1]
            if e["durable"]:
                lineage.required[k] = max(lineage.required.get(k, 0), s)
                totals.deletes_acked += 1
            else:
                pending.append((k, s))
        elif ev == "psf-begin":
            psf_pending.add(e["name"])
        elif ev == "psf":
            psf_pending.discard(e["name"])
            lineage.active[e["name"]] = e["op"] == "register"
        elif ev == "compact-begin":
            compacting += 1
        elif ev == "compact":
            compacting -= 1
            totals.compactions += 1
            totals.records_copied += e["copied"]
            totals.records_compacted += e["dropped"]
            lineage.compacted_to = max(lineage.compacted_to, e["begin"])

    # Compaction: begin moves only by a compaction, and not back after one returned.
    floor = begin
    if begin < lineage.compacted_to:
        problems.append(f"begin address {begin} is below {lineage.compacted_to}, "
                        f"where a completed compaction had moved it")
    if begin > lineage.compacted_to and not compacting:
        problems.append(f"begin address {begin} is past {lineage.compacted_to} without a compaction")
        floor = lineage.compacted_to

    # 2. Every record parses and is an input line (in a keyed store: every
    # version, superseded ones included).
    everything = store.scan(ALL, order="oldest", **({"include_superseded": True} if keyed else {}))
    found = [(r.address, r.raw) for r in everything]
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
    problems += check_run_records(found[len(got_old):], begun, batches, floor, start, lineage, data)

    # 1. Every acknowledged record is there, at its address, byte for byte.
    problems += _check_acked(store, lineage, found, floor, data, totals)
    if keyed:  # and every acknowledged write or delete is still the key's state, or a later one is
        problems += _check_keys(store, lineage, found, data, totals)

    # 3a. recovery.dropped: strings, never about acknowledged data.
    acked_end = max((b["last"] + 1 for b in lineage.acked if b["last"] >= floor), default=0)
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
    leftovers = sorted(f.name for f in store.path.glob("psfs.json*.tmp"))
    if leftovers:  # one more after every crash inside a registry save, for good
        problems.append(f"temporary files of interrupted registry saves were left: {leftovers}")
    for p in psfs.values():
        lineage.active[p.name] = p.active
        if p.definition != data.definitions.get(p.name):
            problems.append(f"PSF {p.name!r} has definition {p.definition!r}")
        if any(a > tail or (b is not None and b > tail) for a, b in p.ranges):
            problems.append(f"PSF {p.name!r} has ranges {p.ranges} past the tail {tail}")

    # 3c. Every index answer equals the oracle over the scanned records.
    if keyed:
        live = [(r.address, r.raw) for r in store.scan(ALL, order="oldest")]
        problems += _check_queries(store, psfs, live, data, totals, {})
        problems += _check_queries(store, psfs, found, data, totals, {"include_superseded": True})
    else:
        problems += _check_queries(store, psfs, found, data, totals, {})
    lineage.log = [(a, data.line_of[r]) for a, r in found]
    lineage.tail = tail
    lineage.compacted_to = max(lineage.compacted_to, begin)  # an interrupted compaction's, if it got that far
    return problems


def _ack(lineage: Lineage, totals: Totals, b: dict, data: Data) -> None:
    b["acked"] = True
    if not b["count"]:
        return
    lineage.acked.append(b)
    totals.acked_batches += 1
    if lineage.key is not None:  # each key's state must be at or past its acknowledged write
        for i in lineage.stored(data, b["lo"], b["hi"]):
            k = data.value(KEY, i)
            lineage.required[k] = max(lineage.required.get(k, 0), lineage.seq[i])


def _check_acked(store, lineage: Lineage, found: list[tuple[int, bytes]], floor: int, data: Data,
                 totals: Totals) -> list[str]:
    """Acknowledged batches are at their addresses, byte for byte, in
    order (other calls' records may lie between theirs), except below the
    begin address a compaction moved."""
    problems: list[str] = []
    lines = data.lines
    by_address = dict(found)
    addresses = [a for a, _ in found]
    for b in lineage.acked:
        if b["last"] < floor:
            continue
        stored = lineage.stored(data, b["lo"], b["hi"])
        n = len(stored)
        mine = set(stored)  # other calls' batches may sit between this call's (they interleave)
        inside = [(a, r) for a, r in found[bisect.bisect_left(addresses, max(b["first"], floor)):
                                           bisect.bisect_right(addresses, b["last"])]
                  if data.line_of.get(r) in mine]
        whole = b["first"] >= floor
        totals.acked_records_checked += n if whole else len(inside)
        expect = [lines[i] for i in (stored if whole else stored[n - len(inside):])]
        lost = (n - len(inside)) if whole else 0
        if lost or [r for _, r in inside] != expect:
            totals.acked_records_lost += max(lost, 1)
            problems.append(f"acknowledged lines {b['lo']}:{b['hi']} at {b['first']}..{b['last']}: "
                            f"{len(inside)} of {n} records found intact")
        for key, line in (("first", stored[0]), ("last", stored[-1])):
            if b[key] >= floor:
                rec = store.get(b[key])
                if rec is None or rec.raw != lines[line] or by_address.get(b[key]) != lines[line]:
                    problems.append(f"get({b[key]}) does not return acknowledged line {line}")
    return problems


def _check_keys(store, lineage: Lineage, found: list[tuple[int, bytes]], data: Data,
                totals: Totals) -> list[str]:
    """Keyed stores (runs are single-threaded, so write order is ack order):
    each key's live version is its newest surviving version unless a delete
    began after it; each key's state (its live version, or the delete that
    ended it) is at or past every acknowledged write and delete of it and
    the state an earlier check saw; get_key agrees with the scans."""
    problems: list[str] = []
    seq = lineage.seq
    newest: dict[tuple, int] = {}  # key -> newest surviving line
    for _, raw in found:
        i = data.line_of[raw]
        k = data.value(KEY, i)
        if k not in newest or seq[i] > seq[newest[k]]:
            newest[k] = i
    live: dict[tuple, int] = {}
    for r in store.scan(ALL, order="oldest"):
        i = data.line_of[r.raw]
        k = data.value(KEY, i)
        if k in live:
            problems.append(f"key {k[1]!r} has two live versions: lines {live[k]} and {i}")
        live[k] = i

    def deleted_after(k: tuple, s: int) -> int | None:
        later = [d for d in lineage.deletes.get(k, ()) if d > s]
        return max(later) if later else None

    state: dict[tuple, int] = {}
    for k in set(newest) | set(lineage.required):
        totals.keys_checked += 1
        cur = live.get(k)
        if k in newest and cur is not None and cur != newest[k]:
            problems.append(f"key {k[1]!r}: line {cur} is live, but line {newest[k]} is newer")
        if cur is not None:
            state[k] = seq[cur]
        else:
            d = deleted_after(k, seq[newest[k]] if k in newest else -1)
            if d is None:
                problems.append(f"key {k[1]!r} has no live version, but no delete of it began after "
                                f"{'line ' + str(newest[k]) if k in newest else 'its last version'}")
                state[k] = -1
            else:
                state[k] = d
        if state[k] < lineage.required.get(k, -1):
            totals.live_versions_lost += 1
            problems.append(f"key {k[1]!r}: recovered to {'line ' + str(cur) if cur is not None else 'deleted'}, "
                            f"older than what was acknowledged or seen before (seq {lineage.required[k]})")
        rec = store.get_key(python_value(k))
        if (rec is None) != (cur is None) or (rec is not None and rec.raw != data.lines[cur]):
            problems.append(f"get_key({k[1]!r}) = {rec!r}, the live scan has line {cur}")
    lineage.required = {k: s for k, s in state.items() if s >= 0}  # what the checker saw: durable now
    return problems


def _check_queries(store, psfs: dict, records: list[tuple[int, bytes]], data: Data, totals: Totals,
                   options: dict) -> list[str]:
    """Each PSF, for sampled values (most, least and middle frequent, true,
    a missing one): the query equals the oracle over `records`."""
    problems: list[str] = []
    for name in psfs:
        groups: dict[tuple, list[tuple[int, bytes]]] = {}
        for a, r in records:
            k = data.value(name, data.line_of[r])
            if k is not None:
                groups.setdefault(k, []).append((a, r))
        counts = {k: len(v) for k, v in groups.items()}
        for value in sample_values(counts, 2) + [True, "no such value"]:
            expect = groups.get(value_key(value), [])[::-1]
            got = [(r.address, r.raw) for r in store.query(name, value, **options)]
            oldest = [(r.address, r.raw) for r in store.query(name, value, order="oldest", limit=3, **options)]
            totals.queries += 2
            if got != expect or oldest != expect[::-1][:3]:
                problems.append(f"query({name!r}, {value!r}, {options}): {len(got)} records, the oracle "
                                f"{len(expect)}; first difference at {_first_diff(expect, got)}")
    return problems


def check_run_records(new: list[tuple[int, bytes]], begun: list[tuple[int, int]], batches: list[dict],
                      floor: int, start: int, lineage: Lineage, data: Data) -> list[str]:
    """The records after the run's start address, in log order, are the
    batches the run began, each at the addresses its ingest reported, up to
    the point where the log was cut. Each batch (one ingest call) keeps its
    input order and loses records only at its end; since the log is cut as
    a prefix, a batch that returned lost nothing if any record of the run
    after its last survived. (Concurrent calls prepare outside the writer
    lock and commit batch by batch, so their records may interleave.) A
    compaction in this run may have cut a batch left, below `floor`; in a
    keyed store it may have copied earlier records here too."""
    problems: list[str] = []
    keyed = lineage.key is not None
    stored = [lineage.stored(data, lo, hi) for lo, hi in begun]
    batch_of = {i: j for j, s in enumerate(stored) for i in s}
    returned = {(b["lo"], b["hi"]): b for b in batches}
    found: dict[int, list[tuple[int, int]]] = {}  # batch -> [(address, line)] in log order
    for a, raw in new:
        i = data.line_of[raw]
        j = batch_of.get(i)
        b = returned.get(begun[j]) if j is not None else None
        if keyed and (j is None or (b is not None and b["count"] and not b["first"] <= a <= b["last"])):
            if i not in lineage.seq:
                problems.append(f"record at {a} is line {i}, which was never ingested")
            continue  # a live version copied forward by a compaction
        if j is None:
            return [f"record at {a} is line {i}, which the run did not ingest"]
        found.setdefault(j, []).append((a, i))
    end = max((a for a, _ in new), default=-1)  # the last surviving record of the run
    for j, recs in found.items():
        lo, hi = begun[j]
        want = stored[j]
        b = returned.get((lo, hi))
        where = f"lines {lo}:{hi} (at {recs[0][0]}..{recs[-1][0]})"
        idx = [i for _, i in recs]
        p0 = want.index(idx[0])
        if idx != want[p0:p0 + len(idx)]:
            problems.append(f"{where}: lines out of order or missing inside the batch")
        if p0 != 0 and not (floor > start and (b is None or b["first"] < floor)):
            problems.append(f"{where}: the batch's first {p0} records are missing")
        if idx[-1] != want[-1] and b is not None and b["last"] < end:
            problems.append(f"{where}: the batch returned and lost records at its end, but records after it "
                            f"survived")
        if b is not None:
            if p0 == 0 and recs[0][0] != b["first"]:
                problems.append(f"{where}: the ingest reported first address {b['first']}")
            if idx[-1] == want[-1] and recs[-1][0] != b["last"]:
                problems.append(f"{where}: the ingest reported last address {b['last']}")
    for j, (lo, hi) in enumerate(begun):
        b = returned.get((lo, hi))
        if j not in found and b is not None and b["count"] and b["last"] >= floor and b["first"] < end:
            problems.append(f"lines {lo}:{hi} at {b['first']}..{b['last']} are missing, "
                            f"but records after them survived")
    return problems


def _first_diff(a: list, b: list) -> str:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"#{k}: expected {str(x)[:100]}, got {str(y)[:100]}"
    return f"#{min(len(a), len(b))}: lengths {len(a)} and {len(b)}"
