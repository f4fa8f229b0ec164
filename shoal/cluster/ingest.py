"""A cluster ingest: the input cut into pieces (routing.py), each sent to
its shard, acknowledged once every shard that got one has stored it.

Must stay true:
  - One ingest call is in flight per shard per front call, so a shard
    stores this call's pieces in the order they were cut (a threaded actor
    runs concurrent calls in no set order, and marks.py raises a seq that
    arrives late); the input that piles up meanwhile, at most
    MAX_QUEUED_PIECES pieces' bytes, goes in the shard's next call (put in
    Ray's object store while the shard works), so the shard is not idle
    while the front waits for an answer.
  - Pieces join only when they are consecutive in the input and nothing
    was cut for another shard between them (Piece.takes): one mark then
    orders both, exactly as two would.
  - The result counts only what shards acknowledged. A shard whose
    process dies with a call out is asked, once Ray restarts it, how much
    of that call was stored (begun.py); if none was, the call is sent
    again (once per shard per ingest), and if some was, it is sent again
    naming the lost call, whose stored records the shard skips (resume.py;
    not on a keyed cluster), so no record is stored twice. Otherwise the
    ingest stops: what is in flight elsewhere is waited for and counted,
    then ShardUnavailable says which shards and carries the result.
  - A shard acknowledges a call once its pieces are written to the OS
    (they outlive the shard's process: Ray restarts it, its store recovers
    them), and with durable=True once they are fsynced (they outlive the
    machine).
"""
from __future__ import annotations

import os
from array import array
from collections import defaultdict
from typing import Any

import numpy as np

from ..errors import IngestRejected, ShardUnavailable
from ..ingest.framing import InputFormat
from ..ingest.sources import Source
from ..results import IngestError, IngestResult
from . import addresses

_BUFFERS = (bytes, bytearray, memoryview, list)  # a piece's data, unless it is in Ray's object store (_checked)
MAX_QUEUED_PIECES = 4  # pieces' worth of input waiting behind a shard's call in flight before the front waits


