"""The compiled C core (`_lib`, cffi), the Record type (`_records`, the
CPython API) and the one mapping from the core's status codes to shoal's
exceptions."""
from __future__ import annotations

from .. import errors

try:
    from . import _records
    from ._lib import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "shoal's C extension is not built; run `make build` (or `pip install -e .`)"
    ) from exc

__all__ = ["ffi", "lib", "check", "reason", "_records"]

_REASONS = {
    lib.SHOAL_E_SYNTAX: "invalid JSON",
    lib.SHOAL_E_UTF8: "invalid UTF-8 or lone surrogate",
    lib.SHOAL_E_DEPTH: f"nesting deeper than {lib.SHOAL_MAX_DEPTH}",
    lib.SHOAL_E_NUMBER: "number out of range for a double",
    lib.SHOAL_E_EMPTY: "no JSON value",
    lib.SHOAL_E_TRAILING: "data after the JSON value",
    lib.SHOAL_E_TOO_LARGE: "record too large",
    lib.SHOAL_E_SPACE: "buffer too small",
    lib.SHOAL_E_CORRUPT: "corrupt record",
    lib.SHOAL_E_IO: "I/O error",
    lib.SHOAL_E_NOMEM: "out of memory",
    lib.SHOAL_E_TOO_MANY_KPS: "too many key pointers for one record",
    lib.SHOAL_E_ARG: "invalid argument",
    lib.SHOAL_E_FRAMING: "malformed JSON array",
    lib.SHOAL_E_CONTROL: "unescaped control character in string",
    lib.SHOAL_E_NO_KEY: "record has no key (the store's key expression gives no string or number)",
    lib.SHOAL_E_CLOSED: "the store is closed",
}


def reason(code: int) -> str:
    """Human-readable reason for a SHOAL_E_* code."""
    return _REASONS.get(code, f"error {code}")


def check(code: int, what: str = "") -> int:
    """Return non-negative codes; raise the matching ShoalError for errors."""
    if code >= 0:
        return code
    msg = f"{what}: {reason(code)}" if what else reason(code)
    if code == lib.SHOAL_E_TOO_LARGE:
        raise errors.RecordTooLarge(msg)
    if code == lib.SHOAL_E_CORRUPT:
        raise errors.CorruptionError(msg)
    if code == lib.SHOAL_E_IO:
        raise errors.NativeIOError(msg)
    if code == lib.SHOAL_E_ARG:
        raise errors.InvalidArgument(msg)
    if code == lib.SHOAL_E_CLOSED:
        raise errors.StoreClosed("the store is closed")
    if code in (lib.SHOAL_E_SYNTAX, lib.SHOAL_E_UTF8, lib.SHOAL_E_DEPTH, lib.SHOAL_E_NUMBER,
                lib.SHOAL_E_EMPTY, lib.SHOAL_E_TRAILING, lib.SHOAL_E_CONTROL, lib.SHOAL_E_FRAMING):
        raise errors.ParseError(msg)
    raise errors.StorageError(msg)
