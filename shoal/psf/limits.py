"""Compile-time bounds of a JMESPath expression: its length and its nesting.

Checked in this order, each before the work it protects:

1. `check_text`: the length, then the nesting of the text (brackets,
   parentheses and braces, also inside JSON literals, but not inside quoted
   strings; a run of the prefix operators `!` and `&` adds a level each).
   Both are one linear pass over characters, before the parser sees the
   text: jmespath's parser recurses once per level, so 100,000 `(` would
   otherwise end in RecursionError.
2. `check_tree`: the depth of the parsed tree, which also counts what the
   text does not show: chains of projections, pipe stages and `&&`/`||`
   operands each nest one level deeper. Iterative; everything after it
   (classification, compilation, evaluation) recurses at most this deep.

Each bound has its own error (ExpressionTooLong, ExpressionTooDeep) naming
the setting that raises it.
"""
from __future__ import annotations

from ..config import ExpressionLimits
from ..errors import ExpressionTooDeep, ExpressionTooLong

__all__ = ["check_text", "check_tree", "too_deep"]

_HOW = "StoreConfig({name}=...) or `shoal serve --{flag} N`"
_OPEN = {"(": 1, "[": 1, "{": 1}
_CLOSE = {")": 1, "]": 1, "}": 1}


def _how(name: str) -> str:
    return _HOW.format(name=name, flag=name.replace("_", "-"))


def check_text(text: str, limits: ExpressionLimits) -> None:
    """Raise ExpressionTooLong or ExpressionTooDeep (with the position where
    the bound was crossed) for text over `limits`."""
    n = len(text)
    if n > limits.max_expression_chars:
        raise ExpressionTooLong(
            f"expression is {n} characters long; the limit is {limits.max_expression_chars} "
            f"(max_expression_chars; raise it with {_how('max_expression_chars')})",
            position=limits.max_expression_chars, expression=text, length=n,
            limit=limits.max_expression_chars)
    limit = limits.max_expression_depth
    depth = 0      # open brackets here
    prefix = 0     # consecutive `!` / `&` prefix operators just before here
    quote = None   # the quote character of the string we are in, if any
    literal = False  # inside a `JSON literal`
    i = 0
    while i < n:
        c = text[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
            elif c == "`" and literal:  # the lexer ends a literal at its backtick, string or not
                quote, literal = None, False
            i += 1
            continue
        if c == "`":
            literal = not literal
            prefix = 0
        elif c == "\\" and literal:
            i += 2
            continue
        elif c == "'" and not literal:
            quote = c
            prefix = 0
        elif c == '"':
            quote = c
            prefix = 0
        elif c in _OPEN:
            depth += 1
            prefix = 0
            if depth > limit:
                raise too_deep(text, limits, depth, position=i)
        elif c in _CLOSE:
            depth = max(0, depth - 1)
            prefix = 0
        elif c in "!&" and not literal:
            nxt = text[i + 1] if i + 1 < n else ""
            if c == "!" and nxt == "=" or c == "&" and nxt == "&":
                prefix = 0
                i += 2
                continue
            prefix += 1
            if depth + prefix > limit:
                raise too_deep(text, limits, depth + prefix, position=i)
        elif not c.isspace():
            prefix = 0
        i += 1


def check_tree(ast: dict, text: str, limits: ExpressionLimits) -> None:
    """Raise ExpressionTooDeep when the parsed tree nests deeper than the
    limit (a lone field is depth 1)."""
    limit = limits.max_expression_depth
    stack = [(ast, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise too_deep(text, limits, depth)
        for child in node.get("children", ()):
            if isinstance(child, dict):  # slice children are ints or None
                stack.append((child, depth + 1))


def too_deep(text: str, limits: ExpressionLimits, depth: int | None,
             position: int | None = None) -> ExpressionTooDeep:
    where = f" at position {position}" if position is not None else ""
    what = f"{depth} levels" if depth is not None else "deeper than the parser can follow"
    return ExpressionTooDeep(
        f"expression nests {what}{where}; the limit is {limits.max_expression_depth} "
        f"(max_expression_depth: brackets, parentheses, `!`, function calls, projections, pipe "
        f"stages and &&/|| operands each nest a level; raise it with {_how('max_expression_depth')})",
        position=position, expression=text, depth=depth, limit=limits.max_expression_depth)