def run(front: Any, data: Any, *, durable: bool, fmt: InputFormat, max_input_bytes: int | None,
        with_addresses: bool = False, reject: bool = False) -> IngestResult:
    """The records of `data` stored by the cluster `front`'s shards;
    with_addresses: result.addresses holds each input record's cluster
    address (0: rejected) in input order, as a store's does; reject: every
    shard checks its pieces first, and nothing is stored if any record is
    bad (_checked)."""
    source = Source(data, max_input_bytes)
    result = IngestResult()
    # One call in flight per shard, so a shard stores this front's pieces
    # in the order they were cut (a threaded actor runs concurrent calls
    # in no set order); the pieces that pile up meanwhile go in its next
    # call, so the shard is never idle waiting for the front.
    inflight: dict[int, tuple[list, Any, int]] = {}  # shard -> (pieces, request, call token)
    retried: set[int] = set()  # shards whose failed call was sent again (once per ingest)
    resumes: dict[int, int] = {}  # shard -> token of the failed call its next call resumes (resume.py)
    # Resuming counts on a shard's log holding nothing but ingest calls
    # (resume.py): not on a keyed cluster.
    resumable = front.map.key is None
    pending: dict[int, list] = {}
    failures: list[tuple[int, BaseException]] = []
    errors: list[IngestError] = []
    ends: list[tuple[int, int, int]] = []  # (seq, first, last) of each piece that stored records
    placed: list[tuple[Any, Any]] = []  # with_addresses: (piece, its records' cluster addresses)

    def send(shard: int) -> None:
        pieces = pending.pop(shard)
        wire = [(_parts(p) if isinstance(p.data, _BUFFERS) else p.data, p.fmt, p.seq) for p in pieces]
        token = int.from_bytes(os.urandom(8), "little") | 1
        ref = front._call(shard, "ingest", wire, durable, with_addresses, token, resumes.pop(shard, 0), retries=0)
        inflight[shard] = (pieces, ref, token)

    def complete(shard: int) -> None:
        pieces, ref, token = inflight.pop(shard)
        try:
            outs = front._get(shard, ref)
        except ShardUnavailable as exc:
            stored = None if shard in retried else _stored_by(front, shard, token)
            if stored == 0 or (stored and resumable):
                retried.add(shard)  # sent again, first in its queue, skipping what was stored
                pending[shard] = pieces + pending.get(shard, [])
                if stored:
                    resumes[shard] = token
            else:
                failures.append((shard, exc))
            return
        for piece, (ingested, rejected, input_bytes, stored_bytes, errs, first, last, addrs) in zip(pieces, outs):
            if with_addresses:
                a = np.frombuffer(addrs, dtype=np.uint64)
                placed.append((piece, np.where(a != 0, a | np.uint64(shard << addresses.STORE_ADDRESS_BITS), 0)))
            result.ingested += ingested
            result.rejected += rejected
            result.input_bytes += input_bytes
            result.stored_bytes += stored_bytes
            if first:
                ends.append((piece.seq, addresses.encode(shard, first), addresses.encode(shard, last)))
            for line, why, off in errs:
                errors.append(IngestError(piece.input_line(line), why, off))

    def drain(block: bool) -> None:
        """Complete the calls that are done (block: all of them), and
        send each such shard what piled up for it."""
        if not inflight:
            return
        refs = {ref: shard for shard, (_, ref, _) in inflight.items()}
        done = list(refs) if block else front._ray.wait(list(refs), num_returns=len(refs), timeout=0)[0]
        for ref in done:
            shard = refs[ref]
            complete(shard)
            if pending.get(shard) and not failures:
                send(shard)

    queued_max = MAX_QUEUED_PIECES * front._router.piece_bytes
    try:
        cut = front._router.pieces(source, fmt, result)
        last = None  # the piece cut last
        for piece in (_checked(front, cut, result) if reject else cut):
            piece.seq = front._seq.next()
            queue = pending.setdefault(piece.shard, [])
            # A piece that follows the last one cut for the same shard, which
            # still waits, joins it: the shard stores it with the same
            # Store.ingest (a call per piece costs its parallel pipeline's
            # fill and drain), under the same mark (its records keep their
            # order: no other shard got a piece cut between them).
            if not (queue and queue[-1] is last and isinstance(piece.data, _BUFFERS)
                    and isinstance(last.data, _BUFFERS) and last.size < queued_max and last.takes(piece)):
                queue.append(piece)
                last = piece
            if piece.shard not in inflight:
                send(piece.shard)
            elif sum(p.size for p in queue) >= queued_max:
                # Into Ray's object store now, while the shard works on its
                # call: the next call then carries references, and the
                # shard is not idle while the front copies.
                for p in queue:
                    if isinstance(p.data, _BUFFERS):
                        p.data = front._ray.put(_parts(p))
                complete(piece.shard)
                send(piece.shard)
            else:
                drain(False)
            if failures:
                break
        while inflight:
            drain(True)
        result.durable = durable and not failures
    except BaseException as exc:
        while inflight:
            drain(True)
        _finish(result, errors, ends, front.config.max_reported_errors)
        exc.ingest_result = result
        raise
    finally:
        source.close()
    framing = list(result.errors)  # what the front rejected itself (routing.py), not a shard
    _finish(result, errors, ends, front.config.max_reported_errors)
    if with_addresses:
        result.addresses = _in_input_order(placed, framing)
    if failures:
        shards = sorted({s for s, _ in failures})
        exc = ShardUnavailable(f"shards {shards} did not acknowledge their part of this ingest; "
                               f"{result.ingested:,} records were acknowledged by the others", shards, result)
        exc.ingest_result = result  # what the HTTP answer reports as stored
        raise exc from failures[0][1]
    return result


def _stored_by(front: Any, shard: int, token: int) -> int | None:
    """How many records a call that failed with its shard stored there (0:
    none, or it never began), asked of the shard once Ray has restarted it
    (the question is retried while it restarts; begun.py); None when the
    shard does not answer."""
    try:
        began, stored = front._get(shard, front._call(shard, "began", token))
    except ShardUnavailable:
        return None
    return stored if began else 0


def _parts(piece: Any) -> list:
    """A piece's buffers as numpy views: Ray sends them out of band (one
    copy, into its object store; the shard reads them in place), where
    bytes it would pickle."""
    return [np.frombuffer(d, dtype=np.uint8) for d in (piece.data if isinstance(piece.data, list) else [piece.data])]


