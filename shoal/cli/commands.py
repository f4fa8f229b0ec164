"""What each command does (cmd_*, one per command, each given the parsed
arguments); cli/main.py parses the command line and calls one. See the
package docstring for where the store is, exit codes and output."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from ..config import StoreConfig, default_ingest_threads, parse_size
from ..sizes import format_size
from ..errors import IngestRejected, InvalidArgument, PSFExists, PSFNotFound, ShoalError, StoreLocked
from ..psf import parse_query_value
from ..store.projection import Projection
from . import progress
from .output import (
    compaction_text,
    PSF_KEYS,
    err,
    field,
    label,
    psf_row,
    stats_text,
    summary,
    table,
    write_columns,
    write_ndjson,
    write_records,
)
from .progress import ingest_with_progress, read_chunks

DEFAULT_DATA = "./shoal-data"
# `shoal ingest` stored some records and skipped bad ones: not a plain
# success (a stream whose lines are mostly junk must not pass unnoticed),
# not an error either (3, as other tools do for partial success: rsync 23).
EXIT_PARTIAL = 3


# ---- where the store is ----

def _target(args: argparse.Namespace) -> tuple[str, str]:
    """("url", URL) or ("data", DIR): flags first, then the environment."""
    url, data = getattr(args, "url", None), getattr(args, "data", None)
    if url and data:
        raise InvalidArgument("give either --url or --data, not both")
    if url:
        return "url", url
    if data:
        return "data", data
    if os.environ.get("SHOAL_URL"):
        return "url", os.environ["SHOAL_URL"]
    return "data", os.environ.get("SHOAL_DATA") or DEFAULT_DATA


@contextlib.contextmanager
def _connect(args: argparse.Namespace, *, create: bool = False) -> Iterator[Any]:
    """The library Store for a data directory, or a Client for a server URL;
    both offer the same methods. Read-only commands do not create a store."""
    kind, where = _target(args)
    if kind == "url":
        try:
            from ..client import Client, require_httpx
            require_httpx()
        except ImportError as exc:  # the message says how to install it
            raise ShoalError(f"--url needs the HTTP client: {exc}") from None
        import httpx
        try:
            with Client(where, token=getattr(args, "token", None)) as client:
                yield client
        except httpx.TransportError as exc:
            raise ShoalError(f"talking to the server at {where} failed: {exc}") from None
        return
    from ..engine import open as open_store
    if not create and not os.path.exists(os.path.join(where, "store.json")):
        raise InvalidArgument(f"no store in {where} (create one with `shoal ingest` or `shoal psf add`, "
                              f"or point --data/--url at one)")
    key = getattr(args, "key", None) if create else None
    page_size = getattr(args, "page_size", None) if create else None
    exists = os.path.exists(os.path.join(where, "store.json"))
    settings: dict[str, Any] = {"key": key} if key else {}
    time_field = getattr(args, "time_field", None) if create else None
    if time_field:
        settings["time_field"] = time_field
    compression = getattr(args, "compression", None) if create else None
    if compression:
        settings["compression"] = compression
    if page_size is not None and not exists:
        settings.update(_layout_for_page(parse_size(page_size)))
    try:
        store = open_store(where, **settings)
    except StoreLocked:
        raise StoreLocked(f"the data directory {where} is held by a running server (or another shoal "
                          f"process); use --url http://HOST:PORT (or set SHOAL_URL) to go through the "
                          f"server") from None
    with store:
        if page_size is not None and store.config.page_size_bytes != parse_size(page_size):
            # Not a note beside a run that goes on: records that need the
            # larger pages would be rejected again, one by one.
            raise InvalidArgument(f"--page-size {page_size}: {where} holds a store whose pages are "
                                  f"{format_size(store.config.page_size_bytes)}, and a store's page size is fixed when "
                                  f"it is created; use a new data directory (--data) for larger pages, or leave "
                                  f"--page-size out")
        yield store


def _layout_for_page(page_size_bytes: int) -> dict[str, int]:
    """Settings of a new store with this page size: the default memory
    budget and segment size, raised where a page needs more (two pages in
    memory, one in a segment)."""
    default = StoreConfig()
    return {"page_size_bytes": page_size_bytes,
            "memory_budget_bytes": max(default.memory_budget_bytes, 2 * page_size_bytes),
            "segment_size_bytes": max(default.segment_size_bytes, page_size_bytes)}


# ---- commands ----

def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ..api.server import run_from_args
    except ImportError as exc:
        raise InvalidArgument(f"the HTTP server is not available: {exc}") from None
    return run_from_args(args, args.serve_parser)


def cmd_ingest(args: argparse.Namespace) -> int:
    for name in args.files:
        if name != "-" and not os.path.isfile(name):
            raise InvalidArgument(f"no such file: {name}")
    if args.files.count("-") > 1:
        raise InvalidArgument("stdin (-) can be read only once")
    show_progress = not args.quiet and progress.stderr_is_tty()
    remote = _target(args)[0] == "url"
    if remote and args.page_size is not None:
        raise InvalidArgument("--page-size applies when `shoal ingest` creates a store in a data directory; "
                              "a server's store has the page size it was created with (shoal serve --page-size)")
    if remote and args.threads is not None:
        raise InvalidArgument("--threads applies to a store in a data directory; a server ingests with its "
                              "own threads (shoal serve --ingest-threads)")
    threads = args.threads if args.threads is not None else default_ingest_threads()
    ingested = rejected = 0
    with _connect(args, create=True) as target:
        for i, name in enumerate(args.files):
            kw = {"on_error": args.on_error, "durable": args.durable, "format": args.format}
            if not remote:
                kw["threads"] = threads
            try:
                if show_progress:
                    result = ingest_with_progress(target, name, kw, args.format, remote)
                elif name == "-":
                    result = target.ingest(read_chunks(sys.stdin.buffer), **kw)
                else:
                    result = target.ingest(name, **kw)
            except IngestRejected as exc:
                summary(name, getattr(exc, "result", None), refused=True)
                _hint_if_too_large(target, getattr(exc, "result", None))
                rest = args.files[i + 1:]
                if rest:
                    err(f"shoal: stopped; not read: {' '.join(map(label, rest))}")
                return 1
            except ShoalError as exc:
                exc.add_note(f"while ingesting {label(name)}")
                partial = getattr(exc, "ingest_result", None)
                if partial is not None:
                    where = (f" (addresses {partial.first_address}..{partial.last_address})"
                             if partial.ingested else "")
                    exc.add_note(f"{partial.ingested:,} record(s) of it were stored before the error{where}; "
                                 f"ingesting it again stores them again")
                raise
            ingested += field(result, "ingested", 0)
            rejected += field(result, "rejected", 0)
            summary(name, result)
            _hint_if_too_large(target, result)
            if not field(result, "ingested", 0) and not field(result, "rejected", 0):
                err(f"{label(name)}: no records in it (empty, or only whitespace)")
        if not remote:  # a compressed store: what it wrote compressed before the process ends
            target.wait_compressed(timeout=3600)
    if len(args.files) > 1:
        err(f"total: {ingested:,} ingested, {rejected:,} rejected")
    if not ingested:
        return 1
    return EXIT_PARTIAL if rejected else 0


def _hint_if_too_large(target: Any, result: Any) -> None:
    """After a file with records over the size limit (each listed with its
    size and the limit): how to store such records."""
    if result is None or not any((field(e, "reason") or field(e, "error") or "").startswith("record too large")
                                 for e in field(result, "errors", None) or ()):
        return
    config = getattr(target, "config", None)  # a local store; a server's page size is its own
    pages = f" (this store's pages are {format_size(config.page_size_bytes)})" if config is not None else ""
    err(f"shoal: a record must fit in one log page{pages}, and a store's page size is fixed when it is created: "
        f"to store larger records, ingest them into a new store with larger pages, e.g. `shoal ingest "
        f"--page-size 64MiB --data NEW_DIR FILE` (a power of two up to 1GiB), or `shoal serve --page-size 64MiB` "
        f"on a new data directory")


def cmd_psf_add(args: argparse.Namespace) -> int:
    with _connect(args, create=True) as target:
        before = _active(target, args.name)
        try:
            extra = {"bucket": args.bucket, "time": True} if args.time else (
                {"bucket": args.bucket} if args.bucket is not None else {})
            psf = target.register_psf(args.name, args.expression, exist_ok=args.exist_ok, replace=args.replace,
                                      **extra)
        except PSFExists as exc:
            exc.add_note(f"`shoal psf add --replace {args.name} ...` registers the new expression in its place; "
                         f"`shoal psf rm {args.name}` deregisters it")
            raise
        row = psf_row(psf)
        if before is not None and before == _active_of(psf):
            print(f"PSF {row[0]} is already active with this definition (id {row[1]}): {row[5]}")
        else:
            print(f"registered PSF {row[0]} (id {row[1]}, {row[2]}, {row[4]}): {row[5]}")
    return 0


def _active(target: Any, name: str) -> tuple | None:
    """(id, open range) of the active PSF `name`, or None."""
    try:
        return _active_of(target.psf(name))
    except PSFNotFound:
        return None


def _active_of(psf: Any) -> tuple | None:
    return (psf.id, psf.ranges[-1]) if psf.active else None


def cmd_psf_rm(args: argparse.Namespace) -> int:
    with _connect(args) as target:
        target.deregister_psf(args.name)
        print(f"deregistered PSF {args.name}")
    return 0


def cmd_psf_ls(args: argparse.Namespace) -> int:
    with _connect(args) as target:
        psfs = list(target.psfs())
    if args.json:
        print(json.dumps([dict(zip(PSF_KEYS, psf_row(p, text=False))) for p in psfs], indent=2))
    elif psfs:
        print(table(["NAME", "ID", "KIND", "STATUS", "EVAL", "DEFINITION", "ACTIVE RANGES"],
                     [psf_row(p) for p in psfs]))
    else:
        print("no PSFs registered")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    value = True if args.value is None else parse_query_value(args.value)
    with _connect(args) as target:
        kw = dict(limit=args.limit, order=args.order, **_history(args), **_fields(args))
        if args.range is not None:
            lo, hi = _range_args(args)
            if hasattr(target, "query_range_batches") and not _columns(args):
                write_ndjson(target.query_range_batches(args.psf, lo, hi, **kw), args.with_address)
            else:
                _write(args, target.query_range(args.psf, lo, hi, **kw))
        elif hasattr(target, "query_batches") and not _columns(args):  # a local Store: the bulk path
            write_ndjson(target.query_batches([(args.psf, value)], **kw), args.with_address)
        else:
            _write(args, target.query(args.psf, value, **kw))
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    with _connect(args) as target:
        kw = dict(limit=args.limit, order=args.order, **_history(args), **_fields(args))
        if hasattr(target, "scan_batches") and not _columns(args):
            write_ndjson(target.scan_batches(args.expression, **kw), args.with_address)
        else:
            _write(args, target.scan(args.expression, **kw))
    return 0


def _fields(args: argparse.Namespace) -> dict:
    if args.fields is None:
        if _columns(args):
            raise InvalidArgument("--csv and --table print columns: name them with --fields (e.g. --fields "
                                  "type,repo.name)")
        return {}
    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    if not fields:
        raise InvalidArgument("--fields takes a comma-separated list of fields (e.g. type,repo.name)")
    return {"fields": fields}


def _columns(args: argparse.Namespace) -> str | None:
    return "csv" if args.csv else "table" if args.table else None


def _write(args: argparse.Namespace, records) -> None:
    fmt = _columns(args)
    if fmt is None:
        write_records(records, args.with_address)
        return
    fields = _fields(args)["fields"]
    write_columns(records, fields, Projection(fields).paths, fmt, args.with_address)


def cmd_tail(args: argparse.Namespace) -> int:
    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    out = sys.stdout.buffer
    with _connect(args) as target:
        try:
            if hasattr(target, "follow_rounds"):  # a local store: a write per round
                conds = [] if args.psf is None else [
                    (args.psf, True if args.value is None else parse_query_value(args.value))]
                for found in target.follow_rounds(conds, since_address=args.since_address, fields=fields,
                                                  timeout=args.timeout):
                    if found:
                        out.write(b"".join(_line(r, args.with_address) for r in found))
                        out.flush()
            else:
                value = True if args.value is None else parse_query_value(args.value)
                for r in target.tail(args.psf, value, since_address=args.since_address, timeout=args.timeout,
                                     fields=fields):
                    out.write(_line(r, args.with_address))
                    out.flush()
        except KeyboardInterrupt:
            pass
    return 0


def _line(r, with_address: bool) -> bytes:
    raw = r.raw.replace(b"\r", b" ").replace(b"\n", b" ")
    return b'{"address":%d,"record":%s}\n' % (r.address, raw) if with_address else raw + b"\n"


def cmd_count(args: argparse.Namespace) -> int:
    value = True if args.value is None else parse_query_value(args.value)
    with _connect(args) as target:
        if args.range is not None:
            print(target.count_range(args.psf, *_range_args(args), **_window(args)))
        else:
            print(target.count(args.psf, value, **_window(args)))
    return 0


def _range_args(args: argparse.Namespace) -> tuple[Any, Any]:
    if args.value is not None:
        raise InvalidArgument("give a VALUE or --range LO HI, not both")
    if args.since is not None or args.until is not None:
        raise InvalidArgument("--range is its own window: it takes no --since/--until")
    return parse_query_value(args.range[0]), parse_query_value(args.range[1])


def cmd_top(args: argparse.Namespace) -> int:
    with _connect(args) as target:
        groups = target.group_count(args.psf, limit=args.limit or None, **_window(args))
    if args.json:
        print(json.dumps({"groups": [{"value": v, "count": n} for v, n in groups]}, ensure_ascii=False))
        return 0
    width = max((len(str(n)) for _, n in groups), default=1)
    for v, n in groups:
        print(f"{n:>{width}}  {json.dumps(v, ensure_ascii=False)}")
    return 0


def _window(args: argparse.Namespace) -> dict:
    kw = {k: getattr(args, k) for k in ("from_address", "to_address") if getattr(args, k) is not None}
    return dict(kw, **_history(args))


def _history(args: argparse.Namespace) -> dict:
    """include_superseded only when asked, so unkeyed servers of any version
    answer; since/until likewise."""
    out: dict[str, Any] = {"include_superseded": True} if args.include_superseded else {}
    for k in ("since", "until"):
        t = getattr(args, k, None)
        if t is not None:
            v = parse_query_value(t)
            out[k] = v if isinstance(v, (int, float)) and not isinstance(v, bool) else t
    return out


def cmd_get(args: argparse.Namespace) -> int:
    if (args.address is None) == (args.key is None):
        raise InvalidArgument("give an ADDRESS or --key KEY")
    with _connect(args) as target:
        if args.key is not None:
            key = parse_query_value(args.key)
            record = target.get_key(key)
            missing = f"no live record has key {key!r}"
        else:
            record = target.get(args.address)
            missing = f"no record at address {args.address}"
        if record is None:
            err(f"shoal: {missing}")
            return 1
        write_records([record], args.with_address, one_line=False)  # the exact bytes
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    key = parse_query_value(args.key)
    with _connect(args) as target:
        if not target.delete_key(key, durable=args.durable):
            err(f"shoal: no live record has key {key!r} (nothing deleted)")
            return 1
    print(f"deleted key {key!r}")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    with _connect(args) as target:
        info = target.checkpoint()
    print(f"checkpoint {field(info, 'checkpoint_id')}: {field(info, 'records', 0):,} records "
          f"up to address {field(info, 'tail_address')} ({field(info, 'duration_ms', 0.0):.1f} ms)")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    kw = {"until_address": args.until} if args.until is not None else {"retain_bytes": parse_size(args.retain)}
    with _connect(args) as target:
        result = target.compact(**kw)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(compaction_text(result))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _connect(args) as target:
        stats = target.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(stats_text(stats))
    return 0


# `shoal sample` names -> shoal.sample kinds, and what their records look
# like (the command's --help). Static, so parsing the command line does not
# import numpy; tests/test_cli.py checks that every kind of shoal.sample is here.
SAMPLE_KINDS = {
    "github": ("github_events",
               "GitHub-archive-like events, ~1 KB each: type (PushEvent ~50%, CreateEvent, WatchEvent, ...), "
               "actor.login, repo.name (a few popular repos, torvalds/linux the most, and a long tail), "
               "payload (by type: payload.size and payload.commits for pushes, ...), created_at; text with "
               "escapes and non-ASCII"),
    "zeek": ("zeek_logs",
             "Zeek-like network logs, ~400 B each, flat objects: _path (dns ~34%, ssl ~31%, weird, analyzer, "
             "rdp, ... ldap_search), _write_ts, ts, uid, \"id.orig_h\", \"id.resp_h\", \"id.resp_p\" (one key "
             "with a dot: quote it in JMESPath), dns query/rcode_name/answers, ssl server_name"),
}


def cmd_sample(args: argparse.Namespace) -> int:
    from .. import sample  # numpy: only when asked for
    kind = SAMPLE_KINDS[args.kind][0]
    if args.output in (None, "-"):
        data = sample.KINDS[kind](args.n, args.seed)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    try:
        path = sample.write(kind, args.n, args.output, seed=args.seed)
    except OSError as exc:
        raise InvalidArgument(f"cannot write {args.output}: {exc.strerror or exc}") from None
    err(f"{args.output}: {args.n:,} {args.kind} records (seed {args.seed}), {path.stat().st_size:,} bytes")
    return 0


# ---- argument parsing ----
