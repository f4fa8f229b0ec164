"""PSF values: canonical bytes, hashes, and back.

A PSF value is a non-null scalar: a string, a number, or true. Values compare
with JSON semantics through their canonical bytes (shoal_canon in shoal.h):

    "s" + UTF-8 after unescaping            "\\u0050ush" == "Push"
    "n0" | "n" ["-"] digits "e" exponent     1 == 1.0 == 10e-1, exact decimal
    "t"                                      true (never equal to 1)

false and null have canonical forms ("f", "z") for literals in programs, but are
never indexed. Python values are canonicalized through the same C function as
record text, via their JSON text, so both sides always agree.
"""
from __future__ import annotations

import json
import math
from numbers import Integral, Real
from typing import Any

import orjson

from .._native import ffi, lib
from ..errors import InvalidArgument

__all__ = ["canonical", "canonical_scalar", "canonical_json", "value_hash", "decode",
           "parse_query_value"]

# Canonical bytes of a number are a little longer than its text ("n", "-", "e",
# exponent); strings only shrink when unescaped.
_CANON_SLACK_BYTES = 32
# Python refuses int <-> str conversions beyond this many digits by default.
_MAX_INT_DIGITS = 4000


def _json_text(value: Any) -> tuple[bytes, int] | None:
    """(JSON text, SHOAL_T_*) of a scalar, or None if it has none."""
    if value is True:
        return b"true", lib.SHOAL_T_TRUE
    if value is False:
        return b"false", lib.SHOAL_T_FALSE
    if value is None:
        return b"null", lib.SHOAL_T_NULL
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return _json_text(bool(value))  # numpy.bool_ is neither bool nor Integral
    if isinstance(value, str):
        try:
            return orjson.dumps(value), lib.SHOAL_T_STRING
        except orjson.JSONEncodeError:  # lone surrogates: not a JSON string
            return None
    if isinstance(value, Integral):
        text = str(int(value))
        if len(text) > _MAX_INT_DIGITS:
            return None
        return text.encode(), lib.SHOAL_T_NUMBER
    if isinstance(value, Real):
        f = float(value)
        if not math.isfinite(f):
            return None
        return orjson.dumps(f), lib.SHOAL_T_NUMBER
    return None


def _canon_text(text: bytes, type_: int) -> bytes | None:
    cap = len(text) + _CANON_SLACK_BYTES
    buf = ffi.new("char[]", cap)
    n = lib.shoal_canon(text, len(text), type_, buf, cap)
    if n < 0:
        return None
    return ffi.buffer(buf, n)[:]


def canonical_scalar(value: Any) -> bytes | None:
    """Canonical bytes of any JSON scalar (false -> b"f", null -> b"z"), or
    None for arrays, objects, NaN/infinity and strings that are not UTF-8."""
    got = _json_text(value)
    if got is None:
        return None
    text, type_ = got
    if type_ == lib.SHOAL_T_TRUE:
        return b"t"
    if type_ == lib.SHOAL_T_FALSE:
        return b"f"
    if type_ == lib.SHOAL_T_NULL:
        return b"z"
    return _canon_text(text, type_)


def canonical(value: Any) -> bytes | None:
    """Canonical bytes of a PSF value, or None when `value` is not indexable
    (None, False, list, dict, NaN, infinity). bool is checked before int, so
    True -> b"t", never b"n1e0"."""
    if type(value) is str:  # the common query value: its UTF-8 is its canonical form
        try:
            return b"s" + value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: not a JSON string shoal stores
            return None
    if value is None or value is False or isinstance(value, (list, dict, tuple)):
        return None
    c = canonical_scalar(value)
    if c is None or c in (b"f", b"z"):
        return None
    return c


def canonical_json(text: str | bytes) -> bytes | None:
    """Canonical bytes of a JSON scalar given as text, exactly (no round trip
    through a Python float), or None when it is not an indexable scalar."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    s = raw.strip(b" \t\r\n")
    if not s:
        return None
    first = s[:1]
    if first == b'"':
        type_ = lib.SHOAL_T_STRING
    elif first in b"-0123456789":
        type_ = lib.SHOAL_T_NUMBER
    elif s == b"true":
        return b"t"
    else:
        return None
    if lib.shoal_parse(s, len(s), ffi.NULL, ffi.NULL, ffi.new("size_t *")) != lib.SHOAL_OK:
        return None
    return _canon_text(s, type_)


def value_hash(psf_id: int, canon: bytes) -> int:
    """The 64-bit hash of (psf_id, canonical value) the index is keyed by."""
    return int(lib.shoal_hash(psf_id, canon, len(canon)))


def decode(canon: bytes) -> Any:
    """The Python value of canonical bytes, for display: strings -> str,
    numbers -> int when the exponent is >= 0 else float, b"t" -> True,
    b"f" -> False, b"z" -> None. Raises InvalidArgument on malformed input."""
    canon = bytes(canon)
    tag, body = canon[:1], canon[1:]
    try:
        if tag == b"s":
            return body.decode("utf-8")
        if tag == b"n":
            if body == b"0":
                return 0
            digits, _, exp_text = body.partition(b"e")
            exp = int(exp_text)
            if not digits.lstrip(b"-").isdigit():
                raise ValueError(digits)
            if exp >= 0 and len(digits) + exp <= _MAX_INT_DIGITS:
                return int(digits) * 10**exp
            return float(digits + b"e" + exp_text)
    except ValueError as exc:
        raise InvalidArgument(f"malformed canonical value {canon!r}") from exc
    if canon == b"t":
        return True
    if canon == b"f":
        return False
    if canon == b"z":
        return None
    raise InvalidArgument(f"malformed canonical value {canon!r}")


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_query_value(text: str) -> Any:
    """A query value typed by a user: a JSON literal (`"PushEvent"`, `3`,
    `true`, `null`, `[1]`), or else the text itself as a string (a bare word
    such as `PushEvent`). NaN/Infinity are not JSON and stay strings."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text
