"""One PSF as the registry holds it: its name, id, definition (an
expression, or a callable of fields with the fingerprint that recognizes it
after a restart) and the log ranges in which it was active, with the rules
for names and the range arithmetic queries use (an answer scans where its
PSF was not active). The registry (registry.py) owns the set of them and
their persistence.
"""
from __future__ import annotations

import dataclasses
import hashlib
import types
import unicodedata
from typing import Any, Callable

from .._native import lib
from ..errors import InvalidArgument
from .expr import Expression
from .kinds import PSFKind

MAX_NAME_CHARS = 128

Range = tuple[int, "int | None"]


@dataclasses.dataclass(eq=False)
class PSF:
    """One registered PSF. `ranges` are the log ranges [from, to) in which it
    was active; the last is open (to None) while it is active."""

    id: int
    name: str
    definition: str | None          # expression text; None for callables
    kind: PSFKind
    fields: tuple[str, ...] | None  # callables: field expressions (None: whole record)
    ranges: list[Range]
    expression: Expression | None = None
    func: Callable[..., Any] | None = None
    field_expressions: tuple[Expression, ...] | None = None
    fingerprint: str | None = None  # callables: callable_fingerprint(func)
    failure: str | None = None      # why a loaded PSF cannot be evaluated (over the expression limits)
    bucket: float | None = None     # bucketed: a value x is indexed as floor(x / bucket) (_native/bucket.c)
    time: bool = False              # bucketed times: epoch seconds, milliseconds or ISO-8601 strings

    @property
    def transform(self) -> int:
        """SHOAL_XF_* of the value it indexes."""
        if self.bucket is None:
            return lib.SHOAL_XF_NONE
        return lib.SHOAL_XF_TIME if self.time else lib.SHOAL_XF_BUCKET

    @property
    def active(self) -> bool:
        return bool(self.ranges) and self.ranges[-1][1] is None

    @property
    def native(self) -> bool:
        """True when the C core evaluates it during ingest."""
        return self.expression is not None and self.expression.native

    @property
    def needs_callable(self) -> bool:
        """A callable PSF loaded from disk: its function must be registered again."""
        return self.kind is PSFKind.CALLABLE and self.func is None

    def active_at(self, address: int) -> bool:
        return active_at(self, address)

    def inactive_ranges(self, lo: int, hi: int) -> list[tuple[int, int]]:
        return inactive_ranges(self, lo, hi)

    def __repr__(self) -> str:
        what = self.definition if self.definition is not None else "<callable>"
        bucket = f", {'time ' if self.time else ''}bucket={self.bucket:g}" if self.bucket is not None else ""
        return f"PSF(id={self.id}, name={self.name!r}, {self.kind.value}: {what!r}{bucket}, ranges={self.ranges})"


def active_at(psf: PSF, address: int) -> bool:
    """Was `psf` active (its values indexed) for the record at `address`?"""
    for lo, hi in psf.ranges:
        if lo <= address and (hi is None or address < hi):
            return True
    return False


def inactive_ranges(psf: PSF, lo: int, hi: int) -> list[tuple[int, int]]:
    """The sub-ranges of [lo, hi) where `psf` was not active: records there
    are not in its index, so a complete answer must scan them."""
    out: list[tuple[int, int]] = []
    cur = lo
    for a, b in psf.ranges:
        if cur >= hi:
            break
        end = hi if b is None else b
        if end <= cur:
            continue
        if a > cur:
            out.append((cur, min(a, hi)))
        cur = max(cur, end)
    if cur < hi:
        out.append((cur, hi))
    return out


def callable_fingerprint(func: Callable[..., Any]) -> str | None:
    """A stable digest of what a Python function computes: its bytecode,
    constants (nested code included), names, defaults and closure values, plus
    its module and qualified name, but not its line numbers. Globals it reads
    are not part of it. None for callables without `__code__` (builtins,
    partials, callable objects): those never resume an old id."""
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    h = hashlib.sha256()

    def put(x: Any) -> None:
        h.update(repr(x).encode("utf-8", "backslashreplace"))
        h.update(b"\0")

    def put_code(c: types.CodeType) -> None:
        h.update(c.co_code)
        put((c.co_names, c.co_varnames, c.co_freevars, c.co_cellvars, c.co_argcount,
             c.co_kwonlyargcount, c.co_flags))
        for k in c.co_consts:
            if isinstance(k, types.CodeType):
                put_code(k)
            else:
                put(k)

    put_code(code)
    put((getattr(func, "__module__", None), getattr(func, "__qualname__", None)))
    put((getattr(func, "__defaults__", None), getattr(func, "__kwdefaults__", None)))
    for cell in getattr(func, "__closure__", None) or ():
        try:
            put(cell.cell_contents)
        except ValueError:  # an empty cell
            put("<empty cell>")
    return h.hexdigest()


def _shown(psf: PSF) -> str:
    """A PSF's definition as an error message shows it."""
    if psf.definition is not None:
        return repr(psf.definition)
    return "a Python callable" + (f" of fields {list(psf.fields)!r}" if psf.fields is not None else "")


NAME_RULE = (f"a PSF name is 1 to {MAX_NAME_CHARS} characters, none of them a control character "
             f"(U+0000-U+001F, U+007F-U+009F) or a surrogate")


def check_name(name: Any) -> None:
    """Raise InvalidArgument, stating the rule, unless `name` is a valid PSF name."""
    if not isinstance(name, str):
        raise InvalidArgument(f"a PSF name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidArgument(f"{NAME_RULE}; this one is empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"{NAME_RULE}; this one has {len(name):,} characters")
    for i, ch in enumerate(name):
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise InvalidArgument(f"{NAME_RULE}; this one has {ch!r} at position {i}: {name!r}")
