"""Projections: answers of just some fields of each record, as
Elasticsearch's `_source` filtering gives them.

`fields` are JMESPath expressions. Plain paths (`type`, `repo.name`,
`"id.orig_h"`: keys only) keep the record's nesting, `{"repo": {"name":
...}}`, and are cut out in C (project.c), a batch per call, each value's text
exactly as stored. Any other expression (`payload.commits[0].sha`,
`length(payload.commits)`) is evaluated in Python and its value put under
the expression's text as a top-level key; with one such field the whole
projection runs in Python. A path a record lacks is left out (so is an
object all of whose paths it lacks); a non-plain field whose value is null
is left out too.

Readers only: a Projection is immutable and its native buffers are per
thread.
"""
from __future__ import annotations

import threading
from array import array
from typing import Any

import orjson

from .._native import check, ffi, lib
from ..config import ExpressionLimits
from ..errors import InvalidArgument
from ..psf import EvaluationBudget, NativePSFSet, parse_definition
from ..results import RecordBatch

MAX_FIELDS = 256


class Projection:
    def __init__(self, fields: list[str] | tuple[str, ...], limits: ExpressionLimits | None = None):
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)):
            raise InvalidArgument("fields must be a list of JMESPath expressions (e.g. [\"type\", \"repo.name\"])")
        if not fields:
            raise InvalidArgument("fields must name at least one field")
        if len(fields) > MAX_FIELDS:
            raise InvalidArgument(f"at most {MAX_FIELDS} fields, not {len(fields)}")
        for f in fields:
            if not isinstance(f, str):
                raise InvalidArgument(f"each field is a JMESPath expression (a string), not {f!r}")
        self.fields = tuple(dict.fromkeys(fields))
        self.limits = limits or ExpressionLimits()
        self.exprs = [parse_definition(f, self.limits) for f in self.fields]
        self.paths = [_plain_path(e) for e in self.exprs]
        self.native = all(p is not None for p in self.paths)
        self._local = threading.local()
        if self.native:
            self._set = NativePSFSet.build(list(enumerate(self.exprs)))
            slot_of = {p: i for i, p in enumerate(self._set.slot_paths)}
            self._ops, self._keys = _plan([(p, slot_of[p]) for p in self.paths])
            self._bound = sum(op[3] for op in self._ops) + 2 * len(self._ops) + 4

    def __repr__(self) -> str:
        return f"Projection({list(self.fields)!r}, native={self.native})"

    # ---- one record (Python) ----
    def value(self, obj: Any, budget: EvaluationBudget | None = None) -> dict:
        """The projection of a parsed record, as a dict."""
        out: dict = {}
        for text, expr, path in zip(self.fields, self.exprs, self.paths):
            if path is not None:
                cur = obj
                for k in path:
                    if not isinstance(cur, dict) or k not in cur:
                        break
                    cur = cur[k]
                else:
                    node = out
                    for k in path[:-1]:
                        node = node.setdefault(k, {})
                    node[path[-1]] = cur
                continue
            try:
                v = budget.search(expr, obj) if budget is not None else expr.search(obj)
            except Exception:  # noqa: BLE001 - as for PSFs: an evaluation error is no value
                continue
            if v is not None:
                out[text] = v
        return out

    # ---- batches ----
    def batch(self, batch: RecordBatch) -> RecordBatch:
        """The batch with each record projected (same addresses)."""
        n = len(batch.addresses)
        if not n:
            return batch
        if not self.native:
            return self._python_batch(batch)
        st = self._state()
        data = batch._buf
        offsets = batch.offsets
        lengths = batch.lengths
        job = st.job
        job.buf = ffi.from_buffer(data)
        job.offsets = ffi.from_buffer("uint64_t[]", offsets)
        job.lengths = ffi.from_buffer("uint32_t[]", lengths)
        job.n = n
        job.next = 0
        job.out_len = 0
        out_offsets = array("Q", bytes(8 * n))
        out_lengths = array("I", bytes(4 * n))
        job.out_offsets = ffi.from_buffer("uint64_t[]", out_offsets)
        job.out_lengths = ffi.from_buffer("uint32_t[]", out_lengths)
        cap = max(len(data) + n * self._bound, 4096)
        out = ffi.new("char[]", cap)
        job.out = out
        job.cap = cap
        while True:
            rc = lib.shoal_project(job)
            if rc != lib.SHOAL_E_SPACE:
                break
            cap *= 2  # values never outgrow their records: only the keys can
            bigger = ffi.new("char[]", cap)
            ffi.memmove(bigger, out, job.out_len)
            out = bigger
            job.out = out
            job.cap = cap
        check(rc, "projection")
        return RecordBatch(ffi.buffer(out, job.out_len)[:], batch.addresses, out_offsets, out_lengths)

    def _python_batch(self, batch: RecordBatch) -> RecordBatch:
        budget = EvaluationBudget(self.limits)
        parts, offsets, lengths = [], array("Q"), array("I")
        pos = 0
        for raw in batch.raws():
            text = orjson.dumps(self.value(orjson.loads(raw), budget))
            parts.append(text)
            parts.append(b"\n")
            offsets.append(pos)
            lengths.append(len(text))
            pos += len(text) + 1
        return RecordBatch(b"".join(parts), batch.addresses, offsets, lengths)

    def _state(self):
        st = getattr(self._local, "st", None)
        if st is None:
            st = self._local.st = _State(self)
        return st


