"""The one oracle of the store-level tests: what a store must answer, computed
with plain orjson + jmespath over the same records, never with shoal's code.

`Log` mirrors a store's log: the raw bytes of every stored record in log
order, each record parsed, and (after `bind`) each record's address. It
answers queries, conjunctions, disjunctions and scans as lists of
(address, raw bytes) in the order the store must return them.

Value semantics (shoal's contract, written down independently here):
* a PSF's value for a record is the JMESPath result (or the callable's
  return value); an error while evaluating means "no value";
* only strings, numbers and true are indexed (null, false, arrays, objects
  are not), so a predicate matches `True` exactly where it is true;
* values compare as JSON: strings after unescaping, numbers by exact decimal
  value (1 == 1.0 == 10e-1), true is not 1.
Numbers are compared exactly: a float result is re-read from the record with
`decimal.Decimal`, so a 17-digit Zeek timestamp keeps all its digits.
"""
from __future__ import annotations

import decimal
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jmespath
import orjson

JSON_WS = b" \t\r\n"
# Enumerates every record of a store: a literal that is always truthy.
ALL = "`true`"


def orjson_accepts(raw: bytes) -> bool:
    """The reference answer to "is this valid JSON?"."""
    try:
        orjson.loads(raw)
        return True
    except orjson.JSONDecodeError:
        return False


def strip_ws(raw: bytes) -> bytes:
    """A record's text as a store keeps it: surrounding JSON whitespace trimmed."""
    return raw.strip(JSON_WS)


def value_key(value: Any) -> tuple | None:
    """A hashable key equal for JSON-equal indexable values, None when not indexable."""
    if value is True:
        return ("t",)
    if value is None or value is False:
        return None
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, decimal.Decimal):
        return ("n", value) if value.is_finite() else None
    if isinstance(value, int):
        return ("n", decimal.Decimal(value))
    if isinstance(value, float):
        return ("n", decimal.Decimal(repr(value))) if math.isfinite(value) else None
    return None


