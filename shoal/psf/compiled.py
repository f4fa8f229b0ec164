"""What ingest evaluates: the active PSFs compiled into one native program
set, plus the slow-path (Python) PSFs and a keyed store's key expression
when C cannot evaluate it.

A Compiled is a snapshot: the engine builds a new one on every registration
or deregistration and swaps it in (never mutates one), so an ingest batch
or a reader always sees one consistent set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .expr import Expression
from .native import NativePSFSet
from .entry import PSF
from .slowpath import SlowEvaluator


@dataclass(frozen=True)
class Compiled:
    native: NativePSFSet
    slow: SlowEvaluator | None
    key_slow: Any = None  # a keyed store's key expression when C cannot evaluate it


def compile_active(active: list[PSF], key: Expression | None, limits, *,
                   errors: dict[int, int], over_budget: dict[int, int]) -> Compiled:
    """Compile the active PSFs (and the key). `errors` and `over_budget`
    (psf_id -> records a slow-path PSF failed on, and of those went over its
    evaluation budget) are the store's tallies, kept across recompiles."""
    key_native = key if key is not None and key.native else None
    key_slow = key if key is not None and not key.native else None
    native = NativePSFSet.build([(p.id, p.expression) for p in active if p.native], key=key_native,
                                transforms={p.id: (p.transform, p.bucket) for p in active if p.bucket is not None})
    slow = [p for p in active if not p.native and p.failure is None]  # a failing PSF yields nothing
    evaluator = SlowEvaluator(slow, limits, errors=errors, over_budget=over_budget)
    return Compiled(native, evaluator if slow or key_slow is not None else None, key_slow)