CHECKS_IN_FLIGHT = 4  # Cluster.check: pieces out to shards at once (the front holds no more of the input)


def check(front: Any, data: Any, *, fmt: InputFormat, max_input_bytes: int | None) -> IngestResult:
    """Cluster.check: the input cut as an ingest cuts it, each piece checked
    by its shard (Store.check), CHECKS_IN_FLIGHT at a time; the result
    counts what would be stored and every error, with the front's framing
    errors, by input line. Nothing is stored."""
    source = Source(data, max_input_bytes)
    result = IngestResult()
    out = IngestResult()
    errors: list[IngestError] = []
    inflight: list[tuple[Any, Any]] = []

    def take() -> None:
        piece, ref = inflight.pop(0)
        (ok, bad, errs, size), = front._get(piece.shard, ref)
        out.ingested += ok
        out.rejected += bad
        out.input_bytes += size
        errors.extend(IngestError(piece.input_line(line), why, off) for line, why, off in errs)

    try:
        for piece in front._router.pieces(source, fmt, result):
            if len(inflight) >= CHECKS_IN_FLIGHT:
                take()
            inflight.append((piece, front._call(piece.shard, "check", [(_parts(piece), piece.fmt)])))
        while inflight:
            take()
    finally:
        source.close()
    out.rejected += result.rejected
    out.input_bytes += result.input_bytes
    errors.extend(result.errors)  # the front's framing errors
    errors.sort(key=lambda e: e.line)
    out.errors = errors[: front.config.max_reported_errors]
    return out


def _checked(front: Any, pieces: Any, result: IngestResult) -> list:
    """on_error="reject": the input's pieces, each put in Ray's object store
    once (so the front holds none of the input), after every shard has
    checked its own (Store.check). Any bad record, the front's framing
    errors included, raises IngestRejected with every error and nothing
    stored. Between the check and the stores the pause is held (pause.py),
    so no move intervenes; a shard that fails while storing leaves the
    others' parts stored (ShardUnavailable says what)."""
    ray = front._ray
    held = []
    for p in pieces:
        p.data = ray.put(_parts(p))
        held.append(p)
    by_shard: dict[int, list] = defaultdict(list)
    for p in held:
        by_shard[p.shard].append(p)
    refs = {s: front._call(s, "check", [(p.data, p.fmt) for p in ps]) for s, ps in by_shard.items()}
    checked = IngestResult()
    checked.rejected = result.rejected
    checked.input_bytes = result.input_bytes
    errors = list(result.errors)  # the front's framing errors
    for s, ref in refs.items():
        for p, (ok, bad, errs, _) in zip(by_shard[s], front._get(s, ref)):
            checked.ingested += ok
            checked.rejected += bad
            errors.extend(IngestError(p.input_line(line), why, off) for line, why, off in errs)
    if checked.rejected:
        errors.sort(key=lambda e: e.line)
        checked.errors = errors[: front.config.max_reported_errors]
        raise IngestRejected(checked)
    return held


def _finish(result: IngestResult, errors: list[IngestError], ends: list, max_errors: int) -> None:
    if ends:
        ends.sort()
        result.first_address, result.last_address = ends[0][1], ends[-1][2]
    errors.extend(result.errors)
    errors.sort(key=lambda e: e.line)
    result.errors = errors[: max_errors]


def _in_input_order(placed: list, errors: list[IngestError]) -> array:
    """Each input record's cluster address in input order: spread pieces
    are slices of the input (in order of their first lines);
    routed pieces know each record's input line, and records the front
    rejected (framing) have address 0 at theirs."""
    if all(p.lines is None for p, _ in placed):
        # Slices of the input from their first line on; a record the front
        # rejected lies between two of them.
        runs = [(p.first_line, a.astype(np.uint64)) for p, a in placed]
        runs += [(e.line, np.zeros(1, np.uint64)) for e in errors]
        runs.sort(key=lambda r: r[0])
        out = array("Q")
        for _, a in runs:
            out.frombytes(a.tobytes())
        return out
    pairs = [(e.line, 0) for e in errors]
    for p, a in placed:
        pairs.extend(zip((int(x) for x in p.lines), (int(x) for x in a)))
    pairs.sort()
    return array("Q", (a for _, a in pairs))
