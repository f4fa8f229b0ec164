"""shoal: a storage engine for raw JSON streams with predicated subset
function (PSF) indexing, after FishStore."""
from .config import ExpressionLimits, StoreConfig, parse_size
from .errors import (AccessDenied, CorruptionError, DiskFull, EvaluationBudgetExceeded, ExpressionTooDeep, ExpressionTooLong,
                     IngestRejected, InputTooLarge, InvalidArgument, NativeIOError, ParseError, PSFDefinitionError, PSFError,
                     PSFExists, PSFNotFound, RecordTooLarge, RemoteError, ShardUnavailable, ShoalError, StorageError,
                     StoreClosed, StoreLocked, TailGap, TooManyPSFs)
from .engine import Store, open
from .ingest.framing import InputFormat
from .psf import PSF, PSFKind
from .results import CheckpointInfo, CompactionResult, IngestError, IngestResult, Record, RecordBatch

from ._version import __version__  # noqa: F401 - shoal.__version__

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
    "ShardUnavailable",
    "ShoalError",
    "StorageError",
    "Store",
    "StoreClosed",
    "StoreConfig",
    "StoreLocked",
    "TailGap",
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
