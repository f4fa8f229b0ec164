"""What the commands print: records on stdout in batches, ingest summaries,
tables. Library objects and their JSON forms (what shoal.Client returns for
some calls) are read alike through `field`."""
from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterable
from typing import Any

_WRITE_BYTES = 1 << 20
_SHOWN_ERRORS = 5


def field(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a library object or of its JSON form."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def err(message: str) -> None:
    print(message, file=sys.stderr)


def label(name: str) -> str:
    return "<stdin>" if name == "-" else name


def write_records(records: Iterable[Any], with_address: bool, *, one_line: bool = True) -> None:
    """Raw record bytes, each followed by a newline, written in batches to
    stdout. one_line: line breaks inside a record (a pretty-printed one)
    become spaces, which JSON reads alike, so the output is NDJSON."""
    with contextlib.closing(records) if hasattr(records, "close") else contextlib.nullcontext():
        _write_batches(records, with_address, one_line)


def write_ndjson(batches: Iterable[Any], with_address: bool = False) -> None:
    """The NDJSON of library RecordBatches to stdout (with_address: lines
    {"address":a,"record":<raw>}), a batch per write, made without Python
    work per record."""
    with contextlib.closing(batches) if hasattr(batches, "close") else contextlib.nullcontext():
        sys.stdout.flush()
        out = sys.stdout.buffer
        for b in batches:
            out.write(b.ndjson_with_addresses() if with_address else b.ndjson())
        out.flush()


def write_columns(records: Iterable[Any], fields: list[str], paths: list[tuple[str, ...] | None], fmt: str,
                  with_address: bool = False) -> None:
    """Records as CSV (a header row, then one row per record) or as an aligned
    text table, a column per field (sqlite-utils' --csv and --table): a
    string as itself, any other value as its JSON text, a missing one empty.
    A field is read from the record as the projection wrote it: at its
    path's keys (paths[i], for a plain path), else under its text. A table
    is built whole."""
    columns = (["address"] if with_address else []) + fields
    getters = [_getter(f, p) for f, p in zip(fields, paths)]

    def rows() -> Iterable[list[str]]:
        with contextlib.closing(records) if hasattr(records, "close") else contextlib.nullcontext():
            for rec in records:
                obj = rec.json()
                cells = [_cell(get(obj)) for get in getters]
                yield ([str(rec.address)] if with_address else []) + cells

    sys.stdout.flush()
    if fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(columns)
        for row in rows():
            w.writerow(row)
    else:
        print(table(columns, list(rows())))
    sys.stdout.flush()


_MISSING = object()


def _getter(f: str, path: tuple[str, ...] | None):
    keys = path if path is not None else (f,)

    def get(obj: Any) -> Any:
        cur = obj
        for k in keys:
            if not isinstance(cur, dict) or k not in cur:
                return _MISSING
            cur = cur[k]
        return cur
    return get


def _cell(v: Any) -> str:
    if v is _MISSING:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _write_batches(records: Iterable[Any], with_address: bool, one_line: bool) -> None:
    sys.stdout.flush()
    out = sys.stdout.buffer
    interactive = out.isatty()
    batch: list[bytes] = []
    size = 0
    for rec in records:
        raw = rec.raw
        if one_line and (b"\n" in raw or b"\r" in raw):
            raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")
        batch.append(b'{"address":%d,"record":%s}\n' % (rec.address, raw) if with_address else raw + b"\n")
        size += len(raw) + 1
        if size >= _WRITE_BYTES or (interactive and len(batch) >= 64):
            out.write(b"".join(batch))
            if interactive:
                out.flush()
            batch.clear()
            size = 0
    if batch:
        out.write(b"".join(batch))
    out.flush()


PSF_KEYS = ("name", "id", "kind", "active", "eval", "definition", "ranges")


def psf_row(p: Any, *, text: bool = True) -> list[Any]:
    kind = field(p, "kind")
    kind = getattr(kind, "value", kind)
    definition = field(p, "definition") or field(p, "expression")
    definition = definition if isinstance(definition, str) else None
    native = field(p, "native")
    evaluation = "native" if native else ("python" if kind != "callable" else "callable")
    ranges = [list(r) for r in (field(p, "ranges") or ())]
    active = bool(field(p, "active"))
    if not text:
        return [field(p, "name"), field(p, "id"), kind, active, evaluation, definition, ranges]
    spans = ", ".join(f"{lo}-{'' if hi is None else hi}" for lo, hi in ranges) or "-"
    return [field(p, "name"), field(p, "id"), kind, "active" if active else "inactive", evaluation,
            definition if definition is not None else "<callable>", spans]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,} B"


