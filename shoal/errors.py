"""Every exception shoal raises, in one tree.

    ShoalError
    ├── InvalidArgument            (also a ValueError) a call's arguments are wrong
    ├── ParseError                 one JSON text is invalid: .line, .offset, .reason
    ├── IngestRejected             on_error="reject" and the input had bad records:
    │                              nothing was stored; .result lists them
    ├── InputTooLarge              the input passed max_input_bytes (after gunzip):
    │                              .limit_bytes; what came before is stored
    ├── PSFError
    │   ├── PSFNotFound            (also a KeyError) no PSF by that name
    │   ├── PSFExists              a PSF by that name is active: .name, .definition
    │   ├── TooManyPSFs            max_active_psfs are active already: .limit
    │   ├── PSFDefinitionError     the expression does not parse: .position
    │   │   ├── ExpressionTooLong  longer than max_expression_chars: .length, .limit
    │   │   └── ExpressionTooDeep  nested deeper than max_expression_depth: .depth, .limit
    │   └── EvaluationBudgetExceeded  a scan's expression took more than
    │                              max_eval_steps or max_eval_bytes on one record
    ├── RemoteError                a server answered with an error that has no
    │   │                          class of its own here: .status, .code, .body
    │   └── AccessDenied           the server wants a token (401 unauthorized) or
    │                              a write token (403 forbidden)
    └── StorageError
        ├── StoreClosed            the store was closed
        ├── StoreLocked            another process holds the data directory
        ├── ShardUnavailable       a cluster shard did not answer: .shards,
        │                          .result (an ingest: what was acknowledged)
        ├── RecordTooLarge         a record cannot fit in a log page: .size_bytes,
        │                          .max_record_bytes, .page_size_bytes
        ├── CorruptionError        a checksum, magic or size check failed
        └── NativeIOError          a read, write or fsync of a segment or
            │                      checkpoint file failed: .errno
            └── DiskFull           no space left on device (ENOSPC) or over
                                   quota (EDQUOT)

Expected outcomes are values, not exceptions: a query with no match yields
nothing, and `Store.get` of an address holding no record returns None.

Two helpers build them: `io_error` turns an OSError into NativeIOError or
DiskFull naming the file; `restated` copies one for another thread to raise.
"""
from __future__ import annotations

import errno as _errno
import os
from typing import Any

from .sizes import format_size


class ShoalError(Exception):
    """Base class of every error shoal raises."""


class InvalidArgument(ShoalError, ValueError):
    """A call's arguments are invalid (wrong type, out of range, unknown option)."""


class ParseError(ShoalError):
    """A JSON text is invalid. `line` is 1-based within the input, `offset` is
    the byte offset of the problem within the record's text."""

    def __init__(self, reason: str, line: int | None = None, offset: int | None = None):
        self.reason = reason
        self.line = line
        self.offset = offset
        where = []
        if line is not None:
            where.append(f"line {line}")
        if offset is not None:
            where.append(f"byte {offset}")
        super().__init__(f"{reason} ({', '.join(where)})" if where else reason)


class IngestRejected(ShoalError):
    """Raised by ingest(on_error="reject") when any record is bad. Nothing from
    that call was stored; `result` holds the per-record errors."""

    def __init__(self, result: Any):
        self.result = result
        first = result.errors[0] if result.errors else None
        detail = f"; first: line {first.line}: {first.reason}" if first else ""
        super().__init__(f"{result.rejected} bad record(s), nothing stored{detail}")


class InputTooLarge(ShoalError):
    """An ingest's input grew past its max_input_bytes after gunzip (a gzip
    bomb, or a body over the server's --max-body). As with any failure
    partway, the records before it stay stored (on_error="skip") and the
    error's `ingest_result` says how many."""

    def __init__(self, message: str, limit_bytes: int | None = None):
        self.limit_bytes = limit_bytes
        super().__init__(message)


class PSFError(ShoalError):
    """Problems with PSF registration or lookup."""


