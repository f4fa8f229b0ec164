"""What an ingest call reports back."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class IngestError:
    """One rejected record: its 1-based line (NDJSON) or element number
    (array), the reason, and the byte offset of the problem in the record."""

    line: int
    reason: str
    offset: int | None = None

    def to_dict(self) -> dict:
        return {"line": self.line, "error": self.reason, "offset": self.offset}


@dataclass
class IngestResult:
    ingested: int = 0
    rejected: int = 0
    errors: list[IngestError] = field(default_factory=list)
    first_address: int | None = None
    last_address: int | None = None
    input_bytes: int = 0
    stored_bytes: int = 0
    durable: bool = False

    @property
    def errors_truncated(self) -> bool:
        return self.rejected > len(self.errors)

    def to_dict(self) -> dict:
        return {
            "ingested": self.ingested,
            "rejected": self.rejected,
            "first_address": self.first_address,
            "last_address": self.last_address,
            "errors": [e.to_dict() for e in self.errors],
            "errors_total": self.rejected,
        }
