"""PSFs (predicated subset functions): JMESPath or callable definitions, their
values, their compiled C form, and the registry of which were active when."""
from __future__ import annotations

from .budget import EvaluationBudget
from .expr import Expression, parse_definition
from .kinds import PSFKind
from .native import NativePSFSet
from .entry import MAX_NAME_CHARS, PSF, active_at, check_name, inactive_ranges
from .registry import Registry
from .slowpath import SlowEvaluator, evaluate
from .values import (
    canonical,
    canonical_json,
    canonical_scalar,
    decode,
    parse_query_value,
    value_hash,
)

__all__ = [
    "EvaluationBudget",
    "Expression",
    "MAX_NAME_CHARS",
    "NativePSFSet",
    "PSF",
    "PSFKind",
    "Registry",
    "SlowEvaluator",
    "active_at",
    "canonical",
    "canonical_json",
    "canonical_scalar",
    "check_name",
    "decode",
    "evaluate",
    "inactive_ranges",
    "parse_definition",
    "parse_query_value",
    "value_hash",
]