class PSFNotFound(PSFError, KeyError):
    """No PSF is registered under that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "PSF not found"


class PSFExists(PSFError):
    """A PSF with that name is already registered and active. `definition`
    is its expression (None for a Python callable, or when not known).
    Registering with exist_ok accepts an active PSF of the same definition;
    replace swaps in a different one."""

    def __init__(self, message: str, name: str | None = None, definition: str | None = None):
        self.name = name
        self.definition = definition
        super().__init__(message)


class TooManyPSFs(PSFError):
    """Registering one more PSF would make more than `limit`
    (StoreConfig.max_active_psfs) active at once; deregister one first."""

    def __init__(self, message: str, limit: int | None = None):
        self.limit = limit
        super().__init__(message)


class PSFDefinitionError(PSFError):
    """A PSF definition is invalid. `position` is the 0-based character offset
    in the expression where the problem was found, when known."""

    def __init__(self, message: str, position: int | None = None, expression: str | None = None):
        self.position = position
        self.expression = expression
        super().__init__(message)


class ExpressionTooLong(PSFDefinitionError):
    """An expression is longer than ExpressionLimits.max_expression_chars.
    `length` is its length in characters, `limit` the bound."""

    def __init__(self, message: str, position: int | None = None, expression: str | None = None,
                 length: int | None = None, limit: int | None = None):
        self.length = length
        self.limit = limit
        super().__init__(message, position, expression)


class ExpressionTooDeep(PSFDefinitionError):
    """An expression nests deeper than ExpressionLimits.max_expression_depth.
    `position` is where the nesting went over the bound, when known."""

    def __init__(self, message: str, position: int | None = None, expression: str | None = None,
                 depth: int | None = None, limit: int | None = None):
        self.depth = depth
        self.limit = limit
        super().__init__(message, position, expression)


class EvaluationBudgetExceeded(PSFError):
    """Evaluating an expression over one record took more than its budget
    (ExpressionLimits.max_eval_steps or max_eval_bytes, named by `limit`).
    A PSF over budget on a record indexes no value for it (the record is
    stored); a scan stops with this error. `address` is the record's, when
    known."""

    def __init__(self, message: str, limit: str | None = None, address: int | None = None):
        self.limit = limit
        self.address = address
        super().__init__(message)


class RemoteError(ShoalError):
    """Raised by shoal.Client for an HTTP error answer that maps to no other
    class (a body over the size limit, not implemented, an internal server
    error). `status` is the HTTP status, `code` the answer's error code and
    `body` the whole error answer."""

    def __init__(self, status: int, code: str, detail: str, body: dict | None = None):
        self.status = status
        self.code = code
        self.body = body or {}
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")


class AccessDenied(RemoteError):
    """Raised by shoal.Client when the server refused the request's token:
    status 401 (code "unauthorized": no token, or one it does not know) or
    403 ("forbidden": a read token on a route that writes)."""


class StorageError(ShoalError):
    """The log, index or data directory could not do what was asked."""


class StoreClosed(StorageError):
    """The store was closed; open it again to use it."""


class StoreLocked(StorageError):
    """Another process has the data directory open."""


class ShardUnavailable(StorageError):
    """A shard of a cluster did not answer (its process died, or Ray is
    restarting it). `shards` names them. For an ingest, `result` counts what
    every shard acknowledged; records of the pieces that failed may or may
    not be stored: send them again (a keyed cluster keeps one version per
    key) or query to see."""

    def __init__(self, message: str, shards: list[int], result: Any = None):
        super().__init__(message)
        self.shards = shards
        self.result = result


class TailGap(ShoalError):
    """The log below a live tail's cursor was dropped (compaction,
    retention) before the follower read it: records in `missed` ([from, to)
    addresses) may never have been given."""

    def __init__(self, message: str = "", missed: tuple[int, int] = (0, 0)):
        super().__init__(message)
        self.missed = tuple(missed)


class RecordTooLarge(StorageError):
    """A record does not fit in one log page (its JSON text, a header and
    the values its PSFs index must), or its text is longer than
    max_record_bytes. The page size is fixed when a store is created, so
    larger records need a new store with larger pages. `size_bytes` is the
    record's text size (None when not known: a line too long to buffer),
    `max_record_bytes` the limit on a record's text, `page_size_bytes` the
    store's page size; `lowered` is True when the limit is max_record_bytes
    set (per open) below what a page holds. Ingest reports such records one
    by one, each with this error's `reason`, rather than raising it."""

    def __init__(self, message: str | None = None, *, size_bytes: int | None = None,
                 max_record_bytes: int | None = None, page_size_bytes: int | None = None, lowered: bool = False):
        self.size_bytes = size_bytes
        self.max_record_bytes = max_record_bytes
        self.page_size_bytes = page_size_bytes
        self.lowered = lowered
        if message is None:
            message = self._explain()
        super().__init__(message)

    @property
    def reason(self) -> str:
        """What an ingest result says of one such record: its size and the
        limit, after the words "record too large"."""
        if self.max_record_bytes is None or self.page_size_bytes is None:
            return "record too large"
        size, limit, page = self.size_bytes, self.max_record_bytes, format_size(self.page_size_bytes)
        if size is not None and size <= limit:  # its text fits; with the values its PSFs index it does not
            return (f"record too large: {size:,} bytes, and with the values its PSFs index it does not fit in one "
                    f"{page} log page")
        over = f"{size:,} bytes, over" if size is not None else "over"
        if self.lowered:
            return f"record too large: {over} max_record_bytes ({limit:,})"
        return f"record too large: {over} the {limit:,} bytes that fit in one {page} log page"

    def _explain(self) -> str:
        if self.max_record_bytes is None or self.page_size_bytes is None:
            return "record too large: a record must fit in one log page"
        page, limit = format_size(self.page_size_bytes), self.max_record_bytes
        what = f"a record of {self.size_bytes:,} bytes is too large: " if self.size_bytes is not None else ""
        if self.lowered:
            return (f"{what}this open of the store sets max_record_bytes={limit:,}; raise it (StoreConfig, per "
                    f"open), up to what one {page} log page holds")
        return (f"{what}a record must fit in one log page, and this store's pages are {page} "
                f"(page_size_bytes={self.page_size_bytes}), so a record's JSON text may be at most {limit:,} "
                f"bytes (less the values its PSFs index). The page size is fixed when a store is created: for "
                f"larger records, ingest them into a new store created with larger pages (a power of two up to "
                f"1 GiB): shoal.open(NEW_DIR, page_size_bytes=64 << 20), `shoal ingest --page-size 64MiB --data "
                f"NEW_DIR`, or `shoal serve --page-size 64MiB` on a new data directory")


