"""What a PSF's values look like: the one enum every psf module shares."""
from __future__ import annotations

import enum

__all__ = ["PSFKind"]


class PSFKind(enum.Enum):
    """How a PSF computes its value.

    PREDICATE: a JMESPath expression that can only yield true, false or null
        (a comparison, `!`, `&&`/`||` of predicates, or a boolean builtin such
        as `contains`). Records are indexed under `true` only.
    PROJECTION: any other JMESPath expression; records are indexed under the
        non-null scalar it yields.
    CALLABLE: a Python function registered with optional field expressions.
    """

    PREDICATE = "predicate"
    PROJECTION = "projection"
    CALLABLE = "callable"
