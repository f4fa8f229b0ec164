"""PSF definitions written in JMESPath: parsing, classification, and the
subset the C core evaluates.

`parse_definition(text)` returns an `Expression` that knows

* its `kind`: PREDICATE when the expression can only yield true, false or null
  (a comparison, `!`, `&&`/`||` whose operands are both predicates, a boolean
  builtin `contains`/`starts_with`/`ends_with`, a boolean literal, or a pipe
  ending in one of those); PROJECTION otherwise;
* whether it is `native`, i.e. in the C subset compiled by `native.py`:
  field chains (`a.b`, `"id.resp_p"` is one key), non-negative indexes
  (`[1]`, `a[0].b`), `@`, scalar literals, comparisons with a scalar literal
  on at least one side, and `&&`, `||`, `!`, parentheses over those, at most
  SHOAL_MAX_STACK deep. Everything else (functions, projections, filters,
  slices, negative indexes, multi-selects, pipes, path-vs-path comparisons,
  array/object literals) runs in Python (`slowpath.py`);
* the record `paths` it reads (exact for native expressions; for others the
  paths reached from the record root before a projection or pipe).

Dialect: shoal evaluates JMESPath 1.1.0 (jmespath/visitor.py) with one change:
an ordering comparison (< <= > >=) between a number and a string yields null
instead of raising TypeError, as every other non-comparable pair already does.
`Expression.search` is that dialect; the C evaluator implements the same one.

Cost: `parse_definition` refuses text over its ExpressionLimits (length,
nesting) before parsing it (limits.py); compiling is then linear in the
text. `Expression.search` has no budget: evaluate untrusted expressions
over records through budget.EvaluationBudget.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from numbers import Number
from typing import Any, Union

import jmespath
import jmespath.exceptions
from jmespath import functions as _jp_functions
from jmespath import visitor as _jp_visitor

from ..config import ExpressionLimits
from ..errors import InvalidArgument, PSFDefinitionError
from .kinds import PSFKind
from .limits import check_text, check_tree, too_deep

__all__ = ["Expression", "PathStep", "Path", "Insn", "parse_definition", "search"]

PathStep = Union[str, int]     # object key (unescaped) or array index >= 0
Path = tuple[PathStep, ...]    # () is the record itself
Insn = tuple[str, Any]         # ("SLOT", path) | ("LIT", value) | (op, None)

# Mirrors SHOAL_MAX_STACK in shoal.h; tests assert they agree.
MAX_STACK = 32
# Mirrors SHOAL_EDGE_INDEX: an index edge's number must stay below it.
_MAX_INDEX = 4294967294
_DEFAULT_LIMITS = ExpressionLimits()

_COMPARATOR_OPS = {"eq": "EQ", "ne": "NE", "lt": "LT", "lte": "LE", "gt": "GT", "gte": "GE"}
_BOOLEAN_FUNCTIONS = frozenset({"contains", "starts_with", "ends_with"})
_PATH_NODES = frozenset({"field", "subexpression", "index_expression", "current", "identity"})


def _is_number(x: Any) -> bool:
    return isinstance(x, Number) and not isinstance(x, bool)


class _Interpreter(_jp_visitor.TreeInterpreter):
    """jmespath's interpreter, except that ordering a number against a string
    yields None (Python would raise TypeError)."""

    _ORDER = {"lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}

    def visit_comparator(self, node, value):
        op = node["value"]
        if op in ("eq", "ne"):
            return super().visit_comparator(node, value)
        left = self.visit(node["children"][0], value)
        right = self.visit(node["children"][1], value)
        if (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return self._ORDER[op](left, right)
        return None


_INTERPRETER = _Interpreter()


def search(ast: dict, obj: Any) -> Any:
    """Evaluate a parsed JMESPath AST over `obj` in shoal's dialect. May raise
    jmespath errors from builtin functions (wrong argument types)."""
    return _INTERPRETER.visit(ast, obj)


@dataclasses.dataclass(frozen=True, eq=False)
class Expression:
    """A parsed PSF definition. Immutable; safe to share between threads."""

    text: str
    ast: dict
    kind: PSFKind
    native: bool
    paths: tuple[Path, ...]
    program: tuple[Insn, ...] | None   # postfix program when native
    why_not_native: str | None          # None when native

    def search(self, obj: Any) -> Any:
        """The expression's value over a parsed record (shoal's dialect)."""
        return _INTERPRETER.visit(self.ast, obj)

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, kind={self.kind.value}, native={self.native})"


def parse_definition(text: str, limits: ExpressionLimits | None = None) -> Expression:
    """Parse a JMESPath PSF definition. Raises PSFDefinitionError (with the
    0-based `position` where known) if it does not parse or calls an unknown
    function or one with the wrong number of arguments, and its subclasses
    ExpressionTooLong / ExpressionTooDeep when it is over `limits` (default:
    ExpressionLimits()), checked before it is parsed (limits.py)."""
    if not isinstance(text, str):
        raise InvalidArgument(f"a PSF definition must be a str, not {type(text).__name__}")
    limits = limits if limits is not None else _DEFAULT_LIMITS
    check_text(text, limits)
    try:
        ast = jmespath.compile(text).parsed
    except RecursionError:
        # The text's nesting is within bounds, but a chain the text does not
        # bracket (projections) recursed deeper than the interpreter allows.
        raise too_deep(text, limits, None) from None
    except jmespath.exceptions.EmptyExpressionError:
        raise PSFDefinitionError("empty expression", position=0, expression=text) from None
    except jmespath.exceptions.ParseError as exc:
        position = getattr(exc, "lex_position", None)
        detail = getattr(exc, "msg", None) or str(exc)
        if isinstance(exc, jmespath.exceptions.LexerError):
            detail = exc.message
        if isinstance(exc, jmespath.exceptions.IncompleteExpressionError):
            detail = "incomplete expression"
        elif getattr(exc, "token_value", None) not in (None, ""):
            detail = f"{detail}: unexpected {exc.token_value!r}"
        where = f" at position {position}" if position is not None else ""
        raise PSFDefinitionError(
            f"invalid JMESPath expression{where}: {detail}", position=position, expression=text
        ) from None
    except jmespath.exceptions.JMESPathError as exc:  # pragma: no cover - defensive
        raise PSFDefinitionError(f"invalid JMESPath expression: {exc}", expression=text) from None
    check_tree(ast, text, limits)
    _check_functions(ast, text)

    try:
        program: tuple[Insn, ...] | None = tuple(_compile(ast))
        why = None
        if _stack_need(ast) > MAX_STACK:
            program, why = None, f"nesting needs more than {MAX_STACK} stack entries"
    except _NotNative as exc:
        program, why = None, str(exc)

    found: set[Path] = set()
    top = _read_paths(ast, (), found)
    if top is not None:
        found.add(top)
    return Expression(
        text=text,
        ast=ast,
        kind=_kind(ast),
        native=program is not None,
        paths=tuple(sorted(found, key=_path_sort_key)),
        program=program,
        why_not_native=why,
    )


def _path_sort_key(path: Path) -> tuple:
    return tuple((0, s) if isinstance(s, str) else (1, str(s)) for s in path)


def _check_functions(node: dict, text: str) -> None:
    if node.get("type") == "function_expression":
        name = node["value"]
        spec = _jp_functions.Functions.FUNCTION_TABLE.get(name)
        if spec is None:
            raise PSFDefinitionError(f"unknown function {name}()", expression=text)
        sig = spec["signature"]
        n = len(node["children"])
        if sig and sig[-1].get("variadic"):
            if n < len(sig):
                raise PSFDefinitionError(
                    f"{name}() takes at least {len(sig)} arguments, got {n}", expression=text
                )
        elif n != len(sig):
            raise PSFDefinitionError(f"{name}() takes {len(sig)} arguments, got {n}", expression=text)
    for child in node.get("children", ()):
        if isinstance(child, dict):
            _check_functions(child, text)


def _kind(node: dict) -> PSFKind:
    t = node["type"]
    if t in ("comparator", "not_expression"):
        return PSFKind.PREDICATE
    if t in ("and_expression", "or_expression"):
        if all(_kind(c) is PSFKind.PREDICATE for c in node["children"]):
            return PSFKind.PREDICATE
        return PSFKind.PROJECTION
    if t == "function_expression" and node["value"] in _BOOLEAN_FUNCTIONS:
        return PSFKind.PREDICATE
    if t == "literal" and isinstance(node["value"], bool):
        return PSFKind.PREDICATE
    if t == "pipe":
        return _kind(node["children"][-1])
    return PSFKind.PROJECTION


# ---- the C subset -----------------------------------------------------------


class _NotNative(Exception):
    """The expression needs the Python evaluator; the message says why."""


def _path(node: dict) -> Path:
    """The record path a pure path expression reads, or _NotNative."""
    t = node["type"]
    if t == "field":
        key = node["value"]
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise _NotNative("key is not valid UTF-8") from None
        return (key,)
    if t in ("current", "identity"):
        return ()
    if t == "subexpression":  # steps gathered in a list: a long path stays linear
        steps: list[PathStep] = []
        for child in node["children"]:
            steps.extend(_path(child))
        return tuple(steps)
    if t == "index_expression":
        steps = list(_path(node["children"][0]))
        for child in node["children"][1:]:
            if child["type"] != "index":
                raise _NotNative(f"{child['type']} is evaluated in Python")
            index = child["value"]
            if index < 0:
                raise _NotNative("negative index is evaluated in Python")
            if index > _MAX_INDEX:
                raise _NotNative("index too large")
            steps.append(index)
        return tuple(steps)
    raise _NotNative(f"{t} is evaluated in Python")


def _native_literal(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, int):
        return abs(value) < 10**308
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def _compile(node: dict) -> list[Insn]:
    t = node["type"]
    if t in _PATH_NODES:
        return [("SLOT", _path(node))]
    if t == "literal":
        if not _native_literal(node["value"]):
            raise _NotNative("array, object or non-finite literal is evaluated in Python")
        return [("LIT", node["value"])]
    if t == "comparator":
        left, right = node["children"]
        if left["type"] != "literal" and right["type"] != "literal":
            raise _NotNative("a comparison without a literal side is evaluated in Python")
        return _compile(left) + _compile(right) + [(_COMPARATOR_OPS[node["value"]], None)]
    if t == "not_expression":
        return _compile(node["children"][0]) + [("NOT", None)]
    if t in ("and_expression", "or_expression"):
        left, right = node["children"]
        op = "AND" if t == "and_expression" else "OR"
        return _compile(left) + _compile(right) + [(op, None)]
    raise _NotNative(f"{t} is evaluated in Python")


def _stack_need(node: dict) -> int:
    """Stack entries the postfix program of `node` needs (native nodes only)."""
    t = node["type"]
    if t in ("comparator", "and_expression", "or_expression"):
        left, right = node["children"]
        return max(_stack_need(left), 1 + _stack_need(right))
    if t == "not_expression":
        return _stack_need(node["children"][0])
    return 1


def _read_paths(node: Any, ctx: Path | None, out: set[Path]) -> Path | None:
    """Collect into `out` the record paths `node` reads when its current value
    is at record path `ctx` (None: a computed value). Returns the path of
    node's own value when node is a pure path, so callers can extend it."""
    if not isinstance(node, dict):
        return None
    t = node["type"]
    children = node.get("children", [])
    if t == "field":
        return ctx + (node["value"],) if ctx is not None else None
    if t in ("current", "identity"):
        return ctx
    if t in ("subexpression", "pipe"):
        # The path grows in one list, not a tuple per step: a long path stays linear.
        steps = None if ctx is None else list(ctx)
        for child in children:
            if steps is not None and child["type"] == "field":
                steps.append(child["value"])
                continue
            got = _read_paths(child, None if steps is None else tuple(steps), out)
            steps = None if got is None else list(got)
        return None if steps is None else tuple(steps)
    if t == "index_expression":
        base = _read_paths(children[0], ctx, out)
        for child in children[1:]:
            if base is not None and child["type"] == "index" and child["value"] >= 0:
                base = base + (child["value"],)
            else:
                base = None
        return base
    if t in ("projection", "value_projection", "flatten", "filter_projection"):
        base = _read_paths(children[0], ctx, out)
        if base is not None:
            out.add(base)
        return None
    if t in ("literal", "slice", "expref", "index"):
        return None
    # comparator, and/or/not, function_expression, multi_select_*, key_val_pair
    for child in children:
        got = _read_paths(child, ctx, out)
        if got is not None:
            out.add(got)
    return None