class CorruptionError(StorageError):
    """Stored bytes failed a checksum, magic or size check."""


class NativeIOError(StorageError):
    """Reading, writing or fsyncing a segment or checkpoint file failed.
    `errno` is the OS error number when one is known."""

    def __init__(self, message: str, errno: int | None = None):
        self.errno = errno
        super().__init__(message)


class DiskFull(NativeIOError):
    """A write found no space left on the device (ENOSPC) or the user's quota
    exhausted (EDQUOT). Nothing acknowledged is lost; see README, "Disk full
    and I/O errors", for what the store does next."""


def io_error(action: str, path: str | os.PathLike, exc: OSError) -> NativeIOError:
    """The library error for an OSError from `action` ("write to", "fsync of")
    on `path`: DiskFull for ENOSPC and EDQUOT, NativeIOError otherwise."""
    if exc.errno in (_errno.ENOSPC, _errno.EDQUOT):
        return DiskFull(f"{action} {path} failed: no space left on device", exc.errno)
    return NativeIOError(f"{action} {path} failed: {exc.strerror or exc}", exc.errno)


def restated(exc: BaseException, prefix: str = "", suffix: str = "") -> StorageError:
    """A fresh exception of the same library class as `exc`, with context in
    its message: for reporting one failure to several threads (each raise
    needs its own exception object)."""
    if isinstance(exc, StoreClosed):
        return StoreClosed(str(exc))
    if isinstance(exc, NativeIOError):
        err: StorageError = type(exc)(f"{prefix}{exc}{suffix}", exc.errno)
    else:
        err = NativeIOError(f"{prefix}{exc}{suffix}")
    err.__cause__ = exc
    return err
