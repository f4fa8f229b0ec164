"""Python evaluation of PSFs the C core cannot run: non-native expressions and
callables.

Error policy: an exception raised while evaluating one record (a user
callable raising, or a JMESPath builtin given the wrong type, e.g.
`length(@)` over a number) means "no value for this record"; ingest goes
on. Each SlowEvaluator counts failures per psf_id (`errors`), keeps the last
exception (`last_error`), and logs the first failure of each PSF at WARNING
(later ones at DEBUG) so a broken function is visible without flooding logs.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

import orjson

from .expr import Expression
from .kinds import PSFKind
from .registry import PSF
from .values import canonical

__all__ = ["evaluate", "SlowEvaluator"]

log = logging.getLogger(__name__)


def evaluate(psf_or_expression: PSF | Expression, obj: Any) -> Any:
    """The raw result of a PSF or expression over a parsed record (may be any
    JSON value). Exceptions propagate; SlowEvaluator applies the policy."""
    if isinstance(psf_or_expression, Expression):
        return psf_or_expression.search(obj)
    psf = psf_or_expression
    if psf.kind is PSFKind.CALLABLE:
        if psf.func is None:
            raise LookupError(f"PSF {psf.name!r}: its callable was not registered again")
        if psf.field_expressions is None:
            return psf.func(obj)
        return psf.func(*[f.search(obj) for f in psf.field_expressions])
    if psf.expression is None:
        raise LookupError(f"PSF {psf.name!r} has no expression")
    return psf.expression.search(obj)


class SlowEvaluator:
    """Evaluates a fixed list of PSFs over raw records. One record is parsed
    once (orjson) for all of them. Not thread-safe (the counters)."""

    def __init__(self, psfs: Iterable[PSF]):
        self.psfs: tuple[PSF, ...] = tuple(psfs)
        self.errors: dict[int, int] = {}
        self.last_error: dict[int, BaseException] = {}

    @property
    def empty(self) -> bool:
        return not self.psfs

    def values(self, record: bytes | memoryview | Any, *, parsed: bool = False) -> list[tuple[int, bytes]]:
        """(psf_id, canonical value) for each PSF with an indexable value on
        this record, in PSF order. `record` is JSON text, or the parsed value
        when parsed=True. Raises orjson.JSONDecodeError if the text does not
        parse (callers validate records before this)."""
        if not self.psfs:
            return []
        obj = record if parsed else orjson.loads(record)
        out: list[tuple[int, bytes]] = []
        for psf in self.psfs:
            try:
                result = evaluate(psf, obj)
            except Exception as exc:  # noqa: BLE001 - the policy above
                self._note_error(psf, exc)
                continue
            c = canonical(result)
            if c is not None:
                out.append((psf.id, c))
        return out

    def _note_error(self, psf: PSF, exc: Exception) -> None:
        n = self.errors.get(psf.id, 0) + 1
        self.errors[psf.id] = n
        self.last_error[psf.id] = exc
        level = logging.WARNING if n == 1 else logging.DEBUG
        log.log(level, "PSF %r (id %d) failed on a record; treated as no value: %r",
                psf.name, psf.id, exc)
