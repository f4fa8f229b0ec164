"""Bucketed PSFs in Python: the same buckets the C core puts values in
(_native/bucket.c), and the exact values a range compares.

A bucketed PSF (`register_psf("size", "payload.size", bucket=100)`) indexes
a number x as the bucket floor(x / 100); a time PSF (time=True) first reads
epoch seconds, milliseconds (magnitude >= 1e11) or an ISO-8601 string. A
range [lo, hi) is the run of buckets floor(lo / w) .. floor(hi / w): those
strictly inside hold only values in the range (IEEE division is monotonic),
the two at its ends are read and each record's value compared, as ingest
read it (in C: `numbers`): an IEEE double, seconds for a time.
"""
from __future__ import annotations

import datetime
import math
from numbers import Real
from typing import Any

from .._native import ffi, lib
from ..errors import InvalidArgument
from .entry import PSF

MS_THRESHOLD = 1e11  # SHOAL_MS_THRESHOLD (_native/internal.h)
_LIMIT = 2.0 ** 53


def time_seconds(value: Any) -> float | None:
    """Epoch seconds of a time as shoal reads one: a number of seconds (of
    milliseconds when its magnitude is at least 1e11), an ISO-8601 string
    (parsed in C, as at ingest), or a datetime (naive: UTC)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    if isinstance(value, Real):
        x = float(value)
        if not math.isfinite(x):
            return None
        return x / 1000.0 if abs(x) >= MS_THRESHOLD else x
    if isinstance(value, str):
        out = ffi.new("double *")
        raw = value.encode("utf-8", "surrogatepass")
        return out[0] if lib.shoal_time_seconds(raw, len(raw), out) else None
    return None


def value_number(psf: PSF, value: Any) -> float | int | None:
    """The number a bucketed PSF compares for a record's value (its
    expression's result), or None when it has none."""
    if psf.time:
        return time_seconds(value) if isinstance(value, (str, Real)) and not isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def bound(psf: PSF, value: Any, name: str) -> float | int:
    """A range's end as the PSF compares it: a number, or for a time PSF a
    time (seconds, milliseconds, ISO-8601 text, datetime)."""
    x = time_seconds(value) if psf.time else value_number(psf, value)
    if x is None:
        what = "a time (epoch seconds or milliseconds, an ISO-8601 string)" if psf.time else "a number"
        raise InvalidArgument(f"{name} must be {what}, not {value!r}")
    return x


def bucket_of(x: float | int, width: float) -> int | None:
    """floor(x / width) in IEEE doubles, as C computes it, held to the edge
    buckets +-(2^53 - 1) (which hold every value past them)."""
    q = float(x) / width
    if math.isnan(q):
        return None
    if abs(q) >= _LIMIT:
        return int(math.copysign(_LIMIT - 1, q))
    return int(math.floor(q))


def span(psf: PSF, lo: float | int, hi: float | int) -> tuple[int, int] | None:
    """The buckets [kmin, kmax] that may hold values in [lo, hi), or None
    when none can (an empty range). floor(x / w) never decreases as x
    grows (IEEE division rounds monotonically), so the last bucket is that
    of the largest double below hi: a hi on a bucket's edge (`until` on the
    hour) does not bring in the bucket it opens."""
    if not lo < hi:
        return None
    w = psf.bucket
    kmin, kmax = bucket_of(_at_least(lo), w), bucket_of(_below(hi), w)
    return (kmin, kmax) if kmin <= kmax else None


def whole(psf: PSF, k: int, lo: float | int, hi: float | int) -> bool:
    """Whether every value of bucket k lies in [lo, hi), so its records need
    no check: no double below lo and none at or above hi falls in it (by
    the same monotonicity as span)."""
    if abs(k) >= _LIMIT - 1:  # an edge bucket holds every value past it
        return False
    w = psf.bucket
    return bucket_of(_below(lo), w) < k < bucket_of(_at_least(hi), w)


def _below(x: float | int) -> float:
    """The largest double below x (x itself may be an int no double holds)."""
    f = float(x)
    return math.nextafter(f, -math.inf) if f >= x else f


def _at_least(x: float | int) -> float:
    """The smallest double at or above x."""
    f = float(x)
    return math.nextafter(f, math.inf) if f < x else f


def lower_bound(psf: PSF, k: int) -> float | int:
    """The smallest value of bucket k (what group_count shows for it)."""
    v = k * psf.bucket
    return int(v) if float(v).is_integer() and abs(v) < _LIMIT else v


def numbers(nset, batch) -> list[float | None]:
    """The number a bucketed PSF's native set (program 0, with its
    transform) reads from each record of a RecordBatch, in C: the value
    exactly as ingest read it (a double; seconds for a time)."""
    n = len(batch.addresses)
    if not n:
        return []
    out = ffi.new("double[]", n)
    ok = ffi.new("uint8_t[]", n)
    slots = ffi.new("shoal_slot[]", max(1, nset.n_slots))
    rc = lib.shoal_prog_numbers(nset.ptr, 0, ffi.from_buffer(batch._buf), ffi.from_buffer("uint64_t[]", batch.offsets),
                                ffi.from_buffer("uint32_t[]", batch.lengths), n, slots, out, ok)
    if rc < 0:
        raise InvalidArgument(f"reading the values of a bucketed PSF failed ({rc})")
    return [out[i] if ok[i] else None for i in range(n)]
