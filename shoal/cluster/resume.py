"""Resuming an ingest call that a shard's process died in, part stored.

A front whose call failed with its shard asks the restarted shard what the
call stored (begun.py: the records from where it began to where the next
call began). When some of it was, the front sends the call again with the
lost call's token, and the shard skips what it holds (ingest.py says when
the front does so):

  - The call's first `skip` valid records are stored, in order: a store
    ingests a piece's records in input order, and the pieces one after
    another. Which records are valid is decided again by Store.check: the
    same framing and checks ingest applies, so the same records.
  - A piece whose valid records are all among them is skipped whole (its
    bad records reported as before); in the piece where the call stopped,
    the input after its skip-th valid record is ingested, its errors'
    lines moved to the piece's numbering.

Must stay true:
  - Only a cluster with no key resumes: there ingest calls are the only
    appends to a shard's log, so the records between a call's start and
    the next call's are that call's. A keyed shard also appends tombstones
    and compaction's copies of live records.
  - A resumed piece must be NDJSON, and its bad records before the cut all
    known (Store.check lists at most max_reported_errors): otherwise where
    the call stopped cannot be found, and the call fails as before, the
    front saying what was acknowledged. With each record's address wanted
    (addresses=True), every piece's bad records must be known: the stored
    records' addresses go to the valid ones, in order, 0 to the bad.
"""
from __future__ import annotations

from array import array
from typing import Any

from ..errors import ShardUnavailable

_WS = b" \t\r\n"


def stored_span(shard: Any, token: int) -> tuple[int, int, int, int, array] | None:
    """(records, first and last address, log bytes, the records'
    addresses) that the lost call `token` stored on `shard`, or None when
    it never began there."""
    span = shard.begun.span_of(token)
    if span is None:
        return None
    begin, after = span
    got = array("Q")
    for b in shard.store.scan_batches("`true`", order="oldest", from_address=begin, to_address=after,
                                      include_superseded=True):
        got.extend(b.addresses)
    end = after if after is not None else shard.store.tail_address
    return len(got), (got[0] if got else 0), (got[-1] if got else 0), end - begin, got


def skip_stored(shard: Any, data: bytes, fmt: str, skip: int, flags: bool = False) -> tuple:
    """For a piece of a resumed call of which at most `skip` valid records
    are stored: (its valid records stored, its bad records before the cut,
    their errors as (line, reason, offset), the input after the cut or
    None, the piece's line before that input, the piece's input bytes,
    and with `flags` whether each of its records before the cut is valid,
    in order, else None)."""
    r = shard.store.check(data, format=fmt)
    errors = [(e.line, e.reason, e.offset) for e in r.errors]
    whole = r.ingested <= skip  # stored whole
    if (flags or not whole) and r.rejected > len(errors):
        raise _cannot(shard, f"a piece of it holds {r.rejected} bad records, more than the "
                             f"{len(errors)} Store.check lists")
    bad = {line for line, _, _ in errors}
    if whole and fmt != "ndjson":  # an array's errors name its elements
        return (r.ingested, r.rejected, errors, None, 0, r.input_bytes,
                [i not in bad for i in range(1, r.ingested + r.rejected + 1)] if flags else None)
    if not whole and fmt != "ndjson":
        raise _cannot(shard, "it stopped inside a piece that is not NDJSON")
    if whole and not flags:
        return r.ingested, r.rejected, errors, None, 0, r.input_bytes, None
    valid = line = pos = 0
    seen: list[bool] = []
    while pos < len(data) and (whole or valid < skip):  # to the skip-th valid record's line
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line += 1
        if data[pos:end].strip(_WS):
            seen.append(line not in bad)
            valid += seen[-1]
        pos = end
    if whole:
        return r.ingested, r.rejected, errors, None, 0, r.input_bytes, seen if flags else None
    before = [e for e in errors if e[0] <= line]
    return skip, len(before), before, data[pos:], line, r.input_bytes, seen if flags else None


def _cannot(shard: Any, why: str) -> ShardUnavailable:
    return ShardUnavailable(f"shard {shard.shard} cannot resume a call its last process died in: {why}",
                            [shard.shard])
