"""Python evaluation of PSFs the C core cannot run: non-native expressions and
callables.

Error policy: an exception raised while evaluating one record (a user
callable raising, a JMESPath builtin given the wrong type, e.g. `length(@)`
over a number, or an expression over its evaluation budget, budget.py)
means "no value for this record"; the record is stored and ingest goes on.
Each SlowEvaluator counts failures per psf_id (`errors`; those over budget
also in `over_budget`), keeps the last exception (`last_error`), and logs
the first failure of each PSF at WARNING (later ones at DEBUG) so a broken
function is visible without flooding logs. A store passes its own counter
dicts, so the counts outlive the evaluator (Store.stats()).
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

import orjson

from ..config import ExpressionLimits
from ..errors import EvaluationBudgetExceeded
from .budget import EvaluationBudget
from .expr import Expression
from .kinds import PSFKind
from .entry import PSF
from .values import canonical

__all__ = ["evaluate", "SlowEvaluator"]

log = logging.getLogger(__name__)


def evaluate(psf_or_expression: PSF | Expression, obj: Any, budget: EvaluationBudget | None = None) -> Any:
    """The raw result of a PSF or expression over a parsed record (may be any
    JSON value), within `budget` when given (its expressions, not a
    callable's own code). Exceptions propagate; SlowEvaluator applies the
    policy."""
    search = budget.search if budget is not None else _unbounded
    if isinstance(psf_or_expression, Expression):
        return search(psf_or_expression, obj)
    psf = psf_or_expression
    if psf.kind is PSFKind.CALLABLE:
        if psf.func is None:
            raise LookupError(f"PSF {psf.name!r}: its callable was not registered again")
        if psf.field_expressions is None:
            return psf.func(obj)
        return psf.func(*[search(f, obj) for f in psf.field_expressions])
    if psf.expression is None:
        raise LookupError(f"PSF {psf.name!r} cannot be evaluated: {psf.failure or 'no expression'}")
    return search(psf.expression, obj)


def _unbounded(expression: Expression, obj: Any) -> Any:
    return expression.search(obj)


class SlowEvaluator:
    """Evaluates a fixed list of PSFs over raw records. One record is parsed
    once (orjson) for all of them. Not thread-safe (the counters)."""

    def __init__(self, psfs: Iterable[PSF], limits: ExpressionLimits | None = None, *,
                 errors: dict[int, int] | None = None, over_budget: dict[int, int] | None = None):
        self.psfs: tuple[PSF, ...] = tuple(psfs)
        self.budget = EvaluationBudget(limits)
        self.errors: dict[int, int] = errors if errors is not None else {}
        self.over_budget: dict[int, int] = over_budget if over_budget is not None else {}
        self.last_error: dict[int, BaseException] = {}

    def search(self, expression: Expression, obj: Any) -> Any:
        """One expression over a parsed record, within the budget (for a
        keyed store's key expression)."""
        return self.budget.search(expression, obj)

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
                result = evaluate(psf, obj, self.budget)
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
        if isinstance(exc, EvaluationBudgetExceeded):
            self.over_budget[psf.id] = self.over_budget.get(psf.id, 0) + 1
        self.last_error[psf.id] = exc
        level = logging.WARNING if n == 1 else logging.DEBUG
        log.log(level, "PSF %r (id %d) failed on a record; treated as no value: %r",
                psf.name, psf.id, exc)
