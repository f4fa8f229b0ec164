"""The per-record evaluation budget of a JMESPath expression run in Python.

An expression's cost is not its length: `` `1` | [@,@] | [@,@] | ... `` holds
one number at each stage but twice as many references to it, so 26 stages
and a `to_string` build a 2**26-element string out of a 300-character
expression. `EvaluationBudget.search` evaluates in shoal's dialect and stops
an evaluation with EvaluationBudgetExceeded as soon as it has

* visited more than `max_eval_steps` nodes (each element a projection or a
  function's expression visits is a visit), or
* built values whose JSON sizes add up to more than `max_eval_bytes`: each
  value a multi-select, projection, flatten, slice or function makes counts
  whole, what it holds included (a value counts again inside a later one).
  Values read straight from the record cost nothing until copied into a
  built one, and a function result that is one of its arguments is not new.

The size of a built value is measured by a walk that stops once over the
budget and that stops at values it measured before (remembered by identity
for the evaluation), so measuring `[x, x]` costs two look-ups, not two walks
of x: measuring is bounded by the budget too. Any builtin then works on
values of bounded size, so its cost is bounded as well.

The C evaluator needs no budget: its subset (paths, literals, comparisons,
&&, ||, !) costs one pass over the record.

Not thread-safe: one EvaluationBudget per thread (or per evaluator).
"""
from __future__ import annotations

from typing import Any

from ..config import ExpressionLimits
from ..errors import EvaluationBudgetExceeded
from .expr import Expression, _Interpreter

__all__ = ["EvaluationBudget"]

_HOW = "StoreConfig({name}=...) or `shoal serve --{flag} N`"


class _Over(Exception):
    """Raised inside an evaluation; `search` restates it for the caller."""

    def __init__(self, limit: str):
        self.limit = limit


class _BudgetedInterpreter(_Interpreter):
    """The dialect's interpreter, counting visits and built bytes."""

    def __init__(self, limits: ExpressionLimits):
        super().__init__()
        self.max_steps = limits.max_eval_steps
        self.max_bytes = limits.max_eval_bytes
        self.steps = 0
        self.bytes = 0
        # id(value) -> (value, size) for values measured in this evaluation;
        # holding the value keeps its id from being reused meanwhile.
        self.sizes: dict[int, tuple[Any, int]] = {}

    def visit(self, node, *args, **kwargs):
        self.steps += 1
        if self.steps > self.max_steps:
            raise _Over("max_eval_steps")
        method = self._method_cache.get(node["type"])
        if method is None:
            method = self._method_cache[node["type"]] = getattr(
                self, "visit_" + node["type"], self.default_visit)
        return method(node, *args, **kwargs)

    # ---- the nodes that build values ----

    def visit_multi_select_list(self, node, value):
        return self._built(super().visit_multi_select_list(node, value))

    def visit_multi_select_dict(self, node, value):
        return self._built(super().visit_multi_select_dict(node, value))

    def visit_projection(self, node, value):
        return self._built(super().visit_projection(node, value))

    def visit_value_projection(self, node, value):
        return self._built(super().visit_value_projection(node, value))

    def visit_filter_projection(self, node, value):
        return self._built(super().visit_filter_projection(node, value))

    def visit_flatten(self, node, value):
        return self._built(super().visit_flatten(node, value))

    def visit_slice(self, node, value):
        return self._built(super().visit_slice(node, value))

    def visit_function_expression(self, node, value):
        args = [self.visit(child, value) for child in node["children"]]
        result = self._functions.call_function(node["value"], args)
        if isinstance(result, (str, list, dict)) and not any(result is a for a in args):
            self._built(result)
        return result

    # ---- measuring ----

    def _built(self, value: Any) -> Any:
        if value is not None:
            self.bytes += self._size(value, self.max_bytes - self.bytes)
            if self.bytes > self.max_bytes:
                raise _Over("max_eval_bytes")
        return value

    def _size(self, value: Any, room: int) -> int:
        """JSON size of `value`, or anything over `room` once past it."""
        sizes = self.sizes
        total = 0
        stack = [value]
        while stack:
            v = stack.pop()
            if isinstance(v, str):
                total += len(v) + 3
            elif isinstance(v, list):
                known = sizes.get(id(v))
                if known is not None and v is not value:
                    total += known[1]
                else:
                    total += 2 + len(v)
                    stack.extend(v)
            elif isinstance(v, dict):
                known = sizes.get(id(v))
                if known is not None and v is not value:
                    total += known[1]
                else:
                    total += 2
                    for k, x in v.items():
                        total += len(k) + 4
                        stack.append(x)
            else:
                total += 8
            if total > room:
                return total
        if isinstance(value, (list, dict)):
            sizes[id(value)] = (value, total)
        return total


class EvaluationBudget:
    """Evaluates expressions within a per-record budget (see the module
    docstring). `search` raises EvaluationBudgetExceeded when over."""

    def __init__(self, limits: ExpressionLimits | None = None):
        self.limits = limits if limits is not None else ExpressionLimits()
        self._interp = _BudgetedInterpreter(self.limits)

    def search(self, expression: Expression, obj: Any) -> Any:
        """The value of `expression` over a parsed record, in shoal's dialect.
        Raises what builtins raise (wrong argument types), and
        EvaluationBudgetExceeded."""
        it = self._interp
        it.steps = 0
        it.bytes = 0
        try:
            return it.visit(expression.ast, obj)
        except _Over as over:
            raise self._exceeded(over.limit) from None
        finally:
            it.sizes.clear()

    def _exceeded(self, limit: str) -> EvaluationBudgetExceeded:
        bound = getattr(self.limits, limit)
        what = "steps" if limit == "max_eval_steps" else "bytes of built values"
        return EvaluationBudgetExceeded(
            f"expression took more than {bound} {what} on one record ({limit}; raise it with "
            f"{_HOW.format(name=limit, flag=limit.replace('_', '-'))})", limit=limit)