class _State:
    """A thread's native job for one Projection."""

    def __init__(self, p: Projection):
        self.slots = ffi.new("shoal_slot[]", max(1, p._set.n_slots))
        self.ops = ffi.new("shoal_project_op[]", [list(op) for op in p._ops])
        self.keys = ffi.new("char[]", p._keys or b"\0")
        self.job = job = ffi.new("shoal_project_job *")
        job.set = p._set.ptr
        job.ops = self.ops
        job.n_ops = len(p._ops)
        job.keys = self.keys
        job.slots = self.slots
        job.bound_per_record = p._bound


def _plain_path(expr) -> tuple[str, ...] | None:
    """The keys of a plain path expression (keys only, at least one), else None."""
    prog = expr.program
    if not expr.native or prog is None or len(prog) != 1 or prog[0][0] != "SLOT":
        return None
    path = prog[0][1]
    if not path or not all(isinstance(k, str) for k in path):
        return None
    return tuple(path)


def _plan(paths: list[tuple[tuple[str, ...], int]]) -> tuple[list[tuple[int, int, int, int]], bytes]:
    """The ops that write the paths' tree in pre-order (shoal.h: SHOAL_PROJECT_*),
    and the keys' JSON text they point into. A path that is a prefix of
    another wins: the whole object is written (as Elasticsearch does)."""
    tree: dict = {}
    for path, slot in paths:
        node = tree
        for k in path[:-1]:
            child = node.get(k)
            if isinstance(child, int):  # a shorter path already takes this object whole
                break
            node = node.setdefault(k, {})
        else:
            node[path[-1]] = slot
    ops: list[tuple[int, int, int, int]] = []
    keys = bytearray()

    def key(k: str) -> tuple[int, int]:
        text = orjson.dumps(k) + b":"
        keys.extend(text)
        return len(keys) - len(text), len(text)

    def walk(node: dict) -> None:
        for k, child in node.items():
            off, n = key(k)
            if isinstance(child, int):
                ops.append((lib.SHOAL_PROJECT_LEAF, child, off, n))
            else:
                ops.append((lib.SHOAL_PROJECT_OPEN, 0, off, n))
                walk(child)
                ops.append((lib.SHOAL_PROJECT_CLOSE, 0, 0, 0))

    walk(tree)
    depth = max((len(p) for p, _ in paths), default=0)
    if depth > lib.SHOAL_PROJECT_MAX_DEPTH:
        raise InvalidArgument(f"a field path may be at most {lib.SHOAL_PROJECT_MAX_DEPTH} keys deep")
    return ops, bytes(keys)
