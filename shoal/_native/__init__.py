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

# The one table of the core's status codes (SHOAL_E_* in shoal.h): the
# reason a user reads and the exception it raises. A code missing here is a
# test failure (tests/native/test_errors.py), never a silent "error -N".
_ERRORS: dict[int, tuple[str, type[errors.ShoalError]]] = {
    lib.SHOAL_E_SYNTAX: ("invalid JSON", errors.ParseError),
    lib.SHOAL_E_UTF8: ("invalid UTF-8 or lone surrogate", errors.ParseError),
    lib.SHOAL_E_DEPTH: (f"nesting deeper than {lib.SHOAL_MAX_DEPTH}", errors.ParseError),
    lib.SHOAL_E_NUMBER: ("number out of range for a double", errors.ParseError),
    lib.SHOAL_E_EMPTY: ("no JSON value", errors.ParseError),
    lib.SHOAL_E_TRAILING: ("data after the JSON value", errors.ParseError),
    lib.SHOAL_E_CONTROL: ("unescaped control character in string", errors.ParseError),
    lib.SHOAL_E_FRAMING: ("malformed JSON array", errors.ParseError),
    lib.SHOAL_E_TOO_LARGE: ("record too large", errors.RecordTooLarge),
    lib.SHOAL_E_CORRUPT: ("corrupt record", errors.CorruptionError),
    lib.SHOAL_E_IO: ("I/O error", errors.NativeIOError),
    lib.SHOAL_E_ARG: ("invalid argument", errors.InvalidArgument),
    lib.SHOAL_E_CLOSED: ("the store is closed", errors.StoreClosed),
    lib.SHOAL_E_SPACE: ("buffer too small", errors.StorageError),
    lib.SHOAL_E_NOMEM: ("out of memory", errors.StorageError),
    lib.SHOAL_E_TOO_MANY_KPS: ("too many key pointers for one record", errors.StorageError),
    lib.SHOAL_E_NO_KEY: ("record has no key (the store's key expression gives no string or number)",
                         errors.StorageError),
}


def reason(code: int) -> str:
    """Human-readable reason for a SHOAL_E_* code."""
    row = _ERRORS.get(code)
    return row[0] if row else f"error {code}"


def check(code: int, what: str = "") -> int:
    """Return non-negative codes; raise the matching ShoalError for errors."""
    if code >= 0:
        return code
    text, cls = _ERRORS.get(code, (f"error {code}", errors.StorageError))
    if cls is errors.StoreClosed:  # the same words whatever was asked
        raise errors.StoreClosed(text)
    raise cls(f"{what}: {text}" if what else text)