def stats_text(s: dict) -> str:
    a, idx, ing, rec = (s.get(k) or {} for k in ("addresses", "index", "ingest", "recovery"))
    log = (f"{_bytes(s.get('log_bytes'))} (begin {a.get('begin')}, head {a.get('head')}, "
           f"read-only {a.get('read_only')}, tail {a.get('tail')})")
    memory = f"{_bytes(s.get('memory_bytes'))} of {_bytes(s.get('memory_budget_bytes'))} budget"
    index = (f"{idx.get('entries', 0):,} entries, {idx.get('buckets', 0):,} buckets "
             f"(+{idx.get('overflow_buckets', 0):,} overflow), {_bytes(idx.get('bytes'))}")
    ingest = (f"{ing.get('calls', 0):,} calls since the store was opened: {ing.get('records', 0):,} records, "
              f"{ing.get('rejected', 0):,} rejected, {_bytes(ing.get('bytes'))}")
    recovery = (f"checkpoint {rec.get('checkpoint_id')}, {rec.get('replayed_records', 0):,} records "
                f"replayed, {len(rec.get('dropped') or ())} dropped")
    rows = [["records", f"{s.get('records', 0):,}"], ["log", log], ["memory", memory],
            ["disk", _bytes(s.get("disk_bytes"))], ["index", index], ["ingest", ingest],
            ["recovery", recovery]]
    comp = s.get("compaction")
    if comp:
        text = (f"{comp.get('runs', 0):,} runs, {_bytes(comp.get('bytes_reclaimed_total'))} reclaimed, "
                f"{comp.get('records_dropped_total', 0):,} records dropped")
        if comp.get("last_error"):
            text += f"; last error: {comp['last_error']}"
        rows.append(["compact", text])
    text = table(["", ""], rows).split("\n", 1)[1]
    psfs = s.get("psfs") or []
    if psfs:
        text += "\n\n" + table(["PSF", "ID", "KIND", "STATUS", "EVAL", "ACTIVE RANGES"],
                                [r[:5] + r[6:] for r in map(psf_row, psfs)])
    return text


def compaction_text(r: Any) -> str:
    """What a compaction reclaimed, in one or two lines."""
    before, after = field(r, "begin_before"), field(r, "begin_after")
    if after == before:
        return f"nothing to compact: the cut is at or below the begin address {before}"
    return (f"compacted: begin address {before} -> {after}; reclaimed {_bytes(field(r, 'bytes_reclaimed'))} "
            f"({field(r, 'segments_deleted', 0):,} segment files deleted); {field(r, 'records_dropped', 0):,} "
            f"records dropped, {field(r, 'records_copied', 0):,} live records copied to the tail "
            f"({field(r, 'duration_ms', 0.0):.1f} ms); segment files on disk "
            f"{_bytes(field(r, 'disk_bytes_before', 0))} -> {_bytes(field(r, 'disk_bytes_after', 0))}")


def summary(name: str, result: Any, *, refused: bool = False) -> None:
    shown = label(name)
    if result is None:
        return
    ingested, rejected = field(result, "ingested", 0), field(result, "rejected", 0)
    if refused:
        err(f"{shown}: refused: {rejected:,} bad record(s), nothing stored")
    else:
        first, last = field(result, "first_address"), field(result, "last_address")
        where = f", addresses {first}..{last}" if ingested else ""
        err(f"{shown}: {ingested:,} ingested, {rejected:,} rejected{where}")
    errors = list(field(result, "errors", None) or ())
    for e in errors[:_SHOWN_ERRORS]:
        reason = field(e, "reason") or field(e, "error")
        offset = field(e, "offset")
        err(f"  {shown}:{field(e, 'line')}: {reason}" + (f" (byte {offset})" if offset is not None else ""))
    if rejected > min(len(errors), _SHOWN_ERRORS):
        err(f"  ... and {rejected - min(len(errors), _SHOWN_ERRORS):,} more")