def truthy(value: Any) -> bool:
    """JMESPath truthiness."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


_compiled: dict[str, Any] = {}


def search(expression: str, obj: Any) -> Any:
    """jmespath.search, with any evaluation error meaning null."""
    c = _compiled.get(expression)
    if c is None:
        c = _compiled[expression] = jmespath.compile(expression)
    try:
        return c.search(obj)
    except Exception:  # noqa: BLE001 - "no value", as the contract says
        return None


def _exact(expression: str, raw: bytes, value: float) -> Any:
    """Re-evaluate a float-valued expression with exact decimals from the text."""
    try:
        exact = search(expression, json.loads(raw, parse_float=decimal.Decimal))
    except ValueError:
        return value
    # ints beyond 64 bits come back from orjson as floats; json keeps them exact
    if isinstance(exact, (decimal.Decimal, int)) and not isinstance(exact, bool):
        return exact
    return value


class Definition:
    """A PSF definition as the oracle evaluates it: a JMESPath text, or a
    callable with optional field expressions (None: the whole record)."""

    def __init__(self, definition: str | Callable[..., Any], fields: Sequence[str] | None = None):
        self.definition = definition
        self.fields = tuple(fields) if fields is not None else None

    def value(self, obj: Any, raw: bytes) -> Any:
        d = self.definition
        if isinstance(d, str):
            v = search(d, obj)
            if isinstance(v, float):
                v = _exact(d, raw, v)
            return v
        try:
            if self.fields is None:
                return d(obj)
            return d(*[search(f, obj) for f in self.fields])
        except Exception:  # noqa: BLE001 - a failing callable gives no value
            return None

    def cache_key(self) -> Any:
        return (self.definition, self.fields)


def as_pairs(records: Iterable[Any]) -> list[tuple[int, bytes]]:
    """(address, raw) of shoal Records, in the order given."""
    return [(r.address, r.raw) for r in records]


class Log:
    """The records a store holds, in log order."""

    def __init__(self, raws: Iterable[bytes] = ()):
        self.raws: list[bytes] = []
        self.objs: list[Any] = []
        self.addresses: list[int] = []
        self._values: dict[Any, list[tuple | None]] = {}
        self.extend(raws)

    def __len__(self) -> int:
        return len(self.raws)

    def extend(self, raws: Iterable[bytes]) -> None:
        """Records appended to the store, in order (stored text: trimmed)."""
        for raw in raws:
            raw = strip_ws(bytes(raw))
            self.raws.append(raw)
            self.objs.append(orjson.loads(raw))
        self._values.clear()

    def bind(self, store, *, check: bool = True) -> None:
        """Learn the records' addresses from the store, checking that the
        store holds exactly these records in this order. Addresses are the
        store's to choose; everything else is the oracle's."""
        found = as_pairs(store.scan(ALL, order="oldest"))
        if check:
            assert [raw for _, raw in found] == self.raws, "the store does not hold exactly the expected records"
        self.addresses = [a for a, _ in found]
        assert self.addresses == sorted(set(self.addresses)), "addresses are not strictly increasing"

    # ---- values ----
    def values(self, definition: str | Callable[..., Any] | Definition,
               fields: Sequence[str] | None = None) -> list[tuple | None]:
        """The value key of a PSF definition for every record."""
        d = definition if isinstance(definition, Definition) else Definition(definition, fields)
        key = d.cache_key()
        got = self._values.get(key) if isinstance(d.definition, str) else None
        if got is None:
            got = [value_key(d.value(o, r)) for o, r in zip(self.objs, self.raws)]
            if isinstance(d.definition, str):
                self._values[key] = got
        return got

    def value_counts(self, definition, fields=None) -> dict[tuple, int]:
        counts: dict[tuple, int] = {}
        for k in self.values(definition, fields):
            if k is not None:
                counts[k] = counts.get(k, 0) + 1
        return counts

    def matching(self, definition, value: Any = True, fields=None) -> list[int]:
        """Indexes of the records whose PSF value equals `value` (JSON semantics)."""
        want = value_key(value)
        if want is None:
            return []
        return [i for i, k in enumerate(self.values(definition, fields)) if k == want]

    def scan_matching(self, expression: str) -> list[int]:
        """Indexes of the records for which `expression` is truthy."""
        return [i for i, o in enumerate(self.objs) if truthy(search(expression, o))]

    # ---- answers ----
    def answer(self, indexes: Iterable[int], *, order: str = "newest", limit: int | None = None,
               from_address: int | None = None, to_address: int | None = None) -> list[tuple[int, bytes]]:
        """(address, raw) of these records restricted to [from_address,
        to_address), newest or oldest first, at most `limit`."""
        assert len(self.addresses) == len(self.raws), "bind() the log to a store first"
        lo = 0 if from_address is None else from_address
        hi = math.inf if to_address is None else to_address
        out = [(self.addresses[i], self.raws[i]) for i in sorted(set(indexes))
               if lo <= self.addresses[i] < hi]
        if order == "newest":
            out.reverse()
        return out if limit is None else out[:limit]

    def query(self, definition, value: Any = True, *, fields=None, **kw) -> list[tuple[int, bytes]]:
        return self.answer(self.matching(definition, value, fields), **kw)

    def query_all(self, conditions: Sequence[tuple[Any, Any]], **kw) -> list[tuple[int, bytes]]:
        """conditions: (definition, value) pairs; every one must hold."""
        sets = [set(self.matching(d, v)) for d, v in conditions]
        return self.answer(set.intersection(*sets) if sets else set(), **kw)

    def query_any(self, conditions: Sequence[tuple[Any, Any]], **kw) -> list[tuple[int, bytes]]:
        sets = [set(self.matching(d, v)) for d, v in conditions]
        return self.answer(set().union(*sets), **kw)

    def scan(self, expression: str, **kw) -> list[tuple[int, bytes]]:
        return self.answer(self.scan_matching(expression), **kw)


def sample_values(counts: dict[tuple, int], n: int = 3) -> list[Any]:
    """Python query values for a PSF: the most and least frequent values and
    some from the middle (deterministic), as plain Python scalars."""
    ordered = sorted(counts, key=lambda k: (-counts[k], repr(k)))
    picks = ordered[:n] + ordered[-n:] + ordered[len(ordered) // 2: len(ordered) // 2 + n]
    out, seen = [], set()
    for k in picks:
        if k not in seen:
            seen.add(k)
            out.append(python_value(k))
    return out


def python_value(key: tuple) -> Any:
    """A Python value with this key (numbers: int when integral, else float)."""
    if key[0] == "t":
        return True
    if key[0] == "s":
        return key[1]
    d = key[1]
    if d == d.to_integral_value():
        return int(d)
    return float(d)
