"""shoal: a storage engine for raw JSON streams with predicated subset
function (PSF) indexing, after FishStore."""
from .config import ExpressionLimits, StoreConfig, parse_size
from .errors import (AccessDenied, CorruptionError, DiskFull, EvaluationBudgetExceeded, ExpressionTooDeep, ExpressionTooLong,
                     IngestRejected, InputTooLarge, InvalidArgument, NativeIOError, ParseError, PSFDefinitionError, PSFError,
                     PSFExists, PSFNotFound, RecordTooLarge, RemoteError, ShoalError, StorageError, StoreClosed,
                     StoreLocked, TooManyPSFs)
from .ingest.framing import InputFormat
from .ingest.result import IngestError, IngestResult
from .psf import PSF, PSFKind
from .store.checkpoint import CheckpointInfo
from .store.compaction import CompactionResult
from .store.record import Record, RecordBatch
from .store.store import Store, open

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "CheckpointInfo",
    "Client",
    "CompactionResult",
    "CorruptionError",
    "DiskFull",
    "EvaluationBudgetExceeded",
    "ExpressionLimits",
    "ExpressionTooDeep",
    "ExpressionTooLong",
    "IngestError",
    "IngestRejected",
    "IngestResult",
    "InputFormat",
    "InputTooLarge",
    "InvalidArgument",
    "NativeIOError",
    "PSF",
    "PSFDefinitionError",
    "PSFError",
    "PSFExists",
    "PSFKind",
    "PSFNotFound",
    "ParseError",
    "Record",
    "RecordBatch",
    "RecordTooLarge",
    "RemoteError",
    "ShoalError",
    "StorageError",
    "Store",
    "StoreClosed",
    "StoreConfig",
    "StoreLocked",
    "TooManyPSFs",
    "open",
    "parse_size",
]


def __getattr__(name: str):
    # The HTTP client needs httpx; import it only when asked for.
    if name == "Client":
        from .client import Client
        return Client
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")
